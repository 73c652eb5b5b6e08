package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

// ClaimCommand claims d.Key (see pairing.Storage): the dedupe bucket maps
// each key to its Until, in big-endian unix nanoseconds.
func (db *DB) ClaimCommand(ctx context.Context, d pairing.Dedupe, now time.Time) (bool, error) {
	var first bool
	// Batch: the function decides only from the transaction, so running
	// it again (as Batch may) decides the same.
	err := db.batch(ctx, func(tx *bolt.Tx) error {
		var err error
		first, err = claimCommand(tx, d, now)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("claim command: %w", err)
	}
	return first, nil
}

// claimCommand claims d.Key in tx unless it is claimed and unexpired at
// now; it reports whether it claimed it (an empty key: always, storing
// nothing).
func claimCommand(tx *bolt.Tx, d pairing.Dedupe, now time.Time) (bool, error) {
	if d.Key == "" {
		return true, nil
	}
	b := tx.Bucket(bucketDedupe)
	if raw := b.Get([]byte(d.Key)); raw != nil && now.Before(dedupeUntil(raw)) {
		return false, nil
	}
	return true, b.Put([]byte(d.Key), binary.BigEndian.AppendUint64(nil, uint64(unixNanos(d.Until))))
}

// unixNanos is t in unix nanoseconds, saturating outside 1678–2262 (the
// zero time is the smallest), where UnixNano's result is undefined.
func unixNanos(t time.Time) int64 {
	switch {
	case !t.After(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case !t.Before(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// dedupeUntil reads a dedupe key's Until (the zero time for a value that
// is not one: the key is free).
func dedupeUntil(v []byte) time.Time {
	if len(v) != 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v)))
}

// leaderLease is the ticker's leader lease of the one process that has
// the file open. bbolt's exclusive file lock guarantees there is no other
// process, so that process always wins it (its ticker may always tick);
// it is kept anyway, with the same rules as on PostgreSQL, so that the
// service and its tests run one code path whichever storage they get.
// It is not stored: a restart starts without a leader, as no other
// process can have been leading meanwhile.
type leaderLease struct {
	mu      sync.Mutex
	term    pairing.Term
	expires time.Time
}

// Lead elects leader or renews held (see pairing.Storage), on the
// caller's clock.
func (db *DB) Lead(ctx context.Context, leader string, held pairing.Term, ttl time.Duration, now time.Time) (pairing.Term, error) {
	if err := ctx.Err(); err != nil {
		return pairing.Term{}, err
	}
	l := &db.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	running := !l.term.IsZero() && now.Before(l.expires)
	switch {
	case running && !held.IsZero() && held.Leader == leader && held.Equal(l.term):
		l.expires = now.Add(ttl)
		return l.term, nil
	case !running:
		l.term, l.expires = pairing.Term{Leader: leader, ElectedAt: now}, now.Add(ttl)
		return l.term, nil
	}
	return pairing.Term{}, nil
}

// Resign ends term's lease, if it still holds it.
func (db *DB) Resign(ctx context.Context, term pairing.Term) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l := &db.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if !term.IsZero() && term.Equal(l.term) {
		l.term, l.expires = pairing.Term{}, time.Time{}
	}
	return nil
}

// editWindow lists when the edits of the last minute were taken.
type editWindow struct {
	mu    sync.Mutex
	taken []time.Time // oldest first
}

// TakeEdit takes one of the perMinute edits of the sliding minute before
// now (see pairing.Storage): in memory, as the lease, since one process
// uses the file. As the PostgreSQL store's, an edit is taken only while
// fewer than perMinute were taken within the minute before now, so no
// minute, whichever second it starts at, holds more than perMinute (as
// Slack counts them); times that left the minute, or lie more than a
// minute ahead (a clock stepped back), are dropped.
func (db *DB) TakeEdit(ctx context.Context, now time.Time, perMinute int) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	e := &db.edits
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.taken[:0]
	for _, t := range e.taken {
		if t.After(now.Add(-time.Minute)) && t.Before(now.Add(time.Minute)) {
			kept = append(kept, t)
		}
	}
	e.taken = kept
	if len(e.taken) >= perMinute {
		return false, nil
	}
	e.taken = append(e.taken, now)
	return true, nil
}

// checkSurface refuses a surface pairings do not have (pairing.ErrNoSurface),
// after ctx: a call whose context is done says so first, as every other.
func checkSurface(ctx context.Context, surface string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return pairing.CheckSurface(surface)
}

