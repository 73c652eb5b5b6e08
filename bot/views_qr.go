package bot

import (
	"context"
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// The QR fallback's views (issue 10). When a code cannot do the job (the
// phone's limit, WhatsApp's lock-out, the wrong phone linked, two codes
// in a row expired: pairing.Service.QRSuggested), the message offers
// "Link by QR instead": Wawp's hosted QR page, shown privately (the
// requester's ephemeral message, their DM, the code window; never the
// card, never the fallback text), with its expiry. The link is a
// credential like the code: gone from every message the bot can edit
// when the pairing ends, and revoked at Wawp then (pairing's side).

// ActionLinkByQR is the "Link by QR instead" button; its value is the
// pairing whose message offered it.
const ActionLinkByQR = "link_by_qr"

// qrOffer is the block that offers a QR link instead of a code.
func qrOffer(pairingID string) slack.Block {
	return actions(button(ActionLinkByQR, pairingID, "Link by QR instead", "primary"))
}

// withQROffer is m with the offer added (at most one actions block per
// message is kept: the offer joins the message's buttons).
func withQROffer(m Message, pairingID string) Message {
	for i, b := range m.Blocks {
		if a, ok := b.(*slack.ActionBlock); ok {
			els := append(append([]slack.BlockElement(nil), a.Elements.ElementSet...), button(ActionLinkByQR, pairingID, "Link by QR instead", ""))
			blocks := append([]slack.Block(nil), m.Blocks...)
			blocks[i] = slack.NewActionBlock(a.BlockID, els...)
			return Message{Text: m.Text, Blocks: blocks}
		}
	}
	return Message{Text: m.Text, Blocks: append(append([]slack.Block(nil), m.Blocks...),
		contextBlock("qr_why", "A code cannot do it now. A QR code works without one: open the page on another screen and scan it with the phone."),
		qrOffer(pairingID))}
}

// QRModel is what a live QR link's message shows.
type QRModel struct {
	PairingID string
	Link      string // the hosted QR page: a credential
	Phone     string // the number expected to scan it (international), "" for any
	Instance  string
	Now       time.Time
	ExpiresAt time.Time
	Lifetime  time.Duration
	Static    bool // never edited: no time left
	Window    bool // in the code window
}

// QRView shows a live QR link, privately.
func QRView(m QRModel) Message {
	who := "the phone to link"
	if m.Phone != "" {
		who = "the phone *" + escape(m.Phone) + "*"
	}
	left := m.ExpiresAt.Sub(m.Now)
	countdown := fmt.Sprintf("⏱ The page works until %s (your time) · %s  %s", slackTime(m.ExpiresAt, "{time}"), timeLeft(left), progress(left, m.Lifetime))
	if m.Static {
		countdown = fmt.Sprintf("⏱ The page works until %s (your time); it is revoked as soon as the phone links or you cancel.", slackTime(m.ExpiresAt, "{time}"))
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain("Link by QR code"), slack.HeaderBlockOptionBlockID("qr")),
		section("link", fmt.Sprintf("🔗 <%s|Open the QR page> on another screen (a laptop), then scan it with %s to link it to *%s*. Do not share the page: it links a phone to the instance.", m.Link, who, escape(m.Instance))),
		section("steps", "1. Open WhatsApp on that phone\n2. *Settings → Linked devices → Link a device*\n3. Point the camera at the QR code on the page"),
		contextBlock("countdown", countdown),
	}
	if m.Window {
		blocks = append(blocks, contextBlock("status", "⏳ Waiting for the phone to scan… this window updates by itself."))
	}
	blocks = append(blocks, actions(button(ActionNewCode, m.PairingID, "New link", ""), button(ActionCancel, m.PairingID, "Cancel", "danger")))
	return Message{Text: fmt.Sprintf("QR link ready for %s (shown only to you in Slack)", escape(m.Instance)), Blocks: blocks}
}

// QRLinkedView confirms a QR link: the number that scanned it comes from
// WhatsApp (me.id), shown masked.
func QRLinkedView(masked, instance string, at time.Time) Message {
	t := fmt.Sprintf("✅ Linked by QR — %s is now connected to %s (%s). The QR page was revoked.", escape(masked), escape(instance), slackTime(at, "{time_secs}"))
	return notice("Linked", t)
}

