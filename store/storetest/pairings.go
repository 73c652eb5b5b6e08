package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var instanceCases = []testCase{
	{"a live code holds its instance", testInstanceHeld},
	{"an ended or expired code frees it", testInstanceFreed},
	{"Holder names who holds it, never the code", testHolder},
	{"ReservedPairing finds what Reserve stored, or ErrNotFound", testReservedPairing},
}

var leaseCases = []testCase{
	{"an unsettled request holds its instance only for its lease", testLeaseFreesInstance},
	{"interrupt", testInterrupt},
	{"interrupt and settle never both win", testInterruptOrSettle},
	{"a request whose lease ran out never goes live, whatever its clock says", testSettleAfterLeaseLost},
}

var renewalCases = []testCase{
	{"counted: the old code is superseded", testRenewalCounted},
	{"not counted: the old code goes on", testRenewalUncounted},
	{"not counted, clicked in the DM: the old message's editors stay", testRenewalUncountedFromDM},
	{"not counted, old code over: the renewal's view is the message's", testRenewalOldEnded},
	{"not counted, old code ran out unended: it ends as expired", testRenewalOldRanOut},
	{"not counted, someone else holds the instance: the old code ends as superseded", testRenewalOthersHold},
	{"a final state is never overwritten", testFinalNeverOverwritten},
	{"an interrupted renewal supersedes", testInterruptedRenewal},
	{"a failed change changes nothing", testSettleChangeError},
}

var updateCases = []testCase{
	{"not found", testNotFound},
	{"change", testUpdatePairing},
	{"surfaces are kept, across a restart and past the end", testSurfaces},
}

// testInstanceHeld: while a code is live, another request for its instance
// is refused by the instance limit, told who holds it and until when, but
// never the code; the holder's own renewal (Replaces) passes and holds the
// instance from then on; a Replaces naming anything else does not.
func testInstanceHeld(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	r := reservation("b", "I1", phone(2), "U2", t0.Add(10*time.Second))
	d, err := s.Reserve(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	holder := a
	holder.Code = ""
	want := pairing.Decision{Refused: pairing.LimitInstance, RetryAt: a.ExpiresAt, Holder: holder}
	want.Pairing = want.RefusedPairing(r.Pairing, r.Now)
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("request on a held instance (-want +got):\n%s", diff)
	}
	if got := mustPairing(t, s, "a"); got.Code != testCode {
		t.Errorf("the holder's stored code is %q, want %q: only the refusal hides it", got.Code, testCode)
	}
	checkHolder(t, s, "I2", "", t0.Add(10*time.Second))

	renewal := reservation("c", "I1", phone(1), "U1", t0.Add(20*time.Second))
	renewal.Replaces = "a"
	reserve(t, s, renewal)
	checkHolder(t, s, "I1", "c", t0.Add(21*time.Second))

	other := reservation("d", "I1", phone(2), "U2", t0.Add(22*time.Second))
	other.Replaces = "b" // not the holder
	if d, err := s.Reserve(t.Context(), other); err != nil || d.Refused != pairing.LimitInstance || d.Holder.ID != "c" {
		t.Errorf("renewing a pairing that does not hold the instance: %+v, %v; want refused, held by c", d, err)
	}
}

// testInstanceFreed: a pairing that ends, by UpdatePairing or Settle,
// loses its code (in what is returned and what is kept) and frees its
// instance at once; one that merely passes ExpiresAt frees it then.
func testInstanceFreed(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	now := t0.Add(10 * time.Second)
	p := endLive(t, s, "a", now, pairing.StateCancelled, false)
	if p.Code != "" || p.State != pairing.StateCancelled || !p.EndedAt.Equal(now) {
		t.Errorf("cancelled pairing = %+v; want no code, ended at %s", p, now.Format(time.TimeOnly))
	}
	if diff := cmp.Diff(p, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("stored differs from returned (-returned +stored):\n%s", diff)
	}
	checkHolder(t, s, "I1", "", now)

	live(t, s, reservation("b", "I2", phone(2), "U2", t0))
	p, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: now, Counted: true, Change: func(p *pairing.Pairing) error {
		p.State, p.LinkedPhone = pairing.StateLinked, phone(2)
		return nil
	}})
	if err != nil || p.Code != "" || !p.EndedAt.Equal(now) {
		t.Errorf("linked pairing = %+v, %v; want no code, ended at %s", p, err, now.Format(time.TimeOnly))
	}
	if got := mustPairing(t, s, "b"); got.Code != "" {
		t.Errorf("stored linked pairing keeps its code %q", got.Code)
	}
	checkHolder(t, s, "I2", "", now)

	c := live(t, s, reservation("c", "I3", phone(3), "U3", t0))
	checkHolder(t, s, "I3", "c", c.ExpiresAt.Add(-time.Nanosecond))
	checkHolder(t, s, "I3", "", c.ExpiresAt)
}

