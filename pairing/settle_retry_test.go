package pairing_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// flakySettle is a storage whose next fails Settles fail as an unreachable
// database does (a TCP reset as the COMMIT goes out); fails < 0 fails
// every one.
type flakySettle struct {
	pairing.Storage
	mu      sync.Mutex
	fails   int
	settles int
	// applied: a failing Settle is applied first (its reply was lost).
	applied bool
}

func (f *flakySettle) Settle(ctx context.Context, s pairing.Settlement) (pairing.Pairing, error) {
	f.mu.Lock()
	f.settles++
	fail := f.fails != 0
	if f.fails > 0 {
		f.fails--
	}
	f.mu.Unlock()
	if fail {
		if f.applied {
			if _, err := f.Storage.Settle(ctx, s); err != nil {
				return pairing.Pairing{}, err
			}
		}
		return pairing.Pairing{}, fmt.Errorf("settle pairing %q: %w: read tcp: connection reset by peer", s.ID, pairing.ErrUnavailable)
	}
	return f.Storage.Settle(ctx, s)
}

// TestCodeKeptThroughDatabaseBlip (issue 11: "the database restarted
// mid-run: nothing is left half-done"): the database drops one call right
// after Wawp issued the code. Settling is retried (it is idempotent)
// within the request's lease, so the code is recorded and shown, and
// request-code is called once. The waits move the test's clock.
func TestCodeKeptThroughDatabaseBlip(t *testing.T) {
	r := newRig(t, pairing.Config{})
	flaky := &flakySettle{Storage: r.db, fails: 1}
	var waits []time.Duration
	svc := pairing.NewService(r.wawp, flaky, pairing.Config{Now: r.clock.Now, Sleep: func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		r.clock.Add(d)
		return nil
	}})

	p, err := svc.Start(t.Context(), request(inst1, digits, "U1"))
	if err != nil || p.State != pairing.StateLive || p.Code == "" {
		t.Errorf("Start with the database gone for one call after request-code: state %q, code set %v, err %v; want the code recorded and live once the database answers again", p.State, p.Code != "", err)
	}
	if calls := r.wawp.takeCalls(); len(calls) != 2 {
		t.Fatalf("wawp calls %v; want the session check and one request-code", calls)
	}
	if len(waits) != 1 {
		t.Errorf("waits %v; want one backoff before the second Settle", waits)
	}
}

// TestCodeUnrecordedAfterLease: a database that never answers within the
// request's lease: Start stops retrying when the lease would be over,
// never calls request-code again, and says honestly that a code was
// issued but could not be recorded (not "nothing was done").
func TestCodeUnrecordedAfterLease(t *testing.T) {
	r := newRig(t, pairing.Config{})
	flaky := &flakySettle{Storage: r.db, fails: -1}
	var slept time.Duration
	svc := pairing.NewService(r.wawp, flaky, pairing.Config{Now: r.clock.Now, Sleep: func(_ context.Context, d time.Duration) error {
		slept += d
		r.clock.Add(d)
		return nil
	}})
	start := r.clock.Now()
	_, err := svc.Start(t.Context(), request(inst1, digits, "U1"))
	if !errors.Is(err, pairing.ErrCodeUnrecorded) || pairing.OutcomeOf(err) != pairing.OutcomeCodeUnrecorded {
		t.Errorf("Start: %v (outcome %s); want ErrCodeUnrecorded", err, pairing.OutcomeOf(err))
	}
	if calls := r.wawp.takeCalls(); len(calls) != 2 {
		t.Errorf("wawp calls %v; want request-code once", calls)
	}
	if lease := svc.RequestLease(); slept >= lease || r.clock.Now().Sub(start) >= lease {
		t.Errorf("retried for %s; the request's lease is %s", slept, lease)
	}
	if flaky.settles < 3 {
		t.Errorf("%d Settle calls; want retries with backoff", flaky.settles)
	}
}

// TestCodeSettledBeforeReplyLost: the settlement of a code was applied but
// its reply was lost. The retry finds its own earlier try (the pairing
// live with this code) and Start returns it live, not "interrupted", with
// one code_issued in the audit log.
func TestCodeSettledBeforeReplyLost(t *testing.T) {
	r := newRig(t, pairing.Config{})
	flaky := &flakySettle{Storage: r.db, fails: 1, applied: true}
	svc := pairing.NewService(r.wawp, flaky, pairing.Config{Now: r.clock.Now, Sleep: func(_ context.Context, d time.Duration) error {
		r.clock.Add(d)
		return nil
	}})
	p, err := svc.Start(t.Context(), request(inst1, digits, "U1"))
	if err != nil || p.State != pairing.StateLive || p.Code == "" {
		t.Errorf("Start: state %q, code set %v, err %v; want live with its code", p.State, p.Code != "", err)
	}
	issued := 0
	for _, e := range r.events() {
		if e.Kind == pairing.EventCodeIssued {
			issued++
		}
	}
	if issued != 1 {
		t.Errorf("%d code_issued events; want 1:\n%v", issued, kinds(r.events()))
	}
}

// TestQRLinkKeptThroughDatabaseBlip: as TestCodeKeptThroughDatabaseBlip,
// for a QR link (a credential too): its settlement is retried within the
// request's lease, the link is stored and shown, not revoked, and
// CreateTempLink is called once.
func TestQRLinkKeptThroughDatabaseBlip(t *testing.T) {
	for _, applied := range []bool{false, true} {
		t.Run(fmt.Sprintf("reply lost %v", applied), func(t *testing.T) {
			r := newQRRig(t, pairing.Config{})
			flaky := &flakySettle{Storage: r.db, fails: 1, applied: applied}
			r.svc = pairing.NewService(r.qr, flaky, pairing.Config{Now: r.clock.Now, Sleep: func(_ context.Context, d time.Duration) error {
				r.clock.Add(d)
				return nil
			}})
			p, err := r.svc.StartQR(t.Context(), qrRequest(inst1, "", "U1"))
			if err != nil || p.State != pairing.StateLive || p.Link == "" {
				t.Errorf("StartQR with the database gone for one call after the link was made: state %q, link set %v, err %v; want live", p.State, p.Link != "", err)
			}
			if n := flaky.settles; n != 2 {
				t.Errorf("%d Settle calls; want 2", n)
			}
			if calls := r.wawp.takeCalls(); len(calls) != 2 {
				t.Errorf("wawp calls %v; want the session check and one link, never revoked", calls)
			}
		})
	}
}
