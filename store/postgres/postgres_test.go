package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

var t0 = time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)

// reservation asks for pairing id on instance for phone by user at now.
func reservation(id, instance, phone, user string, now time.Time) pairing.Reservation {
	p := pairing.Pairing{
		ID: id, Instance: instance, InstanceName: instance, Phone: phone, RequestedBy: user, Team: "T1", Channel: "C1",
		ResponseURL: "https://hooks.slack.test/commands/" + id, URLIssued: now,
	}
	return pairing.Reservation{
		Pairing: p, Now: now, Hold: 30 * time.Second,
		PhoneLimit: pairing.Window{Max: 3, Period: 15 * time.Minute}, UserLimit: pairing.Window{Max: 20, Period: time.Hour},
		Granted: pairing.Event{Time: now, Kind: pairing.EventRequested, User: user, Instance: instance, Digits: phone, Pairing: id},
		Refused: pairing.Event{Time: now, Kind: pairing.EventRefused, User: user, Instance: instance, Digits: phone, Pairing: id},
	}
}

func granted(t *testing.T, s pairing.Storage, r pairing.Reservation) pairing.Pairing {
	t.Helper()
	d, err := s.Reserve(t.Context(), r)
	if err != nil || d.Refused != pairing.LimitNone {
		t.Fatalf("Reserve(%s) = %+v, %v; want granted", r.Pairing.ID, d, err)
	}
	return d.Pairing
}

// appliedVersions is the migrations goose recorded as applied in the
// schema url names, in order.
func appliedVersions(t *testing.T, db *DB) []int64 {
	t.Helper()
	rows, err := db.pool.Query(t.Context(), `SELECT version_id FROM goose_db_version WHERE is_applied AND version_id > 0 ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for rows.Next() {
		var v int64
		rows.Scan(&v)
		out = append(out, v)
	}
	return out
}

// TestMigrateIdempotent: migrations run once; opening again, or `linkbot
// migrate` on a database that is up to date, runs nothing and changes
// nothing.
func TestMigrateIdempotent(t *testing.T) {
	url := pgtest.URL(t)
	applied, version, err := Migrate(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, a := range applied {
		files = append(files, a.File)
	}
	if diff := cmp.Diff(allMigrations, files); diff != "" || version != int64(len(allMigrations)) {
		t.Errorf("first Migrate: version %d, applied (-want +got):\n%s", version, diff)
	}
	db := mustOpen(t, url, Options{})
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))
	applied, version, err = Migrate(t.Context(), url, nil)
	if err != nil || len(applied) != 0 || version != int64(len(allMigrations)) {
		t.Errorf("Migrate again: applied %+v, version %d, %v; want nothing, version %d", applied, version, err, len(allMigrations))
	}
	db2 := mustOpen(t, url, Options{})
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6}, appliedVersions(t, db2)); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
	if _, err := db2.Pairing(t.Context(), "a"); err != nil {
		t.Errorf("the pairing from before: %v", err)
	}
}

// TestOpenConcurrently: replicas starting at once on a new database take
// turns under goose's lock: each migration runs once, both open, and both
// use the one phone-key secret (an event one writes is found by phone
// through the other).
func TestOpenConcurrently(t *testing.T) {
	url := pgtest.URL(t)
	const n = 3
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			dbs[i], errs[i] = Open(context.Background(), url, Options{})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6}, appliedVersions(t, dbs[0])); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
	e := pairing.Event{Time: t0, Kind: pairing.EventLinked, User: "U1", Digits: "201112223333", Pairing: "x"}
	if err := dbs[0].AppendAudit(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	for i, db := range dbs {
		got, _, err := db.Audit(t.Context(), pairing.AuditQuery{Phone: "201112223333"})
		if err != nil || len(got) != 1 {
			t.Errorf("replica %d finds %d events of the phone (%v), want 1", i, len(got), err)
		}
	}
}