// testHolder: Holder names the pairing that holds an instance at now —
// a request within its lease, a live code before its expiry, a renewal
// from its reservation, an old code an uncounted renewal gave its
// instance back to — as stored but without its code; ErrNotFound when no
// pairing holds it (none ever did, it ended, its time ran out).
func testHolder(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	noHolder := func(instance string, now time.Time, what string) {
		t.Helper()
		if p, err := s.Holder(t.Context(), instance, now); !errors.Is(err, pairing.ErrNotFound) {
			t.Errorf("%s: Holder(%s) = %q, %v; want ErrNotFound", what, instance, p.ID, err)
		}
	}
	holderIs := func(instance string, now time.Time, id, what string) {
		t.Helper()
		p, err := s.Holder(t.Context(), instance, now)
		if err != nil {
			t.Fatalf("%s: Holder(%s): %v", what, instance, err)
		}
		want := mustPairing(t, s, id)
		want.Code = ""
		if diff := cmp.Diff(want, p); diff != "" {
			t.Errorf("%s: Holder(%s) (-want +got):\n%s", what, instance, diff)
		}
	}
	noHolder("I1", t0, "never used")
	reserve(t, s, reservation("a", "I1", phone(1), "U1", t0))
	holderIs("I1", t0.Add(hold-time.Nanosecond), "a", "requesting, within its lease")
	noHolder("I1", t0.Add(hold), "requesting, lease run out")
	settle(t, s, "a", t0.Add(time.Second), pairing.StateLive, true)
	holderIs("I1", t0.Add(time.Minute), "a", "live") // a's code is in the store, not in Holder's answer
	noHolder("I2", t0.Add(time.Minute), "another instance")

	renewal(t, s, "b", "a", t0.Add(time.Minute))
	holderIs("I1", t0.Add(time.Minute), "b", "a renewal, from its reservation")
	at := t0.Add(time.Minute + time.Second)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Change: toState(pairing.StateFailed, at), Replaced: "a", ReplacedURL: clickURL}); err != nil {
		t.Fatal(err)
	}
	holderIs("I1", at, "a", "the old code, back after an uncounted renewal")
	noHolder("I1", mustPairing(t, s, "a").ExpiresAt, "the code at its expiry")
	endLive(t, s, "a", at, pairing.StateCancelled, false)
	noHolder("I1", at, "cancelled")
}

// testLeaseFreesInstance: a request reserved with Hold holds its instance
// until Now+Hold and not a moment longer, settled or not (a crash
// mid-request must not lock an instance forever).
func testLeaseFreesInstance(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := reserve(t, s, reservation("a", "I1", phone(1), "U1", t0))
	if !a.ExpiresAt.Equal(t0.Add(hold)) {
		t.Errorf("lease ends at %s, want %s", a.ExpiresAt, t0.Add(hold))
	}
	checkHolder(t, s, "I1", "a", t0.Add(hold-time.Nanosecond))
	checkHolder(t, s, "I1", "", t0.Add(hold))
	// A new request takes the instance; the old one is still requesting,
	// until interrupted.
	reserve(t, s, reservation("b", "I1", phone(2), "U2", t0.Add(hold)))
	checkHolder(t, s, "I1", "b", t0.Add(hold+time.Second))
	if p := mustPairing(t, s, "a"); p.State != pairing.StateRequesting {
		t.Errorf("a = %s, want still requesting", p.State)
	}
}

