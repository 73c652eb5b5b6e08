// Package storetest is the contract of pairing.Storage: one suite that
// every storage backend runs and passes (the bbolt store in package store
// today, PostgreSQL for several replicas later), so the service can rely on
// the same promises whichever one it is given.
//
// The suite talks to the storage only through pairing.Storage and the
// Harness; it never looks inside a backend. Every time is passed in (the
// storage has no clock of its own in the contract), so each check is
// deterministic; the concurrent ones race 50 callers and count outcomes,
// never timings.
//
// A backend runs it from a test of its own:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Harness { … })
//	}
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

// Harness is one fresh, empty storage for a subtest, and what the suite
// needs from outside the interface: a restart, and a look at the audit log
// as kept (to check what is stored, not only what is returned).
type Harness struct {
	// Storage is empty: no pairing, attempt, response_url budget or audit
	// event. The harness closes it when the test ends.
	Storage pairing.Storage
	// Restart closes the storage as a stopping process would and opens the
	// same data again (a new process, the same file or database), returning
	// the new handle. The old handle is not used afterwards.
	Restart func(t *testing.T) pairing.Storage
	// StoredEvents returns every audit event as the backend keeps it: the
	// phone key stored with it and the raw record (the JSON, the row as
	// text), so the suite can check that digits are never kept and that
	// the key depends on a secret of this database.
	StoredEvents func(t *testing.T) []StoredEvent
}

// StoredEvent is an audit event as a backend keeps it.
type StoredEvent struct {
	PhoneKey string
	Raw      string
}

// Run runs the whole contract against the storages open returns, each
// part as a subtest with a fresh storage (open may be called several times
// in one subtest: two databases must differ).
func Run(t *testing.T, open func(t *testing.T) Harness) {
	t.Helper()
	for _, g := range suite {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, open) })
			}
		})
	}
}

// suite is the contract, group by group.
var suite = []struct {
	name  string
	cases []testCase
}{
	{"limits", limitCases},
	{"instance", instanceCases},
	{"lease", leaseCases},
	{"renewal", renewalCases},
	{"update", updateCases},
	{"budget", budgetCases},
	{"holds", holdCases},
	{"watch", watchCases},
	{"audit", auditCases},
	{"prune", pruneCases},
	{"restart", restartCases},
	{"dedupe", dedupeCases},
	{"leader", leaderCases},
	{"edits", editCases},
	{"claims", claimCases},
	{"qr", qrCases},
	{"modal", modalCases},
	{"context", contextCases},
}

type testCase struct {
	name string
	run  func(t *testing.T, open func(*testing.T) Harness)
}

// t0 is the suite's "now": every time is derived from it.
var t0 = time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)

// The limits most cases reserve under.
var (
	phoneLimit = pairing.Window{Max: 3, Period: 15 * time.Minute}
	userLimit  = pairing.Window{Max: 5, Period: time.Hour}
)

// hold is the lease of a reserved request.
const hold = 30 * time.Second

// codeLifetime is how long a settled code stays live.
const codeLifetime = 150 * time.Second

// The code every settled pairing gets. It is a credential: it must be gone
// from the record once the pairing ends.
const testCode = "ABCD1234"

// phone is a digits-only phone number, country code first, for index i.
func phone(i int) string { return fmt.Sprintf("2011122%05d", i) }

// reservation asks for pairing id on instance for phone by user at now,
// under the suite's limits, with both audit events filled in.
func reservation(id, instance, phone, user string, now time.Time) pairing.Reservation {
	p := pairing.Pairing{
		ID: id, Instance: instance, InstanceName: "name-" + strings.ToLower(instance), Phone: phone,
		RequestedBy: user, Team: "T1", Channel: "C1",
		ResponseURL: "https://hooks.slack.test/commands/" + id, URLIssued: now,
	}
	return pairing.Reservation{
		Pairing: p, PhoneLimit: phoneLimit, UserLimit: userLimit, Now: now, Hold: hold,
		Granted: event(now, pairing.EventRequested, p, ""),
		Refused: event(now, pairing.EventRefused, p, ""),
	}
}