// TestNewerSchema: during a rolling deploy the new version migrates first;
// the old one, which knows fewer migrations, still opens and works on the
// expanded schema.
func TestNewerSchema(t *testing.T) {
	url := pgtest.URL(t)
	db := mustOpen(t, url, Options{CallerClock: true})
	newer := fstest.MapFS{"00099_newer.sql": {Data: []byte(`-- +goose Up
ALTER TABLE pairings ADD COLUMN claimed_view text;
CREATE TABLE newer_thing (id text PRIMARY KEY);
-- +goose Down
DROP TABLE newer_thing;
ALTER TABLE pairings DROP COLUMN claimed_view;
`)}}
	for name, f := range mustReadDir(t) {
		newer[name] = f
	}
	if _, err := migrate(t.Context(), db.pool, newer); err != nil {
		t.Fatal(err)
	}
	old := mustOpen(t, url, Options{CallerClock: true})
	granted(t, old, reservation("a", "I1", "201112223333", "U1", t0))
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6, 99}, appliedVersions(t, old)); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
}

// allMigrations is every file under migrations/, in order.
var allMigrations = []string{"00001_init.sql", "00002_replicas.sql", "00003_holds.sql", "00004_edit_budget.sql", "00005_edit_window.sql",
	"00006_renews_index.sql"}

func mustReadDir(t *testing.T) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	for _, name := range allMigrations {
		data, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = &fstest.MapFile{Data: data}
	}
	return out
}

// TestLeaseUsesDatabaseClock: in production (no CallerClock) a lease is
// measured on PostgreSQL's clock, whatever the caller's clock says: a
// request from a replica whose clock is years behind still holds its
// instance for its Hold (a caller-clock lease would have ended long ago),
// and one whose lease the database says has run out no longer holds it,
// though the caller's clock says it should.
func TestLeaseUsesDatabaseClock(t *testing.T) {
	db := mustOpen(t, pgtest.URL(t), Options{})
	behind := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	a := granted(t, db, reservation("a", "I1", "201112223333", "U1", behind))
	if !a.ExpiresAt.Equal(behind.Add(30 * time.Second)) {
		t.Errorf("ExpiresAt = %s; want the caller's clock + Hold (what its message shows)", a.ExpiresAt)
	}
	var leaseLeft time.Duration
	if err := db.pool.QueryRow(t.Context(), `SELECT lease_until_ns - `+sqlNow+` FROM pairings WHERE id = 'a'`).Scan(&leaseLeft); err != nil {
		t.Fatal(err)
	}
	if leaseLeft <= 20*time.Second || leaseLeft > 30*time.Second {
		t.Errorf("lease ends %s after the database's now; want about the 30 s Hold", leaseLeft)
	}
	later := behind.Add(time.Hour)
	if h, err := db.Holder(t.Context(), "I1", later); err != nil || h.ID != "a" {
		t.Errorf("Holder an hour later by the caller's clock = %q, %v; want a: the database's clock says its lease runs", h.ID, err)
	}
	if d, err := db.Reserve(t.Context(), reservation("b", "I1", "201112224444", "U2", later)); err != nil || d.Refused != pairing.LimitInstance || d.Holder.ID != "a" {
		t.Errorf("another request for I1 = %+v, %v; want refused, held by a", d, err)
	}
	if p, ended, err := db.Interrupt(t.Context(), pairing.Interruption{ID: "a", Now: later, Lapsed: true}); err != nil || ended || p.State != pairing.StateRequesting {
		t.Errorf("Interrupt(Lapsed) = %s, %v, %v; want left alone: its lease runs", p.State, ended, err)
	}

	// A lease of a microsecond has run out by the next transaction, though
	// the caller's clock (far ahead) says the request is within it.
	ahead := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	r := reservation("c", "I2", "201112225555", "U3", ahead)
	r.Hold = time.Microsecond
	granted(t, db, r)
	if h, err := db.Holder(t.Context(), "I2", ahead); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("Holder of I2 = %q, %v; want ErrNotFound: its lease ran out on the database's clock", h.ID, err)
	}
	granted(t, db, reservation("d", "I2", "201112226666", "U4", ahead))
	if p, ended, err := db.Interrupt(t.Context(), pairing.Interruption{ID: "c", Now: ahead, Lapsed: true}); err != nil || !ended || p.State != pairing.StateInterrupted {
		t.Errorf("Interrupt(Lapsed) of c = %s, %v, %v; want interrupted: its lease ran out", p.State, ended, err)
	}
}