// testInterrupt: Interrupt with Lapsed ends a request only once its lease
// ran out, without at once; the interrupted request counts, frees its
// instance, is audited once and stays watched; a settled request, or one
// already interrupted, is left alone, and cannot settle afterwards.
func testInterrupt(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := reserve(t, s, reservation("a", "I1", phone(1), "U1", t0))
	interruption := func(id string, now time.Time, lapsed bool) pairing.Interruption {
		return pairing.Interruption{ID: id, Now: now, Lapsed: lapsed, Audit: event(now, pairing.EventInterrupted, a, "")}
	}
	p, ended, err := s.Interrupt(t.Context(), interruption("a", t0.Add(hold-time.Nanosecond), true))
	if err != nil || ended || p.State != pairing.StateRequesting {
		t.Errorf("within the lease: %s ended=%v %v; want it untouched", p.State, ended, err)
	}
	at := t0.Add(hold)
	p, ended, err = s.Interrupt(t.Context(), interruption("a", at, true))
	if err != nil || !ended || p.State != pairing.StateInterrupted || !p.EndedAt.Equal(at) {
		t.Fatalf("lease run out: %+v ended=%v %v; want interrupted at %s", p, ended, err, at.Format(time.TimeOnly))
	}
	if diff := cmp.Diff(p, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("stored differs from returned (-returned +stored):\n%s", diff)
	}
	if n := count(t, s, phone(1), at); n != 1 {
		t.Errorf("the interrupted request counts %d, want 1: request-code may have reached WhatsApp", n)
	}
	checkHolder(t, s, "I1", "", at)
	checkWatched(t, s, "a")
	if p, ended, err := s.Interrupt(t.Context(), interruption("a", at.Add(time.Second), false)); err != nil || ended || p.State != pairing.StateInterrupted {
		t.Errorf("interrupting again: %s ended=%v %v; want nothing done", p.State, ended, err)
	}
	_, err = s.Settle(t.Context(), pairing.Settlement{ID: "a", Now: at.Add(time.Second), Counted: true, Change: toState(pairing.StateLive, at),
		Audit: event(at, pairing.EventCodeIssued, a, "")})
	if !errors.Is(err, errEnded) {
		t.Errorf("settling an interrupted request: %v, want the change's error", err)
	}
	if p := mustPairing(t, s, "a"); p.State != pairing.StateInterrupted || p.Code != "" {
		t.Errorf("after a late settlement: %+v, want still interrupted without a code", p)
	}
	if diff := cmp.Diff([]string{"a:requested", "a:interrupted"}, kinds(events(t, s))); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}

	// Without Lapsed, at once.
	reserve(t, s, reservation("b", "I2", phone(2), "U2", t0.Add(time.Minute)))
	if p, ended, err := s.Interrupt(t.Context(), interruption("b", t0.Add(time.Minute+time.Second), false)); err != nil || !ended || p.State != pairing.StateInterrupted {
		t.Errorf("shutdown interruption: %s ended=%v %v; want interrupted at once", p.State, ended, err)
	}
	// A settled request is never interrupted.
	live(t, s, reservation("c", "I3", phone(3), "U3", t0.Add(time.Minute)))
	if p, ended, err := s.Interrupt(t.Context(), interruption("c", t0.Add(2*time.Minute), false)); err != nil || ended || p.State != pairing.StateLive || p.Code != testCode {
		t.Errorf("interrupting a live code: %+v ended=%v %v; want it untouched", p, ended, err)
	}
}

// testInterruptOrSettle: a shutdown interrupting requests while their
// answers are being stored: for each request exactly one wins, and the
// record and the audit log agree on which.
func testInterruptOrSettle(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	const n = 25
	var ps []pairing.Pairing
	for i := range n {
		ps = append(ps, reserve(t, s, reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), phone(i), fmt.Sprint("U", i), t0)))
	}
	now := t0.Add(time.Second)
	var (
		mu      sync.Mutex
		ended   = map[string]bool{}
		settled = map[string]bool{}
	)
	parallel(2*n, func(i int) {
		p := ps[i/2]
		if i%2 == 0 {
			_, ok, err := s.Interrupt(t.Context(), pairing.Interruption{ID: p.ID, Now: now, Audit: event(now, pairing.EventInterrupted, p, "")})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			ended[p.ID] = ok
			mu.Unlock()
			return
		}
		_, err := s.Settle(t.Context(), pairing.Settlement{ID: p.ID, Now: now, Counted: true, Change: toState(pairing.StateLive, now),
			Audit: event(now, pairing.EventCodeIssued, p, "")})
		if err != nil && !errors.Is(err, errEnded) {
			t.Error(err)
		}
		mu.Lock()
		settled[p.ID] = err == nil
		mu.Unlock()
	})
	byPairing := map[string][]string{}
	for _, e := range events(t, s) {
		if e.Kind != pairing.EventRequested {
			byPairing[e.Pairing] = append(byPairing[e.Pairing], string(e.Kind))
		}
	}
	for _, p := range ps {
		stored := mustPairing(t, s, p.ID)
		switch {
		case ended[p.ID] == settled[p.ID]:
			t.Errorf("%s: interrupted=%v, settled=%v; want exactly one", p.ID, ended[p.ID], settled[p.ID])
		case ended[p.ID] && (stored.State != pairing.StateInterrupted || !cmp.Equal([]string{"interrupted"}, byPairing[p.ID])):
			t.Errorf("%s interrupted, but stored %s, audited %v", p.ID, stored.State, byPairing[p.ID])
		case settled[p.ID] && (stored.State != pairing.StateLive || !cmp.Equal([]string{"code_issued"}, byPairing[p.ID])):
			t.Errorf("%s settled, but stored %s, audited %v", p.ID, stored.State, byPairing[p.ID])
		}
	}
}

