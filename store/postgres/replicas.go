package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/linkbot/linkbot/pairing"
)

// queueClaimCommand queues claiming d's key (not empty) on b: the
// statement returns a row when it claimed it. A concurrent claim of the
// same key waits on the key's row until the first transaction ends, then
// sees its key (READ COMMITTED re-checks ON CONFLICT against the committed
// row): of two claims, on any replicas, exactly one returns a row.
func queueClaimCommand(b *pgx.Batch, d pairing.Dedupe, now time.Time) *pgx.QueuedQuery {
	return b.Queue(`INSERT INTO dedupe_keys AS k (key, until_ns) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET until_ns = EXCLUDED.until_ns WHERE k.until_ns <= $3
		RETURNING 1`, pgText(d.Key), nanos(d.Until), nanos(now))
}

// ClaimCommand claims d.Key (see pairing.Storage) in one statement.
func (db *DB) ClaimCommand(ctx context.Context, d pairing.Dedupe, now time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if d.Key == "" {
		return true, nil
	}
	b := &pgx.Batch{}
	first := false
	queueClaimCommand(b, d, now).Query(func(rows pgx.Rows) error {
		first = rows.Next()
		rows.Close()
		return rows.Err()
	})
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return false, fmt.Errorf("claim command: %w", db.classify(ctx, err))
	}
	return first, nil
}
