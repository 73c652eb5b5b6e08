package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

type urlBudget struct {
	Issued time.Time `json:"issued"`
	Used   int       `json:"used"`
}

// UseResponseURL takes one use of url's budget, counted in the file so a
// restart cannot reset it. keep is how many uses must remain afterwards for
// later, more important posts (the final state keeps the last two).
func (db *DB) UseResponseURL(ctx context.Context, url string, issued, now time.Time, keep int) error {
	var spent bool
	// Batch: concurrent edits share one fsync. The function only reports
	// through spent, so running it twice (as Batch may) is harmless.
	err := db.batch(ctx, func(tx *bolt.Tx) error {
		var err error
		spent, err = takeUse(tx, url, issued, now, keep)
		return err
	})
	if err != nil {
		return fmt.Errorf("use response_url: %w", err)
	}
	if spent {
		return pairing.ErrBudgetSpent
	}
	return nil
}

// takeUse takes one use of url's budget in tx, keeping keep, or reports
// spent (and writes nothing) when none may be taken.
func takeUse(tx *bolt.Tx, url string, issued, now time.Time, keep int) (spent bool, err error) {
	b := tx.Bucket(bucketResponseURLs)
	budget := urlBudget{Issued: issued}
	if raw := b.Get([]byte(url)); raw != nil {
		if err := json.Unmarshal(raw, &budget); err != nil {
			return false, err
		}
	}
	if !now.Before(budget.Issued.Add(pairing.ResponseURLLifetime)) || pairing.ResponseURLUses-budget.Used-1 < keep {
		return true, nil
	}
	budget.Used++
	return false, putJSON(b, []byte(url), budget)
}

// RefundResponseURL gives back a use that Slack certainly did not count:
// it answered 429. After a 5xx, a timeout or a dropped connection the post
// may have counted, so its use is not given back.
func (db *DB) RefundResponseURL(ctx context.Context, url string) error {
	return db.batch(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketResponseURLs)
		raw := b.Get([]byte(url))
		if raw == nil {
			return nil
		}
		var budget urlBudget
		if err := json.Unmarshal(raw, &budget); err != nil {
			return err
		}
		if budget.Used > 0 {
			budget.Used--
		}
		return putJSON(b, []byte(url), budget)
	})
}

// SetHold records a Slack Retry-After (see pairing.Storage): key's calls
// wait until until. A later until replaces an earlier one. Holds that ran
// out before until are deleted on the way: the bucket keeps only the few
// that may still run.
func (db *DB) SetHold(ctx context.Context, key string, until time.Time) error {
	err := db.batch(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHolds)
		var stale [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var t time.Time
			if err := t.UnmarshalText(v); err != nil || string(k) != key && t.Add(24*time.Hour).Before(until) {
				stale = append(stale, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if raw := b.Get([]byte(key)); raw != nil {
			var old time.Time
			if err := old.UnmarshalText(raw); err == nil && !until.After(old) {
				return nil
			}
		}
		v, err := until.UTC().MarshalText()
		if err != nil {
			return err
		}
		return b.Put([]byte(key), v)
	})
	if err != nil {
		return fmt.Errorf("set hold: %w", err)
	}
	return nil
}

// Holds returns the holds running at now, by key.
func (db *DB) Holds(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHolds).ForEach(func(k, v []byte) error {
			var t time.Time
			if err := t.UnmarshalText(v); err == nil && t.After(now) {
				out[string(k)] = t
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("holds: %w", err)
	}
	return out, nil
}
