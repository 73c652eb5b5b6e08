package postgres

import (
	"context"
	"errors"
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

	v2 := fstest.MapFS{"00001_init.sql": all["00001_init.sql"], "00002_replicas.sql": all["00002_replicas.sql"]}
	if applied, err := migrate(t.Context(), db.pool, v2); err != nil || len(applied) != 1 || applied[0].Version != 2 {
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

// TestHoldsMigrationBesideOlder: 00003_holds.sql only expands. A database
// at version 2 with data in it takes it without losing anything; a binary
// that knows only version 2 then opens it and works on it, beside one that
// records holds.
func TestHoldsMigrationBesideOlder(t *testing.T) {
	url := pgtest.URL(t)
	all := mustReadDir(t)
	v2 := fstest.MapFS{"00001_init.sql": all["00001_init.sql"], "00002_replicas.sql": all["00002_replicas.sql"]}
	db := mustOpenWith(t, url, v2)
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))
	v3 := fstest.MapFS{"00001_init.sql": all["00001_init.sql"], "00002_replicas.sql": all["00002_replicas.sql"], "00003_holds.sql": all["00003_holds.sql"]}
	if applied, err := migrate(t.Context(), db.pool, v3); err != nil || len(applied) != 1 || applied[0].Version != 3 {
		t.Fatalf("migrating to version 3: %+v, %v", applied, err)
	}
	if p, err := db.Pairing(t.Context(), "a"); err != nil || p.State != pairing.StateRequesting {
		t.Errorf("the pairing from version 2: %+v, %v", p, err)
	}
	older := mustOpenWith(t, url, v2)
	granted(t, older, reservation("b", "I2", "201112224444", "U2", t0))
	if _, err := older.Prune(t.Context(), t0, pairing.PruneBefore{}); err != nil {
		t.Error(err)
	}
	if err := db.SetHold(t.Context(), "chat.update", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if h, err := db.Holds(t.Context(), t0); err != nil || len(h) != 1 {
		t.Errorf("holds beside the older binary: %v, %v", h, err)
	}
}

// TestEditBudgetMigrationBesideOlder: 00004_edit_budget.sql only
// expands. A database at version 3 with data in it takes it; a binary
// that knows only version 3 goes on working beside one that shares the
// edit budget.
func TestEditBudgetMigrationBesideOlder(t *testing.T) {
	url := pgtest.URL(t)
	all := mustReadDir(t)
	v3 := fstest.MapFS{"00001_init.sql": all["00001_init.sql"], "00002_replicas.sql": all["00002_replicas.sql"], "00003_holds.sql": all["00003_holds.sql"]}
	db := mustOpenWith(t, url, v3)
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))
	v4 := fstest.MapFS{"00001_init.sql": all["00001_init.sql"], "00002_replicas.sql": all["00002_replicas.sql"], "00003_holds.sql": all["00003_holds.sql"], "00004_edit_budget.sql": all["00004_edit_budget.sql"]}
	if applied, err := migrate(t.Context(), db.pool, v4); err != nil || len(applied) != 1 || applied[0].Version != 4 {
		t.Fatalf("migrating to version 4: %+v, %v", applied, err)
	}
	if p, err := db.Pairing(t.Context(), "a"); err != nil || p.State != pairing.StateRequesting {
		t.Errorf("the pairing from version 3: %+v, %v", p, err)
	}
	older := mustOpenWith(t, url, v3)
	granted(t, older, reservation("b", "I2", "201112224444", "U2", t0))
	if _, err := older.Prune(t.Context(), t0, pairing.PruneBefore{}); err != nil {
		t.Error(err)
	}
}

