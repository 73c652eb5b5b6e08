package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var pruneCases = []testCase{
	{"attempts", testPruneAttempts},
	{"pairings: ended and shown ones go, live and watched ones stay", testPrunePairings},
	{"response_url budgets: only those past their thirty minutes go", testPruneBudgets},
	{"audit retention, queries right afterwards", testPruneAudit},
}

var restartCases = []testCase{
	{"close and reopen loses nothing", testRestart},
}

// testPruneAttempts: attempts older than PruneBefore.Attempts leave both
// windows, and are counted once each; younger ones still count.
func testPruneAttempts(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	for i := range 3 {
		at := t0.Add(time.Duration(i) * 10 * time.Minute)
		id := fmt.Sprint("p", i)
		reserve(t, s, reservation(id, fmt.Sprint("I", i), phone(1), "U1", at))
		settle(t, s, id, at, pairing.StateFailed, true)
		s.RecordView(t.Context(), id, "failed", true)
	}
	now := t0.Add(30 * time.Minute)
	st, err := s.Prune(t.Context(), now, pairing.PruneBefore{Attempts: t0.Add(15 * time.Minute)})
	if diff := cmp.Diff(pairing.PruneStats{Attempts: 2}, st); diff != "" || err != nil {
		t.Errorf("Prune (-want +got):\n%s%v", diff, err)
	}
	hour := pairing.Window{Max: 3, Period: time.Hour}
	if _, n, _ := s.NextAllowed(t.Context(), phone(1), now, hour); n != 1 {
		t.Errorf("phone counts %d requests in the hour, want 1 (the one after the cutoff)", n)
	}
	r := reservation("u", "I9", phone(2), "U1", now)
	r.UserLimit = pairing.Window{Max: 2, Period: time.Hour}
	if d, err := s.Reserve(t.Context(), r); err != nil || d.Refused != pairing.LimitNone {
		t.Errorf("U1 after pruning: %+v, %v; want granted (1 request left in the hour)", d, err)
	}
}

// testPrunePairings: Prune deletes pairings that ended before
// PruneBefore.Pairings and whose final view is shown (unwatched); it keeps
// live ones (watched or not), ended ones still watched and recent ones.
// A request left unwatched whose lease ran out is ended enough to go, and
// its instance is free.
func testPrunePairings(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	now := t0.Add(2 * time.Hour)
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	if d, _ := s.Reserve(t.Context(), reservation("f", "I1", phone(7), "U7", t0.Add(time.Second))); d.Refused != pairing.LimitInstance {
		t.Fatalf("f: %+v, want refused", d)
	}
	s.RecordView(t.Context(), "f", "limit", true)               // gone: refused, shown
	endLive(t, s, "a", a.ExpiresAt, pairing.StateExpired, true) // gone
	b := live(t, s, reservation("b", "I2", phone(2), "U2", t0))
	endLive(t, s, "b", b.ExpiresAt, pairing.StateExpired, false)                 // kept: its view is not shown
	live(t, s, reservation("c", "I3", phone(3), "U3", now.Add(-10*time.Second))) // kept: live
	live(t, s, reservation("c2", "I4", phone(4), "U4", now.Add(-10*time.Second)))
	s.RecordView(t.Context(), "c2", "code", true) // kept: live, though not watched
	live(t, s, reservation("d", "I5", phone(5), "U5", t0.Add(80*time.Minute)))
	endLive(t, s, "d", t0.Add(90*time.Minute), pairing.StateCancelled, true) // kept: ended after the cutoff
	reserve(t, s, reservation("e", "I6", phone(6), "U6", t0))
	s.RecordView(t.Context(), "e", "", true) // gone: lease ran out, not watched

	kept := map[string]pairing.Pairing{}
	for _, id := range []string{"b", "c", "c2", "d"} {
		kept[id] = mustPairing(t, s, id)
	}
	st, err := s.Prune(t.Context(), now, pairing.PruneBefore{Pairings: t0.Add(time.Hour)})
	if diff := cmp.Diff(pairing.PruneStats{Pairings: 3}, st); diff != "" || err != nil {
		t.Errorf("Prune (-want +got):\n%s%v", diff, err)
	}
	for _, id := range []string{"a", "e", "f"} {
		if _, err := s.Pairing(t.Context(), id); !errors.Is(err, pairing.ErrNotFound) {
			t.Errorf("%s kept: %v", id, err)
		}
	}
	for id, want := range kept {
		if diff := cmp.Diff(want, mustPairing(t, s, id)); diff != "" {
			t.Errorf("%s changed (-want +got):\n%s", id, diff)
		}
	}
	checkWatched(t, s, "b", "c")
	checkHolder(t, s, "I3", "c", now)
	checkHolder(t, s, "I4", "c2", now)
	checkHolder(t, s, "I6", "", now)
}

