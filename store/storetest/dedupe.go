package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var dedupeCases = []testCase{
	{"a duplicate reservation changes nothing", testDedupeReserve},
	{"a refusal claims its key too", testDedupeRefused},
	{"Reserve and ClaimCommand share the keys", testDedupeShared},
	{"a key expires at Until", testDedupeExpiry},
	{"prune deletes expired keys only", testDedupePrune},
	{"keys survive a restart", testDedupeRestart},
	{"50 concurrent deliveries of one command", testDedupeConcurrent},
}

// envelope is the dedupe key of the command with envelope ID id,
// remembered for an hour from now.
func envelope(id string, now time.Time) pairing.Dedupe {
	return pairing.Dedupe{Key: "envelope:" + id, Until: now.Add(time.Hour)}
}

// claimCommand claims d at now and fails the test unless the outcome is
// want (true: this call claimed it).
func claimCommand(t *testing.T, s pairing.Storage, d pairing.Dedupe, now time.Time, want bool, what string) {
	t.Helper()
	first, err := s.ClaimCommand(t.Context(), d, now)
	if err != nil || first != want {
		t.Errorf("%s: ClaimCommand(%q) = %v, %v; want %v", what, d.Key, first, err, want)
	}
}

// testDedupeReserve: a reservation whose key was claimed by an earlier
// one is a duplicate, whatever else it asks (another pairing ID, phone,
// user or instance: a redelivery is the same command, and a new pairing
// ID is made for each delivery): Decision says only Duplicate, and no
// attempt, pairing, watch, instance slot or audit event is stored.
func testDedupeReserve(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	r := reservation("a", "I1", phone(1), "U1", t0)
	r.Dedupe = envelope("E1", t0)
	d, err := s.Reserve(t.Context(), r)
	if err != nil || d.Duplicate || d.Refused != pairing.LimitNone {
		t.Fatalf("first delivery: %+v, %v; want granted", d, err)
	}
	before := storedState(t, s)

	for _, again := range []pairing.Reservation{
		reservation("a2", "I1", phone(1), "U1", t0.Add(time.Second)),  // the redelivery
		reservation("b", "I2", phone(2), "U2", t0.Add(2*time.Second)), // anything under that key
	} {
		again.Dedupe = envelope("E1", t0)
		d, err := s.Reserve(t.Context(), again)
		if diff := cmp.Diff(pairing.Decision{Duplicate: true}, d); diff != "" || err != nil {
			t.Errorf("Reserve(%s) under a claimed key (-want +got):\n%s%v", again.Pairing.ID, diff, err)
		}
	}
	if diff := cmp.Diff(before, storedState(t, s)); diff != "" {
		t.Errorf("stored state changed by duplicates (-before +after):\n%s", diff)
	}
	if _, err := s.Pairing(t.Context(), "a2"); err == nil {
		t.Error("the duplicate's pairing was stored")
	}
	// Without a key nothing is deduplicated; another key is another command.
	reserve(t, s, reservation("c", "I3", phone(3), "U3", t0.Add(3*time.Second)))
	r = reservation("e", "I5", phone(5), "U5", t0.Add(4*time.Second))
	r.Dedupe = envelope("E2", t0)
	reserve(t, s, r)
}

