package postgres

import (
	"context"
	"errors"
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

// Lead elects leader or renews held (see pairing.Storage) in one
// statement on the leader_lease row, with the lease on the database's
// clock (with CallerClock, now's): the row is inserted when there is
// none; otherwise updated only when its lease ran out (an election: a new
// term) or it is held's own term still running (a renewal: the same
// term, a later expiry). Concurrent candidates, on any replicas, wait for
// each other on the row and each sees what the one before it left, so at
// most one wins. No session lock: a pooled connection, a pooler or a
// half-open socket cannot keep or lose leadership by accident, only the
// row's expiry decides.
func (db *DB) Lead(ctx context.Context, leader string, held pairing.Term, ttl time.Duration, now time.Time) (pairing.Term, error) {
	if err := ctx.Err(); err != nil {
		return pairing.Term{}, err
	}
	var heldNs *int64
	if !held.IsZero() && held.Leader == leader {
		n := nanos(held.ElectedAt)
		heldNs = &n
	}
	var elected int64
	err := db.pool.QueryRow(ctx, `WITH clock AS (SELECT COALESCE($2::bigint, `+sqlNow+`) AS now)
		INSERT INTO leader_lease AS l (leader_id, elected_ns, expires_ns)
		SELECT $1, clock.now, clock.now + $3::bigint FROM clock
		ON CONFLICT (name) DO UPDATE SET
			leader_id = EXCLUDED.leader_id,
			elected_ns = CASE WHEN l.expires_ns > EXCLUDED.elected_ns THEN l.elected_ns ELSE EXCLUDED.elected_ns END,
			expires_ns = EXCLUDED.expires_ns
		WHERE l.expires_ns <= EXCLUDED.elected_ns
			OR (l.leader_id = EXCLUDED.leader_id AND l.elected_ns = $4::bigint)
		RETURNING l.elected_ns`,
		pgText(leader), db.nowParam(now), int64(ttl), heldNs).Scan(&elected)
	if errors.Is(err, pgx.ErrNoRows) {
		return pairing.Term{}, nil
	}
	if err != nil {
		return pairing.Term{}, fmt.Errorf("lead: %w", db.classify(ctx, err))
	}
	return pairing.Term{Leader: leader, ElectedAt: time.Unix(0, elected)}, nil
}

// Resign deletes term's lease row, if it is still term's.
func (db *DB) Resign(ctx context.Context, term pairing.Term) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if term.IsZero() {
		return nil
	}
	if _, err := db.pool.Exec(ctx, `DELETE FROM leader_lease WHERE leader_id = $1 AND elected_ns = $2`,
		pgText(term.Leader), nanos(term.ElectedAt)); err != nil {
		return fmt.Errorf("resign: %w", db.classify(ctx, err))
	}
	return nil
}
