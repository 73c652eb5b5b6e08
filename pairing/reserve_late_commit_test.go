package pairing_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// lateCommit is a storage whose first Reserve answers ErrUnavailable (the
// connection was reset) while its COMMIT is still being made durable on
// the server (a slow fsync, a synchronous standby): the transaction is not
// yet visible when the service looks the pairing up, and becomes visible
// right after that lookup.
type lateCommit struct {
	pairing.Storage
	pending *pairing.Reservation
}

func (l *lateCommit) Reserve(ctx context.Context, r pairing.Reservation) (pairing.Decision, error) {
	if l.pending == nil {
		l.pending = &r
		return pairing.Decision{}, fmt.Errorf("reserve: %w: read tcp: connection reset by peer", pairing.ErrUnavailable)
	}
	return l.Storage.Reserve(ctx, r)
}

func (l *lateCommit) Pairing(ctx context.Context, id string) (pairing.Pairing, error) {
	if l.pending != nil && l.pending.Pairing.ID == id {
		// Not yet visible to this lookup; the COMMIT lands right after.
		r := *l.pending
		l.pending = &pairing.Reservation{}
		if _, err := l.Storage.Reserve(ctx, r); err != nil {
			return pairing.Pairing{}, err
		}
		return pairing.Pairing{}, fmt.Errorf("pairing %q: %w", id, pairing.ErrNotFound)
	}
	return l.Storage.Pairing(ctx, id)
}

// ReservedPairing waits for a Reserve still in flight, as the stores do
// (Reserve's locks): the late COMMIT lands before the lookup reads.
func (l *lateCommit) ReservedPairing(ctx context.Context, p pairing.Pairing) (pairing.Pairing, error) {
	if l.pending != nil && l.pending.Pairing.ID == p.ID {
		r := *l.pending
		l.pending = &pairing.Reservation{}
		if _, err := l.Storage.Reserve(ctx, r); err != nil {
			return pairing.Pairing{}, err
		}
	}
	return l.Storage.ReservedPairing(ctx, p)
}

// TestReserveCommitLandingAfterUndoLookup: a COMMIT whose reply was lost
// may still be in progress on the server when undoReserve looks the
// pairing up, and become visible a moment later; a plain lookup by ID
// (Pairing) misses it, the reservation holds the instance and counts the
// attempt, and the person's "try again" is refused. undoReserve looks up
// with ReservedPairing, which waits for the Reserve in flight.
func TestReserveCommitLandingAfterUndoLookup(t *testing.T) {
	r := newRig(t, pairing.Config{})
	db := &lateCommit{Storage: r.db}
	svc := pairing.NewService(r.wawp, db, pairing.Config{Now: r.clock.Now, Sleep: func(_ context.Context, d time.Duration) error {
		r.clock.Add(d)
		return nil
	}})

	_, err := svc.Start(t.Context(), request(inst1, digits, "U1"))
	if !errors.Is(err, pairing.ErrUnavailable) {
		t.Fatalf("Start with Reserve's reply lost: %v; want ErrUnavailable (\"try again\")", err)
	}
	if n := r.count(digits); n != 0 {
		t.Errorf("after the answer \"try again\", the phone has %d attempt(s) counted; want 0", n)
	}
	p, err := svc.Start(t.Context(), request(inst1, digits, "U1"))
	if err != nil || p.State != pairing.StateLive {
		t.Errorf("the person's \"try again\": %s, %v; want granted and live", p.State, err)
	}
}
