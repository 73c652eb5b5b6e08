package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// The live code window (issue 10): a modal showing the pairing, opened by
// submitting the form (the form turns into it) or with the code message's
// "Show code window" button. It is the pairing's modal surface
// (pairing.Pairing.Modal), kept current by the tick with views.update:
// the code large, the steps, a countdown and a status line, then the
// final state with the code removed. A modal has no use budget like a
// response_url's, but views calls have a per-workspace rate limit, so
// every update spends the shared edit budget as DM and card edits do, and
// a 429 stops them all until its Retry-After runs out. Its countdown moves
// in the DM's steps (dmSteps). Closing it (view_closed) cancels nothing:
// the pairing goes on, and its end still reaches the requester where it
// was configured to (ephemeral or DM).

// viewRequesting is the window's view while the code is asked for (set
// by the form's submission, whose answer draws it).
const viewRequesting = "requesting"

// windowTitle is the code window's title (at most 24 characters).
const windowTitle = "WhatsApp pairing"

// modalKey names what p's window should show at now ("": no window, or
// nothing new).
func modalKey(p pairing.Pairing, now time.Time) string {
	switch {
	case !p.Modal.Open():
		return ""
	case p.State == pairing.StateRequesting:
		return p.Modal.LastView // in flight: it shows what it shows
	case showingCode(p, now) && p.HandedTo() != "":
		return "handoff:live" // the code is in the recipient's DM, never here
	case showingCode(p, now):
		step, _ := dmStep(p, now)
		return fmt.Sprintf("live:%d", step)
	}
	return endKey(p)
}

// modalDue reports whether p's window needs an update at now.
func modalDue(p pairing.Pairing, now time.Time) bool {
	key := modalKey(p, now)
	return key != "" && key != p.Modal.LastView
}

// modalDone reports whether p's window shows all it ever will (or there
// is none, or it was closed).
func modalDone(p pairing.Pairing, now time.Time) bool { return !modalDue(p, now) }

// windowOf wraps m in the code window: its blocks, its buttons working
// inside the modal (block_actions from a view), the pairing's ID in
// private_metadata (for view_closed).
func windowOf(m Message, pairingID string) slack.ModalViewRequest {
	return slack.ModalViewRequest{
		Type: slack.VTModal, Title: plain(windowTitle), Close: plain("Close"),
		CallbackID: CallbackWindow, PrivateMetadata: pairingID, NotifyOnClose: true,
		Blocks: slack.Blocks{BlockSet: m.Blocks},
	}
}

// WindowRequestingView is the window right after the form was submitted:
// the code is on its way (to recipient's DM for a hand-off).
func WindowRequestingView(phone, instance, recipient string) slack.ModalViewRequest {
	t := fmt.Sprintf("⏳ Requesting a pairing code for *%s* on *%s*…", escape(phone), escape(instance))
	if recipient != "" {
		t = fmt.Sprintf("⏳ Requesting a pairing code for *%s* on *%s*; it goes to %s's DM.", escape(phone), escape(instance), mention(recipient))
	}
	return windowOf(Message{Blocks: []slack.Block{
		section("notice", t),
		contextBlock("status", "Keep this window open to see the code; closing it cancels nothing."),
	}}, "")
}

// showModal brings p's window up to date and returns p as it then stands:
// one views.update with the hash of the last one (none known right after
// the form turned into the window), spending the shared edit budget
// (edit: see showing). hash_conflict means another writer updated the
// view since: the next update goes without a hash, drawn from the stored
// pairing. not_found (closed, or too old) ends the window for this
// pairing.
func (b *Bot) showModal(ctx context.Context, p pairing.Pairing, now time.Time, edit dmEdit) pairing.Pairing {
	granted := edit == editGranted
	defer func() {
		if granted {
			b.edits.refund()
		}
	}()
	if !modalDue(p, now) {
		return p
	}
	if edit == editNot || !granted && !b.edits.take() {
		return p
	}
	granted = false // spent
	key := modalKey(p, now)
	log := b.log.With("pairing", p.ID, "surface", "modal", "surface_view", key)
	// Claimed first, as every edit (issue 11): two replicas never update
	// the window to the same view twice.
	c, won, err := b.cfg.Service.ClaimView(ctx, pairing.ViewClaim{ID: p.ID, Surface: pairing.SurfaceModal, From: p.Modal.LastView, To: key})
	if err != nil || !won {
		if err != nil {
			log.Warn("claiming the window's update failed; the next tick tries again", "err", err)
		}
		granted = true // unused: refunded
		return p
	}
	m := p.Modal
	defer func() {
		// The claim ends with what the window shows now (recorded below,
		// or as it was).
		b.finishView(ctx, c, pairing.Surface{LastView: m.LastView}, false, log)
	}()
	holds := func() bool { return c.HoldsAt(b.cfg.Service.Now()) }
	resp, err := b.updateViewClaimed(ctx, holds, m.ViewID, m.Hash, windowOf(b.render(ctx, p, now, onModal), p.ID))
	code, refused := slackRefusal(err)
	switch {
	case err == errBlocked, err == errClaimRanOut:
		return p
	case err == nil:
		m.Hash, m.LastView = resp.Hash, key
	case code == "hash_conflict":
		log.Info("the window changed since the last update; the next one goes without a hash")
		m.Hash = ""
	case refused && code != "ratelimited":
		// not_found: closed, or Slack no longer knows it; anything else
		// Slack refuses will not change by trying again.
		log.Info("the window can no longer be updated", "slack_error", code)
		m.Closed = true
	default:
		log.Warn("updating the window failed; the next tick tries again", "reason", webFailure(err))
		return p
	}
	rctx, cancel := pairing.RecordContext(ctx)
	defer cancel()
	record := b.cfg.Service.RecordModal
	if p.State == pairing.StateSuperseded {
		record = b.cfg.Service.RecordReplacedModal // its window told it was replaced
	}
	stored, rerr := record(rctx, p.ID, m)
	if rerr != nil {
		log.Error("recording the window", "err", rerr)
		p.Modal = m
		return p
	}
	return stored
}

