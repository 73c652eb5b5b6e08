package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
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
