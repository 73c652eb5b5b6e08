package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/linkbot/linkbot/pairing"
)

// Prune deletes attempts older than before.Attempts, instance slots whose
// pairing no longer holds them, ended pairings (no longer watched or
// holding an instance) that ended before before.Pairings, response_url
// budgets past Slack's 30 minutes, and audit events older than
// before.AuditEvents (none when it is zero). Each step deletes in batches
// of pruneBatch rows, a statement each, until a batch comes up short
// (pruning needs no single snapshot): a backlog of millions of rows is
// never one statement that runs into statement_timeout, holds its locks
// for minutes or writes all its WAL at once. PostgreSQL reuses the space of deleted rows after (auto)
// VACUUM, so tables reach a plateau instead of growing with the bot's
// age.
func (db *DB) Prune(ctx context.Context, now time.Time, before pairing.PruneBefore) (pairing.PruneStats, error) {
	if err := ctx.Err(); err != nil {
		return pairing.PruneStats{}, err
	}
	var st pairing.PruneStats
	// exec deletes the rows of table that match where (args are its
	// parameters), pruneBatch at a time, adding the count to *n.
	exec := func(n *int, table, where string, args ...any) error {
		sql := fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid IN (SELECT ctid FROM %[1]s p WHERE %[2]s LIMIT %[3]d)`, table, where, pruneBatch)
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			tag, err := db.pool.Exec(ctx, sql, args...)
			if err != nil {
				return err
			}
			*n += int(tag.RowsAffected())
			if tag.RowsAffected() < int64(pruneBatch) {
				return nil
			}
		}
	}
	err := exec(&st.Attempts, "attempts", `at_ns < $1`, nanos(before.Attempts))
	if err == nil {
		err = db.pruneSlots(ctx, now)
	}
	if err == nil {
		err = exec(&st.Pairings, "pairings", `NOT p.watched
			AND NOT EXISTS (SELECT 1 FROM live_by_instance l WHERE l.pairing_id = p.id)
			AND NOT (p.state IN ('requesting', 'live') AND p.lease_until_ns > COALESCE($1::bigint, `+sqlNow+`))
			AND p.ended_ns < $2`, db.nowParam(now), nanos(before.Pairings))
	}
	if err == nil {
		err = exec(&st.DedupeKeys, "dedupe_keys", `until_ns <= $1`, nanos(now))
	}

	if err == nil {
		err = exec(&st.ResponseURLs, "response_urls", `issued_ns < $1`, nanos(now.Add(-pairing.ResponseURLLifetime)))
	}
	if err == nil && !before.AuditEvents.IsZero() {
		err = exec(&st.AuditEvents, "audit_events", `at_ns < $1`, nanos(before.AuditEvents))
	}
	if err != nil {
		return pairing.PruneStats{}, fmt.Errorf("prune: %w", db.classify(ctx, err))
	}
	return st, nil
}

// pruneBatch is how many rows one of Prune's DELETE statements removes
// (a variable for tests).
var pruneBatch = 5000

// pruneSlots frees the instance slots whose pairing no longer holds them
// (one left by a request that never settled, say). It first finds them,
// then deletes each only if it still names the same pairing: a DELETE
// whose condition looked at the pairings table could free a slot that a
// concurrent Reserve just gave to a new request (PostgreSQL re-checks a
// row changed under a DELETE against the row, but reads other tables as
// they were when the statement began, before the new pairing existed).
func (db *DB) pruneSlots(ctx context.Context, now time.Time) error {
	rows, err := db.pool.Query(ctx, `SELECT l.instance, l.pairing_id FROM live_by_instance l
		WHERE NOT EXISTS (SELECT 1 FROM pairings p WHERE p.id = l.pairing_id
			AND p.state IN ('requesting', 'live') AND p.lease_until_ns > COALESCE($1::bigint, `+sqlNow+`))`, db.nowParam(now))
	if err != nil {
		return err
	}
	var instance, id string
	var instances, ids []string
	_, err = pgx.ForEachRow(rows, []any{&instance, &id}, func() error {
		instances, ids = append(instances, instance), append(ids, id)
		return nil
	})
	if err != nil || len(ids) == 0 {
		return err
	}
	_, err = db.pool.Exec(ctx, `DELETE FROM live_by_instance l USING unnest($1::text[], $2::text[]) AS stale (instance, pairing_id)
		WHERE l.instance = stale.instance AND l.pairing_id = stale.pairing_id`, instances, ids)
	return err
}
