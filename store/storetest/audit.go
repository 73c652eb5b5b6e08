package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var auditCases = []testCase{
	{"queries", testAuditQuery},
	{"an instance's events by its ID, not an alias reused later", testAuditInstanceByID},
	{"order and empty events", testAuditOrder},
	{"phone keys are keyed per database and never returned", testPhoneKeys},
}

// seedPhone is the phone of seeded event i, "" for every tenth (a refusal
// before the phone was understood).
func seedPhone(i int) string {
	if i%10 == 9 {
		return ""
	}
	return fmt.Sprintf("20111222333%d", i%3)
}

// seedEvents appends 60 events, one a minute from t0: 3 phones, 2
// instances (support-eg recorded with its ID from the 30th on, as the
// service writes events today; the earlier ones by alias alone, as older
// versions did), 4 users, every fifth a hand-off's (with a recipient). It returns them as Audit should return them:
// without digits or phone key.
func seedEvents(t *testing.T, s pairing.Storage) []pairing.Event {
	t.Helper()
	var all []pairing.Event
	for i := range 60 {
		e := pairing.Event{
			Time: t0.Add(time.Duration(i) * time.Minute), Kind: pairing.EventRequested, User: fmt.Sprintf("U%d", i%4),
			Instance: []string{"support-eg", "Field-NG"}[i%2], Pairing: fmt.Sprint("p", i),
			Digits: seedPhone(i), Outcome: pairing.OutcomeCodeIssued,
		}
		if e.Digits != "" {
			e.Phone = "+20 111 ••• 333" + e.Digits[11:]
		}
		if i%2 == 0 && i >= 30 {
			e.InstanceID = "A1B2C3D4E5F6"
		}
		if i%5 == 0 {
			e.Recipient = "U9" // a hand-off's: who got the code (issue 9)
		}
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		e.Digits = ""
		all = append(all, e)
	}
	return all
}

// auditQueries are the ways of narrowing the log, each with the events of
// seedEvents it matches (by index), before its Limit keeps the newest.
var auditQueries = []struct {
	name  string
	q     pairing.AuditQuery
	match func(i int) bool
}{
	{"all", pairing.AuditQuery{}, func(int) bool { return true }},
	{"since", pairing.AuditQuery{Since: t0.Add(50 * time.Minute)}, func(i int) bool { return i >= 50 }},
	{"window: since included, until not", pairing.AuditQuery{Since: t0.Add(10 * time.Minute), Until: t0.Add(20 * time.Minute)}, func(i int) bool { return i >= 10 && i < 20 }},
	{"limit keeps the newest", pairing.AuditQuery{Limit: 5}, func(int) bool { return true }},
	{"limit not reached", pairing.AuditQuery{Since: t0.Add(55 * time.Minute), Limit: 5}, func(i int) bool { return i >= 55 }},
	{"limit in a window", pairing.AuditQuery{Until: t0.Add(20 * time.Minute), Limit: 3}, func(i int) bool { return i < 20 }},
	{"phone", pairing.AuditQuery{Phone: "201112223331"}, func(i int) bool { return seedPhone(i) == "201112223331" }},
	{"phone, last 3", pairing.AuditQuery{Phone: "201112223331", Limit: 3}, func(i int) bool { return seedPhone(i) == "201112223331" }},
	{"phone in a window", pairing.AuditQuery{Phone: "201112223330", Since: t0.Add(20 * time.Minute), Until: t0.Add(40 * time.Minute)}, func(i int) bool { return seedPhone(i) == "201112223330" && i >= 20 && i < 40 }},
	{"unknown phone", pairing.AuditQuery{Phone: "201009998888"}, func(int) bool { return false }},
	{"instance by name, any case", pairing.AuditQuery{Instances: []string{"field-ng"}}, func(i int) bool { return i%2 == 1 }},
	{"instance by ID", pairing.AuditQuery{Instances: []string{"A1B2C3D4E5F6"}}, func(i int) bool { return i%2 == 0 && i >= 30 }},
	{"instance by name and ID, each event once", pairing.AuditQuery{Instances: []string{"support-eg", "a1b2c3d4e5f6"}}, func(i int) bool { return i%2 == 0 }},
	{"alias alone: only events that recorded no ID", pairing.AuditQuery{Instances: []string{"support-eg"}}, func(i int) bool { return i%2 == 0 && i < 30 }},
	{"two aliases, last 4", pairing.AuditQuery{Instances: []string{"SUPPORT-EG", "Field-NG"}, Limit: 4}, func(i int) bool { return i%2 == 1 || i < 30 }},
	{"instance, last 2", pairing.AuditQuery{Instances: []string{"Field-NG"}, Limit: 2}, func(i int) bool { return i%2 == 1 }},
	{"phone and instance", pairing.AuditQuery{Phone: "201112223332", Instances: []string{"support-eg", "A1B2C3D4E5F6"}}, func(i int) bool { return seedPhone(i) == "201112223332" && i%2 == 0 }},
	{"keep, limit: dropped events do not count", pairing.AuditQuery{Keep: func(e pairing.Event) bool { return e.User == "U1" }, Limit: 2}, func(i int) bool { return i%4 == 1 }},
	{"keep, phone", pairing.AuditQuery{Phone: "201112223330", Keep: func(e pairing.Event) bool { return e.Instance == "Field-NG" }}, func(i int) bool { return seedPhone(i) == "201112223330" && i%2 == 1 }},
}

