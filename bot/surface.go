package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
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
//     budget (editBudget). A hand-off's DM is its recipient's: it is
//     opened before the code is asked for (HandoffWaitingView), then kept
//     live the same way.
//   - the status card (announce): one public message in the channel where
//     /link was typed, posted with chat.postMessage once the code is live
//     and kept current with chat.update (the shared edit budget too). It
//     never shows the code or the full number, and it changes only with
//     the pairing's state: no countdown.

// surface names where a view is shown.
type surface int

const (
	onEphemeral surface = iota // the requester's ephemeral messages in the channel
	onDM                       // the code's message in the DM
	onCard                     // the status card in the channel
	onModal                    // the live code window (window.go)
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
	// viewStuck is the DM or card LastView of a message chat.update can no
	// longer edit (edit_window_closed, message_not_found, or any other
	// refusal but a 429's): no more countdown steps; once the pairing ends
	// (or a new code is due) it is deleted and the view posted anew.
	viewStuck = "stuck"
	// viewDeleted is the LastView of a DM or card whose stuck message was
	// deleted (its TS cleared): the view is posted anew.
	viewDeleted = "deleted"
	// viewOpening is a DM opened without the code (DMOpeningView): the
	// code goes in with chat.update once the message is stored.
	viewOpening = "opening"
	// viewWaiting is a hand-off DM's LastView once it is opened, before
	// the code is there: who is sending it, for which phone.
	viewWaiting = "waiting"
	// viewUndelivered is the end of a code that expired before it reached
	// its DM (undelivered): not "not entered in time".
	viewUndelivered = "expired:undelivered"
)

// undelivered reports whether p's code, meant for a DM, expired before it
// got there: the DM was never posted (its posts held by Slack's
// Retry-After), or still showed its opening (or, a renewal's, the code it
// superseded) when the code expired, because the shared edit budget never
// got to it (Slack's rate limit, as the bot keeps to it). Its requester
// (and the DM) are told so, not that the code was not entered in time.
func undelivered(p pairing.Pairing) bool {
	if !p.InDM() || p.State != pairing.StateLive && p.State != pairing.StateExpired || p.IssuedAt.IsZero() {
		return false
	}
	switch p.DM.LastView {
	case "", viewOpening, viewWaiting, viewUndelivered:
		return true
	}
	return false
}

// dmEndKey is endKey for p's DM and, while p's code is meant for a DM,
// its requester's channel messages: viewUndelivered for a code that
// never reached the DM.
func dmEndKey(p pairing.Pairing) string {
	if undelivered(p) {
		return viewUndelivered
	}
	return endKey(p)
}

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

// showingCode reports whether p's views show its code (or its QR link)
// at now.
func showingCode(p pairing.Pairing, now time.Time) bool {
	return p.Live(now) && (p.Code != "" || p.Link != "")
}

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
		return "failed:" + string(p.Reason)
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
		// exists (a hand-off's, once it shows the code), and the end only
		// where a click made its line editable (or when it never got the
		// line). A hand-off's requester is told the end anyway: the
		// command's response_url takes it as its second post, below the
		// line, as in the ephemeral flow.
		if showingCode(p, now) {
			// A renewal clicked from the line (its response_url edits the
			// line in place) is answered at once: the DM it goes to exists
			// (a renewal's, whose LastView is reset), and its code goes in
			// first thing from the edit budget (tierFinal).
			renewal := p.DM.Posted() && p.DM.LastView == "" && editable
			if !p.DM.Posted() || !showsCode(p.DM.LastView) && p.LastView != viewDMSent && !renewal {
				return "" // the line once the DM shows the code
			}
			return viewDMSent
		}
		if !editable && p.LastView != "" && p.HandedTo() == "" {
			return p.LastView
		}
		return dmEndKey(p)
	case showingCode(p, now) && p.HandedTo() != "":
		// A hand-off whose DM failed: the code is its recipient's, never
		// the requester's.
		return ""
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
	case !p.InDM():
		return ""
	case p.State == pairing.StateRequesting:
		return p.DM.LastView // in flight: it shows what it shows (a hand-off's, that the code is on its way)
	case showingCode(p, now):
		step, _ := dmStep(p, now)
		return fmt.Sprintf("live:%d", step)
	}
	return dmEndKey(p)
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
		return showingCode(p, now) || p.DM.LastView == viewDeleted && p.Final(), false
	}
	key := dmKey(p, now)
	return false, key != p.DM.LastView && (p.DM.LastView != viewStuck || p.Final())
}

// dmDone reports whether p's DM shows all it ever will: it has none, it
// failed, it was never posted and no code is due, or it shows its last view.
func dmDone(p pairing.Pairing, now time.Time) bool {
	post, update := dmDue(p, now)
	return !post && !update
}

// cardKey names what p's status card should show at now ("": nothing,
// or no card). A card is posted once the code is live (a request that
// never got a code gets none); it changes with the state and with a new
// code's expiry, never with the time left.
func cardKey(p pairing.Pairing, now time.Time) string {
	switch {
	case !p.Announced():
		return ""
	case p.State == pairing.StateRequesting:
		return p.Card.LastView // a renewal in flight: the card shows what it shows
	case showingCode(p, now):
		return fmt.Sprintf("card:live:%d", p.ExpiresAt.Unix())
	case p.Card.TS == "" && (p.Card.LastView != viewDeleted || !p.Final()):
		return ""
	}
	return "card:" + endKey(p)
}

// cardDue reports what p's card needs at now: its first post
// (chat.postMessage), or an edit (chat.update, from the edit budget).
func cardDue(p pairing.Pairing, now time.Time) (post, update bool) {
	if !p.Announced() {
		return false, false
	}
	key := cardKey(p, now)
	if p.Card.TS == "" {
		return key != "", false
	}
	return false, key != "" && key != p.Card.LastView && (p.Card.LastView != viewStuck || p.Final())
}

// cardDone reports whether p's card shows all it ever will.
func cardDone(p pairing.Pairing, now time.Time) bool {
	post, update := cardDue(p, now)
	return !post && !update
}

