package bot

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/linkbot/linkbot/pairing"
)

// A response_url takes 5 posts. The code message takes the first; the last
// two are kept for the final state (linked, expired, cancelled), so that a
// final post lost on the way (a broken connection, a 5xx: Slack may have
// counted it) is posted again and the code still leaves the message; that
// leaves two countdown edits. The countdown therefore moves in coarse
// steps, and every rendering inside one step is identical, so the ticker
// edits only when a step changes. The absolute expiry (a Slack date token)
// keeps the message right between edits.
const (
	countdownSteps = 2
	finalUses      = 2 // uses of a response_url kept for the final state
)

// countdownStep returns which step p's countdown is in at now (0 = as
// issued, 1..2 = after each edit) and the moment that step is drawn for:
// half the time left, and the last 20 seconds.
func countdownStep(p pairing.Pairing, now time.Time) (int, time.Time) {
	lifetime := p.ExpiresAt.Sub(p.IssuedAt)
	left := p.ExpiresAt.Sub(now)
	thresholds := [countdownSteps]time.Duration{lifetime / 2, min(20*time.Second, lifetime/6)}
	step, drawn := 0, p.IssuedAt
	for i, t := range thresholds {
		if left <= t {
			step, drawn = i+1, p.ExpiresAt.Add(-t)
		}
	}
	return step, drawn
}

// viewKey names what p's message should show at now; the message is edited
// only when it changes. It is cheap: the ticker computes it for every
// watched pairing on every tick.
func viewKey(p pairing.Pairing, now time.Time) string {
	switch {
	case p.State == pairing.StateRequesting:
		return "" // nothing to show until it settles (or its lease runs out)
	case p.Live(now) && p.Code != "":
		step, _ := countdownStep(p, now)
		return fmt.Sprintf("live:%d", step)
	case p.State == pairing.StateLive:
		return "expired" // past its expiry, about to be marked so
	case p.State == pairing.StateFailed:
		return "failed:" + string(p.Reason)
	}
	return string(p.State)
}

// viewGone is the LastView of a pairing whose response_url Slack answered
// 404/410: its message cannot be edited any more (the agent dismissed it),
// so nothing more is posted to it unless a click brings a fresh
// response_url. It is recorded apart from watching: the pairing is still
// advanced to its end (the link recorded and audited, the code wiped), and
// unwatched then, without a post.
const viewGone = "gone"

// showsCode reports whether the view named key shows a code.
func showsCode(key string) bool { return strings.HasPrefix(key, "live:") }

// render is the message for p at now; its key is viewKey(p, now).
func (b *Bot) render(ctx context.Context, p pairing.Pairing, now time.Time) Message {
	phone := pairing.PhoneFromDigits(p.Phone).International
	limit := b.cfg.Service.PhoneLimit()
	// nextCode is when the phone's limit next allows a code; only the code,
	// expired and interrupted views show it, so only they read the store for it.
	nextCode := func() time.Time { return b.cfg.Service.NextCodeAt(ctx, p.Phone, now) }
	switch {
	case p.Live(now) && p.Code != "":
		_, drawn := countdownStep(p, now)
		nextAt := nextCode()
		if !nextAt.After(now) {
			nextAt = time.Time{} // allowed now
		}
		return CodeView(CodeModel{
			PairingID: p.ID, Code: p.Code, Phone: phone, Instance: p.InstanceName, InstanceID: p.Instance,
			RequestedBy: p.RequestedBy, Now: drawn, ExpiresAt: p.ExpiresAt, Lifetime: p.ExpiresAt.Sub(p.IssuedAt),
			Attempt: p.Attempt, PhoneLimit: limit, NewCodeAt: nextAt,
		})
	case p.State == pairing.StateLinked:
		return LinkedView(phone, p.InstanceName, p.EndedAt)
	case p.State == pairing.StateWrongPhone:
		return WrongPhoneView(pairing.PhoneFromDigits(p.LinkedPhone).International, phone, p.InstanceName)
	case p.State == pairing.StateCancelled:
		return CancelledView(phone)
	case p.State == pairing.StateFailed:
		if err := pairing.ReasonError(p.Reason); err != nil {
			return WawpErrorView(err, p.InstanceName)
		}
		if p.Reason == pairing.ReasonInternal {
			return InternalErrorView(p.ID)
		}
		return FailedView(phone, p.InstanceName, string(p.Reason))
	case p.RefusedBy() != pairing.LimitNone:
		return LimitView(b.cfg.Service.LimitError(ctx, p), p.InstanceName, now)
	case p.State == pairing.StateRefused:
		return StatusView(&pairing.StatusError{Status: pairing.ReasonStatus(p.Reason), Me: p.LinkedPhone}, p.InstanceName, p.ID, now)
	case p.State == pairing.StateWarmingUp:
		return StatusView(&pairing.StatusError{Status: pairing.StatusStarting, RetryAt: later(p.RetryAt, now)}, p.InstanceName, p.ID, now)
	case p.State == pairing.StateInterrupted:
		return InterruptedView(InterruptedModel{
			Phone: phone, Instance: p.InstanceName, Attempt: p.Attempt, PhoneLimit: limit, Now: now, NewCodeAt: nextCode(),
		})
	case p.State == pairing.StateLive || p.State == pairing.StateExpired:
		return ExpiredView(phone, p.ID, now, nextCode())
	}
	return EndedView()
}

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// show brings p's message up to date through its response_url: only when
// the view changed (or force, for a click that expects an answer), and
// within the url's budget, keeping the last two uses for the final state.
//
// A message has one writer at a time. A pairing and its renewal share one
// message (the renewal's response_url replaces the message that held the
// button), so posts are serialised per message, not per pairing, and each
// starts from the stored pairing: a click (Cancel, New code) and a
// countdown edit racing for one message cannot land out of order. A
// superseded pairing never posts: its renewal owns the message now.
func (b *Bot) show(ctx context.Context, p pairing.Pairing, force bool) {
	unlock := b.locks.lock(p.MessageID())
	defer unlock()
	b.showLocked(ctx, p, force)
}