// qrLinkedPhone is the masked number a QR pairing linked.
func qrLinkedPhone(p pairing.Pairing) string {
	if p.LinkedPhone == "" {
		return "the phone"
	}
	return pairing.MaskPhone(pairing.PhoneFromDigits(p.LinkedPhone).International)
}

// linkByQR answers "Link by QR instead" on old's message: a QR link in
// its place (pairing.Service.StartQR replacing old), for old's requester
// only, while the access rules still let them use its instance.
func (b *Bot) linkByQR(ctx context.Context, old pairing.Pairing, err error, cb slack.InteractionCallback, click pairing.Click, inWindow bool) (pairing.Pairing, error) {
	switch {
	case err != nil:
		return pairing.Pairing{}, err
	case old.RequestedBy != cb.User.ID:
		return pairing.Pairing{}, pairing.ErrNotYours
	case !b.allowed(old.Instance, old.RequestedBy, old.Channel):
		return old, pairing.ErrNotAllowed
	}
	req := pairing.QRRequest{
		Instance: pairing.Instance{ID: old.Instance, Name: old.InstanceName}, Phone: pairing.PhoneFromDigits(old.Phone),
		User: cb.User.ID, Team: cb.Team.ID, Channel: old.Channel,
		ClickURL: click.ResponseURL, ClickIssued: click.Issued, ClickTS: click.TS,
		Replaces: old.ID, DedupeKey: dedupeKey(ctx),
	}
	if old.Phone == "" {
		req.Phone = pairing.Phone{}
	}
	if inWindow {
		// From the code window: the requester's messages follow the link
		// too, through old's editors.
		req.ResponseURL, req.URLIssued = old.ResponseURL, old.URLIssued
		req.ClickURL, req.ClickIssued, req.ClickTS = old.ClickURL, old.ClickIssued, old.ClickTS
	}
	return b.cfg.Service.StartQR(ctx, req)
}

// QRExpiredView is a QR link that was not scanned in time (revoked).
func QRExpiredView(instance, pairingID string) Message {
	t := fmt.Sprintf("⌛ Expired — the QR page for %s was not scanned in time, and it was revoked.", escape(instance))
	return notice("QR link expired", t, actions(button(ActionNewCode, pairingID, "New link", "primary")))
}

// QRCancelledView is a QR link the requester cancelled (revoked).
func QRCancelledView(instance string) Message {
	return notice("QR link cancelled", fmt.Sprintf("🛑 Cancelled — the QR page for %s was revoked. Run /link again when the phone is ready.", escape(instance)))
}

// QRFailedView is a QR pairing whose instance failed, or left Wawp, while
// the phone had not scanned the page: its link was revoked (the pairing's
// end revokes it first, pairing.Service), and this message no longer
// shows it.
func QRFailedView(instance, reason string) Message {
	what := "failed"
	if reason == string(pairing.OutcomeInstanceGone) {
		what = "no longer exists in Wawp"
	}
	t := fmt.Sprintf("⚠️ %s %s before the phone scanned the QR page, so the QR link was revoked and removed from here. Check the instance in the Wawp dashboard, then run /link again.", escape(instance), what)
	return notice("QR pairing failed", t)
}

// QRWawpErrorView is a QR link Wawp did not make (temp-link POST
// failed): nothing to revoke, or what Wawp may have made was revoked.
func QRWawpErrorView(err error, instance string) Message {
	return notice("No QR link: Wawp reported a problem", wawpErrorText(err, instance))
}

// QRInterruptedView is a QR link request the bot stopped in the middle
// of (a restart or a crash): no link is shown, and any link Wawp made is
// revoked (pairing.Service revokes an interrupted QR request's link,
// retrying on the ticks until Wawp confirms).
func QRInterruptedView(instance string) Message {
	t := fmt.Sprintf("⚠️ *Interrupted* — the bot stopped (a restart or a crash) while it was asking Wawp for a QR link for %s, so no QR link is shown, and any link Wawp made is revoked. Run `/link %s` again when the phone is ready.", escape(instance), escape(instance))
	return notice("QR link request interrupted", t)
}