// TestUnknownFieldsKept: a write replaces only the document keys this
// version knows, so a field a newer replica added survives an older
// replica's update; known fields (the code) are still wiped.
func TestUnknownFieldsKept(t *testing.T) {
	db, _ := openTest(t)
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))
	if _, err := db.Settle(t.Context(), pairing.Settlement{ID: "a", Now: t0, Counted: true, Change: func(p *pairing.Pairing) error {
		p.State, p.Code, p.ExpiresAt = pairing.StateLive, "ABCD1234", t0.Add(time.Minute)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(t.Context(), `UPDATE pairings SET doc = doc || '{"surface": {"dm": "D1"}}' WHERE id = 'a'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdatePairing(t.Context(), "a", t0.Add(time.Second), func(p *pairing.Pairing) error {
		p.State = pairing.StateCancelled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var surface, code *string
	if err := db.pool.QueryRow(t.Context(), `SELECT doc->'surface'->>'dm', doc->>'code' FROM pairings WHERE id = 'a'`).Scan(&surface, &code); err != nil {
		t.Fatal(err)
	}
	if surface == nil || *surface != "D1" {
		t.Errorf("the newer field is gone after an update: %v", surface)
	}
	if code != nil {
		t.Errorf("the code %q is still stored after the pairing ended", *code)
	}
}

// TestNULStored: PostgreSQL text and jsonb hold no NUL; a NUL in any
// field (an error body from Wawp, say) is stored as U+FFFD instead of
// failing the write.
func TestNULStored(t *testing.T) {
	db, _ := openTest(t)
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))
	p, err := db.Settle(t.Context(), pairing.Settlement{ID: "a", Now: t0, Counted: true, Change: func(p *pairing.Pairing) error {
		p.State, p.Reason = pairing.StateFailed, "bad\x00body"
		return nil
	}, Audit: pairing.Event{Time: t0, Kind: pairing.EventError, User: "U1\x00", Instance: "I1", Pairing: "a"}})
	if err != nil || p.State != pairing.StateFailed {
		t.Fatalf("Settle with a NUL: %+v, %v", p, err)
	}
	if got, err := db.Pairing(t.Context(), "a"); err != nil || got.Reason != "bad\uFFFDbody" {
		t.Errorf("stored reason %q, %v; want bad\\uFFFDbody", got.Reason, err)
	}
	ev, _, err := db.Audit(t.Context(), pairing.AuditQuery{Instances: []string{"i1"}})
	if err != nil || len(ev) != 2 || ev[1].User != "U1\uFFFD" {
		t.Errorf("audit = %+v, %v", ev, err)
	}
}

// TestReadOnly: a read-only store (linkbot audit) runs no migration; on a
// database that has none it says what to do.
func TestReadOnly(t *testing.T) {
	url := pgtest.URL(t)
	_, err := Open(t.Context(), url, Options{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "linkbot migrate") {
		t.Errorf("read-only Open of an empty schema: %v; want a pointer to linkbot migrate", err)
	}
	db := mustOpen(t, url, Options{})
	if err := db.AppendAudit(t.Context(), pairing.Event{Time: t0, Kind: pairing.EventLinked, User: "U1", Digits: "201112223333"}); err != nil {
		t.Fatal(err)
	}
	ro := mustOpen(t, url, Options{ReadOnly: true})
	if ev, _, err := ro.Audit(t.Context(), pairing.AuditQuery{Phone: "201112223333"}); err != nil || len(ev) != 1 {
		t.Errorf("read-only Audit by phone = %v, %v; want the event", ev, err)
	}
}

// proxy is a TCP proxy on loopback in front of the test server, which a
// test can cut (every connection dropped, nothing listening: the database
// is down) and bring back on the same address.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	p.up()
	t.Cleanup(p.down)
	return p
}

func (p *proxy) up() {
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// through returns url with its host replaced by the proxy's.
func (p *proxy) through(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		p.t.Fatal(err)
	}
	u.Host = p.addr
	return u.String()
}

// TestConnectionLost: with the database gone mid-run every call returns
// an error wrapping pairing.ErrUnavailable ("try again"), changing
// nothing; when it is back, the same store works again without a restart.
func TestConnectionLost(t *testing.T) {
	url := pgtest.URL(t)
	u, _ := neturlParse(url)
	p := newProxy(t, u.Host)
	db := mustOpen(t, p.through(url), Options{CallerClock: true})
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))

	p.down()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	calls := map[string]func() error{
		"Reserve": func() error { _, err := db.Reserve(ctx, reservation("b", "I2", "201112224444", "U2", t0)); return err },
		"Pairing": func() error { _, err := db.Pairing(ctx, "a"); return err },
		"UpdatePairing": func() error {
			_, err := db.UpdatePairing(ctx, "a", t0, func(*pairing.Pairing) error { return nil })
			return err
		},
		"WatchedPairings": func() error { _, err := db.WatchedPairings(ctx); return err },
		"UseResponseURL":  func() error { return db.UseResponseURL(ctx, "https://hooks.slack.test/x", t0, t0, 0) },
		"Audit":           func() error { _, _, err := db.Audit(ctx, pairing.AuditQuery{}); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, pairing.ErrUnavailable) {
			t.Errorf("%s with the database down: %v; want ErrUnavailable", name, err)
		}
	}

	p.up()
	if _, err := db.Pairing(ctx, "a"); err != nil {
		t.Errorf("Pairing once the database is back: %v", err)
	}
	if _, err := db.Pairing(ctx, "b"); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("the request refused during the outage: %v; want nothing of it stored", err)
	}
	if ev, _, err := db.Audit(ctx, pairing.AuditQuery{}); err != nil || len(ev) != 1 {
		t.Errorf("audit log after the outage: %d events, %v; want only a's", len(ev), err)
	}
	d, err := db.Reserve(ctx, reservation("b", "I2", "201112224444", "U2", t0))
	if err != nil || d.Refused != pairing.LimitNone {
		t.Errorf("Reserve once the database is back: %+v, %v", d, err)
	}
}

func neturlParse(raw string) (*url.URL, error) { return url.Parse(raw) }

// TestPasswordNeverShown: the URL's password appears in no error — a
// malformed URL, an unreachable server, a bad option — nor in what
// Describe gives the logs.
func TestPasswordNeverShown(t *testing.T) {
	const pw = "S3cr3t-pa55"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tt := range []struct {
		name, url string
		open      bool // Open it too (else only CheckURL)
	}{
		{"unreachable", "postgres://linkbot:" + pw + "@" + closed + "/linkbot?sslmode=disable", true},
		{"password in the query", "postgres://linkbot@" + closed + "/linkbot?sslmode=disable&password=" + pw, true},
		{"bad port", "postgres://linkbot:" + pw + "@db.example:port/linkbot", false},
		{"bad sslmode", "postgres://linkbot:" + pw + "@db.example/linkbot?sslmode=sometimes", false},
		{"bad pool size", "postgres://linkbot:" + pw + "@db.example/linkbot?pool_max_conns=many", false},
		{"not postgres", "mysql://linkbot:" + pw + "@db.example/linkbot", false},
		{"no host", "postgres://linkbot:" + pw + "@/linkbot", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var errs []error
			if err := CheckURL(tt.url); err != nil {
				errs = append(errs, err)
			}
			if tt.open {
				_, err := Open(t.Context(), tt.url, Options{})
				if !errors.Is(err, pairing.ErrUnavailable) || !strings.Contains(err.Error(), closed) {
					t.Errorf("Open: %v; want ErrUnavailable naming %s", err, closed)
				}
				errs = append(errs, err)
				_, _, err = Migrate(t.Context(), tt.url, nil)
				errs = append(errs, err)
			} else {
				var uerr *URLError
				if !errors.As(errs[0], &uerr) {
					t.Errorf("CheckURL: %v; want a URLError", errs[0])
				}
				_, err := Open(t.Context(), tt.url, Options{})
				errs = append(errs, err)
			}
			for _, err := range errs {
				if err == nil {
					t.Fatalf("no error for %s", tt.name)
				}
				if strings.Contains(err.Error(), pw) {
					t.Errorf("the password is in %q", err)
				}
				t.Log(err)
			}
			if d := Describe(tt.url); strings.Contains(d, pw) {
				t.Errorf("Describe = %q", d)
			}
		})
	}
}

// TestRenewalsAgainstRequests races uncounted renewals (which give the
// old code its instance back) with other users' requests for the same
// instances and with Prune: no transaction deadlocks or fails, and no
// instance ever has two pairings holding it.
func TestRenewalsAgainstRequests(t *testing.T) {
	db, _ := openTest(t)
	const instances = 10
	for i := range instances {
		in := fmt.Sprint("I", i)
		old := fmt.Sprint("old", i)
		granted(t, db, reservation(old, in, fmt.Sprint("2011100000", i), "U0", t0))
		if _, err := db.Settle(t.Context(), pairing.Settlement{ID: old, Now: t0, Counted: true, Change: func(p *pairing.Pairing) error {
			p.State, p.ExpiresAt = pairing.StateLive, t0.Add(time.Minute)
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		r := reservation(fmt.Sprint("new", i), in, fmt.Sprint("2011100000", i), "U0", t0.Add(time.Second))
		r.Replaces, r.Pairing.Renews = old, old
		granted(t, db, r)
	}
	now := t0.Add(2 * time.Second)
	var wg sync.WaitGroup
	for i := range instances {
		wg.Go(func() {
			_, err := db.Settle(t.Context(), pairing.Settlement{ID: fmt.Sprint("new", i), Now: now, Replaced: fmt.Sprint("old", i), ReplacedURL: "https://hooks.slack.test/click",
				Change: func(p *pairing.Pairing) error { p.State = pairing.StateFailed; return nil }})
			if err != nil {
				t.Errorf("settling renewal %d: %v", i, err)
			}
		})
		for j := range 3 {
			wg.Go(func() {
				if _, err := db.Reserve(t.Context(), reservation(fmt.Sprintf("other%d-%d", i, j), fmt.Sprint("I", i), fmt.Sprintf("20122%d%05d", j, i), fmt.Sprint("U", j+1), now)); err != nil {
					t.Errorf("another request for I%d: %v", i, err)
				}
			})
		}
		wg.Go(func() {
			if _, err := db.Prune(t.Context(), now, pairing.PruneBefore{}); err != nil {
				t.Errorf("prune: %v", err)
			}
		})
	}
	wg.Wait()
	for i := range instances {
		var holding []string
		for _, id := range []string{"old", "new", "other"} {
			rows, _ := db.pool.Query(t.Context(), `SELECT id, state, lease_until_ns FROM pairings WHERE instance = $1 AND starts_with(id, $2)`, fmt.Sprint("I", i), id)
			for rows.Next() {
				var (
					pid, state string
					lease      int64
				)
				rows.Scan(&pid, &state, &lease)
				if holds(pairing.State(state), lease, nanos(now)) {
					holding = append(holding, pid)
				}
			}
		}
		if len(holding) != 1 {
			t.Errorf("I%d is held by %v; want exactly one pairing", i, holding)
		}
	}
}

// TestAdvisoryLocksScopedToSchema: a transaction holding a phone's lock in
// one schema does not hold up a Reserve for that phone in another schema
// of the same database (advisory locks are database-wide), while it does
// in its own.
func TestAdvisoryLocksScopedToSchema(t *testing.T) {
	a := mustOpen(t, pgtest.URL(t), Options{CallerClock: true})
	b := mustOpen(t, pgtest.URL(t), Options{CallerClock: true})
	const phone = "201011112222"
	r := reservation("p1", "I1", phone, "U1", t0)

	tx, err := a.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `SELECT pg_advisory_xact_lock($1)`, a.lockID("phone\x00"+r.Pairing.AttemptKey())); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if d, err := b.Reserve(ctx, r); err != nil || d.Refused != pairing.LimitNone {
		t.Fatalf("Reserve in another schema while the first holds the phone's lock: %+v, %v", d, err)
	}

	blocked, cancelBlocked := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancelBlocked()
	if _, err := a.Reserve(blocked, reservation("p2", "I2", phone, "U2", t0)); err == nil {
		t.Fatal("Reserve in the lock holder's own schema went through while the phone's lock was held")
	}
}
