package postgres

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// TestMigrationRunsUnderSessionLimits: a migration's transaction (goose's,
// e.g. 00006's CREATE INDEX, which holds a SHARE lock on pairings until it
// commits) must be bounded like every other transaction linkbot runs.
// The store's transactions get them with SET LOCAL; goose's are not the
// store's, so the migrations' own pool sets them per session: without
// that, a replica that goes half-open mid-migration holds pairings' SHARE
// lock (every other replica's writes time out) until TCP notices, hours.
func TestMigrationRunsUnderSessionLimits(t *testing.T) {
	fsys := fstest.MapFS{}
	if err := fs.WalkDir(migrations, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations, path)
		fsys[path] = &fstest.MapFile{Data: b}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	fsys["00099_probe.sql"] = &fstest.MapFile{Data: []byte(`-- +goose Up
CREATE TABLE probe_limits AS SELECT current_setting('idle_in_transaction_session_timeout') AS idle,
	current_setting('lock_timeout') AS lockt, current_setting('statement_timeout') AS stmt,
	current_setting('tcp_keepalives_idle') AS keepalive;
-- +goose Down
DROP TABLE probe_limits;
`)}
	cfg, _, err := parseURL(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := migrate(t.Context(), pool, fsys); err != nil {
		t.Fatal(err)
	}
	var got [4]string
	if err := pool.QueryRow(t.Context(), `SELECT idle, lockt, stmt, keepalive FROM probe_limits`).Scan(&got[0], &got[1], &got[2], &got[3]); err != nil {
		t.Fatal(err)
	}
	// The server's end of TCP keepalives too: goose's lock is a session's,
	// held outside any transaction, so only they end it when the replica
	// holding it vanishes.
	if diff := cmp.Diff([4]string{"10s", "5s", "1min", "30"}, got); diff != "" {
		t.Errorf("limits inside a migration's transaction (-want +got):\n%s", diff)
	}
}
