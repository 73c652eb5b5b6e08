package pairing

import (
	"context"
	"sync"
	"time"
)

// DefaultLeaderTTL is the leader lease of a bot ticking every 5 s (its
// default): three ticks.
const DefaultLeaderTTL = 15 * time.Second

// leadership is this replica's view of the ticker's leadership.
type leadership struct {
	// call lets one Lead or Resign talk to the storage at a time; mu
	// guards the fields, and is never held during a storage call, so
	// Leadership (a metrics scrape) never waits for the database.
	call sync.Mutex
	mu   sync.Mutex
	term Term // the term it holds (zero: none)
	// trusted is until when it may act as the leader: the start of its
	// last successful election or renewal plus the TTL less the safety
	// margin, on the service's clock (monotonic in production).
	trusted time.Time
	leading bool // what the last Lead answered, to log the changes
}

// Lead says whether this replica may run the ticker now, and is called
// before every tick: it renews this replica's leader lease (or tries to
// win it), and answers true while the last successful election or renewal
// started less than LeaderTTL less a third of it ago on this process's
// clock. The lease runs for LeaderTTL on the storage's clock from a moment
// no earlier than that start, so a leader stops acting at least a third
// of the TTL (a tick) before its lease could pass to another replica, even
// when it cannot reach the storage at all (riverqueue/river's trust
// window). Lease and window are measured from when the attempt began, so
// a slow round trip shortens leadership, never lengthens it.
//
// A failed renewal returns its error (for the log) together with the
// answer, which stays true until the window closes: the storage alone
// cannot hand the lease to another replica before then. Since a lease is
// not a mutex (a pause of this process can outlast it), every edit the
// ticker makes is claimed in the storage too (ClaimView).
//
// The clock is Config.Now: time.Now keeps a monotonic reading, which
// t.Sub and t.Before use, so a step of the wall clock cannot stretch the
// window; a Now that strips it (UTC, Round, Truncate) would give that up.
func (s *Service) Lead(ctx context.Context) (bool, error) {
	l := &s.lead
	l.call.Lock()
	defer l.call.Unlock()
	l.mu.Lock()
	held := l.term
	l.mu.Unlock()
	started := s.cfg.Now()
	// A renewal that answers after the window would close is no use:
	// waiting longer only holds up the ticker.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LeaderTTL-s.leaderMargin())
	term, err := s.db.Lead(ctx, s.cfg.LeaderID, held, s.cfg.LeaderTTL, started)
	cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.term = term
		l.trusted = time.Time{}
		if !term.IsZero() {
			l.trusted = started.Add(s.cfg.LeaderTTL - s.leaderMargin())
		}
	}
	leading := !l.term.IsZero() && s.cfg.Now().Before(l.trusted)
	if leading != l.leading {
		if leading {
			s.cfg.Log.Info("leading the ticker", "leader", l.term.Leader, "elected_at", l.term.ElectedAt)
		} else {
			s.cfg.Log.Warn("no longer leading the ticker", "leader", s.cfg.LeaderID, "err", err)
		}
		l.leading = leading
	}
	return leading, err
}

// leaderMargin is how long before its lease could run out a leader stops
// acting: a third of the TTL, a tick when the TTL is three.
func (s *Service) leaderMargin() time.Duration { return s.cfg.LeaderTTL / 3 }

// Leadership is the term this replica holds (zero when none) and whether
// it may act as the leader now, for metrics: a term that changes while
// leading is a new election.
func (s *Service) Leadership() (Term, bool) {
	l := &s.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term.IsZero() {
		return Term{}, false
	}
	return l.term, s.cfg.Now().Before(l.trusted)
}

// TakeEdit takes one of the perMinute chat.update and chat.delete calls
// the workspace allows in the current minute, across every replica (see
// Storage.TakeEdit): false when none is left this minute, and the edit
// waits for a later tick.
func (s *Service) TakeEdit(ctx context.Context, perMinute int) (bool, error) {
	return s.db.TakeEdit(ctx, s.cfg.Now(), perMinute)
}

// Resign gives the leadership up at once, for a replica that stops: it
// no longer acts as the leader, and another replica is elected at its
// next tick instead of waiting the lease out. An error (the storage
// unreachable) leaves the lease to run out.
func (s *Service) Resign(ctx context.Context) error {
	l := &s.lead
	l.call.Lock()
	defer l.call.Unlock()
	l.mu.Lock()
	term := l.term
	l.term, l.trusted, l.leading = Term{}, time.Time{}, false
	l.mu.Unlock()
	if term.IsZero() {
		return nil
	}
	s.cfg.Log.Info("resigning the ticker's leadership", "leader", term.Leader)
	return s.db.Resign(ctx, term)
}
