package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

var leaderCases = []testCase{
	{"elected when none leads, renewed, taken over once it runs out", testLeaderLifecycle},
	{"a lapsed leader nobody replaced is elected afresh", testLeaderLapsed},
	{"only the term it holds is renewed", testLeaderTerms},
	{"resigning frees the lease at once", testLeaderResign},
	{"50 concurrent candidates, one leader", testLeaderConcurrent},
}

// ttl is the suite's leader lease: three ticks of 5 s.
const ttl = 15 * time.Second

// lead asks for leadership for leader holding held at now, and fails the
// test unless it gets want (the zero Term: not elected).
func lead(t *testing.T, s pairing.Storage, leader string, held pairing.Term, now time.Time, want pairing.Term, what string) pairing.Term {
	t.Helper()
	got, err := s.Lead(t.Context(), leader, held, ttl, now)
	if err != nil || !got.Equal(want) {
		t.Errorf("%s: Lead(%s) = %+v, %v; want %+v", what, leader, got, err, want)
	}
	return got
}

// testLeaderLifecycle: the first candidate is elected with the time of
// its election as its term; nobody else is while its lease runs, however
// often they ask; each renewal runs the lease for ttl from then; from the
// moment it has run out another candidate is elected, and the old term
// is renewed no more.
func testLeaderLifecycle(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := lead(t, s, "A", pairing.Term{}, t0, pairing.Term{Leader: "A", ElectedAt: t0}, "first candidate")
	lead(t, s, "B", pairing.Term{}, t0.Add(time.Second), pairing.Term{}, "B while A leads")
	lead(t, s, "A", a, t0.Add(5*time.Second), a, "A renews at 5 s")
	lead(t, s, "A", a, t0.Add(10*time.Second), a, "A renews at 10 s")
	// The lease now runs until 10 s + ttl.
	end := t0.Add(10*time.Second + ttl)
	lead(t, s, "B", pairing.Term{}, end.Add(-time.Nanosecond), pairing.Term{}, "B a nanosecond before A's lease runs out")
	lead(t, s, "A", pairing.Term{}, end.Add(-time.Nanosecond), pairing.Term{}, "A naming no term")
	b := lead(t, s, "B", pairing.Term{}, end, pairing.Term{Leader: "B", ElectedAt: end}, "B once A's lease ran out")
	lead(t, s, "A", a, end, pairing.Term{}, "A renewing its term after B took over")
	lead(t, s, "B", b, end.Add(5*time.Second), b, "B renews")
}

// testLeaderLapsed: a leader that renewed too late, with nobody elected
// meanwhile, is elected again: a new term (its old lease did run out).
func testLeaderLapsed(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := lead(t, s, "A", pairing.Term{}, t0, pairing.Term{Leader: "A", ElectedAt: t0}, "elected")
	lead(t, s, "A", a, t0.Add(ttl), pairing.Term{Leader: "A", ElectedAt: t0.Add(ttl)}, "renewing once the lease ran out")
	lead(t, s, "B", pairing.Term{}, t0.Add(ttl+time.Second), pairing.Term{}, "B after A's new election")
}

// testLeaderTerms: a renewal names its term: a term the leader no longer
// holds (it resigned and was elected again since) renews nothing, nor
// does another leader's term, nor one a candidate makes up.
func testLeaderTerms(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	old := lead(t, s, "A", pairing.Term{}, t0, pairing.Term{Leader: "A", ElectedAt: t0}, "first term")
	if err := s.Resign(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	cur := lead(t, s, "A", pairing.Term{}, now, pairing.Term{Leader: "A", ElectedAt: now}, "second term")
	lead(t, s, "A", old, now.Add(time.Second), pairing.Term{}, "renewing the first term")
	lead(t, s, "B", cur, now.Add(time.Second), pairing.Term{}, "B naming A's term")
	lead(t, s, "A", pairing.Term{Leader: "A", ElectedAt: now.Add(time.Second)}, now.Add(time.Second), pairing.Term{}, "a made-up term")
	// None of that touched A's lease: it still runs until now + ttl.
	lead(t, s, "B", pairing.Term{}, now.Add(ttl-time.Nanosecond), pairing.Term{}, "B before A's lease runs out")
	lead(t, s, "A", cur, now.Add(ttl-time.Nanosecond), cur, "A renewing its term")
}

// testLeaderResign: a resigned lease is free at once; resigning a term
// that no longer holds it (twice, or another leader's since) changes
// nothing.
func testLeaderResign(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := lead(t, s, "A", pairing.Term{}, t0, pairing.Term{Leader: "A", ElectedAt: t0}, "A elected")
	if err := s.Resign(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	b := lead(t, s, "B", pairing.Term{}, now, pairing.Term{Leader: "B", ElectedAt: now}, "B right after A resigned")
	for _, term := range []pairing.Term{a, {}} {
		if err := s.Resign(t.Context(), term); err != nil {
			t.Errorf("Resign(%+v): %v", term, err)
		}
	}
	lead(t, s, "C", pairing.Term{}, now.Add(time.Second), pairing.Term{}, "C after stale resignations")
	lead(t, s, "B", b, now.Add(time.Second), b, "B renews")
}

// testLeaderConcurrent: 50 candidates at once (replicas starting
// together): exactly one is elected; then 50 more while its lease runs:
// none is.
func testLeaderConcurrent(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	for _, round := range []struct {
		at   time.Time
		want int32
	}{{t0, 1}, {t0.Add(time.Second), 0}} {
		var won atomic.Int32
		parallel(50, func(i int) {
			term, err := s.Lead(t.Context(), fmt.Sprint("R", i), pairing.Term{}, ttl, round.at)
			if err != nil {
				t.Error(err)
			}
			if !term.IsZero() {
				won.Add(1)
			}
		})
		if won.Load() != round.want {
			t.Errorf("at %s, %d of 50 candidates elected; want %d", round.at.Format(time.TimeOnly), won.Load(), round.want)
		}
	}
}
