package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

// Prune deletes attempts older than before.Attempts, ended pairings (no
// longer watched or holding an instance) that ended before before.Pairings,
// instance slots held by pairings that are no longer live,
// response_url budgets past Slack's 30 minutes, and audit events older than
// before.AuditEvents (the retention period).
//
// bbolt files never shrink: freed pages go to the freelist and are reused
// by later writes, so with regular pruning the file reaches a plateau set
// by the busiest window instead of growing with the bot's age.
func (db *DB) Prune(ctx context.Context, now time.Time, before pairing.PruneBefore) (pairing.PruneStats, error) {
	var st pairing.PruneStats
	err := db.update(ctx, func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPhoneAttempts, bucketUserAttempts} {
			n, err := deleteWhere(tx.Bucket(name), func(k, _ []byte) bool { return keyTime(k).Before(before.Attempts) })
			if err != nil {
				return err
			}
			if bytes.Equal(name, bucketPhoneAttempts) {
				st.Attempts = n // each attempt is kept once per window: count it once
			}
		}
		watched, live, pairings := tx.Bucket(bucketWatched), tx.Bucket(bucketLive), tx.Bucket(bucketPairings)
		// A live slot holds its instance only while its pairing is live; one
		// left by a request that never settled is freed here, so neither the
		// slot nor the pairing outlives the request.
		if _, err := deleteWhere(live, func(_, id []byte) bool {
			p, err := loadPairing(pairings, id)
			return err != nil || !p.Live(now)
		}); err != nil {
			return err
		}
		// A watched pairing that is gone, or whose record does not parse,
		// can never be advanced or shown: it stops being watched (and the
		// damaged record is pruned below).
		if _, err := deleteWhere(watched, func(id, _ []byte) bool {
			_, err := loadPairing(pairings, id)
			if err != nil && !errors.Is(err, pairing.ErrNotFound) {
				st.DamagedPairings++
			}
			return err != nil
		}); err != nil {
			return err
		}
		held := map[string]bool{}
		live.ForEach(func(_, id []byte) error { held[string(id)] = true; return nil })
		n, err := deleteWhere(pairings, func(k, v []byte) bool {
			if watched.Get(k) != nil || held[string(k)] {
				return false
			}
			var p pairing.Pairing
			if json.Unmarshal(v, &p) != nil {
				return true
			}
			ended := p.EndedAt
			if ended.IsZero() {
				ended = p.ExpiresAt
			}
			return !p.Live(now) && ended.Before(before.Pairings)
		})
		if err != nil {
			return err
		}
		st.Pairings = n
		n, err = deleteWhere(tx.Bucket(bucketResponseURLs), func(_, v []byte) bool {
			var b urlBudget
			return json.Unmarshal(v, &b) != nil || now.Sub(b.Issued) > pairing.ResponseURLLifetime
		})
		st.ResponseURLs = n
		if err != nil {
			return err
		}
		st.DedupeKeys, err = deleteWhere(tx.Bucket(bucketDedupe), func(_, v []byte) bool { return !now.Before(dedupeUntil(v)) })
		if err != nil {
			return err
		}
		// Claimed edits whose claim ran out (their claimer is gone) or
		// whose pairing is.
		_, err = deleteWhere(tx.Bucket(bucketViewClaims), func(k, v []byte) bool {
			id, _, _ := bytes.Cut(k, []byte{0})
			var c viewClaim
			return json.Unmarshal(v, &c) != nil || !now.Before(c.Until) || pairings.Get(id) == nil
		})
		if err != nil || before.AuditEvents.IsZero() {
			return err
		}
		st.AuditEvents, err = pruneAudit(tx, before.AuditEvents)
		return err
	})
	if err != nil {
		return pairing.PruneStats{}, fmt.Errorf("prune: %w", err)
	}
	return st, nil
}

func deleteWhere(b *bolt.Bucket, match func(k, v []byte) bool) (int, error) {
	var doomed [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if match(k, v) {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}

// FileSize is the database file's size in bytes.
func (db *DB) FileSize() int64 {
	var n int64
	db.view(context.Background(), func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}
