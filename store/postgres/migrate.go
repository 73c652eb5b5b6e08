package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// The schema is a series of SQL files under migrations/, embedded in the
// binary and run in order by pressly/goose (v3, its Provider API, through
// pgx's database/sql driver). goose rather than jackc/tern: tern's migrate
// package brings text/template helpers (sprig and a dozen modules) into
// the binary, goose four small ones. goose records what it ran in
// goose_db_version, in the same schema as linkbot's tables.
//
// goose holds a session-level advisory lock while it migrates, so replicas
// starting together take turns: the first runs what is missing, the
// others find nothing left to run. The lock's ID is derived from the
// schema, so databases of several schemas (the tests', or several bots on
// one server) do not wait for each other. A session lock is fine here, for
// the few seconds of a migration on one connection; the ticker's
// leadership (part B of issue 11) is a lease row instead.
//
// Every file is written expand/contract, so the old and the new version of
// linkbot can run side by side during a rolling deploy: a release only
// adds (tables, defaulted or nullable columns, indexes) and stops using
// things; a later release drops them. A database that has migrations this
// binary does not know (a newer replica ran them) is fine: Up runs
// nothing, and the newer schema still serves the older binary.

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations is the migrations directory itself.
var migrations = func() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}()

// Migration is one migration a run applied.
type Migration struct {
	Version  int64
	File     string
	Duration time.Duration
}

// Migrate connects to the database at url, runs the migrations it has not
// run yet and says which it ran (none when it is up to date) and the
// version it is at. It is `linkbot migrate`: the same as Open does at
// start, alone.
func Migrate(ctx context.Context, url string, log *slog.Logger) (applied []Migration, version int64, err error) {
	cfg, password, err := parseURL(url)
	if err != nil {
		return nil, 0, fmt.Errorf("LINKBOT_DATABASE_URL %w", err)
	}
	cfg.MaxConns = 2 // the lock's session and the migration's
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, 0, &scrubbed{fmt.Errorf("PostgreSQL at %s: %w", describe(cfg.ConnConfig), err), password}
	}
	defer pool.Close()
	db := &DB{pool: pool, where: describe(cfg.ConnConfig), password: password}
	if err := pool.Ping(ctx); err != nil {
		return nil, 0, db.scrub(fmt.Errorf("PostgreSQL at %s: cannot connect: %w", db.where, db.classify(ctx, err)))
	}
	applied, err = migrate(ctx, pool, migrations)
	if err != nil {
		return applied, 0, db.scrub(fmt.Errorf("PostgreSQL at %s: %w", db.where, db.classify(ctx, err)))
	}
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&version); err != nil {
		return applied, 0, db.scrub(fmt.Errorf("PostgreSQL at %s: read the schema version: %w", db.where, db.classify(ctx, err)))
	}
	return applied, version, nil
}

// migrate runs the migrations in fsys that the database (the schema the
// pool's search_path names first) has not run, under goose's lock.
//
// The migrations run on a pool of their own whose sessions carry the
// sessionDefaults (and the server's end of TCP keepalives) with a plain
// SET: goose's transactions are not the store's (no SET LOCAL there), and
// its lock is held by a session outside any transaction, which only the
// server's keepalives can end when the replica holding it vanishes. A
// session-level SET is sound here because goose's session lock needs a
// direct (or session-pooled) connection anyway.
func migrate(ctx context.Context, base *pgxpool.Pool, fsys fs.FS) ([]Migration, error) {
	cfg := base.Config()
	cfg.MaxConns = 2 // the lock's session and the migration's
	sets := sessionSQL(cfg.ConnConfig.RuntimeParams)
	after := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if after != nil {
			if err := after(ctx, conn); err != nil {
				return err
			}
		}
		for _, set := range sets {
			if _, err := conn.Exec(ctx, set); err != nil {
				return err
			}
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, err
	}
	if schema == nil {
		return nil, errors.New("no schema to migrate: the search_path names no schema that exists; create it first")
	}
	h := fnv.New64a()
	h.Write([]byte("linkbot migrations:" + *schema))
	// Retry the lock every second for up to two minutes (goose's default
	// is every 5 s, which makes a replica starting a moment after another
	// wait 5 s for a migration that takes milliseconds).
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, 120))
	if err != nil {
		return nil, err
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys, goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	var applied []Migration
	for _, r := range results {
		if r.Error == nil {
			applied = append(applied, Migration{Version: r.Source.Version, File: r.Source.Path, Duration: r.Duration})
		}
	}
	if err != nil {
		return applied, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}
