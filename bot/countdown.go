package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/linkbot/linkbot/pairing"
)

// A click's response_url takes 5 posts. The click's answer takes the
// first; the last two are kept for the final state (linked, expired,
// cancelled), so that a final post lost on the way (a broken connection, a
// 5xx: Slack may have counted it) is posted again and the code still
// leaves the message; that leaves two countdown edits. The countdown
// therefore moves in coarse steps, and every rendering inside one step is
// identical, so the ticker edits only when a step changes. The absolute
// expiry (a Slack date token) keeps the message right between edits. (A
// slash command's response_url edits nothing: see surface.go.)
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

// maxEditsInFlight bounds concurrent edits started by ticks.
const maxEditsInFlight = 32

// Tick moves every watched pairing on (one Wawp call per instance) and
// starts the edits whose view changed. It does not wait for them: a slow
// or rate-limited message never holds up the others, and a pairing whose
// edit is still in flight is skipped until it lands.
//
// DM and card edits (chat.update) share the workspace's rate limit, so the tick
// hands out the shared edit budget (editBudget) in order of importance
// (editTier): final states first (they take a code off the screen), then
// codes going into their DMs (someone is waiting for them), then countdown
// steps; the oldest pairing first within each. A pairing left without a use is edited
// by a later tick, which then draws its view as it is by then: a step
// that never got its turn is skipped, never posted late.
//
// An edit takes its message's lock first and an edit slot only then. A
// click holds its message's lock from before its change until its answer
// is posted, across the Wawp calls of a New code (up to 2 × wawp_timeout):
// an edit waiting for that lock while holding a slot would let 32 slow
// clicks hold every slot and stall the edits of every other message. The
// edit still waits for the click, so the click's promise holds: the tick
// never posts the click's answer before the click does (it re-reads the
// pairing under the lock and finds the answer shown).
//
// The edit budget is handed out here, in the order above, before any edit
// starts; an edit waiting for a slow click holds its grant meanwhile (as a
// use spent early: the bucket goes on refilling for other messages), and
// gives it back if, once it has the message, the click already showed
// what was due.
func (b *Bot) Tick(ctx context.Context) {
	if !b.lead(ctx) {
		b.followBacklog(ctx)
		return
	}
	pairings, err := b.cfg.Service.Advance(ctx)
	if err != nil {
		switch {
		case ctx.Err() != nil: // the shutdown stopped it: not a failure
		case errors.Is(err, pairing.ErrUnavailable):
			b.log.Warn("tick skipped: the database cannot be reached", "err", err)
		default:
			b.log.Error("tick", "err", err)
		}
		return
	}
	now := b.cfg.Service.Now()
	type job struct {
		p          pairing.Pairing
		update     bool // a DM edit is due
		cardUpdate bool // a card edit is due
		modal      bool // a window update is due
		other      bool // something else is: a post, or stopping to watch it
		tier       int  // editTier
	}
	var jobs []job
	for _, p := range pairings {
		post, update := dmDue(p, now)
		cardPost, cardUpdate := cardDue(p, now)
		// A final pairing is still watched only until show stops watching
		// it, even when its views are already shown (or gone).
		other := ephemeralDue(p, now) || post || cardPost || p.Final()
		modalUpdate := modalDue(p, now)
		if !other && !update && !cardUpdate && !modalUpdate {
			continue
		}
		jobs = append(jobs, job{p: p, update: update, cardUpdate: cardUpdate, modal: modalUpdate, other: other, tier: editTier(p, now)})
	}
	slices.SortStableFunc(jobs, func(a, b job) int {
		if a.tier != b.tier {
			return a.tier - b.tier
		}
		return a.p.IssuedAt.Compare(b.p.IssuedAt)
	})
	var backlog int64
	for _, j := range jobs {
		if _, busy := b.editing.LoadOrStore(j.p.ID, true); busy {
			if j.tier <= tierCode && (j.update || j.cardUpdate) {
				backlog++
			}
			continue
		}
		how := showing{answer: onNone, edit: editNot, card: editNot, modal: editNot}
		// A card's new expiry (tierCode) goes before the same pairing's DM
		// when that is only a countdown step.
		cardFirst := j.tier == tierCode && j.cardUpdate && showsCode(j.p.DM.LastView)
		if cardFirst && b.edits.take() {
			how.card = editGranted
		}
		if j.update && b.edits.take() {
			how.edit = editGranted
		}
		if j.cardUpdate && !cardFirst && b.edits.take() {
			how.card = editGranted
		}
		if j.modal && b.edits.take() {
			how.modal = editGranted
		}
		if j.tier <= tierCode && (j.update && how.edit != editGranted || j.cardUpdate && how.card != editGranted) {
			backlog++
		}
		if !j.other && how.edit != editGranted && how.card != editGranted && how.modal != editGranted {
			b.editing.Delete(j.p.ID) // only edits are due, and the budget has none left now
			continue
		}
		b.ticking.Add(1)
		b.goWork(ctx, func(ctx context.Context) {
			defer b.ticking.Add(-1)
			defer b.editing.Delete(j.p.ID)
			if b.beforeEdit != nil {
				b.beforeEdit()
			}
			unlock := b.locks.lock(j.p.MessageID())
			defer unlock()
			select {
			case b.editSlots <- struct{}{}:
			case <-ctx.Done():
				for _, e := range []dmEdit{how.edit, how.card, how.modal} {
					if e == editGranted {
						b.edits.refund()
					}
				}
				return
			}
			defer func() { <-b.editSlots }()
			b.showLocked(ctx, j.p, how)
		})
	}
	b.backlog.Store(backlog)
}