// testPruneBudgets: budgets of response_urls past their thirty minutes go;
// a budget still running keeps its count.
//
// A budget is pruned only once its thirty minutes are over: one issued 29
// minutes ago with two uses taken still has exactly three after Prune
// (pruned too early, it would have five, and Slack refuses the 6th post).
func testPruneBudgets(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	now := t0.Add(2 * time.Hour)
	use(t, s, hookURL+"-old", t0, t0, 0, nil, "old url")
	budgets := []struct {
		url    string
		issued time.Time
	}{
		{hookURL + "-recent", now.Add(-10 * time.Minute)},
		{hookURL + "-29min", now.Add(-pairing.ResponseURLLifetime + time.Minute)},
	}
	for _, b := range budgets {
		for range 2 {
			use(t, s, b.url, b.issued, b.issued, 0, nil, b.url+" before pruning")
		}
	}
	st, err := s.Prune(t.Context(), now, pairing.PruneBefore{})
	if diff := cmp.Diff(pairing.PruneStats{ResponseURLs: 1}, st); diff != "" || err != nil {
		t.Errorf("Prune (-want +got):\n%s%v", diff, err)
	}
	for _, b := range budgets {
		for i := range 3 {
			use(t, s, b.url, b.issued, now, 0, nil, fmt.Sprintf("%s, use %d after pruning", b.url, i+3))
		}
		use(t, s, b.url, b.issued, now, 0, pairing.ErrBudgetSpent, b.url+", 6th use after pruning")
	}
}

