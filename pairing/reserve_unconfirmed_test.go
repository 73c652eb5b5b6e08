package pairing_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// lostCommitReply is a storage whose first Reserve is applied but answers
// ErrUnavailable (the connection dropped after the COMMIT reached the
// server, before its reply came back), and whose next lookups fail while
// the database is still away.
type lostCommitReply struct {
	pairing.Storage
	lost       bool
	downLookup int
}

func (l *lostCommitReply) Reserve(ctx context.Context, r pairing.Reservation) (pairing.Decision, error) {
	d, err := l.Storage.Reserve(ctx, r)
	if err == nil && !l.lost {
		l.lost = true
		return pairing.Decision{}, fmt.Errorf("reserve: %w: read tcp: connection reset by peer", pairing.ErrUnavailable)
	}
	return d, err
}

func (l *lostCommitReply) ReservedPairing(ctx context.Context, p pairing.Pairing) (pairing.Pairing, error) {
	if l.downLookup > 0 {
		l.downLookup--
		return pairing.Pairing{}, fmt.Errorf("pairing %q: %w: dial tcp: connection refused", p.ID, pairing.ErrUnavailable)
	}
	return l.Storage.ReservedPairing(ctx, p)
}

// TestReserveLostCommitReplyUndone (issue 11 review: "commands during the
// gap get a clear answer, nothing is left half-done"): Reserve's writes
// committed but its reply was lost, so it answered ErrUnavailable and
// Wawp was never called. Once the database answers again, the service
// finds the reservation and ends it uncounted: the person still gets
// "try again", and that try is granted (the instance is free, nothing
// counted). Request-code was never called for the lost one.
func TestReserveLostCommitReplyUndone(t *testing.T) {
	r := newRig(t, pairing.Config{})
	db := &lostCommitReply{Storage: r.db, downLookup: 2}
	var waits []time.Duration
	svc := pairing.NewService(r.wawp, db, pairing.Config{Now: r.clock.Now, Sleep: func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		r.clock.Add(d)
		return nil
	}})

	_, err := svc.Start(t.Context(), request(inst1, digits, "U1"))
	if !errors.Is(err, pairing.ErrUnavailable) || pairing.OutcomeOf(err) != pairing.OutcomeUnavailable {
		t.Fatalf("Start with Reserve's reply lost: %v; want ErrUnavailable (\"try again\")", err)
	}
	if calls := r.wawp.takeCalls(); len(calls) != 0 {
		t.Errorf("wawp calls %v; want none", calls)
	}
	if len(waits) != 2 {
		t.Errorf("waits %v; want a backoff per failed lookup", waits)
	}
	if n := r.count(digits); n != 0 {
		t.Errorf("after the answer \"try again\", the phone has %d attempt(s) counted; want 0", n)
	}
	if live := r.liveOn(inst1.ID); len(live) != 0 {
		t.Errorf("instance held by %v", live)
	}

	p, err := svc.Start(t.Context(), request(inst1, digits, "U1"))
	if err != nil || p.State != pairing.StateLive {
		t.Errorf("the person's \"try again\": %s, %v; want granted and live", p.State, err)
	}
	if n := r.count(digits); n != 1 {
		t.Errorf("%d attempts counted after the retry; want 1", n)
	}
}