// render is the message for p at now on surface s: with the offer of a
// QR link when a code cannot do the job (issue 10), except on the card.
func (b *Bot) render(ctx context.Context, p pairing.Pairing, now time.Time, s surface) Message {
	m := b.renderView(ctx, p, now, s)
	if s != onCard && p.Final() && p.HandedTo() == "" && b.cfg.Service.QRSuggested(p, nil) {
		return withQROffer(m, p.ID)
	}
	return m
}

// renderView is render without the QR offer.
func (b *Bot) renderView(ctx context.Context, p pairing.Pairing, now time.Time, s surface) Message {
	phone := pairing.PhoneFromDigits(p.Phone).International
	limit := b.cfg.Service.PhoneLimit()
	// nextCode is when the phone's limit next allows a code; only the code,
	// expired and interrupted views show it, so only they read the store for it.
	nextCode := func() time.Time { return b.cfg.Service.NextCodeAt(ctx, p.Phone, now) }
	handedTo := p.HandedTo()
	switch {
	case s == onCard:
		return b.renderCard(p, now)
	case s == onModal && p.State == pairing.StateSuperseded:
		return WindowReplacedView()
	case showingCode(p, now) && p.Method == pairing.MethodQR && (s != onEphemeral || !p.InDM()):
		m := QRModel{
			PairingID: p.ID, Link: p.Link, Instance: p.InstanceName, Now: now, ExpiresAt: p.ExpiresAt, Lifetime: p.ExpiresAt.Sub(p.IssuedAt),
			Window: s == onModal,
		}
		if p.Phone != "" {
			m.Phone = phone
		}
		if s == onDM || s == onModal {
			_, m.Now = dmStep(p, now)
		} else if _, _, editable := p.Editor(); editable {
			_, m.Now = countdownStep(p, now)
		} else {
			m.Static = true
		}
		return QRView(m)
	case showingCode(p, now) && s == onModal && handedTo != "":
		return HandoffSentView(p.ID, phone, p.InstanceName, handedTo, p.ExpiresAt, "")
	case showingCode(p, now) && s == onEphemeral && handedTo != "":
		return HandoffSentView(p.ID, phone, p.InstanceName, handedTo, p.ExpiresAt, b.cardNote(p))
	case showingCode(p, now) && s == onEphemeral && p.InDM():
		return withNote(DMSentView(p.ID, phone, p.InstanceName, p.ExpiresAt), b.cardNote(p))
	case s == onDM && handedTo != "" && p.State == pairing.StateRequesting:
		return HandoffWaitingView(p.RequestedBy, phone, p.InstanceName)
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
			if handedTo != "" {
				m.HandedBy = p.RequestedBy
			}
		} else if s == onModal {
			_, m.Now = dmStep(p, now)
			m.Window = true
		} else if _, _, editable := p.Editor(); editable {
			_, m.Now = countdownStep(p, now)
		} else {
			m.Static = true
		}
		if s == onEphemeral {
			var notes []string
			if p.DM.Failed != "" {
				notes = append(notes, dmFailedNote(p.DM.Failed))
			}
			if note := b.cardNote(p); note != "" {
				notes = append(notes, note)
			}
			m.Note = strings.Join(notes, "\n")
		}
		return CodeView(m)
	case s == onDM && handedTo != "" && p.IssuedAt.IsZero():
		// The request ended without a code (Wawp failed, the bot was
		// interrupted): the requester is told why, in their own words.
		return HandoffNoCodeView(p.RequestedBy, phone, p.InstanceName)
	case p.State == pairing.StateLinked && p.Method == pairing.MethodQR:
		return QRLinkedView(qrLinkedPhone(p), p.InstanceName, p.EndedAt)
	case p.State == pairing.StateLinked:
		return LinkedView(phone, p.InstanceName, p.EndedAt)
	case p.State == pairing.StateWrongPhone:
		return WrongPhoneView(pairing.PhoneFromDigits(p.LinkedPhone).International, phone, p.InstanceName)
	case p.State == pairing.StateCancelled && p.Method == pairing.MethodQR:
		return QRCancelledView(p.InstanceName)
	case p.State == pairing.StateCancelled:
		return CancelledView(phone)
	case p.State == pairing.StateFailed:
		switch why := p.Reason.Outcome(); why {
		case pairing.OutcomeRecipientBot, pairing.OutcomeRecipientDeactivated, pairing.OutcomeRecipientForeign, pairing.OutcomeRecipientUnknown:
			// A renewal's recipient check (prepareHandoffRenewal).
			again := fmt.Sprintf("`/link %s %s`", escape(p.InstanceName), escape(phone))
			return RecipientRefusedView(why, p.DM.Recipient, again, "no answer")
		}
		if code, ok := pairing.ReasonDM(p.Reason); ok && !p.IssuedAt.IsZero() {
			return HandoffCodeRefusedView(p.DM.Recipient, code, phone, p.InstanceName)
		} else if ok {
			return HandoffDMRefusedView(p.DM.Recipient, code)
		}
		if err := pairing.ReasonError(p.Reason); err != nil && p.Method == pairing.MethodQR {
			return QRWawpErrorView(err, p.InstanceName)
		} else if err != nil {
			return WawpErrorView(err, p.InstanceName)
		}
		if p.Reason == pairing.ReasonInternal {
			return InternalErrorView(p.ID)
		}
		if p.Method == pairing.MethodQR {
			return QRFailedView(p.InstanceName, string(p.Reason))
		}
		return FailedView(phone, p.InstanceName, string(p.Reason))
	case p.RefusedBy() != pairing.LimitNone:
		return LimitView(b.cfg.Service.LimitError(ctx, p), p.InstanceName, now)
	case p.State == pairing.StateRefused:
		return StatusView(&pairing.StatusError{Status: pairing.ReasonStatus(p.Reason), Me: p.LinkedPhone}, p.InstanceName, p.ID, now)
	case p.State == pairing.StateWarmingUp:
		return StatusView(&pairing.StatusError{Status: pairing.StatusStarting, RetryAt: later(p.RetryAt, now)}, p.InstanceName, p.ID, now)
	case p.State == pairing.StateInterrupted && p.Method == pairing.MethodQR:
		return QRInterruptedView(p.InstanceName)
	case p.State == pairing.StateInterrupted:
		return InterruptedView(InterruptedModel{
			Phone: phone, Instance: p.InstanceName, Attempt: p.Attempt, PhoneLimit: limit, Now: now, NewCodeAt: nextCode(),
		})
	case undelivered(p):
		return UndeliveredView(UndeliveredModel{
			PairingID: p.ID, Phone: phone, Instance: p.InstanceName, Recipient: handedTo, QR: p.Method == pairing.MethodQR,
			Now: now, NewCodeAt: nextCode(),
		})
	case (p.State == pairing.StateLive || p.State == pairing.StateExpired) && p.Method == pairing.MethodQR:
		return QRExpiredView(p.InstanceName, p.ID)
	case p.State == pairing.StateLive || p.State == pairing.StateExpired:
		return ExpiredView(phone, p.ID, now, nextCode())
	}
	return EndedView()
}