// urgent reports whether p has an urgent edit due at now: one the
// backlog counts (a final state, or a code going into its DM or card).
func urgent(p pairing.Pairing, now time.Time) bool {
	_, update := dmDue(p, now)
	_, cardUpdate := cardDue(p, now)
	return editTier(p, now) <= tierCode && (update || cardUpdate)
}

// followBacklog sets the backlog, on a replica that does not lead the
// ticker, from the stored pairings: the leader's ticks put the waiting
// codes into their DMs, and the count this replica added to since its
// last look (codes it opened) would otherwise only grow, sending later
// codes ephemeral in a quiet workspace. A code that ran out but is not
// marked yet is left out: the leader's next Advance ends it (and its
// final state then counts), while a leader gone quiet must not make the
// codes of its past burst count for ever. A read that fails leaves it.
func (b *Bot) followBacklog(ctx context.Context) {
	ps, err := b.cfg.Service.Watched(ctx)
	if err != nil {
		return
	}
	now := b.cfg.Service.Now()
	var n int64
	for _, p := range ps {
		if p.State == pairing.StateLive && !now.Before(p.ExpiresAt) {
			continue
		}
		if urgent(p, now) {
			n++
		}
	}
	b.backlog.Store(n)
}

// Tiers of the tick's edit budget, most urgent first (Tick).
const (
	// tierFinal: a message shows a code that is over. A final state (or a
	// code past its expiry not marked yet), and a renewal's DM, whose
	// message still shows the code it superseded (its LastView is reset
	// while the message stays: Service.Renew).
	tierFinal = iota
	// tierCode: a code not yet where its reader looks. A DM opened
	// without its code (a hand-off's, or one opened for it), one posted
	// anew, and a card still showing the expiry of the code a New code
	// replaced.
	tierCode
	// tierStep: countdown steps.
	tierStep
)

// editTier is p's tier at now (see tierFinal, tierCode, tierStep).
func editTier(p pairing.Pairing, now time.Time) int {
	switch {
	case p.Final() || !showingCode(p, now), p.DM.Posted() && p.DM.LastView == "":
		return tierFinal
	case p.DM.LastView == viewWaiting || p.DM.LastView == viewOpening || p.DM.LastView == viewDeleted,
		p.Card.Posted() && strings.HasPrefix(p.Card.LastView, "card:live:") && p.Card.LastView != cardKey(p, now):
		return tierCode
	}
	return tierStep
}

// lead renews this replica's leader lease, or tries to win it, before a
// tick (issue 11): only the leader ticks. Several replicas on one
// database each run the cron, and each tick first asks the storage; a
// leader that cannot renew goes on acting only while its last renewal is
// safely inside its lease (pairing.Service.Lead stops it a third of the
// lease, a tick, before another replica could be elected), then stops.
// With the bbolt file there is one process, and it always leads. Every
// edit is claimed in the database too (ClaimView): a lease is not a mutex.
func (b *Bot) lead(ctx context.Context) bool {
	leading, err := b.cfg.Service.Lead(ctx)
	term, _ := b.cfg.Service.Leadership()
	if lo, ok := b.obs.(LeaderObserver); ok {
		lo.Leader(leading, term)
	}
	if err != nil && ctx.Err() == nil {
		if leading {
			b.log.Warn("cannot renew the ticker's leader lease; still inside it, ticking", "err", err)
		} else {
			b.log.Debug("not leading the ticker", "err", err)
		}
	}
	return leading
}

// LeaderObserver, when the Config's Observer implements it, is told before
// every tick whether this replica leads the ticker, and its term (zero
// when none), for the leadership metrics.
type LeaderObserver interface {
	Leader(leading bool, term pairing.Term)
}

// resign gives up the ticker's leadership on the way out, so another
// replica takes over at its next tick rather than when the lease runs out.
func (b *Bot) resign() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.cfg.Service.Resign(ctx); err != nil {
		b.log.Warn("resigning the ticker's leadership failed; another replica takes over when the lease runs out", "err", err)
	}
	if lo, ok := b.obs.(LeaderObserver); ok {
		lo.Leader(false, pairing.Term{})
	}
}

// EditsInFlight is how many edits started by ticks are still running.
func (b *Bot) EditsInFlight() int { return int(b.ticking.Load()) }

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
		if _, leading := b.cfg.Service.Leadership(); !leading {
			return // the leader prunes
		}
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