// checkQueries runs every auditQuery against s, expecting the events of
// all (seedEvents' result) that left says are still there: oldest first,
// the newest Limit of them, and more exactly when the limit left some out.
func checkQueries(t *testing.T, s pairing.Storage, all []pairing.Event, left func(i int) bool) {
	t.Helper()
	for _, tt := range auditQueries {
		t.Run(tt.name, func(t *testing.T) {
			var want []pairing.Event
			for i, e := range all {
				if tt.match(i) && left(i) {
					want = append(want, e)
				}
			}
			wantMore := tt.q.Limit > 0 && len(want) > tt.q.Limit
			if wantMore {
				want = want[len(want)-tt.q.Limit:]
			}
			got, more, err := s.Audit(t.Context(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if more != wantMore {
				t.Errorf("more = %v, want %v", more, wantMore)
			}
		})
	}
}

// testAuditQuery checks every way of narrowing the log against a plain
// filter over all events.
func testAuditQuery(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	all := seedEvents(t, s)
	checkQueries(t, s, all, func(int) bool { return true })
}

// testAuditInstanceByID: an instance query reads an event that records its
// instance ID as that instance's, whatever alias it was recorded under: an
// alias reused for another instance (instance replaced, alias kept) must
// not bring the old instance's events into the new one's history. Events
// written before IDs were recorded are matched by their alias.
func testAuditInstanceByID(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	all := []pairing.Event{
		{Time: t0, Kind: pairing.EventRequested, User: "UOLD", Instance: "support"},                                             // before IDs were recorded
		{Time: t0.Add(time.Minute), Kind: pairing.EventRequested, User: "UNG", Instance: "support", InstanceID: "B1B2C3D4E5F6"}, // "support" was NG then
		{Time: t0.Add(2 * time.Minute), Kind: pairing.EventRequested, User: "UEG", Instance: "support", InstanceID: "A1B2C3D4E5F6"},
		{Time: t0.Add(3 * time.Minute), Kind: pairing.EventRequested, User: "UEG", Instance: "support-eg", InstanceID: "A1B2C3D4E5F6"},
	}
	for _, e := range all {
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := s.Audit(t.Context(), pairing.AuditQuery{Instances: []string{"A1B2C3D4E5F6", "support"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]pairing.Event{all[0], all[2], all[3]}, got); diff != "" {
		t.Errorf("events of A1B2C3D4E5F6, today called support (-want +got):\n%s", diff)
	}
}

// testAuditOrder: events of one instant come back in the order appended;
// an event without a kind is not appended.
func testAuditOrder(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	for _, p := range []string{"b", "a", "c"} {
		if err := s.AppendAudit(t.Context(), pairing.Event{Time: t0, Kind: pairing.EventRequested, User: "U1", Pairing: p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendAudit(t.Context(), pairing.Event{Time: t0, User: "U1", Pairing: "no kind"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(t.Context(), pairing.Event{Time: t0.Add(-time.Second), Kind: pairing.EventLinked, User: "U1", Pairing: "earlier"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"earlier:linked", "b:requested", "a:requested", "c:requested"}
	if diff := cmp.Diff(want, kinds(events(t, s))); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}
	got, more, _ := s.Audit(t.Context(), pairing.AuditQuery{Limit: 2})
	if diff := cmp.Diff(want[2:], kinds(got)); diff != "" || !more {
		t.Errorf("the last two (-want +got):\n%s more=%v", diff, more)
	}
}

// testPhoneKeys: a phone's events are found by its digits, but the digits
// are never kept: the storage keeps a key computed under a secret of its
// own, so two databases give one phone different keys (an exported event's
// key cannot be recomputed from a guessed number), and neither the key nor
// the digits is ever returned.
func testPhoneKeys(t *testing.T, open func(*testing.T) Harness) {
	const digits = "201112223333"
	e := pairing.Event{Time: t0, Kind: pairing.EventRequested, User: "U1", Instance: "support-eg", Phone: "+20 111 ••• 3333", Digits: digits}
	var keys []string
	for db := range 2 {
		h := open(t)
		if err := h.Storage.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		got, _, err := h.Storage.Audit(t.Context(), pairing.AuditQuery{Phone: digits})
		if err != nil || len(got) != 1 {
			t.Fatalf("database %d: Audit by phone = %+v, %v; want the event", db, got, err)
		}
		if got[0].PhoneKey != "" || got[0].Digits != "" {
			t.Errorf("database %d: Audit returned the phone key %q or digits %q", db, got[0].PhoneKey, got[0].Digits)
		}
		stored := h.StoredEvents(t)
		if len(stored) != 1 || stored[0].PhoneKey == "" {
			t.Fatalf("database %d: stored %+v, want one event with a phone key", db, stored)
		}
		if strings.Contains(stored[0].Raw, digits) || strings.Contains(stored[0].PhoneKey, digits) {
			t.Errorf("database %d keeps the digits: %s", db, stored[0].Raw)
		}
		keys = append(keys, stored[0].PhoneKey)
	}
	if keys[0] == keys[1] {
		t.Errorf("two databases gave one phone the same key %s: it does not depend on a secret of each", keys[0])
	}
}
