package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var limitCases = []testCase{
	{"phone window slides", testPhoneWindow},
	{"user window", testUserWindow},
	{"instance checked first, then phone, then user", testLimitOrder},
	{"refusals and grants are audited", testLimitAudit},
	{"uncounted attempts leave both windows", testUncounted},
	{"retry time when a window holds more than Max (a limit lowered)", testLoweredLimit},
	{"50 concurrent callers for one phone", testConcurrentPhone},
	{"50 concurrent callers for one user", testConcurrentUser},
	{"50 concurrent callers for one instance", testConcurrentInstance},
}

// testPhoneWindow: exactly Max requests per phone in any window of Period;
// a refusal says when the next is allowed and how many are in the window,
// does not count itself, and is kept as a final pairing; the window slides.
func testPhoneWindow(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	p := phone(1)
	for i := range 3 {
		r := reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), p, fmt.Sprint("U", i), t0.Add(time.Duration(i)*time.Minute))
		d, err := s.Reserve(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		want := pairing.Decision{Count: i + 1, Pairing: requesting(r, i+1)}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("request %d (-want +got):\n%s", i+1, diff)
		}
		if diff := cmp.Diff(want.Pairing, mustPairing(t, s, r.Pairing.ID)); diff != "" {
			t.Errorf("request %d as stored (-want +got):\n%s", i+1, diff)
		}
	}
	if at, n, err := s.NextAllowed(t.Context(), p, t0.Add(5*time.Minute), phoneLimit); err != nil || n != 3 || !at.Equal(t0.Add(15*time.Minute)) {
		t.Errorf("NextAllowed at 14:05 = %s, %d, %v; want 14:15, 3", at, n, err)
	}
	r := reservation("refused", "I9", p, "U9", t0.Add(5*time.Minute))
	d, err := s.Reserve(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	want := pairing.Decision{Refused: pairing.LimitPhone, RetryAt: t0.Add(15 * time.Minute), Count: 3}
	want.Pairing = want.RefusedPairing(r.Pairing, r.Now)
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("4th request (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want.Pairing, mustPairing(t, s, "refused")); diff != "" {
		t.Errorf("refused request as stored (-want +got):\n%s", diff)
	}
	if n := count(t, s, p, t0.Add(5*time.Minute)); n != 3 {
		t.Errorf("after a refusal the phone has %d requests in its window, want 3: a refusal does not count", n)
	}
	// The window is (now-Period, now]: at 14:15 the request of 14:00 has left it.
	if d, _ := s.Reserve(t.Context(), reservation("p3", "I3", p, "U3", t0.Add(15*time.Minute-time.Nanosecond))); d.Refused != pairing.LimitPhone {
		t.Errorf("a nanosecond before 14:15: %+v, want refused by the phone limit", d)
	}
	r = reservation("p4", "I4", p, "U4", t0.Add(15*time.Minute))
	if d, err := s.Reserve(t.Context(), r); err != nil || d.Refused != pairing.LimitNone || d.Count != 3 {
		t.Errorf("at 14:15: %+v, %v; want granted as the 3rd in the window", d, err)
	}
	if at, n, _ := s.NextAllowed(t.Context(), p, t0.Add(15*time.Minute), phoneLimit); n != 3 || !at.Equal(t0.Add(16*time.Minute)) {
		t.Errorf("NextAllowed at 14:15 = %s, %d; want 14:16, 3", at, n)
	}
	// Other phones are not affected.
	if at, n, _ := s.NextAllowed(t.Context(), phone(2), t0.Add(5*time.Minute), phoneLimit); n != 0 || !at.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("NextAllowed of an unused phone = %s, %d; want now, 0", at, n)
	}
	reserve(t, s, reservation("other", "I5", phone(2), "U5", t0.Add(5*time.Minute)))
}

