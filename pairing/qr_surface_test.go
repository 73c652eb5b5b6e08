package pairing_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

// The QR fallback on issue 9's surfaces: a QR link is shown where a code
// would be. Asked for with a button ("New link", "Link by QR instead") it
// is edited through the click's response_url (ClickURL), and takes over
// the replaced pairing's DM and card; asked for with a command it posts
// through the command's (ResponseURL); under delivery dm it goes to the
// DM. Cancel and New link are open to whoever may use the pairing.

const (
	qrClickURL = "https://hooks.slack.test/actions/qr"
	qrClickTS  = "1700000000.000002"
)

// qrClick is user's click on pairing id's message in the channel at.
func qrClick(id, user string, at time.Time) pairing.Renewal {
	return pairing.Renewal{ID: id, User: user, Team: "T1", ResponseURL: qrClickURL, URLIssued: at, ClickTS: qrClickTS}
}

// TestRenewQRSurfaces: New link on a QR pairing is shown as a code's
// renewal is: the click's url edits the clicked message (no command url
// of its own), the old pairing's DM and card carry on with the new link,
// and the person a link was handed to may ask for a new one, which stays
// the requester's.
func TestRenewQRSurfaces(t *testing.T) {
	t.Run("clicked in the channel", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		old := r.startQR(qrRequest(inst1, "", "U1"))
		r.clock.Add(time.Minute)
		p, err := r.svc.Renew(context.Background(), qrClick(old.ID, "U1", r.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		if p.ClickURL != qrClickURL || !p.ClickIssued.Equal(r.clock.Now()) || p.ClickTS != qrClickTS || p.ResponseURL != "" || !p.URLIssued.IsZero() {
			t.Errorf("renewal's editors: click %q %s %q, command %q %s; want the click's only",
				p.ClickURL, p.ClickIssued, p.ClickTS, p.ResponseURL, p.URLIssued)
		}
		if p.MessageID() != old.MessageID() || p.Method != pairing.MethodQR || p.Link != testLink {
			t.Errorf("renewal = %+v; want a live link in the old message", p)
		}
	})
	t.Run("clicked in the DM", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		req := qrRequest(inst1, digits, "U1")
		req.Delivery, req.Card = pairing.DeliveryDM, pairing.Surface{Channel: "C1"}
		old := r.startQR(req)
		dm := pairing.Surface{Channel: "D1", TS: "1700000000.000100", LastView: "live:0", Recipient: "U1"}
		if _, err := r.svc.RecordDM(t.Context(), old.ID, dm, false); err != nil {
			t.Fatal(err)
		}
		card := pairing.Surface{Channel: "C1", TS: "1700000000.000200", LastView: "card:live"}
		if _, err := r.svc.RecordCard(t.Context(), old.ID, card); err != nil {
			t.Fatal(err)
		}
		click := qrClick(old.ID, "U1", t0)
		click.ResponseURL, click.ClickTS = "", "" // the DM is edited with chat.update
		p, err := r.svc.Renew(context.Background(), click)
		if err != nil {
			t.Fatal(err)
		}
		wantDM := dm
		wantDM.LastView = "" // the message shows nothing of the new link yet
		if p.Delivery != pairing.DeliveryDM || p.DM != wantDM || p.Card != card || p.ClickURL != "" || p.ResponseURL != "" {
			t.Errorf("renewal: delivery %q, DM %+v, card %+v, click %q, command %q; want the old DM message and card, no response_url",
				p.Delivery, p.DM, p.Card, p.ClickURL, p.ResponseURL)
		}
	})
	t.Run("by the person it was handed to", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		req := qrRequest(inst1, digits, "U1")
		req.Delivery, req.DM = pairing.DeliveryDM, pairing.Surface{Recipient: "U2"}
		old := r.startQR(req)
		p, err := r.svc.Renew(context.Background(), qrClick(old.ID, "U2", t0))
		if err != nil {
			t.Fatalf("New link by the recipient: %v", err)
		}
		if p.RequestedBy != "U1" || p.HandedTo() != "U2" {
			t.Errorf("renewal requested by %q, handed to %q; want U1's, handed to U2", p.RequestedBy, p.HandedTo())
		}
		if _, err := r.svc.Renew(context.Background(), qrClick(p.ID, "U3", t0)); !errors.Is(err, pairing.ErrNotYours) {
			t.Errorf("New link by a stranger: %v, want ErrNotYours", err)
		}
	})
	t.Run("a new link that never reached Wawp gives the message back", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		old := r.startQR(qrRequest(inst1, "", "U1"))
		r.qr.createErr = apiError("POST /v2/session/temp-link", pairing.ErrUnreachable, false)
		r.clock.Add(time.Minute)
		if _, err := r.svc.Renew(context.Background(), qrClick(old.ID, "U1", r.clock.Now())); err == nil {
			t.Fatal("no error")
		}
		got := r.stored(old.ID)
		if got.State != pairing.StateLive || got.Link != testLink {
			t.Fatalf("old link: %s (link %q), want live, its link kept", got.State, got.Link)
		}
		// The click's url replaced the clicked message, which shows the
		// old link again: it is that message's editor now; the command's
		// url is left as it was.
		if got.ClickURL != qrClickURL || got.ResponseURL != old.ResponseURL || !got.URLIssued.Equal(old.URLIssued) {
			t.Errorf("old link's editors: click %q, command %q %s; want the click's, the command's unchanged", got.ClickURL, got.ResponseURL, got.URLIssued)
		}
	})
}

