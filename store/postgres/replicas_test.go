package postgres

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// replicas opens n stores on one fresh schema, as n replicas of the bot
// would (each its own pool), with opts.
func replicas(t *testing.T, n int, opts Options) []*DB {
	t.Helper()
	url := pgtest.URL(t)
	var dbs []*DB
	for range n {
		dbs = append(dbs, mustOpen(t, url, opts))
	}
	return dbs
}

// race runs f(0) … f(n-1) at once and waits for them all.
func race(n int, f func(i int)) {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// TestDedupeAcrossReplicas: one slash command delivered to every
// connection of two replicas at once (50 deliveries, half through each
// store) is decided once: one pairing, one attempt, one audit event; the
// same for 50 ClaimCommand calls of one click.
func TestDedupeAcrossReplicas(t *testing.T) {
	dbs := replicas(t, 2, Options{CallerClock: true})
	key := pairing.Dedupe{Key: "envelope:E1", Until: t0.Add(time.Hour)}
	var decided, dup atomic.Int32
	race(50, func(i int) {
		r := reservation(fmt.Sprint("p", i), "I1", "201112223333", "U1", t0)
		r.Dedupe = key
		d, err := dbs[i%2].Reserve(t.Context(), r)
		switch {
		case err != nil:
			t.Error(err)
		case d.Duplicate:
			dup.Add(1)
		default:
			decided.Add(1)
		}
	})
	if decided.Load() != 1 || dup.Load() != 49 {
		t.Errorf("%d deliveries decided, %d duplicates; want 1 and 49", decided.Load(), dup.Load())
	}
	var pairings, attempts, events int
	if err := dbs[0].pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM pairings), (SELECT count(*) FROM attempts), (SELECT count(*) FROM audit_events)`).
		Scan(&pairings, &attempts, &events); err != nil {
		t.Fatal(err)
	}
	if pairings != 1 || attempts != 1 || events != 1 {
		t.Errorf("stored %d pairings, %d attempts, %d audit events; want 1 of each", pairings, attempts, events)
	}

	var claimed atomic.Int32
	race(50, func(i int) {
		first, err := dbs[i%2].ClaimCommand(t.Context(), pairing.Dedupe{Key: "click:p:cancel:1", Until: t0.Add(time.Hour)}, t0)
		if err != nil {
			t.Error(err)
		}
		if first {
			claimed.Add(1)
		}
	})
	if claimed.Load() != 1 {
		t.Errorf("%d of 50 claims of one click won, want 1", claimed.Load())
	}
}

// TestReplicasMigrationBesideOlder: 00002_replicas.sql only expands. A
// database at version 1 with data in it takes it without losing
// anything; a binary that knows only version 1 then opens the database
// (its migrations: nothing to run) and works on it, beside this one.
func TestReplicasMigrationBesideOlder(t *testing.T) {
	url := pgtest.URL(t)
	all := mustReadDir(t)
	v1 := fstest.MapFS{"00001_init.sql": all["00001_init.sql"]}
	db := mustOpenWith(t, url, v1)
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))

	if applied, err := migrate(t.Context(), db.pool, all); err != nil || len(applied) != 1 || applied[0].Version != 2 {
		t.Fatalf("migrating to version 2: %+v, %v", applied, err)
	}
	if p, err := db.Pairing(t.Context(), "a"); err != nil || p.State != pairing.StateRequesting {
		t.Errorf("the pairing from version 1: %+v, %v", p, err)
	}
	// The older binary: its migrations run nothing on the newer schema,
	// and what it does (everything but the new mechanisms) still works.
	older := mustOpenWith(t, url, v1)
	if d, err := older.Reserve(t.Context(), reservation("b", "I1", "201112224444", "U2", t0)); err != nil || d.Refused != pairing.LimitInstance {
		t.Errorf("the older binary's request for a held instance: %+v, %v; want refused", d, err)
	}
	granted(t, older, reservation("c", "I2", "201112225555", "U3", t0))
	if err := older.RecordView(t.Context(), "c", "live:0", false); err != nil {
		t.Error(err)
	}
	if _, err := older.Prune(t.Context(), t0, pairing.PruneBefore{}); err != nil {
		t.Error(err)
	}
	// And the newer one, beside it.
	r := reservation("d", "I3", "201112226666", "U4", t0)
	r.Dedupe = pairing.Dedupe{Key: "envelope:E1", Until: t0.Add(time.Hour)}
	granted(t, db, r)
	if d, err := db.Reserve(t.Context(), r); err != nil || !d.Duplicate {
		t.Errorf("a redelivery to the newer binary: %+v, %v; want a duplicate", d, err)
	}
}

// mustOpenWith opens a store on url (with CallerClock) whose migrations
// are fsys instead of the embedded ones: a binary of another version.
func mustOpenWith(t *testing.T, url string, fsys fstest.MapFS) *DB {
	t.Helper()
	cfg, _, err := parseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db := &DB{pool: pool, log: slog.New(slog.DiscardHandler), callerClock: true}
	if _, err := migrate(t.Context(), pool, fsys); err != nil {
		t.Fatal(err)
	}
	if err := db.loadSecret(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	return db
}
