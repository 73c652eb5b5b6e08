package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

// The QR fallback (issue 10): a QR link is a pairing with Method MethodQR,
// counted in its instance's QR window instead of its phone's, holding its
// instance like a code, its link a credential wiped like the code.

var qrCases = []testCase{
	{"QR links are counted per instance, never against the phone", testQRWindow},
	{"an uncounted QR link leaves the window", testQRUncounted},
	{"the link is a credential: never handed out, wiped when the pairing ends", testQRLinkWiped},
	{"a QR link holds its instance like a code", testQRHoldsInstance},
	{"50 concurrent QR requests for one instance", testConcurrentQR},
}

// qrLimit is the QR window the suite reserves QR links under.
var qrLimit = pairing.Window{Max: 3, Period: time.Hour}

// linkLifetime is how long a settled QR link stays live (Wawp's 30
// minutes).
const linkLifetime = 30 * time.Minute

// testLink is the link every settled QR pairing gets: a credential.
const testLink = "https://app.wawp.net/temp-qr/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// qrReservation asks for a QR link for instance by user at now, expected
// to be scanned by phone ("" for any), under the suite's QR window.
func qrReservation(id, instance, phone, user string, now time.Time) pairing.Reservation {
	r := reservation(id, instance, phone+"0000", user, now) // events need four digits to mask
	r.Pairing.Phone, r.Pairing.Method = phone, pairing.MethodQR
	r.PhoneLimit = qrLimit
	r.Granted.Kind, r.Granted.Digits = "qr_requested", phone
	r.Refused.Digits = phone
	if phone == "" {
		r.Granted.Phone, r.Refused.Phone = "", ""
	}
	return r
}

// toLink is the settlement change of a QR request whose link arrived at now.
func toLink(now time.Time) func(*pairing.Pairing) error {
	return func(p *pairing.Pairing) error {
		if p.State != pairing.StateRequesting {
			return errEnded
		}
		p.State, p.Link, p.IssuedAt, p.ExpiresAt = pairing.StateLive, testLink, now, now.Add(linkLifetime)
		return nil
	}
}

// liveQR reserves r and settles it with a live link.
func liveQR(t *testing.T, s pairing.Storage, r pairing.Reservation) pairing.Pairing {
	t.Helper()
	reserve(t, s, r)
	p, err := s.Settle(t.Context(), pairing.Settlement{ID: r.Pairing.ID, Now: r.Now, Counted: true, Change: toLink(r.Now)})
	if err != nil {
		t.Fatalf("Settle(%s → live link): %v", r.Pairing.ID, err)
	}
	return p
}

// qrCount is how many QR links instance has in its window at now.
func qrCount(t *testing.T, s pairing.Storage, instance string, now time.Time) (time.Time, int) {
	t.Helper()
	at, n, err := s.NextAllowed(t.Context(), pairing.QRKey(instance), now, qrLimit)
	if err != nil {
		t.Fatalf("NextAllowed(%s): %v", pairing.QRKey(instance), err)
	}
	return at, n
}