// testPruneAudit: events before PruneBefore.AuditEvents go and nothing
// else; every query (by time, phone, instance, limit) is right afterwards;
// a zero AuditEvents keeps the whole log.
func testPruneAudit(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	all := seedEvents(t, s)
	st, err := s.Prune(t.Context(), t0.Add(2*time.Hour), pairing.PruneBefore{})
	if st.AuditEvents != 0 || err != nil {
		t.Errorf("without a retention: pruned %+v, %v", st, err)
	}
	st, err = s.Prune(t.Context(), t0.Add(2*time.Hour), pairing.PruneBefore{AuditEvents: t0.Add(25 * time.Minute)})
	if diff := cmp.Diff(pairing.PruneStats{AuditEvents: 25}, st); diff != "" || err != nil {
		t.Errorf("Prune (-want +got):\n%s%v", diff, err)
	}
	checkQueries(t, s, all, func(i int) bool { return i >= 25 })
	// New events are indexed as before.
	e := pairing.Event{Time: t0.Add(2 * time.Hour), Kind: pairing.EventLinked, User: "U9", Instance: "Field-NG", Digits: "201112223330", Pairing: "new"}
	if err := s.AppendAudit(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	for _, q := range []pairing.AuditQuery{{Phone: "201112223330", Limit: 1}, {Instances: []string{"field-ng"}, Limit: 1}} {
		if got, _, err := s.Audit(t.Context(), q); err != nil || len(got) != 1 || got[0].Pairing != "new" {
			t.Errorf("Audit(%+v) after pruning = %v, %v; want the new event", q, kinds(got), err)
		}
	}
}

// testRestart: a storage closed and opened again (a restart, a deploy)
// has everything it had: pairings, the watch list, the limits' windows,
// the instance held by a live code and by a request in flight,
// response_url budgets, and the audit log, still found by phone.
func testRestart(t *testing.T, open func(*testing.T) Harness) {
	h := open(t)
	s := h.Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	if err := s.RecordView(t.Context(), "a", "code", false); err != nil {
		t.Fatal(err)
	}
	reserve(t, s, reservation("b", "I2", phone(1), "U1", t0.Add(10*time.Second))) // in flight
	reserve(t, s, reservation("c", "I3", phone(1), "U1", t0.Add(20*time.Second)))
	settle(t, s, "c", t0.Add(20*time.Second), pairing.StateFailed, true)
	s.RecordView(t.Context(), "c", "failed", true)
	s.Reserve(t.Context(), reservation("d", "I1", phone(2), "U2", t0.Add(25*time.Second))) // refused, watched
	if err := s.AppendAudit(t.Context(), pairing.Event{Time: t0.Add(26 * time.Second), Kind: pairing.EventCancelled, User: "U1", Digits: phone(1), Pairing: "x"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		use(t, s, hookURL, t0, t0.Add(26*time.Second), 0, nil, "before the restart")
	}
	now := t0.Add(30 * time.Second)

	type snapshot struct {
		Pairings []pairing.Pairing
		Watched  []pairing.Pairing
		NextAt   time.Time
		Count    int
		Events   []pairing.Event
		ByPhone  []pairing.Event
	}
	take := func(s pairing.Storage) snapshot {
		t.Helper()
		var sn snapshot
		for _, id := range []string{"a", "b", "c", "d"} {
			sn.Pairings = append(sn.Pairings, mustPairing(t, s, id))
		}
		var err error
		if sn.Watched, err = s.WatchedPairings(t.Context()); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(sn.Watched, func(a, b pairing.Pairing) int { return strings.Compare(a.ID, b.ID) })
		if sn.NextAt, sn.Count, err = s.NextAllowed(t.Context(), phone(1), now, phoneLimit); err != nil {
			t.Fatal(err)
		}
		sn.Events = events(t, s)
		if sn.ByPhone, _, err = s.Audit(t.Context(), pairing.AuditQuery{Phone: phone(1)}); err != nil {
			t.Fatal(err)
		}
		return sn
	}
	before := take(s)
	if len(before.Watched) != 3 || before.Count != 3 || len(before.ByPhone) != 4 {
		t.Fatalf("before the restart: %d watched, %d requests, %d events of the phone; want 3, 3, 4", len(before.Watched), before.Count, len(before.ByPhone))
	}
	s = h.Restart(t)
	if diff := cmp.Diff(before, take(s)); diff != "" {
		t.Errorf("after the restart (-before +after):\n%s", diff)
	}
	if err := s.AppendAudit(t.Context(), pairing.Event{Time: now, Kind: pairing.EventRequested, User: "U1", Digits: phone(1), Pairing: "y"}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Audit(t.Context(), pairing.AuditQuery{Phone: phone(1)}); len(got) != len(before.ByPhone)+1 {
		t.Errorf("by phone after the restart: %v; want the %d events from before and the new one", kinds(got), len(before.ByPhone))
	}
	if d, err := s.Reserve(t.Context(), reservation("e", "I9", phone(1), "U9", now)); err != nil || d.Refused != pairing.LimitPhone || !d.RetryAt.Equal(t0.Add(phoneLimit.Period)) || d.Count != 3 {
		t.Errorf("the phone's 4th request after the restart: %+v, %v; want refused until 14:15", d, err)
	}
	checkHolder(t, s, "I1", "a", now)
	checkHolder(t, s, "I2", "b", now)
	for i := range 2 {
		use(t, s, hookURL, t0, now, 0, nil, fmt.Sprintf("use %d after the restart", i+4))
	}
	use(t, s, hookURL, t0, now, 0, pairing.ErrBudgetSpent, "6th use after the restart")
	if _, ended, err := s.Interrupt(t.Context(), pairing.Interruption{ID: "b", Now: t0.Add(10*time.Second + hold), Lapsed: true}); !ended || err != nil {
		t.Errorf("interrupting the request in flight after the restart: ended=%v, %v", ended, err)
	}
}