// renderCard is p's status card at now.
func (b *Bot) renderCard(p pairing.Pairing, now time.Time) Message {
	m := CardModel{
		Requester: p.RequestedBy, Recipient: p.HandedTo(), Instance: p.InstanceName,
		Masked: pairing.MaskPhone(pairing.PhoneFromDigits(p.Phone).International), State: p.State,
		ExpiresAt: p.ExpiresAt, EndedAt: p.EndedAt, Reason: p.Reason,
	}
	if showingCode(p, now) {
		m.State = pairing.StateLive
	} else if p.State == pairing.StateLive {
		m.State = pairing.StateExpired // past its expiry, not marked yet
	}
	if p.LinkedPhone != "" {
		m.LinkedMasked = pairing.MaskPhone(pairing.PhoneFromDigits(p.LinkedPhone).International)
	}
	return CardView(m)
}

// cardNote is what p's requester is told, once, in their first answer
// (never in a renewal's), when its status card could not be posted: how to
// add the bot to the channel.
func (b *Bot) cardNote(p pairing.Pairing) string {
	if p.Card.Failed == "" || p.Renews != "" {
		return ""
	}
	return cardNote(b.botName, p.Card.Failed)
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
	edit   dmEdit // for the DM
	card   dmEdit // for the status card
	modal  dmEdit // for the code window
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
	now := b.cfg.Service.Now()
	if p.State == pairing.StateSuperseded {
		for _, e := range []dmEdit{how.edit, how.card} {
			if e == editGranted {
				b.edits.refund()
			}
		}
		// Its renewal owns the message. Only a window recorded on it
		// when it was replaced while the window opened is its own: it is
		// told so (the code removed), and then the pairing is left.
		p = b.showModal(ctx, p, now, how.modal)
		if modalDone(p, now) {
			b.recordView(ctx, p, p.LastView, true)
		}
		return
	}
	// The card first: if it cannot be posted, the requester's first answer
	// says how to add the bot to the channel.
	p = b.showCard(ctx, p, now, how.card)
	p = b.showDM(ctx, p, now, how)
	p = b.showModal(ctx, p, now, how.modal)
	b.showEphemeral(ctx, p, now, how.answer == onEphemeral, dmDone(p, now) && b.cardSettled(ctx, p, now) && modalDone(p, now))
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
	// The edit is claimed in the database first, with its response_url
	// use (issue 11): of two writers deciding the same edit (two replicas
	// that both believe they lead, a tick and a click), only the one that
	// wins the claim posts it.
	var claim pairing.ViewClaim
	won := false
	take := func() error {
		c, ok, err := b.cfg.Service.ClaimView(ctx, pairing.ViewClaim{
			ID: p.ID, Surface: pairing.SurfaceEphemeral, From: p.LastView, To: key, URL: url, Issued: issued, Keep: keep,
		})
		claim, won = c, ok
		switch {
		case err != nil:
			return err
		case !ok:
			log.Info("edit not posted: another writer claimed it or showed it already")
			return errClaimLost
		}
		return nil
	}
	// Before a retry, re-read the pairing: if what it should show changed
	// (or a click gave it another response_url), whoever changed it shows
	// the new state, and this post is dropped; so is a retry that would
	// come after its claim stops holding.
	again := func() (Message, bool) {
		now := b.cfg.Service.Now()
		if won && !claim.HoldsAt(now) {
			return Message{}, false
		}
		fresh, err := b.cfg.Service.Pairing(ctx, p.ID)
		if err != nil {
			return Message{}, false
		}
		if u, _, _ := fresh.Editor(); u != url || ephemeralKey(fresh, now) != key {
			return Message{}, false
		}
		return b.render(ctx, fresh, now, onEphemeral), true
	}
	outcome := b.post(ctx, log, url, issued, keep, b.render(ctx, p, now, onEphemeral), again, take)
	if !won {
		switch outcome {
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
		}
		return // the claim was lost, or the storage failed: nothing was posted
	}
	// Slack has answered (or the post was given up): the claim ends with
	// what the message shows now, recorded even if ctx ended meanwhile (a
	// shutdown), or the next start would post it again.
	shown, keepWatching := p.LastView, false
	switch outcome {
	case posted:
		shown = key
	case budgetSpent:
		// A retry found no use left: this step is skipped for good.
		shown = key
	case urlGone:
		// The message is gone, not the pairing: it goes on being watched
		// (advanced) until it ends, with no more posts.
		shown = viewGone
	case postFailed, postDropped:
		// Left as it was: the next tick (or the writer that changed the
		// pairing) shows what is due.
		keepWatching = true
	}
	b.finishView(ctx, claim, pairing.Surface{LastView: shown}, unwatch && !keepWatching, log)
}

// finishRetry is the pause between attempts to finish a claim while the
// database cannot be reached.
const finishRetry = 250 * time.Millisecond