// renewal reserves a "New code" for old (live, on I1 for phone(1) by U1)
// at now, shown in old's message.
func renewal(t *testing.T, s pairing.Storage, id, old string, now time.Time) pairing.Pairing {
	t.Helper()
	r := reservation(id, "I1", phone(1), "U1", now)
	r.Replaces, r.Pairing.Renews, r.Pairing.Message = old, old, old
	return reserve(t, s, r)
}

// clickURL is the response_url of the click that asked for a renewal.
const clickURL = "https://hooks.slack.test/actions/click"

// replacedAudit is the audit record of old (on I1 for phone(1) by U1) that
// a renewal's Settlement or Interruption carries, Kind and Time left to
// the storage, as the service writes it.
func replacedAudit(old string) pairing.Event {
	p := reservation(old, "I1", phone(1), "U1", t0).Pairing
	return event(time.Time{}, "", p, "")
}

// checkEndAudit fails unless the audit log holds, for pairing id, exactly
// the event of its end as kind at at (replacedAudit(id) completed, without
// digits, as Audit returns events), or none when kind is empty. Events of
// other kinds (requested, …) are not looked at.
func checkEndAudit(t *testing.T, s pairing.Storage, id string, kind pairing.EventKind, at time.Time) {
	t.Helper()
	var got []pairing.Event
	for _, e := range events(t, s) {
		if e.Pairing == id && (e.Kind == pairing.EventSuperseded || e.Kind == pairing.EventExpired) {
			got = append(got, e)
		}
	}
	var want []pairing.Event
	if kind != "" {
		e := replacedAudit(id)
		e.Kind, e.Time, e.Digits = kind, at, ""
		want = append(want, e)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("end of %s in the audit log (-want +got):\n%s", id, diff)
	}
}

// testRenewalCounted: a renewal WhatsApp saw voids the code it replaced:
// the old pairing ends as superseded, without its code, and is no longer
// watched (the renewal is shown in its message); the renewal holds the
// instance.
func testRenewalCounted(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	if b := renewal(t, s, "b", "a", t0.Add(10*time.Second)); b.Attempt != 2 {
		t.Errorf("renewal is attempt %d, want 2", b.Attempt)
	}
	checkWatched(t, s, "a", "b")
	at := t0.Add(12 * time.Second)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Counted: true, Change: toState(pairing.StateLive, at), Replaced: "a", ReplacedURL: clickURL,
		ReplacedAudit: replacedAudit("a")}); err != nil {
		t.Fatal(err)
	}
	if a := mustPairing(t, s, "a"); a.State != pairing.StateSuperseded || a.Code != "" || !a.EndedAt.Equal(at) {
		t.Errorf("replaced pairing = %+v; want superseded at %s without its code", a, at.Format(time.TimeOnly))
	}
	checkEndAudit(t, s, "a", pairing.EventSuperseded, at)
	if b := mustPairing(t, s, "b"); b.State != pairing.StateLive || b.Code != testCode {
		t.Errorf("renewal = %+v; want live with its code", b)
	}
	checkWatched(t, s, "b")
	checkHolder(t, s, "I1", "b", at)
	if n := count(t, s, phone(1), at); n != 2 {
		t.Errorf("phone counts %d requests, want 2", n)
	}
}