// event is the audit record of p, as the service writes it.
func event(at time.Time, kind pairing.EventKind, p pairing.Pairing, outcome pairing.Outcome) pairing.Event {
	return pairing.Event{
		Time: at, Kind: kind, User: p.RequestedBy, Team: p.Team, Channel: p.Channel,
		Instance: p.InstanceName, InstanceID: p.Instance, Phone: "+20 111 ••• " + p.Phone[len(p.Phone)-4:],
		Digits: p.Phone, Pairing: p.ID, Outcome: outcome,
	}
}

// requesting is the pairing Reserve stores for r, granted as the attempt-th
// request for its phone in the window.
func requesting(r pairing.Reservation, attempt int) pairing.Pairing {
	p := r.Pairing
	p.State, p.RequestedAt, p.ExpiresAt, p.Attempt = pairing.StateRequesting, r.Now, r.Now.Add(r.Hold), attempt
	return p
}

// reserve reserves r and fails the test unless it is granted.
func reserve(t *testing.T, s pairing.Storage, r pairing.Reservation) pairing.Pairing {
	t.Helper()
	d, err := s.Reserve(t.Context(), r)
	if err != nil {
		t.Fatalf("Reserve(%s): %v", r.Pairing.ID, err)
	}
	if d.Refused != pairing.LimitNone {
		t.Fatalf("Reserve(%s) refused by the %s limit: %+v", r.Pairing.ID, d.Refused, d)
	}
	return d.Pairing
}

// errEnded is what the suite's change functions return when the pairing is
// no longer in the state they expect (the service's ErrInterrupted and
// ErrEnded play this part).
var errEnded = errors.New("storetest: pairing already ended")

// toState is a settlement change, as the service writes them: only a
// request still Requesting may settle.
func toState(state pairing.State, now time.Time) func(*pairing.Pairing) error {
	return func(p *pairing.Pairing) error {
		if p.State != pairing.StateRequesting {
			return errEnded
		}
		p.State = state
		if state == pairing.StateLive {
			p.Code, p.IssuedAt, p.ExpiresAt = testCode, now, now.Add(codeLifetime)
		}
		return nil
	}
}

// settle settles request id at now in state, counted or not, with the
// event of that state, and fails the test if it cannot.
func settle(t *testing.T, s pairing.Storage, id string, now time.Time, state pairing.State, counted bool) pairing.Pairing {
	t.Helper()
	p, err := s.Settle(t.Context(), pairing.Settlement{ID: id, Now: now, Counted: counted, Change: toState(state, now)})
	if err != nil {
		t.Fatalf("Settle(%s → %s): %v", id, state, err)
	}
	return p
}

// live reserves and settles a live code for id at now.
func live(t *testing.T, s pairing.Storage, r pairing.Reservation) pairing.Pairing {
	t.Helper()
	reserve(t, s, r)
	return settle(t, s, r.Pairing.ID, r.Now, pairing.StateLive, true)
}

// endLive ends live pairing id at now as state (through UpdatePairing, as
// the countdown and Cancel do) and, with shown, records its final view and
// stops watching it.
func endLive(t *testing.T, s pairing.Storage, id string, now time.Time, state pairing.State, shown bool) pairing.Pairing {
	t.Helper()
	p, err := s.UpdatePairing(t.Context(), id, now, func(p *pairing.Pairing) error {
		if p.Final() {
			return errEnded
		}
		p.State = state
		return nil
	})
	if err != nil {
		t.Fatalf("ending %s as %s: %v", id, state, err)
	}
	if shown {
		if err := s.RecordView(t.Context(), id, string(state), true); err != nil {
			t.Fatalf("RecordView(%s): %v", id, err)
		}
	}
	return p
}

// mustPairing reads pairing id, failing the test if it cannot.
func mustPairing(t *testing.T, s pairing.Storage, id string) pairing.Pairing {
	t.Helper()
	p, err := s.Pairing(t.Context(), id)
	if err != nil {
		t.Fatalf("Pairing(%s): %v", id, err)
	}
	return p
}

