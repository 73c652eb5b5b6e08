package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var contextCases = []testCase{
	{"a call with a done context returns ctx.Err() and changes nothing", testDoneContext},
}

// testDoneContext: every method, called with a context already cancelled
// or past its deadline, returns an error that is ctx.Err() and changes
// nothing: no pairing, attempt, watch, instance slot, budget or audit
// event, and no change function runs. (A backend that talks to a server
// would otherwise start work its caller has given up on; one that cannot
// cancel a transaction can still refuse to start one.)
func testDoneContext(t *testing.T, open func(*testing.T) Harness) {
	for _, done := range []struct {
		name string
		ctx  func(t *testing.T) context.Context
		want error
	}{
		{"cancelled", func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}, context.Canceled},
		{"deadline passed", func(t *testing.T) context.Context {
			ctx, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
			t.Cleanup(cancel)
			return ctx
		}, context.DeadlineExceeded},
	} {
		t.Run(done.name, func(t *testing.T) {
			s := open(t).Storage
			// Something for every method to change: a live code (a),
			// a request in flight (b), an ended and shown pairing old
			// enough to prune (d), a used response_url, the audit log.
			live(t, s, reservation("a", "I1", phone(1), "U1", t0))
			b := reserve(t, s, reservation("b", "I2", phone(2), "U2", t0))
			live(t, s, reservation("d", "I4", phone(4), "U4", t0))
			endLive(t, s, "d", t0.Add(time.Second), pairing.StateCancelled, true)
			use(t, s, hookURL, t0, t0, 0, nil, "before")
			leader := lead(t, s, "A", pairing.Term{}, t0, pairing.Term{Leader: "A", ElectedAt: t0}, "before")
			claimView(t, s, claim("a", "dm", "", "x", "held", t0), true, "before")
			before := storedState(t, s)

			ctx := done.ctx(t)
			now := t0.Add(10 * time.Second)
			ran := ""
			change := func(name string) func(*pairing.Pairing) error {
				return func(p *pairing.Pairing) error {
					ran = name
					p.State = pairing.StateFailed
					return nil
				}
			}
			calls := []struct {
				name string
				call func() error
			}{
				{"Reserve", func() error {
					r := reservation("c", "I3", phone(3), "U3", now)
					r.Dedupe = envelope("done-reserve", now)
					_, err := s.Reserve(ctx, r)
					return err
				}},
				{"ClaimCommand", func() error { _, err := s.ClaimCommand(ctx, envelope("done-claim", now), now); return err }},
				{"Lead", func() error { _, err := s.Lead(ctx, "done", pairing.Term{}, ttl, now); return err }},
				{"Lead renewing", func() error { _, err := s.Lead(ctx, "A", leader, ttl, now); return err }},
				{"Resign", func() error { return s.Resign(ctx, leader) }},
				{"ClaimView", func() error {
					c := claim("a", pairing.SurfaceEphemeral, "", "x", "done", now)
					c.URL, c.Issued = hookURL, t0
					_, err := s.ClaimView(ctx, c)
					return err
				}},
				{"FinishView", func() error {
					_, err := s.FinishView(ctx, "a", pairing.SurfaceEphemeral, "held", pairing.Surface{LastView: "y"}, true)
					return err
				}},
				{"Reserve refused", func() error { _, err := s.Reserve(ctx, reservation("e", "I1", phone(5), "U5", now)); return err }},
				{"Settle", func() error {
					_, err := s.Settle(ctx, pairing.Settlement{ID: "b", Now: now, Counted: true, Change: change("Settle"), Audit: event(now, pairing.EventError, b, pairing.OutcomeWawpError)})
					return err
				}},
				{"Interrupt", func() error {
					_, _, err := s.Interrupt(ctx, pairing.Interruption{ID: "b", Now: now, Audit: event(now, pairing.EventInterrupted, b, "")})
					return err
				}},
				{"Pairing", func() error { _, err := s.Pairing(ctx, "a"); return err }},
				{"Holder", func() error { _, err := s.Holder(ctx, "I1", now); return err }},
				{"UpdatePairing", func() error { _, err := s.UpdatePairing(ctx, "a", now, change("UpdatePairing")); return err }},
				{"WatchedPairings", func() error { _, err := s.WatchedPairings(ctx); return err }},
				{"RecordView", func() error { return s.RecordView(ctx, "a", "x", true) }},
				{"NextAllowed", func() error { _, _, err := s.NextAllowed(ctx, phone(1), now, phoneLimit); return err }},
				{"AppendAudit", func() error {
					return s.AppendAudit(ctx, pairing.Event{Time: now, Kind: pairing.EventCancelled, User: "U1", Digits: phone(1), Pairing: "a"})
				}},
				{"Audit", func() error { _, _, err := s.Audit(ctx, pairing.AuditQuery{}); return err }},
				{"UseResponseURL", func() error { return s.UseResponseURL(ctx, hookURL, t0, now, 0) }},
				{"RefundResponseURL", func() error { return s.RefundResponseURL(ctx, hookURL) }},
				{"Prune", func() error {
					far := t0.Add(48 * time.Hour)
					_, err := s.Prune(ctx, far, pairing.PruneBefore{Attempts: far, Pairings: far, AuditEvents: far})
					return err
				}},
			}
			for _, c := range calls {
				if err := c.call(); !errors.Is(err, done.want) {
					t.Errorf("%s with a done context: %v, want %v", c.name, err, done.want)
				}
			}
			if ran != "" {
				t.Errorf("%s ran its change function with a done context", ran)
			}
			if diff := cmp.Diff(before, storedState(t, s)); diff != "" {
				t.Errorf("stored state changed (-before +after):\n%s", diff)
			}
			// A's lease was neither renewed nor resigned: it runs out at
			// t0 + ttl, not a moment before or after.
			lead(t, s, "B", pairing.Term{}, t0.Add(ttl-time.Nanosecond), pairing.Term{}, "B before A's lease runs out")
			lead(t, s, "B", pairing.Term{}, t0.Add(ttl), pairing.Term{Leader: "B", ElectedAt: t0.Add(ttl)}, "B once it ran out")
			// The claim made before is still held, and still its
			// claimer's; no claim was made on the ephemeral message.
			claimView(t, s, claim("a", "dm", "", "x", "other", now), false, "the dm edit")
			claimView(t, s, claim("a", pairing.SurfaceEphemeral, "", "x", "after", now), true, "the ephemeral edit")
			finishView(t, s, "a", "dm", "held", "x", false, true, "the claim made before")
			// Neither key was claimed.
			claimCommand(t, s, envelope("done-reserve", now), now, true, "the done Reserve's key")
			claimCommand(t, s, envelope("done-claim", now), now, true, "the done ClaimCommand's key")
			// One use taken before: four left, neither taken nor given back.
			for i := range pairing.ResponseURLUses - 1 {
				use(t, s, hookURL, t0, now, 0, nil, fmt.Sprintf("use %d after the done calls", i+2))
			}
			use(t, s, hookURL, t0, now, 0, pairing.ErrBudgetSpent, "6th use")
		})
	}
}

// storedState is what a storage holds, read through the interface: each
// of the pairings a to e (or why it cannot be read), the watch list, each
// phone's window and each instance's holder at the suite's "now", and the
// audit log.
func storedState(t *testing.T, s pairing.Storage) map[string]string {
	t.Helper()
	st := map[string]string{}
	now := t0.Add(10 * time.Second)
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		p, err := s.Pairing(t.Context(), id)
		st["pairing "+id] = fmt.Sprintf("%+v %v", p, err)
	}
	st["watched"] = fmt.Sprint(watchedIDs(t, s))
	for i := 1; i <= 5; i++ {
		at, n, err := s.NextAllowed(t.Context(), phone(i), now, phoneLimit)
		st["phone "+phone(i)] = fmt.Sprint(at, n, err)
		h, err := s.Holder(t.Context(), fmt.Sprint("I", i), now)
		st[fmt.Sprint("holder I", i)] = fmt.Sprint(h.ID, err)
	}
	ev, more, err := s.Audit(t.Context(), pairing.AuditQuery{})
	st["audit"] = fmt.Sprintf("%+v %v %v", ev, more, err)
	return st
}