// showLocked is show for a caller that holds p's message lock.
func (b *Bot) showLocked(ctx context.Context, p pairing.Pairing, force bool) {
	if fresh, err := b.cfg.Service.Pairing(ctx, p.ID); err == nil {
		p = fresh
	}
	if p.State == pairing.StateSuperseded {
		if err := b.cfg.Service.RecordView(ctx, p.ID, p.LastView, true); err != nil {
			b.log.Error("recording view", "pairing", p.ID, "err", err)
		}
		return
	}
	if p.LastView == viewGone && !force {
		if p.Final() {
			if err := b.cfg.Service.RecordView(ctx, p.ID, viewGone, true); err != nil {
				b.log.Error("recording view", "pairing", p.ID, "err", err)
			}
		}
		return
	}
	now := b.cfg.Service.Now()
	key := viewKey(p, now)
	if key == "" {
		return // a request in flight: it shows its own outcome
	}
	final := p.Final()
	if key == p.LastView && !force {
		if final {
			// Already showing its final view (a click just past the expiry
			// drew "expired" before the tick ended the pairing): done.
			if err := b.cfg.Service.RecordView(ctx, p.ID, key, true); err != nil {
				b.log.Error("recording view", "pairing", p.ID, "err", err)
			}
		}
		return
	}
	log := b.log.With("pairing", p.ID, "view", key)
	keep := finalUses
	if final {
		keep = 0
	}
	// Before a retry, re-read the pairing: if what it should show changed
	// (or a click gave it another response_url), whoever changed it shows
	// the new state, and this post is dropped.
	again := func() (Message, bool) {
		fresh, err := b.cfg.Service.Pairing(ctx, p.ID)
		if err != nil {
			return Message{}, false
		}
		now := b.cfg.Service.Now()
		if fresh.ResponseURL != p.ResponseURL || viewKey(fresh, now) != key {
			return Message{}, false
		}
		return b.render(ctx, fresh, now), true
	}
	var err error
	switch b.post(ctx, log, p.ResponseURL, p.URLIssued, keep, b.render(ctx, p, now), again) {
	case budgetSpent:
		if final && showsCode(p.LastView) {
			// Every use is spent (its final posts were lost, or something
			// else used them): Slack allows nothing more, and the message
			// keeps showing a code that no longer works.
			log.Warn("no response_url use left for the final state: the message still shows the code, and Slack allows no more edits to it", "shown", p.LastView)
		}
		// Without budget this step is skipped for good; a final state
		// without budget can never be shown, so editing ends.
		err = b.cfg.Service.RecordView(ctx, p.ID, key, final)
	case posted:
		// The post reached Slack: that is recorded even if ctx ended
		// meanwhile (a shutdown), or the next start posts it again.
		rctx, cancel := pairing.RecordContext(ctx)
		err = b.cfg.Service.RecordView(rctx, p.ID, key, final)
		cancel()
	case urlGone:
		// The message is gone, not the pairing: it goes on being watched
		// (advanced) until it ends, with no more posts.
		err = b.cfg.Service.RecordView(ctx, p.ID, viewGone, final)
	case postFailed, postDropped:
		// Left as it was: the next tick (or the writer that changed the
		// pairing) shows what is due.
	}
	if err != nil {
		log.Error("recording view", "err", err)
	}
}

// messageLocks serialise the posts to each Slack message. A lock exists
// only while someone holds or waits for it, so memory stays bounded however
// many messages there have been, and one message waiting out a 429 never
// holds up another.
type messageLocks struct {
	mu sync.Mutex
	m  map[string]*messageLock
}

