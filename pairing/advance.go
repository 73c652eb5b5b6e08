package pairing

import (
	"context"
	"errors"
	"sync"
	"time"
)

// pollConcurrency bounds the session-info calls one Advance makes at once.
const pollConcurrency = 16

// Watched returns every watched pairing as stored, moving none on (see
// Advance): what a replica that does not lead the ticker reads to know
// how many edits wait.
func (s *Service) Watched(ctx context.Context) ([]Pairing, error) {
	return s.db.WatchedPairings(ctx)
}

// Advance moves every watched pairing on: it asks Wawp once per instance
// that has a live pairing, then ends pairings whose phone linked (the
// right one or not), whose instance failed or vanished, or whose code
// expired, and requests whose lease ran out unsettled (the process that
// made them stopped mid-request): those end as interrupted. It returns
// every watched pairing as it now stands.
//
// Wawp faults (timeouts, 5xx, garbage, STARTING blips) change nothing: a
// pairing only ever ends on a clear answer or on its own expiry, so a
// flaky Wawp can neither cut a pairing short nor fake a "linked".
func (s *Service) Advance(ctx context.Context) ([]Pairing, error) {
	watched, err := s.db.WatchedPairings(ctx)
	if err != nil {
		return nil, err
	}
	instances := map[string]bool{}
	for _, p := range watched {
		if p.State == StateLive {
			instances[p.Instance] = true
		}
	}
	sessions := s.pollSessions(ctx, instances)
	now := s.cfg.Now()
	for i, p := range watched {
		if p.State == StateRequesting && !now.Before(p.ExpiresAt) {
			if q, _ := s.interrupt(ctx, p.ID, true); q.ID != "" {
				watched[i] = q
			}
			continue
		}
		if p.State != StateLive {
			continue
		}
		st := sessions[p.Instance]
		next, kind, outcome := decide(p, st, now)
		if next == "" {
			continue
		}
		// A QR link is revoked first, while the pairing holds its
		// instance where it still does (see qrservice.go).
		rev, streak := linkGone, 0
		if p.Method == MethodQR {
			var rerr error
			if rev, rerr = s.revokeLink(ctx, p, now); rerr != nil {
				s.cfg.Log.Warn("revoking the QR link of an ended pairing failed; later ticks retry", "pairing", p.ID, "err", rerr)
			}
		} else if next == StateExpired {
			streak = s.expiredInARow(ctx, p)
		}
		audit := s.event(now, kind, p, outcome)
		if p.Phone == "" && next == StateLinked { // a QR link for any number: the one that linked
			audit.Phone, audit.Digits = maskDigits(st.session.Me), st.session.Me
		}
		ended, err := s.db.Settle(ctx, Settlement{
			ID: p.ID, Now: now, Counted: true,
			Change: func(q *Pairing) error {
				if q.State != StateLive {
					return ErrEnded
				}
				q.State, q.Reason = next, Reason(outcome)
				if next == StateLinked || next == StateWrongPhone {
					q.LinkedPhone = st.session.Me
				}
				q.ExpiredInARow = streak
				s.noteRevocation(q, rev, now)
				return nil
			},
			Audit: audit,
		})
		if err == nil && rev == revoked {
			s.audit(ctx, s.event(now, EventQRRevoked, ended, ""))
		}
		if errors.Is(err, ErrEnded) {
			// Cancelled or renewed meanwhile: show what is stored.
			ended, err = s.db.Pairing(ctx, p.ID)
		}
		if err != nil {
			s.logStorageError(ctx, "ending pairing", "pairing", p.ID, "err", err)
			continue
		}
		s.cfg.Log.Info("pairing ended", "pairing", p.ID, "instance", p.InstanceName, "phone", maskDigits(p.Phone), "user", p.RequestedBy, "state", next)
		watched[i] = ended
	}
	s.retryRevocations(ctx, watched, now)
	return watched, nil
}

type sessionResult struct {
	session Session
	err     error
}

// decide returns the state p moves to (empty: it stays live), the audit
// kind and the outcome (also kept as the pairing's Reason).
func decide(p Pairing, st sessionResult, now time.Time) (state State, kind EventKind, outcome Outcome) {
	if st.err == nil {
		switch st.session.Status {
		case StatusWorking:
			switch st.session.Me {
			case "":
				// Working but not saying with whom: wait for a clear answer.
			case p.Phone:
				return StateLinked, EventLinked, ""
			default:
				if p.Phone == "" { // a QR link for any number
					return StateLinked, EventLinked, ""
				}
				return StateWrongPhone, EventWrongPhone, linkedOther(MaskPhone(PhoneFromDigits(st.session.Me).International))
			}
		case StatusFailed:
			return StateFailed, EventError, OutcomeInstanceFailed
		}
	} else if errors.Is(st.err, ErrNoInstance) {
		return StateFailed, EventError, OutcomeInstanceGone
	}
	if !now.Before(p.ExpiresAt) {
		return StateExpired, EventExpired, ""
	}
	return "", "", ""
}

// pollSessions asks Wawp for each instance's session, a bounded number at
// a time, each call with its own timeout.
func (s *Service) pollSessions(ctx context.Context, instances map[string]bool) map[string]sessionResult {
	out := make(map[string]sessionResult, len(instances))
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, pollConcurrency)
	)
	for id := range instances {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			session, err := s.sessionInfo(ctx, id)
			if err != nil && ctx.Err() == nil { // else the tick was stopped: not Wawp's fault
				s.cfg.Log.Warn("polling session", "instance", id, "err", err)
			}
			mu.Lock()
			out[id] = sessionResult{session: session, err: err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// Prune drops what no limit or message needs any more: attempts older than
// the longest limit window, pairings that ended over a day ago, and audit
// events older than the retention period (kept forever when it is zero).
func (s *Service) Prune(ctx context.Context) (PruneStats, error) {
	now := s.cfg.Now()
	window := max(s.cfg.PhoneLimit.Period, s.cfg.UserLimit.Period, s.cfg.QRLimit.Period)
	before := PruneBefore{Attempts: now.Add(-window), Pairings: now.Add(-24 * time.Hour)}
	if s.cfg.AuditRetention > 0 {
		before.AuditEvents = now.Add(-s.cfg.AuditRetention)
	}
	return s.db.Prune(ctx, now, before)
}