// testUserWindow: exactly Max requests per user per Period, whatever the
// phones; other users are not affected.
func testUserWindow(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	limit := pairing.Window{Max: 2, Period: time.Hour}
	ask := func(id, user string, i int, at time.Time) (pairing.Reservation, pairing.Decision) {
		r := reservation(id, fmt.Sprint("I", i), phone(i), user, at)
		r.UserLimit = limit
		d, err := s.Reserve(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		return r, d
	}
	for i := range 2 {
		if _, d := ask(fmt.Sprint("p", i), "U1", i, t0.Add(time.Duration(i)*10*time.Minute)); d.Refused != pairing.LimitNone || d.Count != 1 {
			t.Errorf("request %d: %+v, want granted, 1st for its phone", i+1, d)
		}
	}
	r, d := ask("refused", "U1", 5, t0.Add(30*time.Minute))
	want := pairing.Decision{Refused: pairing.LimitUser, RetryAt: t0.Add(time.Hour), Count: 2}
	want.Pairing = want.RefusedPairing(r.Pairing, r.Now)
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("3rd request by U1 (-want +got):\n%s", diff)
	}
	if _, d := ask("u2", "U2", 6, t0.Add(30*time.Minute)); d.Refused != pairing.LimitNone {
		t.Errorf("another user: %+v, want granted", d)
	}
	if _, d := ask("again", "U1", 7, t0.Add(time.Hour)); d.Refused != pairing.LimitNone {
		t.Errorf("U1 once the first request left the window: %+v, want granted", d)
	}
}

// testLimitOrder: when several limits say no, the instance's is reported
// (with its holder), then the phone's, then the user's.
func testLimitOrder(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	// U1 has used phone(1)'s 3 requests and its own 3 (of a user limit of
	// 3); the last is in flight and holds I3.
	for i := range 3 {
		reserve(t, s, reservation(fmt.Sprint("p", i), fmt.Sprint("I", i+1), phone(1), "U1", t0.Add(time.Duration(i)*time.Minute)))
	}
	now := t0.Add(2*time.Minute + hold/2)
	tests := []struct {
		name     string
		instance string
		phone    string
		want     pairing.Limit
	}{
		{"instance held, phone and user spent", "I3", phone(1), pairing.LimitInstance},
		{"phone and user spent", "I9", phone(1), pairing.LimitPhone},
		{"user spent", "I9", phone(2), pairing.LimitUser},
	}
	for _, tt := range tests {
		r := reservation("x", tt.instance, tt.phone, "U1", now)
		r.UserLimit = pairing.Window{Max: 3, Period: time.Hour}
		r.Replaces = "-" // store nothing
		d, err := s.Reserve(t.Context(), r)
		if err != nil || d.Refused != tt.want {
			t.Errorf("%s: refused by %q (%v), want %q", tt.name, d.Refused, err, tt.want)
		}
	}
}

// testLimitAudit: Reserve appends Granted or, with the refusing limit's
// outcome, Refused, in the same step; a renewal's refusal stores no
// pairing but is audited.
func testLimitAudit(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	reserve(t, s, reservation("a", "I1", phone(1), "U1", t0))
	s.Reserve(t.Context(), reservation("b", "I1", phone(2), "U2", t0.Add(time.Second)))
	for i := range 3 {
		s.Reserve(t.Context(), reservation(fmt.Sprint("c", i), fmt.Sprint("J", i), phone(3), "U3", t0.Add(time.Duration(2+i)*time.Second)))
	}
	r := reservation("renewal", "I1", phone(2), "U2", t0.Add(10*time.Second))
	r.Replaces = "b"
	if d, err := s.Reserve(t.Context(), r); err != nil || d.Refused != pairing.LimitInstance || d.Pairing.ID != "" {
		t.Errorf("renewal on a held instance: %+v, %v; want refused, nothing stored", d, err)
	}
	if _, err := s.Pairing(t.Context(), "renewal"); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("a renewal's refusal was stored: %v", err)
	}
	r = reservation("d", "J9", phone(3), "U3", t0.Add(20*time.Second))
	r.Granted, r.Refused = pairing.Event{}, pairing.Event{} // no kind: nothing to append
	s.Reserve(t.Context(), r)
	want := []string{
		"a:requested", "b:refused:limit_instance",
		"c0:requested", "c1:requested", "c2:requested",
		"renewal:refused:limit_instance",
	}
	if diff := cmp.Diff(want, kinds(events(t, s))); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}
}