// finishView ends claim c with shown (Service.FinishView), and reports
// whether it was recorded. Slack has answered by then, so it is recorded
// even if ctx ended (a shutdown; pairing.RecordContext). When the database
// cannot be reached it goes on trying in the background, without the
// message's lock (a click on the message is answered meanwhile), as long
// as the claim holds and the work is not cut short: a claim left
// unfinished would keep every other writer off the message, a click's
// answer included, until it runs out, and the next writer would then post
// the view again.
func (b *Bot) finishView(ctx context.Context, c pairing.ViewClaim, shown pairing.Surface, unwatch bool, log *slog.Logger) bool {
	try := func() (done bool, err error) {
		rctx, cancel := pairing.RecordContext(ctx)
		defer cancel()
		ok, err := b.cfg.Service.FinishView(rctx, c, shown, unwatch)
		if err == nil && !ok {
			log.Warn("the edit's claim ran out before it was recorded; the newer claim's writer records what the message shows")
		}
		return ok, err
	}
	ok, err := try()
	if err == nil {
		return ok
	}
	if !errors.Is(err, pairing.ErrUnavailable) {
		log.Error("recording view", "err", err)
		return false
	}
	log.Warn("recording view: the database cannot be reached; trying again in the background", "err", err)
	b.goWork(ctx, func(ctx context.Context) {
		for c.HoldsAt(b.cfg.Service.Now()) {
			select {
			case <-ctx.Done():
				log.Error("recording view: given up at shutdown", "err", err)
				return
			case <-time.After(finishRetry):
			}
			if _, err = try(); !errors.Is(err, pairing.ErrUnavailable) {
				if err != nil {
					log.Error("recording view", "err", err)
				}
				return
			}
		}
		log.Error("recording view: the claim ran out before the database came back; the view may be posted again", "err", err)
	})
	return false
}

// showDM brings p's DM message up to date and returns p as it then
// stands: the first post of the code (chat.postMessage to the recipient's
// user ID, which opens the app's DM with them), then chat.update for every
// later view, each spending the shared edit budget. Slack refusing the DM
// (the Messages tab is off, …) ends it for this pairing: the code goes to
// the ephemeral message instead, which says why. (A hand-off's DM is
// opened before the code is asked for, by openHandoffDM, so a refused one
// never gets a code.) A chat.update that can no longer edit the message
// (edit_window_closed, message_not_found) stops the countdown there; the
// final state is then posted anew and the DM follows that message.
//
// A hand-off's code goes to its recipient only: if Slack will not put it
// into their DM (the code's edit or the post anew refused for good), the
// hand-off fails there (Service.FailHandoffDM: the code is withdrawn, the
// instance freed) and its requester is told, rather than the code staying
// live for nobody until it expires.
func (b *Bot) showDM(ctx context.Context, p pairing.Pairing, now time.Time, how showing) pairing.Pairing {
	post, update := dmDue(p, now)
	refused := b.logDMRefused
	if p.HandedTo() != "" {
		refused = func(log *slog.Logger, code string) {
			b.logDMRefusedFor(log, code, "the hand-off fails: its code is withdrawn, and the requester is told")
		}
	}
	p = b.showPosted(ctx, p, now, how.edit, postedSurface{
		kind: onDM, s: p.DM, to: p.DM.Recipient, key: dmKey(p, now), post: post, update: update,
		record: func(ctx context.Context, dm pairing.Surface) (pairing.Pairing, error) {
			return b.cfg.Service.RecordDM(ctx, p.ID, dm, false)
		},
		refused: refused,
	})
	if p.HandedTo() != "" && p.DM.Failed != "" && !p.IssuedAt.IsZero() && p.Live(now) {
		rctx, cancel := pairing.RecordContext(ctx)
		defer cancel()
		failed, err := b.cfg.Service.FailHandoffDM(rctx, p.ID, p.DM.Failed)
		switch {
		case err == nil:
			p = failed
		case errors.Is(err, pairing.ErrEnded):
			if fresh, err := b.cfg.Service.Pairing(rctx, p.ID); err == nil {
				p = fresh
			}
		default:
			b.log.Error("ending a hand-off whose DM refused its code; the next tick tries again", "pairing", p.ID, "err", err)
		}
	}
	return p
}

// showCard brings p's status card up to date and returns p as it then
// stands: its first post in the channel (chat.postMessage, once the code
// is live), then chat.update whenever the state changes, each spending the
// shared edit budget. A channel the bot is not in (not_in_channel; a
// private one: channel_not_found) ends the card for this pairing: the
// requester's first answer says how to add the bot (cardNote).
func (b *Bot) showCard(ctx context.Context, p pairing.Pairing, now time.Time, edit dmEdit) pairing.Pairing {
	post, update := cardDue(p, now)
	if (post || update) && b.leavesCardAlone(ctx, p) {
		post, update = false, false
	}
	return b.showPosted(ctx, p, now, edit, postedSurface{
		kind: onCard, s: p.Card, to: p.Card.Channel, key: cardKey(p, now), post: post, update: update,
		record: func(ctx context.Context, card pairing.Surface) (pairing.Pairing, error) {
			return b.cfg.Service.RecordCard(ctx, p.ID, card)
		},
		refused: func(log *slog.Logger, code string) {
			log.Warn("announce: Slack refused the status card; the pairing goes on without one, and the requester is told how to add the bot", "slack_error", code, "channel", p.Card.Channel)
		},
	})
}

// leavesCardAlone reports whether p, a renewal that got no code, leaves
// the card to the pairing it renewed: Wawp turned the renewal away before
// WhatsApp saw it, and the old code still works (the card goes on showing
// it).
func (b *Bot) leavesCardAlone(ctx context.Context, p pairing.Pairing) bool {
	if p.Renews == "" || !p.IssuedAt.IsZero() || !p.Final() {
		return false
	}
	old, err := b.cfg.Service.Pairing(ctx, p.Renews)
	return err == nil && !old.Final()
}

// cardSettled reports whether p's card shows all it ever will (or is left
// to the pairing p renewed).
func (b *Bot) cardSettled(ctx context.Context, p pairing.Pairing, now time.Time) bool {
	return cardDone(p, now) || b.leavesCardAlone(ctx, p)
}