// TestQRInsteadSurfaces: "Link by QR instead" clicked on a code's message
// shows the link through the click's url and takes over the code's DM
// message (showing nothing of the link yet) and its card.
func TestQRInsteadSurfaces(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	req := request(inst1, digits, "U1")
	req.Delivery, req.Card = pairing.DeliveryDM, pairing.Surface{Channel: "C1"}
	code := r.start(req)
	dm := pairing.Surface{Channel: "D1", TS: "1700000000.000100", LastView: "live:0", Recipient: "U1"}
	if _, err := r.svc.RecordDM(t.Context(), code.ID, dm, false); err != nil {
		t.Fatal(err)
	}
	card := pairing.Surface{Channel: "C1", TS: "1700000000.000200", LastView: "card:live"}
	if _, err := r.svc.RecordCard(t.Context(), code.ID, card); err != nil {
		t.Fatal(err)
	}
	qrReq := pairing.QRRequest{
		Instance: inst1, User: "U1", Team: "T1", Channel: "C1",
		ClickURL: qrClickURL, ClickIssued: t0, ClickTS: qrClickTS, Replaces: code.ID,
	}
	p := r.startQR(qrReq)
	wantDM := dm
	wantDM.LastView = ""
	if diff := cmp.Diff(wantDM, p.DM); diff != "" {
		t.Errorf("the link's DM (-want +got):\n%s", diff)
	}
	if p.Delivery != pairing.DeliveryDM || p.Card != card || p.ClickURL != qrClickURL || p.ClickTS != qrClickTS || p.ResponseURL != "" || p.MessageID() != code.MessageID() {
		t.Errorf("QR pairing %+v: want the code's DM, card and message, edited through the click's url", p)
	}
}

// TestStartQRDeliveryDM: a QR link asked for with a command under
// delivery dm goes to the requester's DM, and the command's url is the
// channel's (posts add messages).
func TestStartQRDeliveryDM(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	req := qrRequest(inst1, "", "U1")
	req.Delivery = pairing.DeliveryDM
	p := r.startQR(req)
	if p.DM != (pairing.Surface{Recipient: "U1"}) || !p.InDM() || p.HandedTo() != "" {
		t.Errorf("DM %+v: want the requester's, not posted yet", p.DM)
	}
	if p.ResponseURL != req.ResponseURL || p.ClickURL != "" {
		t.Errorf("editors: command %q, click %q; want the command's only", p.ResponseURL, p.ClickURL)
	}
}

