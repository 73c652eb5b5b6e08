package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var holdCases = []testCase{
	{"a hold runs until its time, the latest kept, and survives a restart", testHolds},
}

// checkHolds reads the holds running at now and compares them with want.
func checkHolds(t *testing.T, s pairing.Storage, now time.Time, want map[string]time.Time, what string) {
	t.Helper()
	got, err := s.Holds(t.Context(), now)
	if err != nil {
		t.Fatalf("%s: Holds: %v", what, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: Holds (-want +got):\n%s", what, diff)
	}
}

// testHolds: Slack's Retry-After holds (SetHold) are returned while they
// run and not after; an earlier until never shortens a hold, a later one
// extends it; each key is its own; a restart keeps them, so a restarted
// bot does not call Slack during one.
func testHolds(t *testing.T, open func(*testing.T) Harness) {
	h := open(t)
	s := h.Storage
	checkHolds(t, s, t0, map[string]time.Time{}, "none yet")
	set := func(key string, until time.Time) {
		t.Helper()
		if err := s.SetHold(t.Context(), key, until); err != nil {
			t.Fatalf("SetHold(%s): %v", key, err)
		}
	}
	update, post := "chat.update", "chat.postMessage U123"
	set(update, t0.Add(30*time.Second))
	set(update, t0.Add(10*time.Second)) // an earlier 429's answer, recorded late
	set(post, t0.Add(time.Second))
	checkHolds(t, s, t0, map[string]time.Time{update: t0.Add(30 * time.Second), post: t0.Add(time.Second)}, "both running")
	checkHolds(t, s, t0.Add(time.Second), map[string]time.Time{update: t0.Add(30 * time.Second)}, "the post's ran out")
	set(update, t0.Add(45*time.Second))
	s = h.Restart(t)
	checkHolds(t, s, t0.Add(31*time.Second), map[string]time.Time{update: t0.Add(45 * time.Second)}, "after a restart")
	checkHolds(t, s, t0.Add(45*time.Second), map[string]time.Time{}, "all ran out")
}