// postedSurface is a non-ephemeral message of a pairing (its DM, its
// card) as one show sees it.
type postedSurface struct {
	kind         surface
	s            pairing.Surface
	to           string // where the first post goes: a user ID (DM), a channel (card)
	key          string // the view it should show
	post, update bool
	record       func(context.Context, pairing.Surface) (pairing.Pairing, error)
	// fresh says the message was just posted by this show: an edit Slack
	// refuses for good leaves it stuck, not replaced again (which could
	// loop for a view Slack never takes).
	fresh   bool
	refused func(log *slog.Logger, code string) // Slack refused the first post
	// holds says whether the claim this show is made under still lets a
	// post be made now (pairing.ViewClaim.HoldsAt by the service's clock);
	// it is asked right before every Slack call, since the call may wait
	// its turn (the rate limits' locks) long enough for the claim to run
	// out and another replica to claim and post the same view.
	holds func() bool
}

// errClaimRanOut means a Slack call under a claim was not made: the claim
// no longer held (postedSurface.holds, pairing.ViewClaim.HoldsAt).
var errClaimRanOut = errors.New("the edit's claim ran out before the call")

// claimed runs call, a Slack call under ps's claim, if the claim still
// holds; errClaimRanOut, and no call, otherwise.
func (ps postedSurface) claimed(call func() error) error {
	if ps.holds != nil && !ps.holds() {
		return errClaimRanOut
	}
	return call()
}

// showPosted brings one posted surface up to date (see showDM, showCard)
// and returns p as it then stands. edit says whether this show may spend
// the shared edit budget on a chat.update (or the chat.delete of a message
// that can no longer be edited).
//
// No two messages the bot can edit ever show one pairing's code: a DM is
// opened without the code (DMOpeningView) and the code goes in with
// chat.update only once the message's channel and ts are stored. A post
// whose answer is lost (Slack posted it, the reply never came back) is
// posted again by a later tick, and the lost message never shows a code.
//
// A chat.update Slack refuses for good (edit_window_closed,
// message_not_found, channel_not_found, is_archived, invalid_blocks, …:
// anything but a 429 or Slack's own trouble) is not tried again: the
// message is stuck. Once the pairing ends, or a new code is due that the
// stuck message does not show, the stuck message is deleted (chat.delete:
// the code leaves the conversation) and the view is posted anew. A post
// Slack refuses ends the surface (Failed), so nothing is retried every tick.
//
// Every call and post it makes is claimed in the database first (issue
// 11): of two writers deciding it (two replicas that both believe they
// lead, a tick and a click), only the one that wins the claim goes on, so
// no view is posted twice and no edit budget is spent twice. The claim
// covers the whole show (a DM opened and then given its code, a stuck
// message deleted and posted anew); each step records the surface as it
// goes, and the claim ends with the surface as it then stands.
func (b *Bot) showPosted(ctx context.Context, p pairing.Pairing, now time.Time, edit dmEdit, ps postedSurface) pairing.Pairing {
	if !ps.post && !ps.update {
		if edit == editGranted {
			b.edits.refund() // the tick's grant went unused
		}
		return p
	}
	log := b.log.With("pairing", p.ID, "surface", surfaceName(ps.kind), "surface_view", ps.key)
	c, won, err := b.cfg.Service.ClaimView(ctx, pairing.ViewClaim{ID: p.ID, Surface: surfaceKey(ps.kind), From: ps.s.LastView, To: ps.key})
	if err != nil || !won {
		if err != nil {
			log.Warn("claiming the edit failed; the next tick tries again", "err", err)
		} else {
			log.Info("edit not made: another writer claimed it or made it already")
		}
		if edit == editGranted {
			b.edits.refund() // the tick's grant went unused
		}
		return p
	}
	ps.holds = func() bool { return c.HoldsAt(b.cfg.Service.Now()) }
	p = b.showPostedClaimed(ctx, p, now, edit, ps)
	shown := p.DM
	if ps.kind == onCard {
		shown = p.Card
	}
	if !b.finishView(ctx, c, shown, false, log) {
		return p
	}
	rctx, cancel := pairing.RecordContext(ctx)
	defer cancel()
	if stored, err := b.cfg.Service.Pairing(rctx, p.ID); err == nil {
		return stored
	}
	return p
}

// surfaceKey is the storage's name of surface s (pairing.SurfaceDM, …).
func surfaceKey(s surface) string {
	switch s {
	case onDM:
		return pairing.SurfaceDM
	case onCard:
		return pairing.SurfaceCard
	}
	return pairing.SurfaceEphemeral
}