// TestCancelQRSurfaces: Cancel of a QR link revokes the link first,
// whoever may use the pairing clicks it and wherever: the click's url
// becomes the editor of the clicked message (the command's is kept); the
// channel's copy of a code's message that a QR link took over cancels the
// link; a stranger changes nothing.
func TestCancelQRSurfaces(t *testing.T) {
	const revoke = "templink revoke INST00000001"
	click := pairing.Click{ResponseURL: qrClickURL, Issued: t0.Add(time.Minute), TS: qrClickTS}
	t.Run("clicked in the channel", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		p := r.startQR(qrRequest(inst1, "", "U1"))
		r.wawp.takeCalls()
		got, err := r.svc.Cancel(context.Background(), p.ID, "U1", click)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{revoke}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got):\n%s", diff)
		}
		if got.State != pairing.StateCancelled || got.ClickURL != click.ResponseURL || !got.ClickIssued.Equal(click.Issued) || got.ClickTS != click.TS || got.ResponseURL != p.ResponseURL {
			t.Errorf("cancelled: %s, click %q %s %q, command %q; want cancelled, the click's url its editor, the command's kept",
				got.State, got.ClickURL, got.ClickIssued, got.ClickTS, got.ResponseURL)
		}
	})
	t.Run("clicked in the DM by the person it was handed to", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		req := qrRequest(inst1, digits, "U1")
		req.Delivery, req.DM = pairing.DeliveryDM, pairing.Surface{Recipient: "U2"}
		p := r.startQR(req)
		r.wawp.takeCalls()
		got, err := r.svc.Cancel(context.Background(), p.ID, "U2", pairing.Click{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{revoke}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got):\n%s", diff)
		}
		if got.State != pairing.StateCancelled || got.ClickURL != "" || got.RevokeDue {
			t.Errorf("cancelled: %s, click %q, revoke due %v; want cancelled, no editor, revoked", got.State, got.ClickURL, got.RevokeDue)
		}
		if ev := r.events(); ev[len(ev)-1].Kind != pairing.EventQRRevoked || ev[len(ev)-1].Recipient != "U2" {
			t.Errorf("last event %+v, want qr_revoked naming the recipient", ev[len(ev)-1])
		}
	})
	t.Run("the code's message a link took over", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		code := r.start(request(inst1, digits, "U1"))
		qrReq := pairing.QRRequest{Instance: inst1, User: "U1", Team: "T1", Channel: "C1", ClickURL: qrClickURL, ClickIssued: t0, ClickTS: qrClickTS, Replaces: code.ID}
		qr := r.startQR(qrReq)
		r.wawp.takeCalls()
		// Cancel on the code message as first posted through the command's
		// url, above the message the link replaced.
		got, err := r.svc.Cancel(context.Background(), code.ID, "U1", pairing.Click{ResponseURL: "https://hooks.slack.test/actions/older", Issued: t0, TS: "1700000000.000001"})
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != qr.ID || got.State != pairing.StateCancelled {
			t.Errorf("Cancel returned %s (%s), want the QR pairing cancelled", got.ID, got.State)
		}
		if diff := cmp.Diff([]string{revoke}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got), the link revoked at once:\n%s", diff)
		}
		if s := r.stored(qr.ID); s.RevokeDue || s.Link != "" {
			t.Errorf("QR pairing after Cancel: revoke due %v, link %q; want revoked, wiped", s.RevokeDue, s.Link)
		}
		ev := kinds(r.events())
		if !slices.Contains(ev, "qr_revoked") || ev[len(ev)-2] != "cancelled" {
			t.Errorf("audited %v, want it to end cancelled, then qr_revoked", ev)
		}
	})
	t.Run("a stranger", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		p := r.startQR(qrRequest(inst1, "", "U1"))
		r.wawp.takeCalls()
		if _, err := r.svc.Cancel(context.Background(), p.ID, "U3", click); !errors.Is(err, pairing.ErrNotYours) {
			t.Errorf("Cancel by a stranger: %v, want ErrNotYours", err)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp calls %v, want none", calls)
		}
		if diff := cmp.Diff(p, r.stored(p.ID)); diff != "" {
			t.Errorf("pairing changed (-want +got):\n%s", diff)
		}
	})
}

// TestQRRecordDMKeepsWatching: a DM that shows an ended QR pairing's last
// view and asks to stop watching it leaves it watched while its link is
// still to be revoked, as RecordView and FinishView do.
func TestQRRecordDMKeepsWatching(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	req := qrRequest(inst1, "", "U1")
	req.Delivery = pairing.DeliveryDM
	p := r.startQR(req)
	r.qr.failRevokes(apiError("DELETE /v2/session/temp-link", pairing.ErrTimeout, true), nil)
	if _, err := r.svc.Cancel(context.Background(), p.ID, "U1", pairing.Click{}); err != nil {
		t.Fatal(err)
	}
	dm := pairing.Surface{Channel: "D1", TS: "1700000000.000100", LastView: "cancelled", Recipient: "U1"}
	if _, err := r.svc.RecordDM(t.Context(), p.ID, dm, true); err != nil {
		t.Fatal(err)
	}
	if !r.watched(p.ID) || r.stored(p.ID).DM != dm {
		t.Fatalf("after RecordDM: watched %v, DM %+v; want watched, the DM recorded", r.watched(p.ID), r.stored(p.ID).DM)
	}
	r.clock.Add(time.Minute)
	r.advance()
	if r.watched(p.ID) || r.stored(p.ID).RevokeDue {
		t.Errorf("after the revocation: watched %v, due %v; want neither", r.watched(p.ID), r.stored(p.ID).RevokeDue)
	}
}
