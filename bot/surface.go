package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// A pairing is shown on surfaces, each edited only as Slack allows
// (issue 9; README "What can be edited"):
//
//   - the requester's ephemeral messages in the channel where /link was
//     typed. The slash command's response_url adds a message with every
//     post and replaces none (slackapi/bolt-python issue 1268, bolt-js
//     issue 2287), so through it the bot posts the code once and then the
//     final state once (with replace_original, which reads right whether
//     Slack replaces or appends), nothing in between. A click on one of
//     the pairing's messages brings a response_url that replaces that
//     message: from then on it is the editor, and the countdown steps and
//     the final state happen in place, within its five posts.
//   - the code's message in the app's DM with the requester (delivery: dm),
//     posted with chat.postMessage and kept live with chat.update: every
//     countdown step, the link and the final state replace it in place, so
//     the code is really gone when the pairing ends. chat.update is
//     rate-limited per workspace: every DM edit spends the shared edit
//     budget (editBudget).

// surface names where a view is shown.
type surface int

const (
	onEphemeral surface = iota // the requester's ephemeral messages in the channel
	onDM                       // the code's message in the DM
	onNone      surface = -1
)

// Keys of views that are not a pairing state.
const (
	// viewGone is the ephemeral LastView of a pairing whose response_url
	// Slack answered 404/410: its message cannot be edited any more (the
	// agent dismissed it), so nothing more is posted to it unless a click
	// brings a fresh response_url. It is recorded apart from watching: the
	// pairing is still advanced to its end (the link recorded and audited,
	// the code wiped), and unwatched then, without a post.
	viewGone = "gone"
	// viewPosted is the code as posted through a slash command's
	// response_url: it is never edited, so it shows the absolute expiry
	// only.
	viewPosted = "live:posted"
	// viewDMSent is the channel's line saying the code went to the DM.
	viewDMSent = "dm_sent"
	// viewStuck is the DM LastView of a message chat.update can no longer
	// edit (edit_window_closed, message_not_found): no more countdown
	// steps; its final state is posted anew.
	viewStuck = "stuck"
)

// dmSteps is how many steps a DM's countdown has: a DM has no use budget,
// only the shared edit budget, so it moves every fifth of the lifetime.
const dmSteps = 5

// dmStep returns which step of a DM's countdown p is in at now (0 = as
// issued) and the moment that step is drawn for.
func dmStep(p pairing.Pairing, now time.Time) (int, time.Time) {
	lifetime := p.ExpiresAt.Sub(p.IssuedAt)
	elapsed := now.Sub(p.IssuedAt)
	if lifetime <= 0 || elapsed <= 0 {
		return 0, p.IssuedAt
	}
	step := min(int(elapsed*dmSteps/lifetime), dmSteps-1)
	return step, p.IssuedAt.Add(lifetime * time.Duration(step) / dmSteps)
}

// showingCode reports whether p's views show its code at now.
func showingCode(p pairing.Pairing, now time.Time) bool { return p.Live(now) && p.Code != "" }

// showsCode reports whether the view named key shows a code.
func showsCode(key string) bool { return strings.HasPrefix(key, "live:") }

// endKey names the view of p once it shows no code: its final state, or
// "expired" for a code past its expiry that no tick has marked yet.
func endKey(p pairing.Pairing) string {
	switch p.State {
	case pairing.StateRequesting:
		return "" // nothing to show until it settles (or its lease runs out)
	case pairing.StateLive:
		return "expired"
	case pairing.StateFailed:
		return "failed:" + p.Reason
	}
	return string(p.State)
}

// ephemeralKey names what p's ephemeral message should show at now ("":
// nothing yet). It is cheap: the ticker computes it for every watched
// pairing on every tick.
func ephemeralKey(p pairing.Pairing, now time.Time) string {
	_, _, editable := p.Editor()
	switch {
	case p.State == pairing.StateRequesting:
		return ""
	case p.InDM():
		// The code is in the DM. The channel gets one line once the DM
		// exists, and the end only where a click made its line editable
		// (or when it never got the line).
		if showingCode(p, now) {
			if !p.DM.Posted() {
				return ""
			}
			return viewDMSent
		}
		if !editable && p.LastView != "" {
			return p.LastView
		}
		return endKey(p)
	case showingCode(p, now) && editable:
		step, _ := countdownStep(p, now)
		return fmt.Sprintf("live:%d", step)
	case showingCode(p, now):
		if showsCode(p.LastView) {
			return p.LastView // posted already, never to be edited (or an older version's edit)
		}
		return viewPosted
	}
	return endKey(p)
}