// showPostedClaimed is showPosted under its claim.
func (b *Bot) showPostedClaimed(ctx context.Context, p pairing.Pairing, now time.Time, edit dmEdit, ps postedSurface) pairing.Pairing {
	granted := edit == editGranted
	defer func() {
		if granted {
			b.edits.refund() // the tick's grant went unused
		}
	}()
	// A click is answered by the message being current: a view it already
	// shows is never posted again (it would only spend the edit budget).
	if !ps.post && !ps.update {
		return p
	}
	sf := ps.s
	log := b.log.With("pairing", p.ID, "surface", surfaceName(ps.kind), "surface_view", ps.key)
	message := func(key string) []slack.MsgOption {
		m := b.render(ctx, p, now, ps.kind)
		if key == viewOpening {
			m = DMOpeningView(pairing.PhoneFromDigits(p.Phone).International, p.InstanceName)
		}
		return []slack.MsgOption{slack.MsgOptionText(m.Text, false), slack.MsgOptionBlocks(m.Blocks...)}
	}
	if ps.update {
		if edit == editNot || !granted && !b.edits.take() {
			return p // the shared edit budget has no use left now: a later tick edits it
		}
		granted = false // spent
		if sf.LastView != viewStuck {
			opts := message(ps.key) // rendered before the call's turn: rendering reads the store
			sent, err := b.editLimited(ctx, func() error {
				return ps.claimed(func() error {
					_, _, _, err := b.api.UpdateMessageContext(ctx, sf.Channel, sf.TS, opts...)
					return err
				})
			})
			code, refused := slackRefusal(err)
			switch {
			case !sent:
				return p // a 429 arrived meanwhile: no call until its Retry-After runs out
			case errors.Is(err, errClaimRanOut):
				log.Info("edit not made: its claim ran out while it waited its turn")
				return p
			case rateLimited(err):
				log.Warn("chat.update rate-limited: no edits until Retry-After runs out")
				return p
			case err == nil:
				sf.LastView = ps.key
				return b.recordSurface(ctx, p, ps, sf, log)
			case !refused || transientRefusal(code):
				log.Warn("editing the message failed; the next tick tries again", "reason", webFailure(err))
				return p
			}
			log.Warn("Slack refused to edit the message for good: no more edits to it", "reason", code)
			if ps.fresh || ps.kind == onDM && (sf.LastView == viewOpening || sf.LastView == viewWaiting) {
				// The code never goes into a message opened for it (just
				// now, or on an earlier tick when the budget had no use
				// then): the DM fails here, as a refused first post does
				// (the code is shown ephemerally instead; a hand-off
				// fails: showDM). Deleting and posting the opening anew
				// would loop on a code Slack never takes, a new DM
				// notification each time.
				sf.Failed = code
				ps.refused(log, code)
				p = b.recordSurface(ctx, p, ps, sf, log)
				b.retractOpening(ctx, p, ps, sf, code, log)
				return p
			}
			if !p.Final() && !(showsCode(ps.key) && !showsCode(sf.LastView)) {
				// Its countdown stops here; it is deleted once the
				// pairing ends (or a new code is due).
				sf.LastView = viewStuck
				return b.recordSurface(ctx, p, ps, sf, log)
			}
		}
		// The message can no longer be edited, and the pairing ended or a
		// new code is due: the old message goes (its code with it), and
		// the view is posted anew.
		var ok bool
		if p, sf, ok = b.deleteStuck(ctx, p, ps, sf, log); !ok {
			return p
		}
	}
	// The first post, or a post anew in place of a message deleted.
	key := ps.key
	if ps.kind == onDM && showsCode(key) {
		key = viewOpening
		if sf.TS == "" && sf.LastView == "" && p.HandedTo() == "" && !b.codeGoesInSoon(p) {
			// The code would reach the DM too late: it is shown to the
			// requester ephemerally instead, and the DM is never opened.
			sf.Failed = dmBusy
			log.Warn("the shared edit budget cannot put the code into the DM soon (too many codes at once, or a Retry-After): the code is shown ephemerally instead", "backlog", b.backlog.Load())
			return b.recordSurface(ctx, p, ps, sf, log)
		}
	}
	var channel, ts string
	opts := message(key)
	b.refreshHolds(ctx)
	sent, err := b.limited(b.lockPosts(ps.to), b.posts.on(ps.to), func() error {
		return ps.claimed(func() (err error) {
			channel, ts, err = b.api.PostMessageContext(ctx, ps.to, opts...)
			return err
		})
	})
	code, refused := slackRefusal(err)
	switch {
	case !sent:
		return p // a 429's Retry-After is running: a later tick posts it
	case errors.Is(err, errClaimRanOut):
		log.Info("post not made: its claim ran out while it waited its turn")
		return p
	case rateLimited(err):
		log.Warn("chat.postMessage rate-limited: no posts until Retry-After runs out")
		return p
	case err == nil:
		sf.Channel, sf.TS, sf.LastView = channel, ts, key
	case !refused || transientRefusal(code):
		log.Warn("posting the message failed; the next tick tries again", "reason", webFailure(err))
		return p
	case sf.LastView == viewDeleted:
		sf.Failed = code
		log.Warn("posting anew the message of a message that could not be edited failed; the surface ends here", "slack_error", code)
	default:
		sf.Failed = code
		ps.refused(log, code)
	}
	p, stored := b.recordSurfaceOK(ctx, p, ps, sf, log)
	if key == ps.key || !stored || sf.Failed != "" {
		// Unless its channel and ts are stored, the code never goes in: a
		// retry would post another message, and the two would show it.
		return p
	}
	// The DM is open and stored: the code goes in now if the budget has a
	// use, else the next tick puts it in (urgently).
	ps.s, ps.post, ps.update, ps.fresh = p.DM, false, true, true
	p = b.showPostedClaimed(ctx, p, now, editIfBudget, ps) // under the same claim
	if p.DM.LastView == viewOpening && p.DM.Failed == "" {
		b.backlog.Add(1) // it waits for the budget with the others
	}
	return p
}

// dmBusy is the Failed of a DM never opened because its code could not
// have gone in soon (codeGoesInSoon): Slack's rate limit, as the bot
// keeps to it.
const dmBusy = "ratelimited"

// dmCodeWait is the fraction of a code's lifetime it may wait for the
// edit budget to put it into its DM: a quarter (37 s of a 150 s code).
const dmCodeWait = 4

// codeGoesInSoon reports whether the shared edit budget can put p's code
// into a DM opened for it now within a quarter of its lifetime, behind
// the urgent edits already waiting (the backlog). The budget's 40 a
// minute (Slack allows chat.update about 50 times a minute per
// workspace, api.slack.com/methods/chat.update) cannot carry hundreds of
// codes asked in one minute into their DMs before they expire; a
// requester whose code would wait past that sees it ephemerally instead,
// at once (the slash command's response_url has a budget of its own).
func (b *Bot) codeGoesInSoon(p pairing.Pairing) bool {
	return b.edits.within(p.ExpiresAt.Sub(p.IssuedAt)/dmCodeWait) >= float64(b.backlog.Load()+1)
}