// testRenewalUncounted: a renewal that never reached WhatsApp leaves the
// old code working: the old pairing keeps its code and takes its instance
// back, its ephemeral message goes on through the click's response_url
// (its ClickURL, which replaces the clicked message), and it is the one
// watched; the renewal no longer counts.
func testRenewalUncounted(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	renewal(t, s, "b", "a", t0.Add(10*time.Second))
	at := t0.Add(12 * time.Second)
	b, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Change: toState(pairing.StateFailed, at), Replaced: "a", ReplacedURL: clickURL,
		ReplacedAudit: replacedAudit("a")})
	if err != nil || b.State != pairing.StateFailed {
		t.Fatalf("settling the renewal: %+v, %v", b, err)
	}
	checkEndAudit(t, s, "a", "", at)
	want := a
	want.ClickURL, want.ClickIssued = clickURL, at
	if diff := cmp.Diff(want, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("the replaced pairing (-want +got):\n%s", diff)
	}
	checkWatched(t, s, "a")
	checkHolder(t, s, "I1", "a", at)
	checkHolder(t, s, "I1", "", a.ExpiresAt)
	if n := count(t, s, phone(1), at); n != 1 {
		t.Errorf("phone counts %d requests, want 1", n)
	}
}

// testRenewalUncountedFromDM: a renewal clicked in the DM (no
// response_url: ReplacedURL is empty) that never reached WhatsApp leaves
// the old code working, and its ephemeral message's editors as they were:
// the command's response_url and the click's that replaced it before, with
// their times.
func testRenewalUncountedFromDM(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	r := reservation("a", "I1", phone(1), "U1", t0)
	r.Pairing.ClickURL, r.Pairing.ClickIssued, r.Pairing.ClickTS = clickURL+"-earlier", t0.Add(time.Second), "1700000000.000100"
	r.Pairing.Delivery = pairing.DeliveryDM
	r.Pairing.DM = pairing.Surface{Channel: "D1", TS: "1700000000.000200", LastView: "dm:live:0", Recipient: "U1"}
	a := live(t, s, r)
	renewal(t, s, "b", "a", t0.Add(10*time.Second))
	at := t0.Add(12 * time.Second)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Change: toState(pairing.StateFailed, at), Replaced: "a",
		ReplacedAudit: replacedAudit("a")}); err != nil {
		t.Fatalf("settling the renewal: %v", err)
	}
	if diff := cmp.Diff(a, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("the replaced pairing (-want +got):\n%s", diff)
	}
	checkWatched(t, s, "a")
	checkHolder(t, s, "I1", "a", at)
}

// testRenewalOldEnded: a renewal that never reached WhatsApp, of a code
// that is over anyway: nothing gives the old pairing back its instance,
// and only the renewal is watched (its view is the message's now).
func testRenewalOldEnded(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	expired := endLive(t, s, "a", a.ExpiresAt, pairing.StateExpired, false)
	at := a.ExpiresAt.Add(10 * time.Second)
	renewal(t, s, "b", "a", at)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Change: toState(pairing.StateFailed, at), Replaced: "a", ReplacedURL: clickURL,
		ReplacedAudit: replacedAudit("a")}); err != nil {
		t.Fatal(err)
	}
	if got := mustPairing(t, s, "a"); got.State != expired.State || !got.EndedAt.Equal(expired.EndedAt) {
		t.Errorf("the replaced pairing = %s ended %s; want %s ended %s, as it was", got.State, got.EndedAt, expired.State, expired.EndedAt)
	}
	checkEndAudit(t, s, "a", "", at) // its end was audited by whoever ended it
	checkWatched(t, s, "b")
	checkHolder(t, s, "I1", "", at)
}

// testRenewalOldRanOut: a "New code" clicked just past the old code's
// expiry, before the countdown ended it (still live in the record), and
// settled without counting: nothing watches the old pairing any more to
// end it later, so the settlement ends it as expired at its own time,
// code wiped, audited with the renewal's ReplacedAudit; only the renewal
// is watched, and no one holds the instance.
func testRenewalOldRanOut(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	at := a.ExpiresAt.Add(time.Second)
	renewal(t, s, "b", "a", at)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Change: toState(pairing.StateFailed, at), Replaced: "a", ReplacedURL: clickURL,
		ReplacedAudit: replacedAudit("a")}); err != nil {
		t.Fatal(err)
	}
	got := mustPairing(t, s, "a")
	if got.State != pairing.StateExpired || got.Code != "" || !got.EndedAt.Equal(at) {
		t.Errorf("the replaced pairing = %s ended %s (code %q); want expired at %s without its code", got.State, got.EndedAt.Format(time.TimeOnly), got.Code, at.Format(time.TimeOnly))
	}
	checkEndAudit(t, s, "a", pairing.EventExpired, at)
	checkWatched(t, s, "b")
	checkHolder(t, s, "I1", "", at)
}