// dmKey names what p's DM message should show at now ("": p has no DM).
func dmKey(p pairing.Pairing, now time.Time) string {
	switch {
	case !p.InDM() || p.State == pairing.StateRequesting:
		return ""
	case showingCode(p, now):
		step, _ := dmStep(p, now)
		return fmt.Sprintf("live:%d", step)
	}
	return endKey(p)
}

// ephemeralDue reports whether p's ephemeral message needs a post at now.
func ephemeralDue(p pairing.Pairing, now time.Time) bool {
	url, _, _ := p.Editor()
	key := ephemeralKey(p, now)
	return url != "" && key != "" && key != p.LastView && p.LastView != viewGone
}

// dmDue reports what p's DM needs at now: its first post
// (chat.postMessage), or an edit (chat.update, from the edit budget).
func dmDue(p pairing.Pairing, now time.Time) (post, update bool) {
	if !p.InDM() {
		return false, false
	}
	if p.DM.TS == "" {
		return showingCode(p, now), false
	}
	key := dmKey(p, now)
	return false, key != p.DM.LastView && (p.DM.LastView != viewStuck || p.Final())
}

// dmDone reports whether p's DM shows all it ever will: it has none, it
// failed, it was never posted and no code is due, or it shows its last view.
func dmDone(p pairing.Pairing, now time.Time) bool {
	switch {
	case !p.InDM():
		return true
	case p.DM.TS == "":
		return !showingCode(p, now)
	}
	return p.DM.LastView == dmKey(p, now)
}