// testQRWindow: exactly Max QR links per instance in any window of
// Period, numbered in Attempt; the refusal is LimitQR, says when and how
// many, is stored and audited as limit_qr; QR links never count against a
// phone's window (a link is no request for a code) nor codes against the
// QR window, and other instances are not affected. They count in the
// user's window.
func testQRWindow(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	p := phone(1)
	for i := range 3 {
		now := t0.Add(time.Duration(i) * time.Minute)
		r := qrReservation(fmt.Sprint("q", i), "I1", p, "U1", now)
		d, err := s.Reserve(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		want := pairing.Decision{Count: i + 1, Pairing: requesting(r, i+1)}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("QR link %d (-want +got):\n%s", i+1, diff)
		}
		if got := mustPairing(t, s, r.Pairing.ID); got.Method != pairing.MethodQR || got.AttemptKey() != pairing.QRKey("I1") {
			t.Errorf("QR link %d stored as method %q", i+1, got.Method)
		}
		settle(t, s, r.Pairing.ID, now, pairing.StateFailed, true) // frees the instance, keeps counting
	}
	if n := count(t, s, p, t0.Add(3*time.Minute)); n != 0 {
		t.Errorf("the phone counts %d requests after 3 QR links, want 0", n)
	}
	if at, n := qrCount(t, s, "I1", t0.Add(3*time.Minute)); n != 3 || !at.Equal(t0.Add(time.Hour)) {
		t.Errorf("NextAllowed(qr:I1) = %s, %d; want 15:00, 3", at.Format(time.TimeOnly), n)
	}
	// A code for the same phone on the same instance is its own window.
	code := reservation("code", "I1", p, "U2", t0.Add(3*time.Minute))
	if d, err := s.Reserve(t.Context(), code); err != nil || d.Refused != pairing.LimitNone || d.Count != 1 {
		t.Errorf("a code after 3 QR links: %+v, %v; want granted as the phone's 1st", d, err)
	}
	settle(t, s, "code", t0.Add(3*time.Minute), pairing.StateFailed, true)
	if _, n := qrCount(t, s, "I1", t0.Add(3*time.Minute)); n != 3 {
		t.Errorf("a code counted in the QR window: %d, want 3", n)
	}

	r := qrReservation("refused", "I1", "", "U3", t0.Add(5*time.Minute))
	d, err := s.Reserve(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	want := pairing.Decision{Refused: pairing.LimitQR, RetryAt: t0.Add(time.Hour), Count: 3}
	want.Pairing = want.RefusedPairing(r.Pairing, r.Now)
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("4th QR link (-want +got):\n%s", diff)
	}
	if got := mustPairing(t, s, "refused"); got.RefusedBy() != pairing.LimitQR {
		t.Errorf("the refused QR request is stored refused by %q, want the QR limit", got.RefusedBy())
	}
	if ev := events(t, s); ev[len(ev)-1].Outcome != pairing.OutcomeLimitQR {
		t.Errorf("the refusal is audited as %q, want %q", ev[len(ev)-1].Outcome, pairing.OutcomeLimitQR)
	}
	if d, err := s.Reserve(t.Context(), qrReservation("other", "I2", "", "U3", t0.Add(5*time.Minute))); err != nil || d.Refused != pairing.LimitNone || d.Count != 1 {
		t.Errorf("a QR link on another instance: %+v, %v; want granted as its 1st", d, err)
	}
	// The window slides: at 15:00 the link of 14:00 has left it.
	if d, err := s.Reserve(t.Context(), qrReservation("q3", "I1", "", "U3", t0.Add(time.Hour))); err != nil || d.Refused != pairing.LimitNone || d.Count != 3 {
		t.Errorf("at 15:00: %+v, %v; want granted as the 3rd in the window", d, err)
	}
	// QR links count in their user's window.
	if _, n, err := s.NextAllowed(t.Context(), "U1", t0.Add(3*time.Minute), userLimit); err != nil || n != 0 {
		t.Fatalf("NextAllowed(U1) as a phone = %d, %v", n, err) // users are not phones: a sanity check
	}
	s2 := open(t).Storage
	for i := range userLimit.Max {
		r := qrReservation(fmt.Sprint("u", i), fmt.Sprint("J", i), "", "U9", t0)
		reserve(t, s2, r)
	}
	if d, err := s2.Reserve(t.Context(), reservation("u-code", "J9", phone(9), "U9", t0)); err != nil || d.Refused != pairing.LimitUser {
		t.Errorf("a code after %d QR links by one user: %+v, %v; want refused by the user limit", userLimit.Max, d, err)
	}
}

// testQRUncounted: a QR request settled as not counted (the link was
// certainly never made) leaves the instance's QR window and the user's.
func testQRUncounted(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	for i := range 3 {
		reserve(t, s, qrReservation(fmt.Sprint("q", i), "I1", "", "U1", t0.Add(time.Duration(i)*time.Second)))
		settle(t, s, fmt.Sprint("q", i), t0.Add(time.Duration(i)*time.Second), pairing.StateFailed, false)
	}
	if _, n := qrCount(t, s, "I1", t0.Add(time.Minute)); n != 0 {
		t.Errorf("the QR window counts %d uncounted links, want 0", n)
	}
	if d, err := s.Reserve(t.Context(), qrReservation("q3", "I1", "", "U1", t0.Add(time.Minute))); err != nil || d.Refused != pairing.LimitNone || d.Count != 1 {
		t.Errorf("after 3 uncounted links: %+v, %v; want granted as the 1st", d, err)
	}
}

