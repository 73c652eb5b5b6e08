package postgres

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// TestPruneBacklogInBatches: a bot that has not pruned for a long time
// (Prune failed, or retention was just turned on) has a backlog of
// hundreds of thousands of rows. Prune deletes it in statements of
// pruneBatch rows each, looping until a batch comes up short, so no
// statement runs into statement_timeout; every old row goes, every
// recent one stays, and the counts add the batches up.
func TestPruneBacklogInBatches(t *testing.T) {
	db := mustOpen(t, pgtest.URL(t), Options{CallerClock: true})
	old := nanos(t0.Add(-48 * time.Hour))
	const backlog = 12345
	for _, seed := range []string{
		`INSERT INTO attempts (phone, user_id, at_ns, pairing_id, team, instance, outcome)
			SELECT '2011122' || i, 'U1', $1::bigint + i, 'p' || i, 'T1', 'I1', 'live' FROM generate_series(1, $2::int) i`,
		`INSERT INTO audit_events (at_ns, phone_key, instance_key, doc)
			SELECT $1::bigint + i, NULL, 'i1', '{"kind":"requested"}'::jsonb FROM generate_series(1, $2::int) i`,
		`INSERT INTO dedupe_keys (key, until_ns) SELECT 'k' || i, $1::bigint + i FROM generate_series(1, $2::int) i`,
	} {
		if _, err := db.pool.Exec(t.Context(), seed, old, backlog); err != nil {
			t.Fatal(err)
		}
	}
	granted(t, db, reservation("recent", "I1", "201112223333", "U1", t0))

	defer func(n int) { pruneBatch = n }(pruneBatch)
	pruneBatch = 1000 // 13 statements per table, the last one short
	st, err := db.Prune(t.Context(), t0, pairing.PruneBefore{Attempts: t0.Add(-time.Hour), Pairings: t0.Add(-time.Hour), AuditEvents: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := pairing.PruneStats{Attempts: backlog, AuditEvents: backlog, DedupeKeys: backlog}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Prune stats (-want +got):\n%s", diff)
	}
	var attempts, events, keys int
	if err := db.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM attempts), (SELECT count(*) FROM audit_events), (SELECT count(*) FROM dedupe_keys)`).
		Scan(&attempts, &events, &keys); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || events < 1 || keys != 0 {
		t.Errorf("after Prune: %d attempts, %d audit events, %d dedupe keys; want the recent attempt and events only", attempts, events, keys)
	}
}
