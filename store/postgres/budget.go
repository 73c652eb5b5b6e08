package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/linkbot/linkbot/pairing"
)

// UseResponseURL takes one use of url's budget, keeping keep uses for
// later posts, in one conditional statement: the row is created with one
// use, or its count raised, only while the url is within Slack's 30
// minutes and a use beyond keep is left. Concurrent callers (any replica)
// wait for each other on the row, and each sees the count the previous
// one left, so the budget is never overspent.
func (db *DB) UseResponseURL(ctx context.Context, url string, issued, now time.Time, keep int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	taken, err := takeUse(ctx, db.pool, url, issued, now, keep)
	if err != nil {
		return fmt.Errorf("use response_url: %w", db.classify(ctx, err))
	}
	if !taken {
		return pairing.ErrBudgetSpent
	}
	return nil
}

// queryRower is a pool or a transaction.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// takeUse takes one use of url's budget, keeping keep, in one statement
// on q, and reports whether it took one.
func takeUse(ctx context.Context, q queryRower, url string, issued, now time.Time, keep int) (bool, error) {
	// A url is usable while issued > now − lifetime (now < issued + lifetime).
	oldest := nanos(now.Add(-pairing.ResponseURLLifetime))
	var taken int
	err := q.QueryRow(ctx, `WITH taken AS (
			INSERT INTO response_urls AS r (url, issued_ns, used)
			SELECT $1::text, $2::bigint, 1 WHERE $2::bigint > $3::bigint AND $4::integer - 1 >= $5::integer
			ON CONFLICT (url) DO UPDATE SET used = r.used + 1
			WHERE r.issued_ns > $3::bigint AND $4::integer - r.used - 1 >= $5::integer
			RETURNING 1)
		SELECT count(*) FROM taken`,
		pgText(url), nanos(issued), oldest, pairing.ResponseURLUses, keep).Scan(&taken)
	return taken > 0, err
}

// RefundResponseURL gives back a use that Slack certainly did not count
// (it answered 429); never below zero, and nothing for a url never used.
func (db *DB) RefundResponseURL(ctx context.Context, url string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := db.pool.Exec(ctx, `UPDATE response_urls SET used = used - 1 WHERE url = $1 AND used > 0`, pgText(url)); err != nil {
		return fmt.Errorf("refund response_url: %w", db.classify(ctx, err))
	}
	return nil
}

// SetHold records a Slack Retry-After (see pairing.Storage) in one
// statement: a later until replaces an earlier one (GREATEST), so
// replicas racing to record holds of one key keep the latest. Holds that
// ran out a day before until are deleted on the way.
func (db *DB) SetHold(ctx context.Context, key string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM slack_holds WHERE until_ns < $1::bigint`, nanos(until.Add(-24*time.Hour)))
	b.Queue(`INSERT INTO slack_holds (key, until_ns) VALUES ($1::text, $2::bigint)
		ON CONFLICT (key) DO UPDATE SET until_ns = GREATEST(slack_holds.until_ns, EXCLUDED.until_ns)`, pgText(key), nanos(until))
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("set hold: %w", db.classify(ctx, err))
	}
	return nil
}

// Holds returns the holds running at now, by key.
func (db *DB) Holds(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, `SELECT key, until_ns FROM slack_holds WHERE until_ns > $1::bigint`, nanos(now))
	if err != nil {
		return nil, fmt.Errorf("holds: %w", db.classify(ctx, err))
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var (
			key   string
			until int64
		)
		if err := rows.Scan(&key, &until); err != nil {
			return nil, fmt.Errorf("holds: %w", db.classify(ctx, err))
		}
		out[key] = time.Unix(0, until).UTC()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("holds: %w", db.classify(ctx, err))
	}
	return out, nil
}