// retractOpening takes back the opening of a DM that failed before its
// code went in ("… appears here in a moment"), so that it no longer
// promises a code. When Slack refused the code for what it was
// (msg_too_long, invalid_blocks: a short message may pass) it is replaced
// by a short view saying where the code is instead (the channel) or, for
// a hand-off, that the requester was told; when it refused any edit of
// the message (edit_window_closed, cant_update_message, …) it is deleted.
// It is tried once, if the edit budget has a use now and ps's claim still
// holds; else, or if Slack refuses that too, the opening stays as it is
// (it shows no code).
func (b *Bot) retractOpening(ctx context.Context, p pairing.Pairing, ps postedSurface, sf pairing.Surface, code string, log *slog.Logger) {
	switch code {
	case "channel_not_found", "is_archived", "message_not_found", "not_in_channel", "not_authed", "invalid_auth", "token_revoked", "account_inactive", "missing_scope":
		return // the message (or the bot's access to it) is gone: nothing to take back
	}
	if sf.TS == "" || !b.edits.take() {
		return
	}
	call := func() error {
		_, _, err := b.api.DeleteMessageContext(ctx, sf.Channel, sf.TS)
		return err
	}
	if code == "msg_too_long" || code == "invalid_blocks" {
		phone := pairing.PhoneFromDigits(p.Phone).International
		m := DMCodeElsewhereView(phone, p.InstanceName, p.Channel)
		if p.HandedTo() != "" {
			m = HandoffNoCodeView(p.RequestedBy, phone, p.InstanceName)
		}
		call = func() error {
			_, _, _, err := b.api.UpdateMessageContext(ctx, sf.Channel, sf.TS, slack.MsgOptionText(m.Text, false), slack.MsgOptionBlocks(m.Blocks...))
			return err
		}
	}
	sent, err := b.editLimited(ctx, func() error { return ps.claimed(call) })
	if sent && err != nil {
		log.Warn("the DM's opening could not be taken back: it stays as it is (it shows no code)", "reason", webFailure(err))
	}
}

// deleteStuck deletes sf, a message of p that can no longer be edited
// (chat.delete, from the shared edit budget's use taken for it), and
// records the surface as deleted, to be posted anew. It reports whether
// that is done; if not, a later tick tries again. A message already gone
// (message_not_found) counts as deleted; any other refusal is logged, and
// the view is posted anew all the same: the old message cannot be changed
// by the bot any more.
func (b *Bot) deleteStuck(ctx context.Context, p pairing.Pairing, ps postedSurface, sf pairing.Surface, log *slog.Logger) (pairing.Pairing, pairing.Surface, bool) {
	sent, err := b.editLimited(ctx, func() error {
		return ps.claimed(func() error {
			_, _, err := b.api.DeleteMessageContext(ctx, sf.Channel, sf.TS)
			return err
		})
	})
	code, refused := slackRefusal(err)
	switch {
	case !sent, errors.Is(err, errClaimRanOut):
		return p, sf, false
	case rateLimited(err):
		log.Warn("chat.delete rate-limited: no edits until Retry-After runs out")
		return p, sf, false
	case err != nil && (!refused || transientRefusal(code)):
		log.Warn("deleting the message that can no longer be edited failed; the next tick tries again", "reason", webFailure(err))
		return p, sf, false
	case refused && code != "message_not_found":
		log.Warn("Slack refused to delete the message that can no longer be edited: it stays as it is", "slack_error", code)
	}
	sf.TS, sf.LastView = "", viewDeleted
	p, ok := b.recordSurfaceOK(ctx, p, ps, sf, log)
	return p, sf, ok
}

// surfaceName names a surface in the log.
func surfaceName(s surface) string {
	switch s {
	case onDM:
		return "dm"
	case onCard:
		return "card"
	case onModal:
		return "modal"
	}
	return "ephemeral"
}

// limited makes one call of a rate-limited Web API method, in turn with
// the others lock guards (every chat.update and chat.delete; the posts to
// one destination), unless hold's Retry-After is running (then
// sent is false). Calls go one at a time, each after checking the
// Retry-After: a call started beside the one Slack answered 429 would
// arrive after it, before its Retry-After ran out. A 429 holds every call
// guarded by hold until its Retry-After runs out.
func (b *Bot) limited(lock func() (unlock func()), hold hold, call func() error) (sent bool, err error) {
	defer lock()()
	if hold.blocked() {
		return false, nil
	}
	err = call()
	var (
		rl     *slack.RateLimitedError
		status slack.StatusCodeError
		until  time.Time
	)
	switch {
	case errors.As(err, &rl):
		until = hold.block(rl.RetryAfter)
	case errors.As(err, &status) && status.Code == http.StatusTooManyRequests:
		// A 429 without a Retry-After in seconds: wait a little.
		until = hold.block(time.Second)
	case rateLimitedRefusal(err):
		// ok:false, "ratelimited", without the 429: the same, a little.
		until = hold.block(time.Second)
	default:
		return true, err
	}
	// Stored, so that a restarted bot (or a replica starting meanwhile) waits it out
	// too; the call's ctx may be ending (a shutdown), the hold still counts.
	rctx, cancel := pairing.RecordContext(b.workCtx)
	defer cancel()
	if serr := b.cfg.Service.SetHold(rctx, hold.key(), until); serr != nil {
		b.log.Error("recording Slack's Retry-After", "hold", hold.key(), "err", serr)
	}
	return true, err
}

// editLimited is limited for a chat.update or chat.delete call: besides
// this process's edit budget and Retry-After, the call takes one of the
// workspace's edits this minute from the database (Service.TakeEdit),
// shared by every replica, since Slack counts them per workspace (Tier 3,
// about 50 a minute: api.slack.com/methods/chat.update). With none left
// this minute, or the database unreachable, no call is made (sent is
// false), as while a Retry-After runs: a later tick edits the message.
func (b *Bot) editLimited(ctx context.Context, call func() error) (sent bool, err error) {
	b.refreshHolds(ctx) // a Retry-After another replica met holds this one too
	if b.edits.blocked() {
		return false, nil
	}
	taken, err := b.cfg.Service.TakeEdit(ctx, b.sharedEdits())
	if err != nil || !taken {
		if err != nil && ctx.Err() == nil {
			b.log.Warn("taking a shared edit failed; the edit waits", "err", err)
		}
		return false, nil
	}
	return b.limited(b.lockUpdates, b.edits, call)
}

// slackEditsPerMinute is Slack's chat.update limit per workspace: Tier 3,
// "50+ per minute" (api.slack.com/docs/rate-limits).
const slackEditsPerMinute = 50

// sharedEdits is how many chat.update and chat.delete calls all replicas
// together make in one minute at most: Slack's limit, or the configured
// budget when that is higher (an admin who knows their workspace's).
// Each process's own budget (EditsPerMinute, with its burst) stays below
// it, so a single process never meets it.
func (b *Bot) sharedEdits() int { return max(slackEditsPerMinute, b.cfg.EditsPerMinute) }