// testUncounted: a settlement that does not count removes the request from
// the phone's and the user's windows, even when several requests share
// one clock reading.
func testUncounted(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	limit := pairing.Window{Max: 2, Period: time.Hour}
	ask := func(id string, i int, now time.Time) pairing.Decision {
		r := reservation(id, fmt.Sprint("I", i), phone(i), "U1", now)
		r.UserLimit = limit
		d, err := s.Reserve(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// Two requests by U1 at the same instant, for two phones; neither
	// reached WhatsApp.
	for i, id := range []string{"a", "b"} {
		if d := ask(id, i, t0); d.Refused != pairing.LimitNone {
			t.Fatalf("%s: %+v", id, d)
		}
	}
	for _, id := range []string{"b", "a"} {
		settle(t, s, id, t0.Add(time.Second), pairing.StateFailed, false)
	}
	for i := range 2 {
		if n := count(t, s, phone(i), t0.Add(time.Second)); n != 0 {
			t.Errorf("phone %d still counts %d requests that did not count", i, n)
		}
	}
	for i, id := range []string{"c", "d"} {
		if d := ask(id, 2+i, t0.Add(2*time.Second)); d.Refused != pairing.LimitNone {
			t.Errorf("U1's request %s after two uncounted ones: refused by the %s limit (count %d), want granted", id, d.Refused, d.Count)
		}
	}
	// A counted settlement keeps counting.
	settle(t, s, "c", t0.Add(3*time.Second), pairing.StateFailed, true)
	if n := count(t, s, phone(2), t0.Add(3*time.Second)); n != 1 {
		t.Errorf("a counted request counts %d, want 1", n)
	}
}

// raceResult is what one of 50 concurrent Reserve calls got.
type raceResult struct {
	id string
	d  pairing.Decision
}

// race runs n concurrent reservations made by mk and returns the granted
// and refused ones.
func race(t *testing.T, s pairing.Storage, n int, mk func(i int) pairing.Reservation) (granted, refused []raceResult) {
	t.Helper()
	var mu sync.Mutex
	parallel(n, func(i int) {
		r := mk(i)
		d, err := s.Reserve(t.Context(), r)
		if err != nil {
			t.Errorf("Reserve(%s): %v", r.Pairing.ID, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if d.Refused == pairing.LimitNone {
			granted = append(granted, raceResult{r.Pairing.ID, d})
		} else {
			refused = append(refused, raceResult{r.Pairing.ID, d})
		}
	})
	return granted, refused
}

// checkRefusals fails unless every refusal is by limit, with retryAt and n.
func checkRefusals(t *testing.T, refused []raceResult, limit pairing.Limit, retryAt time.Time, n int, holder []raceResult) {
	t.Helper()
	for _, r := range refused {
		d := r.d
		if d.Refused != limit || !d.RetryAt.Equal(retryAt) || d.Count != n {
			t.Errorf("%s: refused by %q until %s with count %d; want %q until %s with count %d",
				r.id, d.Refused, d.RetryAt.Format(time.TimeOnly), d.Count, limit, retryAt.Format(time.TimeOnly), n)
		}
		if holder != nil && d.Holder.ID != holder[0].id {
			t.Errorf("%s: holder %q, want %q (the one granted)", r.id, d.Holder.ID, holder[0].id)
		}
		if d.Pairing.State != pairing.StateRefused || d.Pairing.RefusedBy() != limit {
			t.Errorf("%s: stored as %s refused by %q", r.id, d.Pairing.State, d.Pairing.RefusedBy())
		}
	}
}

// testConcurrentPhone: 50 callers for one phone at one instant, each for
// its own instance and user: exactly Max pass, numbered 1…Max, and every
// other is refused by the phone limit with the same retry time and count.
func testConcurrentPhone(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	granted, refused := race(t, s, 50, func(i int) pairing.Reservation {
		return reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), phone(1), fmt.Sprint("U", i), t0)
	})
	if len(granted) != phoneLimit.Max || len(refused) != 50-phoneLimit.Max {
		t.Fatalf("%d granted, %d refused; want exactly %d granted", len(granted), len(refused), phoneLimit.Max)
	}
	var counts []int
	for _, g := range granted {
		counts = append(counts, g.d.Count)
	}
	slices.Sort(counts)
	if diff := cmp.Diff([]int{1, 2, 3}, counts); diff != "" {
		t.Errorf("granted requests' counts (-want +got):\n%s", diff)
	}
	checkRefusals(t, refused, pairing.LimitPhone, t0.Add(phoneLimit.Period), phoneLimit.Max, nil)
	if at, n, err := s.NextAllowed(t.Context(), phone(1), t0, phoneLimit); err != nil || n != 3 || !at.Equal(t0.Add(phoneLimit.Period)) {
		t.Errorf("NextAllowed = %s, %d, %v; want 14:15, 3", at, n, err)
	}
	ev := events(t, s)
	byKind := map[pairing.EventKind]int{}
	for _, e := range ev {
		byKind[e.Kind]++
	}
	if byKind[pairing.EventRequested] != 3 || byKind[pairing.EventRefused] != 47 {
		t.Errorf("audited %v, want 3 requested and 47 refused", byKind)
	}
}

// testConcurrentUser: 50 callers by one user at one instant, each for its
// own phone and instance: exactly the user's Max pass.
func testConcurrentUser(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	granted, refused := race(t, s, 50, func(i int) pairing.Reservation {
		return reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), phone(i), "U1", t0)
	})
	if len(granted) != userLimit.Max {
		t.Fatalf("%d granted, want exactly %d", len(granted), userLimit.Max)
	}
	checkRefusals(t, refused, pairing.LimitUser, t0.Add(userLimit.Period), userLimit.Max, nil)
}

