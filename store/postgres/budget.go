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