// testRenewalOthersHold: a New code whose lease ran out (the instance went
// to another user's request meanwhile) and which then settles without
// counting never takes the instance back — one live code per instance —
// and the old code, void once the other request asks WhatsApp for one,
// ends as superseded: code wiped, audited, no longer watched. (Left live
// and unwatched, nothing would ever end it: an orphan code in the store.)
func testRenewalOthersHold(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	renewal(t, s, "b", "a", t0.Add(10*time.Second)) // lease to t0+40s
	at := t0.Add(10*time.Second + hold + time.Second)
	reserve(t, s, reservation("c", "I1", phone(2), "U2", at))
	checkHolder(t, s, "I1", "c", at)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Change: toState(pairing.StateFailed, at), Replaced: "a", ReplacedURL: clickURL,
		ReplacedAudit: replacedAudit("a")}); err != nil {
		t.Fatal(err)
	}
	checkHolder(t, s, "I1", "c", at)
	if got := mustPairing(t, s, "a"); got.State != pairing.StateSuperseded || got.Code != "" || !got.EndedAt.Equal(at) {
		t.Errorf("the replaced pairing = %s ended %s (code %q); want superseded at %s without its code", got.State, got.EndedAt.Format(time.TimeOnly), got.Code, at.Format(time.TimeOnly))
	}
	checkEndAudit(t, s, "a", pairing.EventSuperseded, at)
	checkWatched(t, s, "b", "c")
}

// testFinalNeverOverwritten: a renewal of a pairing that already ended
// (a "New code" on an expired code's message, or a stale click on a
// message the countdown has not redrawn yet), or that ended while the
// renewal was on its way (the phone linked with the old code meanwhile),
// leaves its final state and end time as they were, and appends no end
// of its own to the audit log, whether the renewal settles or is
// interrupted.
func testFinalNeverOverwritten(t *testing.T, open func(*testing.T) Harness) {
	for _, ending := range []pairing.State{pairing.StateExpired, pairing.StateLinked, pairing.StateCancelled} {
		for _, how := range []string{"settled", "interrupted"} {
			for _, inFlight := range []bool{false, true} {
				name := fmt.Sprintf("%s, renewal %s", ending, how)
				if inFlight {
					name = fmt.Sprintf("%s while the renewal was in flight, renewal %s", ending, how)
				}
				t.Run(name, func(t *testing.T) {
					s := open(t).Storage
					live(t, s, reservation("a", "I1", phone(1), "U1", t0))
					at := t0.Add(2 * time.Minute)
					if inFlight {
						// Settled within its lease (a request past it never
						// goes live).
						renewal(t, s, "b", "a", t0.Add(50*time.Second))
						at = t0.Add(70 * time.Second)
					}
					ended := endLive(t, s, "a", t0.Add(time.Minute), ending, false)
					if !inFlight {
						renewal(t, s, "b", "a", at)
					}
					if how == "settled" {
						if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Counted: true, Change: toState(pairing.StateLive, at), Replaced: "a", ReplacedURL: clickURL,
							ReplacedAudit: replacedAudit("a")}); err != nil {
							t.Fatal(err)
						}
					} else if _, ok, err := s.Interrupt(t.Context(), pairing.Interruption{ID: "b", Now: at, ReplacedAudit: replacedAudit("a")}); !ok || err != nil {
						t.Fatal(ok, err)
					}
					got := mustPairing(t, s, "a")
					if got.State != ending || !got.EndedAt.Equal(ended.EndedAt) || got.Code != "" {
						t.Errorf("the ended pairing = %s ended %s (code %q); want %s ended %s, as it was", got.State, got.EndedAt.Format(time.TimeOnly), got.Code, ending, ended.EndedAt.Format(time.TimeOnly))
					}
					checkEndAudit(t, s, "a", "", at)
					checkWatched(t, s, "b")
				})
			}
		}
	}
}

// testInterruptedRenewal: an interrupted renewal may have reached
// WhatsApp, which voids the code it meant to replace: that one ends as
// superseded, and only the renewal is watched.
func testInterruptedRenewal(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	b := renewal(t, s, "b", "a", t0.Add(10*time.Second))
	if _, ended, err := s.Interrupt(t.Context(), pairing.Interruption{ID: "b", Now: b.ExpiresAt, Lapsed: true, ReplacedAudit: replacedAudit("a")}); !ended || err != nil {
		t.Fatal(ended, err)
	}
	if a := mustPairing(t, s, "a"); a.State != pairing.StateSuperseded || a.Code != "" {
		t.Errorf("replaced pairing = %+v; want superseded without its code", a)
	}
	checkEndAudit(t, s, "a", pairing.EventSuperseded, b.ExpiresAt)
	checkWatched(t, s, "b")
	checkHolder(t, s, "I1", "", b.ExpiresAt)
	if n := count(t, s, phone(1), b.ExpiresAt); n != 2 {
		t.Errorf("phone counts %d requests, want 2", n)
	}
}

