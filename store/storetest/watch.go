package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var watchCases = []testCase{
	{"watched from Reserve until its view is shown", testWatchLifecycle},
	{"a refused request is watched, a refused renewal is not stored", testWatchRefusals},
}

// testWatchLifecycle: a request is watched from the moment it is reserved
// (a crash mid-request must still reach a final view), through its end,
// until RecordView unwatches it; WatchedPairings returns the pairings as
// stored; RecordView keeps the view's key either way.
func testWatchLifecycle(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	reserve(t, s, reservation("a", "I1", phone(1), "U1", t0))
	checkWatched(t, s, "a")
	a := settle(t, s, "a", t0.Add(time.Second), pairing.StateLive, true)
	if err := s.RecordView(t.Context(), "a", "code:1", false); err != nil {
		t.Fatal(err)
	}
	a.LastView = "code:1"
	w, err := s.WatchedPairings(t.Context())
	if diff := cmp.Diff([]pairing.Pairing{a}, w); diff != "" || err != nil {
		t.Errorf("WatchedPairings (-want +got):\n%s%v", diff, err)
	}
	// Ended, but its message does not show it yet: still watched.
	ended := endLive(t, s, "a", a.ExpiresAt, pairing.StateExpired, false)
	w, _ = s.WatchedPairings(t.Context())
	if diff := cmp.Diff([]pairing.Pairing{ended}, w); diff != "" {
		t.Errorf("WatchedPairings after the end (-want +got):\n%s", diff)
	}
	if err := s.RecordView(t.Context(), "a", "expired", true); err != nil {
		t.Fatal(err)
	}
	checkWatched(t, s)
	if p := mustPairing(t, s, "a"); p.LastView != "expired" || p.State != pairing.StateExpired {
		t.Errorf("after its final view: %s, last view %q; want expired, \"expired\"", p.State, p.LastView)
	}
	// Unwatching is idempotent.
	if err := s.RecordView(t.Context(), "a", "expired", true); err != nil {
		t.Errorf("unwatching twice: %v", err)
	}
	checkWatched(t, s)
}

// testWatchRefusals: a /link refused by a limit is kept, final and
// watched, so its message can be drawn again if the post is lost; a
// renewal's refusal (it only answers a click) stores nothing.
func testWatchRefusals(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	reserve(t, s, reservation("holder", "I1", phone(1), "U1", t0))
	r := reservation("refused", "I1", phone(2), "U2", t0.Add(time.Second))
	d, err := s.Reserve(t.Context(), r)
	if err != nil || d.Refused != pairing.LimitInstance {
		t.Fatal(d, err)
	}
	want := d.RefusedPairing(r.Pairing, r.Now)
	if p := mustPairing(t, s, "refused"); p.HeldBy != "holder" || !p.RetryAt.Equal(t0.Add(hold)) || !cmp.Equal(want, p) {
		t.Errorf("refused pairing (-want +got):\n%s", cmp.Diff(want, p))
	}
	checkWatched(t, s, "holder", "refused")
	rr := reservation("renewal", "I1", phone(2), "U2", t0.Add(2*time.Second))
	rr.Replaces = "refused"
	if d, _ := s.Reserve(t.Context(), rr); d.Refused != pairing.LimitInstance || d.Pairing.ID != "" {
		t.Errorf("renewal refusal: %+v", d)
	}
	checkWatched(t, s, "holder", "refused")
}
