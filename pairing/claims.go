package pairing

import (
	"context"
	"time"
)

// ClaimView claims the edit c names before it is posted (see ViewClaim
// and Storage.ClaimView): true when this claim won and the post may go
// ahead; false when the view shown is no longer c.From or another claim
// holds, and the post must not be made; ErrBudgetSpent (nothing claimed)
// when c.URL has no use left that the post may take. It fills in what c
// leaves zero — Token (a fresh one), Now (the service's clock, taken
// before the storage is asked), For (DefaultEditClaim) — and returns the
// claim as made, for HoldsAt and FinishView.
func (s *Service) ClaimView(ctx context.Context, c ViewClaim) (ViewClaim, bool, error) {
	if c.Token == "" {
		c.Token = newID()
	}
	if c.Now.IsZero() {
		c.Now = s.cfg.Now()
	}
	if c.For <= 0 {
		c.For = DefaultEditClaim
	}
	won, err := s.db.ClaimView(ctx, c)
	return c, won, err
}

// FinishView ends claim c: the surface is as shown from now on (see
// Storage.FinishView: shown.LastView is c.To after a post that landed,
// c.From after one that certainly did not, so the edit may be claimed
// again, or any other view; for the DM and the card, shown is also where
// the message now is), and with unwatch the message is no longer kept
// current. False when c is no longer the surface's claim (it ran out and
// was claimed again): then whoever holds the newer claim records what it
// shows.
func (s *Service) FinishView(ctx context.Context, c ViewClaim, shown Surface, unwatch bool) (bool, error) {
	if unwatch {
		// A QR pairing stays watched until its link is revoked.
		if p, err := s.db.Pairing(ctx, c.ID); err == nil && p.Method == MethodQR && p.RevokeDue {
			done, err := s.db.FinishView(ctx, c.ID, c.Surface, c.Token, shown, false)
			if err != nil || !done {
				return done, err
			}
			kept, err := s.keepForRevocation(ctx, c.ID, func(*Pairing) {})
			if err == nil && !kept { // revoked meanwhile
				if p, err = s.db.Pairing(ctx, c.ID); err == nil {
					err = s.db.RecordView(ctx, c.ID, p.LastView, true)
				}
			}
			return true, err
		}
	}
	return s.db.FinishView(ctx, c.ID, c.Surface, c.Token, shown, unwatch)
}

// HoldsAt says whether a post under claim c may still be made at now (the
// service's clock): until a third of c.For before the claim could run
// out in the storage, which measures For from no earlier than c.Now. A
// claimer that was held up past it (a pause, a slow network) drops the
// post rather than risk making it beside a newer claimer.
func (c ViewClaim) HoldsAt(now time.Time) bool {
	return now.Before(c.Now.Add(c.For - c.For/3))
}