// testQRLinkWiped: a live QR pairing keeps its link (its requester's
// message is drawn from it); Holder and an instance refusal never hand it
// out; every way a pairing ends (UpdatePairing, Settle, running out)
// wipes it from what is returned and what is kept, and keeps what the
// change set beside it (the revocation still due).
func testQRLinkWiped(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := liveQR(t, s, qrReservation("a", "I1", phone(1), "U1", t0))
	if a.Link != testLink || mustPairing(t, s, "a").Link != testLink {
		t.Fatalf("live QR pairing: link %q (stored %q), want it kept while live", a.Link, mustPairing(t, s, "a").Link)
	}
	if h, err := s.Holder(t.Context(), "I1", t0.Add(time.Second)); err != nil || h.ID != "a" || h.Link != "" {
		t.Errorf("Holder = %q (link %q), %v; want a without its link", h.ID, h.Link, err)
	}
	d, err := s.Reserve(t.Context(), reservation("b", "I1", phone(2), "U2", t0.Add(time.Second)))
	if err != nil || d.Refused != pairing.LimitInstance || d.Holder.ID != "a" || d.Holder.Link != "" {
		t.Errorf("a code on the QR-held instance: %+v, %v; want refused, held by a, no link", d, err)
	}
	ended, err := s.UpdatePairing(t.Context(), "a", t0.Add(2*time.Second), func(p *pairing.Pairing) error {
		p.State, p.RevokeDue, p.RevokeTries = pairing.StateCancelled, true, 1
		return nil
	})
	if err != nil || ended.Link != "" || !ended.RevokeDue || ended.RevokeTries != 1 {
		t.Errorf("cancelled QR pairing = %+v, %v; want no link, revocation still due", ended, err)
	}
	if diff := cmp.Diff(ended, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("stored differs from returned (-returned +stored):\n%s", diff)
	}

	liveQR(t, s, qrReservation("c", "I2", "", "U1", t0))
	linked, err := s.Settle(t.Context(), pairing.Settlement{ID: "c", Now: t0.Add(time.Minute), Counted: true, Change: func(p *pairing.Pairing) error {
		p.State, p.LinkedPhone = pairing.StateLinked, phone(3)
		return nil
	}})
	if err != nil || linked.Link != "" || mustPairing(t, s, "c").Link != "" {
		t.Errorf("linked QR pairing keeps its link: %q (stored %q), %v", linked.Link, mustPairing(t, s, "c").Link, err)
	}

	e := liveQR(t, s, qrReservation("e", "I3", "", "U1", t0))
	expired, err := s.UpdatePairing(t.Context(), "e", e.ExpiresAt, func(p *pairing.Pairing) error { p.RevokeDue = true; return nil })
	if err != nil || expired.Link != "" || mustPairing(t, s, "e").Link != "" {
		t.Errorf("a QR pairing written after its link ran out keeps the link: %q, %v", expired.Link, err)
	}
	checkHolder(t, s, "I3", "", e.ExpiresAt)

	// A request interrupted before its link came.
	reserve(t, s, qrReservation("f", "I4", "", "U1", t0))
	if p, ok, err := s.Interrupt(t.Context(), pairing.Interruption{ID: "f", Now: t0.Add(hold), Lapsed: true}); err != nil || !ok || p.Link != "" || p.Method != pairing.MethodQR {
		t.Errorf("Interrupt = %+v, %v, %v; want ended, still a QR pairing", p, ok, err)
	}
}