// viewClaim is a claimed edit as the view_claims bucket keeps it, under
// the pairing's ID, a 0 byte and the surface.
type viewClaim struct {
	Token string    `json:"token"`
	To    string    `json:"to"`
	Until time.Time `json:"until"`
}

func viewClaimKey(id, surface string) []byte { return []byte(id + "\x00" + surface) }

// ClaimView claims the edit c names (see pairing.Storage), with its
// response_url use, in one transaction. A superseded pairing claims
// nothing (its renewal owns the message now), and a renewal shown in the
// message of the pairing it renews claims nothing on a surface while
// that pairing's claim there runs, nor that pairing while the renewal's
// runs: the two never edit one message at once.
func (db *DB) ClaimView(ctx context.Context, c pairing.ViewClaim) (bool, error) {
	if err := checkSurface(ctx, c.Surface); err != nil {
		return false, fmt.Errorf("claim view of %q: %w", c.ID, err)
	}
	var won, spent bool
	// Batch: the function decides only from the transaction and writes
	// nothing when it does not win, so running it again is harmless.
	err := db.batch(ctx, func(tx *bolt.Tx) error {
		won, spent = false, false
		p, err := loadPairing(tx.Bucket(bucketPairings), []byte(c.ID))
		if err != nil {
			return err
		}
		claims := tx.Bucket(bucketViewClaims)
		key := viewClaimKey(c.ID, c.Surface)
		if p.View(c.Surface) != c.From || p.State == pairing.StateSuperseded && c.Surface != pairing.SurfaceModal {
			return nil
		}
		running := func(key []byte) bool {
			var held viewClaim
			raw := claims.Get(key)
			return raw != nil && json.Unmarshal(raw, &held) == nil && c.Now.Before(held.Until)
		}
		if running(key) || (p.Message != "" && p.Renews != "" && p.Renews != p.ID && running(viewClaimKey(p.Renews, c.Surface))) {
			return nil
		}
		// The other way round: a renewal of p shown in p's message holds a
		// running claim on the surface. Only unfinished claims are in the
		// bucket, so this looks at few.
		renewalClaims := false
		err = claims.ForEach(func(k, _ []byte) error {
			id, surface, ok := bytes.Cut(k, []byte{0})
			if !ok || string(surface) != c.Surface || string(id) == c.ID || !running(k) {
				return nil
			}
			if n, err := loadPairing(tx.Bucket(bucketPairings), id); err == nil && n.Renews == c.ID && n.Message != "" {
				renewalClaims = true
			}
			return nil
		})
		if err != nil || renewalClaims {
			return err
		}
		if c.URL != "" {
			if spent, err = takeUse(tx, c.URL, c.Issued, c.Now, c.Keep); err != nil || spent {
				return err
			}
		}
		won = true
		return putJSON(claims, key, viewClaim{Token: c.Token, To: c.To, Until: c.Now.Add(c.For)})
	})
	if err != nil {
		return false, fmt.Errorf("claim view of %q: %w", c.ID, err)
	}
	if spent {
		return false, pairing.ErrBudgetSpent
	}
	return won, nil
}

// FinishView ends claim token on pairing id's surface (see
// pairing.Storage), in one transaction.
func (db *DB) FinishView(ctx context.Context, id, surface, token string, shown pairing.Surface, unwatch bool) (bool, error) {
	if err := checkSurface(ctx, surface); err != nil {
		return false, fmt.Errorf("finish view of %q: %w", id, err)
	}
	var done bool
	err := db.batch(ctx, func(tx *bolt.Tx) error {
		done = false
		claims := tx.Bucket(bucketViewClaims)
		key := viewClaimKey(id, surface)
		var held viewClaim
		if raw := claims.Get(key); raw == nil || json.Unmarshal(raw, &held) != nil || held.Token != token {
			if _, err := loadPairing(tx.Bucket(bucketPairings), []byte(id)); err != nil {
				return err
			}
			return nil
		}
		if err := claims.Delete(key); err != nil {
			return err
		}
		pairings := tx.Bucket(bucketPairings)
		p, err := loadPairing(pairings, []byte(id))
		if err != nil {
			return err
		}
		if unwatch {
			if err := tx.Bucket(bucketWatched).Delete([]byte(id)); err != nil {
				return err
			}
		}
		done = true
		return putJSON(pairings, []byte(id), p.WithShown(surface, shown))
	})
	if err != nil {
		return false, fmt.Errorf("finish view of %q: %w", id, err)
	}
	return done, nil
}