// testConcurrentInstance: 50 callers for one instance at one instant, each
// for its own phone and user: exactly one holds it, and every other is
// told who.
func testConcurrentInstance(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	granted, refused := race(t, s, 50, func(i int) pairing.Reservation {
		return reservation(fmt.Sprint("p", i), "I1", phone(i), fmt.Sprint("U", i), t0)
	})
	if len(granted) != 1 {
		t.Fatalf("%d granted, want exactly 1", len(granted))
	}
	checkRefusals(t, refused, pairing.LimitInstance, t0.Add(hold), 0, granted)
	for i := range 50 {
		if n := count(t, s, phone(i), t0); n > 1 {
			t.Errorf("phone %d counts %d requests", i, n)
		}
	}
}

// testLoweredLimit: a phone and a user with three requests in their
// windows, then the limits lowered to two (a restart with a stricter
// config): the refusal, and NextAllowed, say when the window next holds
// fewer than Max — when the second oldest leaves it, not the oldest.
func testLoweredLimit(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	for i := range 3 {
		reserve(t, s, reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), phone(1), "U1", t0.Add(time.Duration(i)*time.Minute)))
	}
	now := t0.Add(5 * time.Minute)
	lowered := pairing.Window{Max: 2, Period: phoneLimit.Period}
	r := reservation("x", "I9", phone(1), "U9", now)
	r.PhoneLimit = lowered
	d, err := s.Reserve(t.Context(), r)
	if want := t0.Add(time.Minute + phoneLimit.Period); err != nil || d.Refused != pairing.LimitPhone || !d.RetryAt.Equal(want) || d.Count != 3 {
		t.Errorf("phone: refused by %q until %s, count %d (%v); want the phone limit until %s, 3", d.Refused, d.RetryAt.Format(time.TimeOnly), d.Count, err, want.Format(time.TimeOnly))
	}
	if at, n, err := s.NextAllowed(t.Context(), phone(1), now, lowered); err != nil || n != 3 || !at.Equal(t0.Add(time.Minute+phoneLimit.Period)) {
		t.Errorf("NextAllowed = %s, %d, %v; want 14:16, 3", at.Format(time.TimeOnly), n, err)
	}
	r = reservation("y", "I8", phone(2), "U1", now)
	r.UserLimit = pairing.Window{Max: 2, Period: userLimit.Period}
	d, err = s.Reserve(t.Context(), r)
	if want := t0.Add(time.Minute + userLimit.Period); err != nil || d.Refused != pairing.LimitUser || !d.RetryAt.Equal(want) || d.Count != 3 {
		t.Errorf("user: refused by %q until %s, count %d (%v); want the user limit until %s, 3", d.Refused, d.RetryAt.Format(time.TimeOnly), d.Count, err, want.Format(time.TimeOnly))
	}
}