// openWindow answers "Show code window". views.open must come within the
// click's trigger's 3 seconds (https://api.slack.com/methods/views.open:
// expired_trigger_id), so the window is opened first, drawn from one read
// of the stored pairing, without waiting for anyone: the message's lock
// may be held for a whole Wawp round trip (a New code click asks Wawp
// under it), and Wawp may be slow. Then the lock is taken (the message's
// writers wait until the window is recorded: a tick ending the pairing
// meanwhile would not know it has a window), the pairing read again, the
// window recorded as the pairing's, and whatever changed since it was
// drawn shown with views.update, passing the hash views.open returned.
// When Slack refuses to open it, the person is told, privately, beside
// the message they clicked on.
func (b *Bot) openWindow(ctx context.Context, cb slack.InteractionCallback, id string, log *slog.Logger) {
	p, err := b.cfg.Service.Pairing(ctx, id)
	if err != nil || !p.MayUse(cb.User.ID) {
		b.respond(ctx, log, cb.ResponseURL, b.cfg.Service.Now(), 0, EndedView())
		return
	}
	// A click delivered twice (a Socket Mode redelivery, or one envelope
	// reaching two replicas) opens one window: its key is claimed first
	// (issue 11), as every click's. A second views.open would reuse the
	// trigger (trigger_exchanged) and tell the person that the window
	// they see could not be opened.
	if !b.claim(ctx, log) {
		return
	}
	now := b.cfg.Service.Now()
	opened, err := b.api.OpenViewContext(ctx, cb.TriggerID, windowOf(b.render(ctx, p, now, onModal), p.ID))
	if code, _ := slackRefusal(err); code == "trigger_exchanged" {
		// The trigger opened a view already (the key could not be claimed,
		// the database unreachable): that window is open; nothing to say.
		// https://api.slack.com/methods/views.open: trigger_exchanged.
		log.Info("the click's trigger was used already: its window is open")
		return
	}
	if err != nil {
		log.Warn("the code window could not be opened", "reason", webFailure(err))
		// Below the code message, which keeps its code: the click's url
		// is no editor of it, so the post needs no use of a budget
		// (https://api.slack.com/interactivity/handling#message_responses:
		// without replace_original, a new ephemeral message).
		b.postUncounted(ctx, log, cb.ResponseURL, WindowFailedView())
		return
	}
	m := pairing.ModalSurface{ViewID: opened.ID, Hash: opened.Hash, User: cb.User.ID}
	drawn := p
	drawn.Modal = m
	m.LastView = modalKey(drawn, now) // what it shows
	unlock := b.locks.lock(p.MessageID())
	defer unlock()
	if p, err = b.cfg.Service.Pairing(ctx, id); err != nil {
		log.Error("reading the pairing of an opened window", "err", err)
		return
	}
	rctx, cancel := pairing.RecordContext(ctx)
	defer cancel()
	stored, err := b.cfg.Service.RecordModal(rctx, p.ID, m)
	if errors.Is(err, pairing.ErrReplaced) || err == nil && p.State == pairing.StateSuperseded {
		// A New code click (here, or on another replica before the window
		// was recorded) replaced it while the window opened: the new code
		// is in the message, with a button of its own. The window is
		// recorded on the replaced pairing, watched until the window says
		// so: a Retry-After or a failed update leaves it to the ticks.
		stored, err = b.cfg.Service.RecordReplacedModal(rctx, p.ID, m)
	}
	if err != nil {
		log.Error("recording the window", "err", err)
		return
	}
	// Whatever changed since it was drawn is shown now.
	b.showLocked(ctx, stored, showing{answer: onNone, edit: editNot, card: editNot, modal: editIfBudget})
}

// WindowFailedView is said, below the code message, when the code window
// could not be opened (Slack refused it, or the click's 3 seconds ran
// out): the message still has the code. It never holds the code.
func WindowFailedView() Message {
	return notice("The code window could not be opened", "⚠️ The code window could not be opened. The code is still in the message above: click *Show code window* again to try once more.")
}

// WindowReplacedView is a code window opened on a code that a New code
// click replaced meanwhile.
func WindowReplacedView() Message {
	return notice("This code was replaced", "↪️ This code was replaced by a newer one while the window opened. The new code is in your message: click *Show code window* there to follow it here.")
}

// windowClosed records that the person closed the window (view_closed):
// nothing more is shown in it; the pairing goes on.
func (b *Bot) windowClosed(ctx context.Context, cb slack.InteractionCallback) {
	id := cb.View.PrivateMetadata
	if cb.View.CallbackID != CallbackWindow || id == "" {
		return
	}
	p, err := b.cfg.Service.Pairing(ctx, id)
	if err != nil || p.Modal.ViewID != cb.View.ID {
		return
	}
	unlock := b.locks.lock(p.MessageID())
	defer unlock()
	if p, err = b.cfg.Service.Pairing(ctx, id); err != nil || p.Modal.ViewID != cb.View.ID {
		return
	}
	m := p.Modal
	m.Closed = true
	if _, err := b.cfg.Service.RecordModal(ctx, id, m); err != nil {
		b.log.Error("recording the closed window", "pairing", id, "err", err)
	}
	b.log.Info("code window closed; the pairing goes on", "pairing", id, "state", p.State)
}