// testDedupeRefused: a command refused by a limit has been handled too: a
// redelivery neither stores a second refusal nor audits it again.
func testDedupeRefused(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	reserve(t, s, reservation("holder", "I1", phone(1), "U1", t0))
	r := reservation("refused", "I1", phone(2), "U2", t0.Add(time.Second))
	r.Dedupe = envelope("E1", t0)
	if d, err := s.Reserve(t.Context(), r); err != nil || d.Refused != pairing.LimitInstance {
		t.Fatalf("first delivery: %+v, %v; want refused by the instance limit", d, err)
	}
	before := storedState(t, s)
	r.Pairing.ID = "refused-again"
	r.Now = t0.Add(2 * time.Second)
	if d, err := s.Reserve(t.Context(), r); !d.Duplicate || err != nil {
		t.Errorf("redelivery: %+v, %v; want a duplicate", d, err)
	}
	if diff := cmp.Diff(before, storedState(t, s)); diff != "" {
		t.Errorf("stored state changed by the duplicate (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"holder:requested", "refused:refused:limit_instance"}, kinds(events(t, s))); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}
}

// testDedupeShared: one key space: a key ClaimCommand claimed makes a
// reservation a duplicate and the other way round; an empty key is never
// a duplicate and is not stored.
func testDedupeShared(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	claimCommand(t, s, envelope("E1", t0), t0, true, "first claim")
	claimCommand(t, s, envelope("E1", t0), t0, false, "second claim")
	r := reservation("a", "I1", phone(1), "U1", t0)
	r.Dedupe = envelope("E1", t0)
	if d, err := s.Reserve(t.Context(), r); !d.Duplicate || err != nil {
		t.Errorf("Reserve under a key ClaimCommand claimed: %+v, %v; want a duplicate", d, err)
	}
	r.Dedupe = envelope("E2", t0)
	reserve(t, s, r)
	claimCommand(t, s, envelope("E2", t0), t0, false, "claim of a key Reserve claimed")
	for i := range 3 {
		claimCommand(t, s, pairing.Dedupe{}, t0, true, fmt.Sprint("empty key ", i))
	}
	for i := range 2 {
		r := reservation(fmt.Sprint("n", i), fmt.Sprint("N", i), phone(10+i), "U9", t0)
		reserve(t, s, r) // no key: never a duplicate
	}
}

// testDedupeExpiry: a key is a duplicate up to a nanosecond before its
// Until and free from Until on; claimed again then, it lasts until the
// new Until.
func testDedupeExpiry(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	d := envelope("E1", t0) // until 15:00
	claimCommand(t, s, d, t0, true, "at 14:00")
	claimCommand(t, s, d, d.Until.Add(-time.Nanosecond), false, "a nanosecond before 15:00")
	r := reservation("a", "I1", phone(1), "U1", d.Until.Add(-time.Nanosecond))
	r.Dedupe = d
	if dec, err := s.Reserve(t.Context(), r); !dec.Duplicate || err != nil {
		t.Errorf("Reserve a nanosecond before 15:00: %+v, %v; want a duplicate", dec, err)
	}
	r.Now = d.Until
	r.Dedupe = envelope("E1", d.Until) // until 16:00
	reserve(t, s, r)
	claimCommand(t, s, r.Dedupe, d.Until.Add(30*time.Minute), false, "at 15:30, claimed again at 15:00 until 16:00")
	claimCommand(t, s, r.Dedupe, r.Dedupe.Until, true, "at 16:00")
}

// testDedupePrune: Prune deletes the keys expired at its now, counts
// them, and keeps the others (still duplicates afterwards).
func testDedupePrune(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	claimCommand(t, s, pairing.Dedupe{Key: "old", Until: t0.Add(time.Minute)}, t0, true, "old")
	claimCommand(t, s, pairing.Dedupe{Key: "edge", Until: t0.Add(2 * time.Minute)}, t0, true, "edge")
	r := reservation("a", "I1", phone(1), "U1", t0)
	r.Dedupe = pairing.Dedupe{Key: "young", Until: t0.Add(time.Hour)}
	reserve(t, s, r)
	now := t0.Add(2 * time.Minute)
	st, err := s.Prune(t.Context(), now, pairing.PruneBefore{Attempts: t0.Add(-time.Hour), Pairings: t0.Add(-time.Hour)})
	if diff := cmp.Diff(pairing.PruneStats{DedupeKeys: 2}, st); diff != "" || err != nil {
		t.Errorf("Prune (-want +got):\n%s%v", diff, err)
	}
	claimCommand(t, s, r.Dedupe, now, false, "the unexpired key after pruning")
	claimCommand(t, s, pairing.Dedupe{Key: "old", Until: now.Add(time.Hour)}, now, true, "a pruned key")
}

// testDedupeRestart: a redelivery after the process restarted (another
// replica, or the same one after a deploy) is still a duplicate.
func testDedupeRestart(t *testing.T, open func(*testing.T) Harness) {
	h := open(t)
	r := reservation("a", "I1", phone(1), "U1", t0)
	r.Dedupe = envelope("E1", t0)
	reserve(t, h.Storage, r)
	claimCommand(t, h.Storage, envelope("E2", t0), t0, true, "before the restart")
	s := h.Restart(t)
	r.Pairing.ID = "a2"
	if d, err := s.Reserve(t.Context(), r); !d.Duplicate || err != nil {
		t.Errorf("redelivery after a restart: %+v, %v; want a duplicate", d, err)
	}
	claimCommand(t, s, envelope("E2", t0), t0, false, "after the restart")
}

// testDedupeConcurrent: 50 deliveries of one command racing (a slash
// command redelivered to every connection): exactly one is decided, one
// pairing and one audit event stored; and 50 ClaimCommand calls of one
// key: exactly one claims it.
func testDedupeConcurrent(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	var decided, dup atomic.Int32
	parallel(50, func(i int) {
		// Each delivery makes its own pairing ID, as Start does.
		r := reservation(fmt.Sprint("p", i), "I1", phone(1), "U1", t0)
		r.Dedupe = envelope("E1", t0)
		d, err := s.Reserve(t.Context(), r)
		switch {
		case err != nil:
			t.Error(err)
		case d.Duplicate:
			dup.Add(1)
		default:
			decided.Add(1)
		}
	})
	if decided.Load() != 1 || dup.Load() != 49 {
		t.Errorf("%d deliveries decided, %d duplicates; want 1 and 49", decided.Load(), dup.Load())
	}
	if n := len(watchedIDs(t, s)); n != 1 {
		t.Errorf("%d pairings watched, want 1", n)
	}
	if n := count(t, s, phone(1), t0); n != 1 {
		t.Errorf("the phone has %d requests in its window, want 1", n)
	}
	if ev := events(t, s); len(ev) != 1 {
		t.Errorf("audit log: %v; want one request", kinds(ev))
	}

	var claimed atomic.Int32
	parallel(50, func(int) {
		first, err := s.ClaimCommand(t.Context(), envelope("E2", t0), t0)
		if err != nil {
			t.Error(err)
		}
		if first {
			claimed.Add(1)
		}
	})
	if claimed.Load() != 1 {
		t.Errorf("%d of 50 ClaimCommand calls claimed one key, want 1", claimed.Load())
	}
}