// testQRHoldsInstance: one live pairing per instance, code or QR: a QR
// request is refused while a code holds the instance and the other way
// round; the holder's own request with Replaces passes (a "Link by QR
// instead" click on the code's message) and, counted, ends the code as
// superseded.
func testQRHoldsInstance(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("code", "I1", phone(1), "U1", t0))
	d, err := s.Reserve(t.Context(), qrReservation("q-other", "I1", "", "U2", t0.Add(time.Second)))
	if err != nil || d.Refused != pairing.LimitInstance || d.Holder.ID != "code" || d.Holder.Code != "" {
		t.Errorf("a QR link on a code-held instance: %+v, %v; want refused, held by the code (hidden)", d, err)
	}
	if _, n := qrCount(t, s, "I1", t0.Add(time.Second)); n != 0 {
		t.Errorf("a refused QR request counts: %d", n)
	}
	r := qrReservation("q", "I1", phone(1), "U1", t0.Add(2*time.Second))
	r.Replaces = "code"
	reserve(t, s, r)
	checkHolder(t, s, "I1", "q", t0.Add(3*time.Second))
	p, err := s.Settle(t.Context(), pairing.Settlement{ID: "q", Now: t0.Add(3 * time.Second), Counted: true, Change: toLink(t0.Add(3 * time.Second)), Replaced: "code"})
	if err != nil || p.State != pairing.StateLive {
		t.Fatalf("Settle(q) = %+v, %v", p, err)
	}
	if old := mustPairing(t, s, "code"); old.State != pairing.StateSuperseded || old.Code != "" {
		t.Errorf("the code the QR link replaced: %s, code %q; want superseded, wiped", old.State, old.Code)
	}
	d, err = s.Reserve(t.Context(), reservation("code2", "I1", phone(2), "U2", t0.Add(4*time.Second)))
	if err != nil || d.Refused != pairing.LimitInstance || d.Holder.ID != "q" || d.Holder.Link != "" {
		t.Errorf("a code on a QR-held instance: %+v, %v; want refused, held by q (no link)", d, err)
	}
	if h, err := s.Holder(t.Context(), "I1", p.ExpiresAt.Add(-time.Second)); err != nil || h.ID != "q" || h.Link != "" {
		t.Errorf("Holder a second before the link runs out = %q (link %q), %v", h.ID, h.Link, err)
	}
	if _, err := s.Holder(t.Context(), "I1", p.ExpiresAt); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("Holder once the link ran out: %v, want ErrNotFound", err)
	}
	checkHolder(t, s, "I1", "", p.ExpiresAt)
}

// testConcurrentQR: 50 QR requests for one instance at one instant: one
// holds it, every other is told who; with the window one short of full
// and the instance free, at most one more passes; with it full, all 50
// are refused by the QR limit alike.
func testConcurrentQR(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	granted, refused := race(t, s, 50, func(i int) pairing.Reservation {
		return qrReservation(fmt.Sprint("q", i), "I1", "", fmt.Sprint("U", i), t0)
	})
	if len(granted) != 1 {
		t.Fatalf("%d granted, want exactly 1", len(granted))
	}
	checkRefusals(t, refused, pairing.LimitInstance, t0.Add(hold), 0, granted)
	settle(t, s, granted[0].id, t0, pairing.StateFailed, true)
	reserve(t, s, qrReservation("second", "I1", "", "U1", t0.Add(time.Second)))
	settle(t, s, "second", t0.Add(time.Second), pairing.StateFailed, true)

	granted, _ = race(t, s, 50, func(i int) pairing.Reservation {
		return qrReservation(fmt.Sprint("r", i), "I1", "", fmt.Sprint("V", i), t0.Add(2*time.Second))
	})
	if len(granted) != 1 {
		t.Fatalf("window one short of full: %d granted, want exactly 1", len(granted))
	}
	settle(t, s, granted[0].id, t0.Add(2*time.Second), pairing.StateFailed, true)
	if _, n := qrCount(t, s, "I1", t0.Add(3*time.Second)); n != qrLimit.Max {
		t.Errorf("the QR window counts %d, want %d", n, qrLimit.Max)
	}
	granted, refused = race(t, s, 50, func(i int) pairing.Reservation {
		return qrReservation(fmt.Sprint("s", i), "I1", "", fmt.Sprint("W", i), t0.Add(3*time.Second))
	})
	if len(granted) != 0 || len(refused) != 50 {
		t.Fatalf("window full: %d granted, %d refused; want all refused", len(granted), len(refused))
	}
	checkRefusals(t, refused, pairing.LimitQR, t0.Add(qrLimit.Period), qrLimit.Max, nil)
}