// loadHolds waits out the Retry-Afters a previous run (or another
// replica) recorded: a restart during one does not call Slack before it
// runs out.
func (b *Bot) loadHolds(ctx context.Context) {
	holds, err := b.cfg.Service.Holds(ctx)
	if err != nil {
		b.log.Error("reading Slack's Retry-Afters; starting without them", "err", err)
		return
	}
	for _, key := range b.adoptHolds(holds) {
		b.log.Info("waiting out Slack's Retry-After from before the start", "hold", key, "until", holds[key])
	}
}

// refreshHolds adopts the Retry-Afters another replica met since (Slack
// limits chat.update and chat.delete per workspace, posts per channel,
// and a response_url's posts per url, whichever process makes them): one
// read of the stored holds, before the calls they may stop (never before
// an ack). A read that fails leaves the holds this process knows. It
// waits at most RecordTimeout, as the recording writes do: a slow
// database must not hold up the posts it only informs.
func (b *Bot) refreshHolds(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, pairing.RecordTimeout)
	defer cancel()
	holds, err := b.cfg.Service.Holds(ctx)
	if err != nil {
		b.log.Debug("reading Slack's Retry-Afters failed; going on with the ones known here", "err", err)
		return
	}
	for _, key := range b.adoptHolds(holds) {
		b.log.Info("waiting out Slack's Retry-After another replica met", "hold", key, "until", holds[key])
	}
}

// adoptHolds applies the stored holds that run later than this process's
// own, and returns their keys.
func (b *Bot) adoptHolds(holds map[string]time.Time) []string {
	var adopted []string
	for key, until := range holds {
		var was time.Time
		switch {
		case key == b.edits.key():
			if was = b.edits.heldUntil(); until.After(was) {
				b.edits.blockUntil(until)
			}
		case strings.HasPrefix(key, postHoldPrefix):
			to := strings.TrimPrefix(key, postHoldPrefix)
			if was = b.posts.heldUntil(to); until.After(was) {
				b.posts.blockUntil(to, until)
			}
		case strings.HasPrefix(key, urlHoldPrefix):
			id := strings.TrimPrefix(key, urlHoldPrefix)
			if was = b.urlHolds.heldUntil(id); until.After(was) {
				b.urlHolds.blockUntil(id, until)
			}
		default:
			continue
		}
		if until.After(was) {
			adopted = append(adopted, key)
		}
	}
	slices.Sort(adopted)
	return adopted
}

// lockUpdates takes the turn of chat.update and chat.delete calls: one at
// a time in the workspace, whose limit they share.
func (b *Bot) lockUpdates() func() {
	b.updating.Lock()
	return b.updating.Unlock
}

// lockPosts is the turn of chat.postMessage calls to destination to: one
// at a time per channel (or person's DM), whose limit they share; posts
// elsewhere go on meanwhile.
func (b *Bot) lockPosts(to string) func() func() {
	return func() func() { return b.postLocks.lock(to) }
}

// rateLimited reports whether err is Slack's 429 (or its ok:false
// "ratelimited").
func rateLimited(err error) bool {
	var (
		rl     *slack.RateLimitedError
		status slack.StatusCodeError
	)
	return errors.As(err, &rl) || errors.As(err, &status) && status.Code == http.StatusTooManyRequests || rateLimitedRefusal(err)
}

// rateLimitedRefusal reports whether err is ok:false with Slack's
// rate-limit error code.
func rateLimitedRefusal(err error) bool {
	code, refused := slackRefusal(err)
	return refused && (code == "ratelimited" || code == "rate_limited")
}

// transientRefusal reports whether Slack's error code may clear by
// itself, so that the same call is worth trying again later: Slack's own
// trouble and rate limits. Every other refusal (edit_window_closed,
// message_not_found, cant_update_message, channel_not_found, is_archived,
// not_in_channel, invalid_blocks, msg_too_long, not_authed, invalid_auth,
// token_revoked, account_inactive, missing_scope, …) answers the same
// call the same way every time (api.slack.com/methods/chat.update,
// Errors).
func transientRefusal(code string) bool {
	switch code {
	case "ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout":
		return true
	}
	return false
}

// recordSurface stores sf as the surface ps of p and returns p as stored.
// Slack has answered by then (the message posted, edited, or refused), so
// it is recorded even if ctx ended meanwhile (a shutdown), or the next
// start would post or edit it again.
func (b *Bot) recordSurface(ctx context.Context, p pairing.Pairing, ps postedSurface, sf pairing.Surface, log *slog.Logger) pairing.Pairing {
	p, _ = b.recordSurfaceOK(ctx, p, ps, sf, log)
	return p
}

// recordSurfaceOK is recordSurface that also reports whether sf was stored.
func (b *Bot) recordSurfaceOK(ctx context.Context, p pairing.Pairing, ps postedSurface, sf pairing.Surface, log *slog.Logger) (pairing.Pairing, bool) {
	rctx, cancel := pairing.RecordContext(ctx)
	defer cancel()
	stored, err := ps.record(rctx, sf)
	if err != nil {
		log.Error("recording the message", "err", err)
		if ps.kind == onCard {
			p.Card = sf
		} else {
			p.DM = sf
		}
		return p, false
	}
	return stored, true
}

// logDMRefused says, once per pairing, that Slack refused a DM and the code
// went to the ephemeral message instead; for messages_tab_disabled it names
// the manifest setting that fixes it.
func (b *Bot) logDMRefused(log *slog.Logger, code string) {
	b.logDMRefusedFor(log, code, "the code is shown ephemerally instead")
}

// logDMRefusedFor is logDMRefused with what happens instead.
func (b *Bot) logDMRefusedFor(log *slog.Logger, code, instead string) {
	if code == "messages_tab_disabled" {
		log.Warn("Slack refused the DM because the app's Messages tab is off; "+instead+". Turn on features.app_home.messages_tab_enabled in the app manifest (App Home → Messages Tab)", "slack_error", code)
		return
	}
	log.Warn("Slack refused the DM; "+instead, "slack_error", code)
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
	var (
		code slack.StatusCodeError
		rl   *slack.RateLimitedError
	)
	switch {
	case errors.As(err, &rl):
		return "ratelimited"
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