// render is the message for p at now on surface s.
func (b *Bot) render(ctx context.Context, p pairing.Pairing, now time.Time, s surface) Message {
	phone := pairing.PhoneFromDigits(p.Phone).International
	limit := b.cfg.Service.PhoneLimit()
	// nextCode is when the phone's limit next allows a code; only the code,
	// expired and interrupted views show it, so only they read the store for it.
	nextCode := func() time.Time { return b.cfg.Service.NextCodeAt(ctx, p.Phone, now) }
	switch {
	case showingCode(p, now) && s == onEphemeral && p.InDM():
		return DMSentView(p.ID, phone, p.InstanceName, p.ExpiresAt)
	case showingCode(p, now):
		m := CodeModel{
			PairingID: p.ID, Code: p.Code, Phone: phone, Instance: p.InstanceName, InstanceID: p.Instance,
			RequestedBy: p.RequestedBy, Now: now, ExpiresAt: p.ExpiresAt, Lifetime: p.ExpiresAt.Sub(p.IssuedAt),
			Attempt: p.Attempt, PhoneLimit: limit, NewCodeAt: nextCode(),
		}
		if !m.NewCodeAt.After(now) {
			m.NewCodeAt = time.Time{} // allowed now
		}
		if s == onDM {
			_, m.Now = dmStep(p, now)
			m.DM, m.Channel = true, p.Channel
		} else if _, _, editable := p.Editor(); editable {
			_, m.Now = countdownStep(p, now)
		} else {
			m.Static = true
		}
		if s == onEphemeral && p.DM.Failed != "" {
			m.Note = dmFailedNote(p.DM.Failed)
		}
		return CodeView(m)
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
		return FailedView(phone, p.InstanceName, p.Reason)
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

// dmEdit says whether a show may edit the DM with chat.update.
type dmEdit int

const (
	editIfBudget dmEdit = iota // if the shared edit budget has a use now (clicks, answers)
	editGranted                // the tick gave this show one use of the budget
	editNot                    // not this time (the tick had no use left for it)
)

// showing is how a show goes about it.
type showing struct {
	// answer is the surface a click came from: its answer is posted there
	// even when the view is already shown (onNone: nothing is forced).
	answer surface
	edit   dmEdit
}

// show brings p's messages up to date: each surface only when its view
// changed (or it answers a click), within what Slack allows on it.
//
// A message has one writer at a time. A pairing and its renewal share one
// message (the renewal's response_url replaces the message that held the
// button, its DM is the same message), so posts are serialised per
// message, not per pairing, and each starts from the stored pairing: a
// click (Cancel, New code) and a countdown edit racing for one message
// cannot land out of order. A superseded pairing never posts: its renewal
// owns the message now.
func (b *Bot) show(ctx context.Context, p pairing.Pairing, how showing) {
	unlock := b.locks.lock(p.MessageID())
	defer unlock()
	b.showLocked(ctx, p, how)
}

// showLocked is show for a caller that holds p's message lock.
func (b *Bot) showLocked(ctx context.Context, p pairing.Pairing, how showing) {
	if fresh, err := b.cfg.Service.Pairing(ctx, p.ID); err == nil {
		p = fresh
	}
	if p.State == pairing.StateSuperseded {
		if how.edit == editGranted {
			b.edits.refund()
		}
		b.recordView(ctx, p, p.LastView, true)
		return
	}
	now := b.cfg.Service.Now()
	p = b.showDM(ctx, p, now, how)
	b.showEphemeral(ctx, p, now, how.answer == onEphemeral, dmDone(p, now))
}

// recordView records key as p's ephemeral view, and unwatch.
func (b *Bot) recordView(ctx context.Context, p pairing.Pairing, key string, unwatch bool) {
	if err := b.cfg.Service.RecordView(ctx, p.ID, key, unwatch); err != nil {
		b.log.Error("recording view", "pairing", p.ID, "err", err)
	}
}

// showEphemeral brings p's ephemeral message up to date through its
// editor: the click's response_url, which replaces the message, within its
// budget (the last two uses kept for the final state); or, before any
// click, the command's, which adds a message with each post: the code
// once, then the final state. force answers a click. With everything
// shown and the DM done, a final pairing stops being watched.
func (b *Bot) showEphemeral(ctx context.Context, p pairing.Pairing, now time.Time, force, dmDone bool) {
	final := p.Final()
	unwatch := final && dmDone
	url, issued, _ := p.Editor()
	key := ephemeralKey(p, now)
	switch {
	case p.LastView == viewGone && !force, key == "", url == "", key == p.LastView && !force:
		// Nothing to post: a message that is gone, a request in flight
		// (it shows its own outcome), a renewal asked from the DM (no
		// ephemeral message of its own), or the view already shown.
		if unwatch {
			b.recordView(ctx, p, p.LastView, true)
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
		if u, _, _ := fresh.Editor(); u != url || ephemeralKey(fresh, now) != key {
			return Message{}, false
		}
		return b.render(ctx, fresh, now, onEphemeral), true
	}
	switch b.post(ctx, log, url, issued, keep, b.render(ctx, p, now, onEphemeral), again) {
	case budgetSpent:
		if final && showsCode(p.LastView) {
			// Every use is spent (its final posts were lost, or something
			// else used them): Slack allows nothing more, and the message
			// keeps showing a code that no longer works.
			log.Warn("no response_url use left for the final state: the message still shows the code, and Slack allows no more edits to it", "shown", p.LastView)
		}
		// Without budget this step is skipped for good; a final state
		// without budget can never be shown, so editing ends.
		b.recordView(ctx, p, key, unwatch)
	case posted:
		b.recordView(ctx, p, key, unwatch)
	case urlGone:
		// The message is gone, not the pairing: it goes on being watched
		// (advanced) until it ends, with no more posts.
		b.recordView(ctx, p, viewGone, unwatch)
	case postFailed, postDropped:
		// Left as it was: the next tick (or the writer that changed the
		// pairing) shows what is due.
	}
}

// showDM brings p's DM message up to date and returns p as it then
// stands: the first post of the code (chat.postMessage to the recipient's
// user ID, which opens the app's DM with them), then chat.update for every
// later view, each spending the shared edit budget. Slack refusing the DM
// (the Messages tab is off, …) ends it for this pairing: the code goes to
// the ephemeral message instead, which says why. A chat.update that can
// no longer edit the message (edit_window_closed, message_not_found) stops
// the countdown there; the final state is then posted anew and the DM
// follows that message.
func (b *Bot) showDM(ctx context.Context, p pairing.Pairing, now time.Time, how showing) pairing.Pairing {
	post, update := dmDue(p, now)
	granted := how.edit == editGranted
	defer func() {
		if granted {
			b.edits.refund() // the tick's grant went unused
		}
	}()
	// A click on the DM is answered by the DM being current: a view it
	// already shows is never posted again (it would only spend the edit
	// budget).
	if !post && !update {
		return p
	}
	key := dmKey(p, now)
	dm := p.DM
	log := b.log.With("pairing", p.ID, "dm_view", key)
	message := func() []slack.MsgOption {
		m := b.render(ctx, p, now, onDM)
		return []slack.MsgOption{slack.MsgOptionText(m.Text, false), slack.MsgOptionBlocks(m.Blocks...)}
	}
	switch {
	case dm.LastView == viewStuck:
		// Its message can no longer be edited, and the final state is due
		// (dmDue): post it anew, with chat.postMessage (the edit budget's
		// grant, if any, goes back).
		return b.repostDM(ctx, p, key, message(), log)
	case post:
		opts := message()
		channel, ts, err := b.api.PostMessageContext(ctx, dm.Recipient, opts...)
		if code, refused := slackRefusal(err); refused {
			dm.Failed = code
			b.logDMRefused(log, code)
		} else if err != nil {
			log.Warn("posting the code in a DM failed; the next tick tries again", "reason", webFailure(err))
			return p
		} else {
			dm.Channel, dm.TS, dm.LastView = channel, ts, key
		}
	case how.edit == editNot, !granted && !b.edits.take():
		return p // the shared edit budget has no use left now: a later tick edits it
	default:
		granted = false // spent
		opts := message()
		sent, err := b.update(ctx, dm, opts)
		if !sent {
			return p // a 429 arrived meanwhile: no call until its Retry-After runs out
		}
		var (
			rl     *slack.RateLimitedError
			status slack.StatusCodeError
		)
		code, refused := slackRefusal(err)
		switch {
		case errors.As(err, &rl):
			log.Warn("chat.update rate-limited: no DM edits until Retry-After runs out", "retry_after", rl.RetryAfter)
			return p
		case errors.As(err, &status) && status.Code == http.StatusTooManyRequests:
			return p
		case refused && (code == "edit_window_closed" || code == "message_not_found" || code == "cant_update_message"):
			log.Warn("the DM message can no longer be edited", "reason", code)
			if p.Final() {
				return b.repostDM(ctx, p, key, opts, log)
			}
			dm.LastView = viewStuck
		case err != nil:
			log.Warn("editing the DM failed; the next tick tries again", "reason", webFailure(err))
			return p
		default:
			dm.LastView = key
		}
	}
	return b.recordDM(ctx, p, dm, log)
}

// update makes one chat.update call, unless a 429's Retry-After is running
// (then sent is false). Calls go one at a time, each after checking the
// Retry-After: a call started beside the one Slack answered 429 would
// arrive after it, before its Retry-After ran out.
func (b *Bot) update(ctx context.Context, dm pairing.Surface, opts []slack.MsgOption) (sent bool, err error) {
	b.updating.Lock()
	defer b.updating.Unlock()
	if b.edits.blocked() {
		return false, nil
	}
	_, _, _, err = b.api.UpdateMessageContext(ctx, dm.Channel, dm.TS, opts...)
	var (
		rl     *slack.RateLimitedError
		status slack.StatusCodeError
	)
	switch {
	case errors.As(err, &rl):
		b.edits.block(rl.RetryAfter)
	case errors.As(err, &status) && status.Code == http.StatusTooManyRequests:
		// A 429 without a Retry-After in seconds: wait a little.
		b.edits.block(time.Second)
	}
	return true, err
}

// repostDM posts p's final view anew in its DM, as a new message the DM
// follows from then on: the old one can no longer be edited.
func (b *Bot) repostDM(ctx context.Context, p pairing.Pairing, key string, opts []slack.MsgOption, log *slog.Logger) pairing.Pairing {
	dm := p.DM
	channel, ts, err := b.api.PostMessageContext(ctx, dm.Channel, opts...)
	if err != nil {
		log.Warn("posting the final state anew in the DM failed; the next tick tries again", "reason", webFailure(err))
		return p
	}
	dm.Channel, dm.TS, dm.LastView = channel, ts, key
	return b.recordDM(ctx, p, dm, log)
}

// recordDM stores dm as p's DM surface and returns p as stored.
func (b *Bot) recordDM(ctx context.Context, p pairing.Pairing, dm pairing.Surface, log *slog.Logger) pairing.Pairing {
	stored, err := b.cfg.Service.RecordDM(ctx, p.ID, dm, false)
	if err != nil {
		log.Error("recording the DM", "err", err)
		p.DM = dm
		return p
	}
	return stored
}

// logDMRefused says, once per pairing, that Slack refused a DM and the code
// went to the ephemeral message instead; for messages_tab_disabled it names
// the manifest setting that fixes it.
func (b *Bot) logDMRefused(log *slog.Logger, code string) {
	if code == "messages_tab_disabled" {
		log.Warn("delivery dm: Slack refused the DM because the app's Messages tab is off; the code is shown ephemerally instead. Turn on features.app_home.messages_tab_enabled in the app manifest (App Home → Messages Tab)", "slack_error", code)
		return
	}
	log.Warn("delivery dm: Slack refused the DM; the code is shown ephemerally instead", "slack_error", code)
}

// slackRefusal reports whether err is Slack answering ok:false (a refusal
// that trying again will not change) and its error code.
func slackRefusal(err error) (string, bool) {
	var resp slack.SlackErrorResponse
	if errors.As(err, &resp) {
		return resp.Err, true
	}
	return "", false
}

// webFailure describes a Web API error without anything but its kind.
func webFailure(err error) string {
	var code slack.StatusCodeError
	switch {
	case errors.As(err, &code):
		return fmt.Sprintf("HTTP %d", code.Code)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timed out"
	}
	if c, ok := slackRefusal(err); ok {
		return c
	}
	return "network error"
}
