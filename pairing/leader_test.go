package pairing_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// flakyLead is a storage whose Lead can be made to fail (the database
// out of reach of one replica only) or to take a while (during takes
// the clock on by that much, inside the call).
type flakyLead struct {
	pairing.Storage
	fail   atomic.Bool
	clock  *clock
	during time.Duration
}

func (f *flakyLead) Lead(ctx context.Context, leader string, held pairing.Term, ttl time.Duration, now time.Time) (pairing.Term, error) {
	if f.fail.Load() {
		return pairing.Term{}, fmt.Errorf("lead: %w", pairing.ErrUnavailable)
	}
	term, err := f.Storage.Lead(ctx, leader, held, ttl, now)
	f.clock.Add(f.during)
	return term, err
}

// replica is a service named id on storage db, on the shared clock, with
// a leader lease of 15 s (so it acts for 10 s after each renewal).
func replica(r *rig, id string, db pairing.Storage) *pairing.Service {
	return pairing.NewService(r.wawp, db, pairing.Config{Now: r.clock.Now, LeaderID: id, LeaderTTL: 15 * time.Second})
}

// TestLead: of two replicas ticking every 5 s, the first to ask leads
// and keeps its term as long as it renews; the other never acts.
func TestLead(t *testing.T) {
	r := newRig(t, pairing.Config{})
	a, b := replica(r, "A", r.db), replica(r, "B", r.db)
	var first pairing.Term
	for i := range 10 {
		okA, errA := a.Lead(t.Context())
		okB, errB := b.Lead(t.Context())
		if !okA || okB || errA != nil || errB != nil {
			t.Fatalf("tick %d: A %v (%v), B %v (%v); want A alone", i, okA, errA, okB, errB)
		}
		term, leading := a.Leadership()
		if i == 0 {
			first = term
		}
		if !leading || !term.Equal(first) || term.Leader != "A" {
			t.Errorf("tick %d: A's leadership %+v, %v; want its first term %+v", i, term, leading, first)
		}
		if term, leading := b.Leadership(); leading || !term.IsZero() {
			t.Errorf("tick %d: B's leadership %+v, %v; want none", i, term, leading)
		}
		r.clock.Add(5 * time.Second)
	}
}

// TestLeadStopsWhenRenewalFails: a leader that cannot reach the storage
// goes on acting only until its window closes (10 s after its last
// renewal began), 5 s before its lease could pass on; the other replica
// takes over once the lease has run out (15 s). At no moment do both act.
func TestLeadStopsWhenRenewalFails(t *testing.T) {
	r := newRig(t, pairing.Config{})
	flaky := &flakyLead{Storage: r.db, clock: r.clock}
	a, b := replica(r, "A", flaky), replica(r, "B", r.db)
	if ok, err := a.Lead(t.Context()); !ok || err != nil {
		t.Fatalf("A: %v, %v; want elected", ok, err)
	}
	flaky.fail.Store(true)
	for s := time.Duration(1); s <= 20; s++ {
		r.clock.Add(time.Second)
		at := s * time.Second
		okA, errA := a.Lead(t.Context())
		okB, errB := b.Lead(t.Context())
		if !errors.Is(errA, pairing.ErrUnavailable) || errB != nil {
			t.Errorf("at %s: errors A %v, B %v; want A's ErrUnavailable only", at, errA, errB)
		}
		if wantA, wantB := at < 10*time.Second, at >= 15*time.Second; okA != wantA || okB != wantB {
			t.Errorf("at %s: A acts %v, B acts %v; want %v, %v", at, okA, okB, wantA, wantB)
		}
		if okA && okB {
			t.Fatalf("at %s both replicas act as the leader", at)
		}
	}
	// A reaches the storage again: B leads now, A does not.
	flaky.fail.Store(false)
	if ok, err := a.Lead(t.Context()); ok || err != nil {
		t.Errorf("A once the storage is back: %v, %v; want a follower", ok, err)
	}
	if ok, _ := b.Lead(t.Context()); !ok {
		t.Error("B stopped leading")
	}
}

// TestLeadWindowFromAttemptStart: the window is measured from when the
// renewal began, not when it answered: a renewal that took longer than
// the window leaves the leader not acting, though the storage renewed
// its lease; the next, quick one lets it act again.
func TestLeadWindowFromAttemptStart(t *testing.T) {
	r := newRig(t, pairing.Config{})
	flaky := &flakyLead{Storage: r.db, clock: r.clock, during: 10 * time.Second}
	a := replica(r, "A", flaky)
	if ok, err := a.Lead(t.Context()); ok || err != nil {
		t.Errorf("an election that took 10 s: %v, %v; want not acting", ok, err)
	}
	flaky.during = 9 * time.Second
	if ok, err := a.Lead(t.Context()); !ok || err != nil {
		t.Errorf("a renewal that took 9 s: %v, %v; want acting", ok, err)
	}
}

// TestResign: a replica that resigns stops acting at once, and the next
// replica to ask is elected without waiting for the lease to run out.
func TestResign(t *testing.T) {
	r := newRig(t, pairing.Config{})
	a, b := replica(r, "A", r.db), replica(r, "B", r.db)
	if ok, _ := a.Lead(t.Context()); !ok {
		t.Fatal("A not elected")
	}
	if err := a.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, leading := a.Leadership(); leading {
		t.Error("A still leading after resigning")
	}
	r.clock.Add(time.Second)
	if ok, err := b.Lead(t.Context()); !ok || err != nil {
		t.Errorf("B right after A resigned: %v, %v; want elected", ok, err)
	}
	if ok, _ := a.Lead(t.Context()); ok {
		t.Error("A leads again beside B")
	}
}