// TestEditWindowMigrationBesideOlder: 00005_edit_window.sql only expands.
// A database at version 4, whose edit_budget a version-4 binary counts
// minutes in, takes it; that binary's rows stay, the older binary goes on
// working beside one that takes edits from the sliding minute.
func TestEditWindowMigrationBesideOlder(t *testing.T) {
	url := pgtest.URL(t)
	all := mustReadDir(t)
	v4 := fstest.MapFS{"00001_init.sql": all["00001_init.sql"], "00002_replicas.sql": all["00002_replicas.sql"], "00003_holds.sql": all["00003_holds.sql"], "00004_edit_budget.sql": all["00004_edit_budget.sql"]}
	db := mustOpenWith(t, url, v4)
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))
	if _, err := db.pool.Exec(t.Context(), `INSERT INTO edit_budget (minute, used) VALUES (29000000, 7)`); err != nil {
		t.Fatal(err)
	}
	v5 := fstest.MapFS{"00005_edit_window.sql": all["00005_edit_window.sql"]}
	for name, f := range v4 {
		v5[name] = f
	}
	if applied, err := migrate(t.Context(), db.pool, v5); err != nil || len(applied) != 1 || applied[0].Version != 5 {
		t.Fatalf("migrating to version 5: %+v, %v", applied, err)
	}
	if p, err := db.Pairing(t.Context(), "a"); err != nil || p.State != pairing.StateRequesting {
		t.Errorf("the pairing from version 4: %+v, %v", p, err)
	}
	var used int
	if err := db.pool.QueryRow(t.Context(), `SELECT used FROM edit_budget WHERE minute = 29000000`).Scan(&used); err != nil || used != 7 {
		t.Errorf("the older binary's edit_budget row: %d, %v; want 7", used, err)
	}
	older := mustOpenWith(t, url, v4)
	granted(t, older, reservation("b", "I2", "201112224444", "U2", t0))
	if _, err := older.Prune(t.Context(), t0, pairing.PruneBefore{}); err != nil {
		t.Error(err)
	}
	if taken, err := db.TakeEdit(t.Context(), t0, 1); err != nil || !taken {
		t.Errorf("an edit beside the older binary: %v, %v", taken, err)
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

// TestLeaderLeaseDatabaseClock: in production (no CallerClock) the
// leader lease is measured on PostgreSQL's clock, whatever the replicas'
// clocks say: a candidate whose clock is decades ahead does not find the
// lease run out, and the term is the database's time of the election.
// Once the lease has run out by the database's clock another replica
// takes over, and the old term renews nothing.
func TestLeaderLeaseDatabaseClock(t *testing.T) {
	dbs := replicas(t, 2, Options{})
	a, b := dbs[0], dbs[1]
	behind := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	ahead := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	term, err := a.Lead(t.Context(), "A", pairing.Term{}, time.Hour, behind)
	if err != nil || term.Leader != "A" {
		t.Fatalf("A: %+v, %v; want elected", term, err)
	}
	if d := time.Since(term.ElectedAt); d < -time.Minute || d > time.Minute {
		t.Errorf("elected at %s; want the database's now (about %s), not A's clock", term.ElectedAt, time.Now())
	}
	if got, err := b.Lead(t.Context(), "B", pairing.Term{}, time.Hour, ahead); err != nil || !got.IsZero() {
		t.Errorf("B with its clock in 2100: %+v, %v; want not elected: A's lease runs by the database's clock", got, err)
	}
	if got, err := a.Lead(t.Context(), "A", term, time.Hour, behind); err != nil || !got.Equal(term) {
		t.Errorf("A renewing: %+v, %v; want its term", got, err)
	}
	// A renews for a microsecond only: by B's next statement the lease
	// has run out on the database's clock, though B's clock is far behind.
	if got, err := a.Lead(t.Context(), "A", term, time.Microsecond, behind); err != nil || !got.Equal(term) {
		t.Fatalf("A renewing for a microsecond: %+v, %v", got, err)
	}
	got, err := b.Lead(t.Context(), "B", pairing.Term{}, time.Hour, behind)
	if err != nil || got.Leader != "B" || !got.ElectedAt.After(term.ElectedAt) {
		t.Errorf("B once A's lease ran out: %+v, %v; want elected, after A", got, err)
	}
	if again, err := a.Lead(t.Context(), "A", term, time.Hour, ahead); err != nil || !again.IsZero() {
		t.Errorf("A renewing its old term: %+v, %v; want nothing", again, err)
	}
}

// testClock is an injected clock shared by several services.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestLeaderStopsWhenRenewalFails: two replicas (services over two stores
// on one schema, one clock); the leader's connection to the database is
// cut. It goes on acting only until its window closes (10 s after its
// last renewal began, for a 15 s lease), the other takes over once the
// lease has run out (15 s), and at no moment do both act. When the
// connection is back the old leader is a follower.
func TestLeaderStopsWhenRenewalFails(t *testing.T) {
	url := pgtest.URL(t)
	u, _ := neturlParse(url)
	p := newProxy(t, u.Host)
	clock := &testClock{t: t0}
	service := func(id, url string) *pairing.Service {
		db := mustOpen(t, url, Options{CallerClock: true})
		return pairing.NewService(nil, db, pairing.Config{Now: clock.Now, LeaderID: id, LeaderTTL: 15 * time.Second})
	}
	a, b := service("A", p.through(url)), service("B", url)
	if ok, err := a.Lead(t.Context()); !ok || err != nil {
		t.Fatalf("A: %v, %v; want elected", ok, err)
	}
	if ok, err := b.Lead(t.Context()); ok || err != nil {
		t.Fatalf("B: %v, %v; want a follower", ok, err)
	}
	p.down()
	for s := time.Duration(1); s <= 20; s++ {
		clock.Add(time.Second)
		at := s * time.Second
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		okA, errA := a.Lead(ctx)
		cancel()
		okB, errB := b.Lead(t.Context())
		if !errors.Is(errA, pairing.ErrUnavailable) || errB != nil {
			t.Errorf("at %s: errors A %v, B %v; want A's ErrUnavailable only", at, errA, errB)
		}
		if wantA, wantB := at < 10*time.Second, at >= 15*time.Second; okA != wantA || okB != wantB {
			t.Errorf("at %s: A acts %v, B acts %v; want %v, %v", at, okA, okB, wantA, wantB)
		}
		if okA && okB {
			t.Fatalf("at %s both replicas act as the leader", at)
		}
	}
	p.up()
	if ok, err := a.Lead(t.Context()); ok || err != nil {
		t.Errorf("A once its connection is back: %v, %v; want a follower", ok, err)
	}
	if term, leading := b.Leadership(); !leading || term.Leader != "B" {
		t.Errorf("B's leadership: %+v, %v", term, leading)
	}
}

// TestClaimAcrossReplicas: 50 claimers of one edit, half on each of two
// stores on one schema: one wins and one use of the url is taken.
func TestClaimAcrossReplicas(t *testing.T) {
	dbs := replicas(t, 2, Options{CallerClock: true})
	granted(t, dbs[0], reservation("a", "I1", "201112223333", "U1", t0))
	const url = "https://hooks.slack.test/actions/T1/1/abc"
	var won atomic.Int32
	race(50, func(i int) {
		ok, err := dbs[i%2].ClaimView(t.Context(), pairing.ViewClaim{
			ID: "a", Surface: pairing.SurfaceEphemeral, To: "live:0", Token: fmt.Sprint("T", i), Now: t0, For: time.Minute,
			URL: url, Issued: t0,
		})
		if err != nil {
			t.Error(err)
		}
		if ok {
			won.Add(1)
		}
	})
	if won.Load() != 1 {
		t.Errorf("%d of 50 claims won, want 1", won.Load())
	}
	var used int
	if err := dbs[1].pool.QueryRow(t.Context(), `SELECT used FROM response_urls WHERE url = $1`, url).Scan(&used); err != nil || used != 1 {
		t.Errorf("%d uses of the url taken (%v), want 1", used, err)
	}
}

// TestClaimLapsesOnDatabaseClock: in production a claim runs out by
// PostgreSQL's clock: a claimer whose clock is decades ahead does not
// find a claim of an hour run out; one of a microsecond has run out by
// the next statement, though the next claimer's clock is far behind.
func TestClaimLapsesOnDatabaseClock(t *testing.T) {
	dbs := replicas(t, 2, Options{})
	granted(t, dbs[0], reservation("a", "I1", "201112223333", "U1", time.Now()))
	behind := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	ahead := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	c := pairing.ViewClaim{ID: "a", Surface: pairing.SurfaceDM, To: "live:0", Token: "T1", Now: behind, For: time.Hour}
	if won, err := dbs[0].ClaimView(t.Context(), c); !won || err != nil {
		t.Fatalf("first claim: %v, %v", won, err)
	}
	c.Token, c.Now = "T2", ahead
	if won, err := dbs[1].ClaimView(t.Context(), c); won || err != nil {
		t.Errorf("a claimer in 2100: %v, %v; want the hour's claim to hold", won, err)
	}
	if done, err := dbs[0].FinishView(t.Context(), "a", pairing.SurfaceDM, "T1", pairing.Surface{}, false); !done || err != nil {
		t.Fatalf("release: %v, %v", done, err)
	}
	c.Token, c.Now, c.For = "T3", ahead, time.Microsecond
	if won, err := dbs[0].ClaimView(t.Context(), c); !won || err != nil {
		t.Fatalf("a claim of a microsecond: %v, %v", won, err)
	}
	c.Token, c.Now, c.For = "T4", behind, time.Hour
	if won, err := dbs[1].ClaimView(t.Context(), c); !won || err != nil {
		t.Errorf("a claimer in 1990 after the microsecond: %v, %v; want it to win", won, err)
	}
	if done, err := dbs[0].FinishView(t.Context(), "a", pairing.SurfaceDM, "T3", pairing.Surface{LastView: "live:0"}, false); done || err != nil {
		t.Errorf("the lapsed claimer finishing: %v, %v; want nothing", done, err)
	}
}