// testSettleChangeError: a settlement whose change fails stores nothing:
// not the pairing, not the attempt's removal, not the replaced pairing's
// new URL or state, not the audit event.
func testSettleChangeError(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	b := renewal(t, s, "b", "a", t0.Add(10*time.Second))
	before := events(t, s)
	errBoom := errors.New("boom")
	at := t0.Add(12 * time.Second)
	for _, counted := range []bool{false, true} {
		_, err := s.Settle(t.Context(), pairing.Settlement{
			ID: "b", Now: at, Counted: counted, Replaced: "a", ReplacedURL: clickURL,
			Change:        func(p *pairing.Pairing) error { p.State = pairing.StateFailed; return errBoom },
			Audit:         event(at, pairing.EventError, b, pairing.OutcomeWawpError),
			ReplacedAudit: replacedAudit("a"),
		})
		if !errors.Is(err, errBoom) {
			t.Errorf("Settle(counted=%v) = %v, want the change's error", counted, err)
		}
	}
	if diff := cmp.Diff(a, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("replaced pairing changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(b, mustPairing(t, s, "b")); diff != "" {
		t.Errorf("renewal changed (-want +got):\n%s", diff)
	}
	if n := count(t, s, phone(1), at); n != 2 {
		t.Errorf("phone counts %d requests, want 2", n)
	}
	if diff := cmp.Diff(kinds(before), kinds(events(t, s))); diff != "" {
		t.Errorf("audit log changed (-want +got):\n%s", diff)
	}
	checkWatched(t, s, "a", "b")
	checkHolder(t, s, "I1", "b", at)
}

// testNotFound: every method that names a pairing says ErrNotFound when
// there is none.
func testNotFound(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	if _, err := s.Pairing(t.Context(), "nope"); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("Pairing: %v", err)
	}
	if _, err := s.UpdatePairing(t.Context(), "nope", t0, func(*pairing.Pairing) error { return nil }); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("UpdatePairing: %v", err)
	}
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "nope", Now: t0, Change: func(*pairing.Pairing) error { return nil }}); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("Settle: %v", err)
	}
	if _, _, err := s.Interrupt(t.Context(), pairing.Interruption{ID: "nope", Now: t0}); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("Interrupt: %v", err)
	}
	if err := s.RecordView(t.Context(), "nope", "x", true); err != nil {
		t.Errorf("RecordView of a pairing that is gone: %v, want nil (pruned meanwhile)", err)
	}
}