// watchedIDs is the IDs of the watched pairings, sorted.
func watchedIDs(t *testing.T, s pairing.Storage) []string {
	t.Helper()
	w, err := s.WatchedPairings(t.Context())
	if err != nil {
		t.Fatalf("WatchedPairings: %v", err)
	}
	var ids []string
	for _, p := range w {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

// checkWatched fails unless exactly ids are watched.
func checkWatched(t *testing.T, s pairing.Storage, ids ...string) {
	t.Helper()
	slices.Sort(ids)
	if diff := cmp.Diff(ids, watchedIDs(t, s), cmpEmpty); diff != "" {
		t.Errorf("watched pairings (-want +got):\n%s", diff)
	}
}

// cmpEmpty treats nil and empty slices alike.
var cmpEmpty = cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) })

// count is how many requests phone has in its window at now, as the
// storage says.
func count(t *testing.T, s pairing.Storage, phone string, now time.Time) int {
	t.Helper()
	_, n, err := s.NextAllowed(t.Context(), phone, now, phoneLimit)
	if err != nil {
		t.Fatalf("NextAllowed(%s): %v", phone, err)
	}
	return n
}

// checkHolder fails unless Holder names holder for instance at now
// (without its code; ErrNotFound when holder is empty), and a request for
// instance by another user and phone at now is refused by the instance
// limit, held by holder (code hidden), or granted when holder is empty.
func checkHolder(t *testing.T, s pairing.Storage, instance, holder string, now time.Time) {
	t.Helper()
	switch p, err := s.Holder(t.Context(), instance, now); {
	case holder == "" && !errors.Is(err, pairing.ErrNotFound):
		t.Errorf("Holder(%s) at %s = %q, %v; want ErrNotFound", instance, now.Format(time.TimeOnly), p.ID, err)
	case holder != "" && (err != nil || p.ID != holder || p.Code != ""):
		t.Errorf("Holder(%s) at %s = %q (code %q), %v; want %s without its code", instance, now.Format(time.TimeOnly), p.ID, p.Code, err, holder)
	}
	probe := fmt.Sprintf("probe-%s-%d", instance, now.UnixNano())
	r := reservation(probe, instance, phone(99999), "U-probe", now)
	r.Replaces = "-"                                        // a renewal: a refusal stores nothing
	r.Granted, r.Refused = pairing.Event{}, pairing.Event{} // and the audit log stays as it was
	d, err := s.Reserve(t.Context(), r)
	if err != nil {
		t.Fatalf("probing %s: %v", instance, err)
	}
	switch {
	case holder == "" && d.Refused != pairing.LimitNone:
		t.Errorf("%s should be free at %s; refused by the %s limit, held by %q", instance, now.Format(time.TimeOnly), d.Refused, d.Holder.ID)
	case holder != "" && (d.Refused != pairing.LimitInstance || d.Holder.ID != holder):
		t.Errorf("%s should be held by %s at %s; got refused=%q holder=%q", instance, holder, now.Format(time.TimeOnly), d.Refused, d.Holder.ID)
	case holder != "" && d.Holder.Code != "":
		t.Errorf("the instance refusal handed out the holder's code %q", d.Holder.Code)
	}
	if d.Refused == pairing.LimitNone {
		// Give the instance back and leave the probe out of the limits.
		if _, err := s.Settle(t.Context(), pairing.Settlement{ID: probe, Now: now, Change: toState(pairing.StateFailed, now)}); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordView(t.Context(), probe, "", true); err != nil {
			t.Fatal(err)
		}
	}
}

// events is the whole audit log, oldest first.
func events(t *testing.T, s pairing.Storage) []pairing.Event {
	t.Helper()
	ev, more, err := s.Audit(t.Context(), pairing.AuditQuery{})
	if err != nil || more {
		t.Fatalf("Audit: more=%v, %v", more, err)
	}
	return ev
}

// kinds is each event as pairing:kind[:outcome], for short diffs.
func kinds(ev []pairing.Event) []string {
	var out []string
	for _, e := range ev {
		s := e.Pairing + ":" + string(e.Kind)
		if e.Outcome != "" {
			s += ":" + string(e.Outcome)
		}
		out = append(out, s)
	}
	return out
}

// parallel runs f(0) … f(n-1) at once and waits for them all.
func parallel(n int, f func(i int)) {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}