type messageLock struct {
	sync.Mutex
	refs int // holders and waiters
}

// lock takes message id's lock and returns its release.
func (l *messageLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*messageLock{}
	}
	e := l.m[id]
	if e == nil {
		e = &messageLock{}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// queued is how many writers hold or wait for message id's lock.
func (l *messageLocks) queued(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[id]; e != nil {
		return e.refs
	}
	return 0
}

// maxEditsInFlight bounds concurrent response_url edits started by ticks.
const maxEditsInFlight = 32

// Tick moves every watched pairing on (one Wawp call per instance) and
// starts the edits whose view changed. It does not wait for them: a slow
// or rate-limited message never holds up the others, and a pairing whose
// edit is still in flight is skipped until it lands.
//
// An edit takes its message's lock first and an edit slot only then. A
// click holds its message's lock from before its change until its answer
// is posted, across the Wawp calls of a New code (up to 2 × wawp_timeout):
// an edit waiting for that lock while holding a slot would let 32 slow
// clicks hold every slot and stall the edits of every other message. The
// edit still waits for the click, so the click's promise holds: the tick
// never posts the click's answer before the click does (it re-reads the
// pairing under the lock and finds the answer shown).
func (b *Bot) Tick(ctx context.Context) {
	pairings, err := b.cfg.Service.Advance(ctx)
	if err != nil {
		if ctx.Err() == nil { // else the shutdown stopped it: not a failure
			b.log.Error("tick", "err", err)
		}
		return
	}
	now := b.cfg.Service.Now()
	for _, p := range pairings {
		// A final pairing is still watched only until show stops watching
		// it, even when its view is already on the message (or the message
		// is gone).
		if (viewKey(p, now) == p.LastView || p.LastView == viewGone) && !p.Final() {
			continue
		}
		if _, busy := b.editing.LoadOrStore(p.ID, true); busy {
			continue
		}
		b.goWork(ctx, func(ctx context.Context) {
			defer b.editing.Delete(p.ID)
			if b.beforeEdit != nil {
				b.beforeEdit()
			}
			unlock := b.locks.lock(p.MessageID())
			defer unlock()
			select {
			case b.editSlots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-b.editSlots }()
			b.showLocked(ctx, p, false)
		})
	}
}

// cronLogger sends robfig/cron's messages to slog.
type cronLogger struct{ b *Bot }

func (l cronLogger) Info(msg string, kv ...any) { l.b.log.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.b.log.Error("cron: "+msg, append(kv, "err", err)...)
}

// tickSchedule is the countdown's schedule: cron's @every for whole
// seconds (what the config file allows), and for shorter or fractional
// intervals (tests) a plain interval, since @every truncates to whole
// seconds and never runs more often than once a second.
func tickSchedule(d time.Duration) cron.Schedule {
	if d >= time.Second && d%time.Second == 0 {
		return cron.Every(d)
	}
	return interval(d)
}

// interval is a cron.Schedule that runs d after the time it is asked about.
// cron asks Next with the time its timer fired and sleeps until the
// answer, so any d > 0 sleeps between runs (New refuses d <= 0); a run
// still going when the next is due is skipped by SkipIfStillRunning.
type interval time.Duration

func (d interval) Next(t time.Time) time.Time { return t.Add(time.Duration(d)) }

// startCron schedules the countdown tick and the pruning, in UTC. The chain
// order matters: SkipIfStillRunning outside Recover, so a panicking job
// still releases its "running" mark and runs again next time.
func (b *Bot) startCron(ctx context.Context) (*cron.Cron, error) {
	l := cronLogger{b}
	c := cron.New(cron.WithLocation(time.UTC), cron.WithLogger(l),
		cron.WithChain(cron.SkipIfStillRunning(l), cron.Recover(l)))
	c.Schedule(tickSchedule(b.cfg.TickInterval), cron.FuncJob(func() { b.Tick(ctx) }))
	if _, err := c.AddFunc("@every 10m", func() {
		st, err := b.cfg.Service.Prune(ctx)
		if err != nil {
			if ctx.Err() == nil { // else the shutdown stopped it: not a failure
				b.log.Error("prune", "err", err)
			}
			return
		}
		b.log.Info("pruned", "attempts", st.Attempts, "pairings", st.Pairings, "response_urls", st.ResponseURLs)
		if st.DamagedPairings > 0 {
			b.log.Warn("pruned watched pairings whose records were damaged; their messages stay as they were", "damaged_pairings", st.DamagedPairings)
		}
	}); err != nil {
		return nil, fmt.Errorf("schedule pruning: %w", err)
	}
	if _, err := c.AddFunc("@every 5m", func() { b.refreshGroups(ctx) }); err != nil {
		return nil, fmt.Errorf("schedule user group refresh: %w", err)
	}
	c.Start()
	return c, nil
}