// testUpdatePairing: UpdatePairing stores what change made and returns
// it; a change that fails stores nothing and its error comes back, with
// the pairing as change left it.
func testUpdatePairing(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	at := t0.Add(10 * time.Second)
	errBoom := errors.New("boom")
	p, err := s.UpdatePairing(t.Context(), "a", at, func(p *pairing.Pairing) error {
		p.ResponseURL = clickURL
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Errorf("failing change: %v, want its error", err)
	}
	if p.ID != "a" || p.ResponseURL != clickURL {
		t.Errorf("failing change returned %+v; want the pairing as change left it", p)
	}
	if diff := cmp.Diff(a, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("a failing change was stored (-want +got):\n%s", diff)
	}
	p, err = s.UpdatePairing(t.Context(), "a", at, func(p *pairing.Pairing) error {
		p.ResponseURL, p.URLIssued = clickURL, at
		return nil
	})
	want := a
	want.ResponseURL, want.URLIssued = clickURL, at
	if diff := cmp.Diff(want, p); diff != "" || err != nil {
		t.Errorf("UpdatePairing (-want +got):\n%s%v", diff, err)
	}
	if diff := cmp.Diff(want, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("as stored (-want +got):\n%s", diff)
	}
	checkHolder(t, s, "I1", "a", at)
}

// testSurfaces: a pairing's surfaces (the click's url that edits its
// ephemeral message, its delivery, its DM and card messages) are stored as
// given, changed by UpdatePairing, kept by a restart (so the bot resumes
// its edits) and kept when the pairing ends and its code is wiped (the
// final state still has to reach them).
func testSurfaces(t *testing.T, open func(*testing.T) Harness) {
	h := open(t)
	s := h.Storage
	r := reservation("a", "I1", phone(1), "U1", t0)
	r.Pairing.ClickURL, r.Pairing.ClickIssued = clickURL, t0
	r.Pairing.Delivery = pairing.DeliveryDM
	r.Pairing.DM = pairing.Surface{Recipient: "U1"}
	r.Pairing.Card = pairing.Surface{Channel: "C1"}
	a := live(t, s, r)
	if a.ClickURL != clickURL || a.Delivery != pairing.DeliveryDM || a.DM.Recipient != "U1" || a.Card.Channel != "C1" {
		t.Fatalf("stored %+v; want the surfaces reserved with it", a)
	}
	at := t0.Add(time.Second)
	dm := pairing.Surface{Channel: "D1", TS: "1700000000.000100", LastView: "live:0", Recipient: "U1"}
	p, err := s.UpdatePairing(t.Context(), "a", at, func(p *pairing.Pairing) error { p.DM = dm; return nil })
	if err != nil || p.DM != dm {
		t.Fatalf("UpdatePairing of the DM: %+v, %v", p.DM, err)
	}
	want := a
	want.DM = dm
	s = h.Restart(t)
	if diff := cmp.Diff(want, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("after a restart (-want +got):\n%s", diff)
	}
	end := t0.Add(2 * time.Second)
	p, err = s.UpdatePairing(t.Context(), "a", end, func(p *pairing.Pairing) error { p.State = pairing.StateCancelled; return nil })
	if err != nil || p.Code != "" || p.DM != dm || p.Card != want.Card || p.ClickURL != clickURL {
		t.Errorf("ended: %+v, %v; want the code wiped and the surfaces kept", p, err)
	}
}

// testSettleAfterLeaseLost: a request's lease ran out and another
// request was granted its instance; when the first one's code comes from
// a process whose clock lags (it reads a time within the lease, and its
// Change trusts it), Settle still refuses to make it live
// (ErrInterrupted), changes nothing, and the instance stays the other's:
// one instance never has two live codes.
func testSettleAfterLeaseLost(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	reserve(t, s, reservation("a", "I1", phone(1), "U1", t0))
	later := t0.Add(hold + time.Second)
	reserve(t, s, reservation("b", "I1", phone(2), "U2", later))
	b := settle(t, s, "b", later, pairing.StateLive, true)
	lagging := t0.Add(time.Second)
	_, err := s.Settle(t.Context(), pairing.Settlement{ID: "a", Now: lagging, Counted: true, Change: toState(pairing.StateLive, lagging)})
	if !errors.Is(err, pairing.ErrInterrupted) {
		t.Errorf("Settle of a request whose instance another request holds: %v; want ErrInterrupted", err)
	}
	if a := mustPairing(t, s, "a"); a.State != pairing.StateRequesting || a.Code != "" {
		t.Errorf("the refused request = %+v; want it unchanged, requesting, without a code", a)
	}
	checkHolder(t, s, "I1", "b", later)
	if got := mustPairing(t, s, "b"); got.State != pairing.StateLive || got.Code != b.Code {
		t.Errorf("the holder = %+v; want it live with its code", got)
	}
}

// testReservedPairing: ReservedPairing, undoReserve's lookup after a
// Reserve answered ErrUnavailable, finds the pairing a Reserve stored (by
// ID) and ErrNotFound when none did. (That it waits for a Reserve in flight is each store's own
// test: TestReservedPairingWaitsForReserve in store/postgres; bbolt has
// one writer at a time.)
func testReservedPairing(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	r := reservation("a", "I1", phone(1), "U1", t0)
	if p, err := s.ReservedPairing(t.Context(), r.Pairing); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("before Reserve: %q, %v; want ErrNotFound", p.ID, err)
	}
	want := reserve(t, s, r)
	got, err := s.ReservedPairing(t.Context(), r.Pairing)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after Reserve (-want +got):\n%s", diff)
	}
	refused := reservation("b", "I1", phone(2), "U2", t0)
	if d, err := s.Reserve(t.Context(), refused); err != nil || d.Refused == pairing.LimitNone {
		t.Fatalf("Reserve of a held instance: %+v, %v; want refused", d, err)
	}
	// A refusal may be kept (bbolt and PostgreSQL keep it): never as
	// Requesting, which undoReserve would end.
	if p, err := s.ReservedPairing(t.Context(), refused.Pairing); err == nil && p.State == pairing.StateRequesting ||
		err != nil && !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("after a refused Reserve: %q %s, %v; want ErrNotFound or not Requesting", p.ID, p.State, err)
	}
}
