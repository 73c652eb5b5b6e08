// Package postgres keeps linkbot's state in PostgreSQL, so several
// replicas of the bot can share it (issue 11). It implements
// pairing.Storage with the promises of the bbolt store (package
// store/storetest is the contract both pass) and is the only package
// besides its test helper that imports pgx.
//
// What is stored where (migrations/ has the schema: 00001_init.sql, and
// 00002_replicas.sql for what several replicas need besides the limits):
//
//   - pairings: one row per pairing, the pairing as a JSON document plus the
//     columns queries select and lock by (instance, state, watched, lease,
//     end time). New fields of pairing.Pairing need no migration, and a
//     write replaces only the document keys its writer knows, so an older
//     replica does not drop a newer one's fields during a rolling deploy.
//   - live_by_instance: which pairing holds each instance; its primary key
//     is the "one live code per instance" constraint.
//   - attempts: one row per code request, indexed by phone and by user.
//   - response_urls: posts taken from each Slack response_url.
//   - audit_events: the audit log, indexed by time, phone key and instance.
//   - linkbot_meta: the phone-key secret.
//   - dedupe_keys: Slack commands already handled, each until its Until
//     (Reserve claims its key in its transaction; ClaimCommand alone).
//   - leader_lease: the ticker's leader, at most one row (Lead).
//   - edit_window: the workspace's chat.update calls of the last minute (a
//     sliding minute), shared by every replica (TakeEdit). edit_budget, its
//     fixed-minute predecessor, is left for version-4 replicas.
//   - the pairing document's view_claims: edits claimed and not finished
//     (ClaimView, FinishView), a key no write of the pairing drops.
//
// Limits are exact across replicas: Reserve is one READ COMMITTED
// transaction that first takes transaction-level advisory locks on the
// phone, the user and the instance (hashed, in sorted order, so two
// requests never wait for each other in a circle), then counts the windows
// and reads the instance's holder, then records the attempt, the pairing,
// the instance slot and the audit event. Two requests for one phone or user
// or instance run one after the other, whichever replica they reach; no
// transaction is ever retried, so nothing is decided twice.
//
// Leases use the database's clock. A pairing holds its instance until
// lease_until, computed when its ExpiresAt is set as
//
//	lease_until = now() + (ExpiresAt − the caller's now)
//
// where now() is PostgreSQL's (the transaction's start): the caller's
// clock only measures the duration (the Hold of a request, the lifetime of
// a code), never the instant, so replicas whose clocks disagree still agree
// on when an instance is free. Every "is it still held" question — a
// request for a held instance, Holder, Interrupt's Lapsed, whether a
// replaced code still works, pruning — compares lease_until with now().
// A pairing's ExpiresAt (what its message shows, and what the countdown of
// the replica that draws it goes by) stays in the caller's clock, and so
// do the limits' windows (an attempt is recorded at the caller's now and
// counted against it): a replica whose clock is a second off shifts a
// 15-minute window by a second, while the counts stay exact, being taken
// under the locks. With
// Options.CallerClock (tests only) the caller's now stands in for now(),
// so lease_until equals ExpiresAt and the conformance suite's injected
// times decide everything, as with bbolt.
package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/linkbot/linkbot/pairing"
)

// DB is an open PostgreSQL store. It is safe for concurrent use.
type DB struct {
	pool        *pgxpool.Pool
	log         *slog.Logger
	callerClock bool
	where       string // host:port/database, for messages (never the password)
	password    string // scrubbed from every error Open returns
	// secret is the phone-key secret (nil for a read-only store of a
	// database that has none yet). Import replaces it.
	secret atomic.Pointer[[]byte]
	// lockSpace scopes the advisory locks to the schema the store lives
	// in: PostgreSQL's advisory locks are database-wide, so two linkbot
	// installations (or two tests) in different schemas of one database
	// would otherwise wait on each other's keys. Empty for "public", whose
	// lock IDs stay as before.
	lockSpace string
	// limits is SET LOCAL statements run at the start of every
	// transaction (limitsSQL).
	limits []string
	// opener is this store's row in linkbot_meta ("opened:…"), written
	// by a non-read-only Open before it reads the phone-key secret and
	// deleted by Close: Import refuses while another process's is there.
	opener string
	// madeSecret: this store's Open made the phone-key secret (the
	// database had none), so Import may replace it.
	madeSecret bool
}

// Options tune Open. The zero value is the production store.
type Options struct {
	// Log receives warnings (audit records that do not parse, skipped by
	// reads); nil discards them.
	Log *slog.Logger
	// CallerClock is for tests only: it takes the times callers pass
	// (Reservation.Now, Holder's now, Settlement.Now, …) as the database's
	// clock, so leases end exactly at ExpiresAt by the caller's clock and
	// the conformance suite's injected clock decides them. Production
	// leaves it false: leases are measured on PostgreSQL's now() (see the
	// package doc).
	CallerClock bool
	// ReadOnly opens without running migrations or creating the phone-key
	// secret, for readers such as `linkbot audit`.
	ReadOnly bool
}

// Connection defaults, unless the URL sets its own (connect_timeout,
// pool_max_conns, application_name).
const (
	defaultConnectTimeout = 5 * time.Second
	// defaultMaxConns bounds each replica's connections: a check-and-record
	// holds one for a few round trips, so 10 serve 50 concurrent requests,
	// and three replicas (plus one more during a deploy) stay well within
	// PostgreSQL's default max_connections of 100.
	defaultMaxConns = 10
)

// URLError is a LINKBOT_DATABASE_URL that cannot be used: not a
// postgres:// URL, or one pgx cannot read. Its message never holds the
// URL's password.
type URLError struct{ msg string }

func (e *URLError) Error() string { return e.msg }

// CheckURL says whether raw is a PostgreSQL URL Open can use, without
// connecting: a *URLError when it is not.
func CheckURL(raw string) error {
	_, _, err := parseURL(raw)
	return err
}

// parseURL reads raw into a pool configuration with linkbot's defaults,
// and returns the password it carries (to scrub from errors).
func parseURL(raw string) (*pgxpool.Config, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, and even its inner message can
		// quote the password (a password with an unescaped / # or ? is
		// read as the host's port: `invalid port ":secret" after host`),
		// so the parser's words are never repeated: say what usually
		// causes it instead.
		return nil, "", &URLError{"is not a valid URL; want postgres://USER:PASSWORD@HOST:5432/DATABASE, with any of / # ? @ : % in the user name or password percent-encoded (/ as %2F, # as %23, ? as %3F, @ as %40, : as %3A, % as %25)"}
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, "", &URLError{fmt.Sprintf("must be a postgres:// URL, not %q; e.g. postgres://USER:PASSWORD@HOST:5432/DATABASE", u.Scheme+"://…")}
	}
	if u.Host == "" {
		return nil, "", &URLError{"names no host; e.g. postgres://USER:PASSWORD@HOST:5432/DATABASE"}
	}
	password, _ := u.User.Password()
	if p := u.Query().Get("password"); p != "" {
		password = p
	}
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		// pgx's message quotes the URL (with the password masked, as far as
		// it can tell where it is) before saying what is wrong: keep only
		// what is wrong, and take the password out of that too.
		msg := err.Error()
		if i := strings.Index(msg, "`: "); strings.HasPrefix(msg, "cannot parse `") && i >= 0 {
			msg = msg[i+3:]
		}
		return nil, "", &URLError{"cannot be used: " + scrub(msg, password)}
	}
	q := u.Query()
	if !q.Has("connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if !q.Has("pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "linkbot"
	}
	dialer := &net.Dialer{Timeout: cfg.ConnConfig.ConnectTimeout, KeepAliveConfig: keepAlive}
	cfg.ConnConfig.DialFunc = dialer.DialContext
	return cfg, password, nil
}

// sessionDefaults bound how long one transaction may keep others
// waiting, so a replica whose connection went half-open in the middle of
// a transaction (a network partition, a host frozen) cannot hold the
// phone's, the user's or the instance's advisory locks for the hours TCP
// takes to notice, with every other replica's requests for them waiting
// behind it (the bot sets no deadline of its own on a request).
//
// They are applied with SET LOCAL at the start of every transaction the
// store runs (limitsSQL, sent in the same round trip as BEGIN), never as
// startup parameters: PgBouncer refuses a connection whose startup packet
// carries a parameter it does not track ("unsupported startup parameter",
// https://github.com/pgbouncer/pgbouncer/issues/1074), and under
// transaction pooling only a SET LOCAL is sure to apply to the server
// session the transaction runs on
// (https://www.pgbouncer.org/features.html). Precedence: a limit the URL
// sets (as a query parameter, or with -c in options) or PGOPTIONS sets is
// left alone (not SET LOCAL, so the session's value applies); otherwise
// linkbot's default wins over the server's, the database's and the role's
// (ALTER DATABASE/ROLE … SET) settings inside linkbot's transactions.
// Single statements outside a transaction keep the session's settings;
// the locks they may wait for are held only by transactions, which these
// limits end.
//
// A statement or lock wait they cut short fails with an error classify
// turns into pairing.ErrUnavailable: the person is told to try again.
// https://www.postgresql.org/docs/current/runtime-config-client.html
var sessionDefaults = []struct{ name, value string }{
	// A transaction whose client went silent is ended by the server (its
	// session terminated), releasing its locks. linkbot's transactions
	// never wait on anything but the database between statements.
	{"idle_in_transaction_session_timeout", "10s"},
	// A statement waiting for a lock (a row, an advisory lock) gives up:
	// the request is answered "try again" instead of waiting without end.
	{"lock_timeout", "5s"},
	// No statement of linkbot's runs for long (copy-store's COPYs carry
	// 5,000 events each); one that does is stuck.
	{"statement_timeout", "60s"},
}

// limitsSQL is the SET LOCAL statements of the sessionDefaults that
// params (the URL's and PGOPTIONS' runtime parameters) do not set, one
// per element.
func limitsSQL(params map[string]string) []string {
	var out []string
	for _, d := range sessionDefaults {
		if !setsParam(params, d.name) {
			out = append(out, fmt.Sprintf("SET LOCAL %s = '%s'", d.name, d.value))
		}
	}
	return out
}

// sessionSQL is limitsSQL for a whole session (the migrations' own pool,
// see migrate): plain SETs of the sessionDefaults params do not set, and
// the server's end of TCP keepalives (a vanished client's session, and any
// session-level lock it holds, ends within about a minute).
func sessionSQL(params map[string]string) []string {
	var out []string
	for _, set := range limitsSQL(params) {
		out = append(out, strings.Replace(set, "SET LOCAL ", "SET ", 1))
	}
	for _, ka := range []struct{ name, value string }{{"tcp_keepalives_idle", "30"}, {"tcp_keepalives_interval", "10"}, {"tcp_keepalives_count", "3"}} {
		if !setsParam(params, ka.name) {
			out = append(out, fmt.Sprintf("SET %s = '%s'", ka.name, ka.value))
		}
	}
	return out
}

// keepAlive makes the client probe an idle connection after 15 s and
// drop it after three unanswered probes, 5 s apart: a server that went
// away without closing the socket is noticed in about half a minute
// rather than the system's default of hours. Only the client's end is
// set (a server's tcp_keepalives_* would be startup parameters, which
// poolers refuse); the server's end of a vanished replica's transaction
// is ended by idle_in_transaction_session_timeout.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}

// setsParam says whether the runtime parameters (from the URL or the
// environment) set name, directly or with "-c name=…" in options.
func setsParam(params map[string]string, name string) bool {
	if _, ok := params[name]; ok {
		return true
	}
	opts := params["options"]
	for _, f := range strings.Fields(opts) {
		f = strings.TrimPrefix(f, "-c")
		f = strings.TrimPrefix(f, "--")
		if k, _, ok := strings.Cut(f, "="); ok && strings.ReplaceAll(k, "-", "_") == name {
			return true
		}
	}
	return false
}

// scrub removes secret (and its URL-escaped forms) from s.
func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		s = strings.ReplaceAll(s, form, "xxxxx")
	}
	return s
}

// scrubbed is an error whose message has a password taken out; errors.Is
// and As still see the error under it.
type scrubbed struct {
	err      error
	password string
}

func (e *scrubbed) Error() string { return scrub(e.err.Error(), e.password) }
func (e *scrubbed) Unwrap() error { return e.err }

func (db *DB) scrub(err error) error {
	if err == nil || db.password == "" {
		return err
	}
	return &scrubbed{err, db.password}
}

// Describe names the database raw points at — user@host:port/database —
// without its password, for logs; "" when raw does not parse.
func Describe(raw string) string {
	cfg, _, err := parseURL(raw)
	if err != nil {
		return ""
	}
	return describe(cfg.ConnConfig)
}

func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s/%s", c.User, net.JoinHostPort(c.Host, fmt.Sprint(c.Port)), c.Database)
}

// Open connects to the database at url, runs the migrations it has not
// run yet (under a lock, so replicas starting together take turns) and
// makes the phone-key secret if the database has none. A database it
// cannot reach is an error wrapping pairing.ErrUnavailable that names the
// host, never the password.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, password, err := parseURL(url)
	if err != nil {
		return nil, fmt.Errorf("LINKBOT_DATABASE_URL %w", err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &scrubbed{fmt.Errorf("PostgreSQL at %s: %w", describe(cfg.ConnConfig), err), password}
	}
	db := &DB{pool: pool, log: log, callerClock: opts.CallerClock, where: describe(cfg.ConnConfig), password: password,
		limits: limitsSQL(cfg.ConnConfig.RuntimeParams)}
	if err := db.open(ctx, opts); err != nil {
		db.Close() // its registration too, if it got that far
		return nil, db.scrub(fmt.Errorf("PostgreSQL at %s: %w", db.where, err))
	}
	return db, nil
}

func (db *DB) open(ctx context.Context, opts Options) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("cannot connect: %w", db.classify(ctx, err))
	}
	var schema string
	if err := db.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("read the current schema: %w", db.classify(ctx, err))
	}
	if schema != "public" {
		db.lockSpace = schema
	}
	if !opts.ReadOnly {
		if _, err := migrate(ctx, db.pool, migrations); err != nil {
			return db.classify(ctx, err)
		}
	}
	return db.loadSecret(ctx, !opts.ReadOnly)
}

// Close removes this store's registration (opener; best effort, a few
// seconds at most) and closes every connection.
func (db *DB) Close() error {
	if db.opener != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		db.pool.Exec(ctx, `DELETE FROM linkbot_meta WHERE key = $1`, db.opener)
		cancel()
	}
	db.pool.Close()
	return nil
}

// Ping reports whether the database answers now (ErrUnavailable,
// errors.Is, when it does not), for /readyz.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", db.classify(ctx, err))
	}
	return nil
}

// Where names the database, without its password: user@host:port/database.
func (db *DB) Where() string { return db.where }

// phoneKeySecretSize is the HMAC key's length, as the bbolt store's.
const phoneKeySecretSize = 32

// openerPrefix starts the linkbot_meta keys of the processes that have
// the database open and keep its phone-key secret in memory (DB.opener).
const openerPrefix = "opened:"

// loadSecret reads the phone-key secret, first making one (32 random
// bytes) when create is set and the database has none. Replicas opening a
// new database together agree: the first insert wins and all read it.
// With create, the store first registers itself (opener), so an Import
// that has not yet begun sees it and refuses, and one under way (it
// locks linkbot_meta) makes the registration wait until it committed, so
// the secret read after it is the imported one.
func (db *DB) loadSecret(ctx context.Context, create bool) error {
	if create {
		id := make([]byte, 12)
		if _, err := rand.Read(id); err != nil {
			return err
		}
		host, _ := os.Hostname()
		key := fmt.Sprintf("%s%x", openerPrefix, id)
		who := fmt.Sprintf("%s host %s pid %d", time.Now().UTC().Format(time.RFC3339), host, os.Getpid())
		if _, err := db.pool.Exec(ctx, `INSERT INTO linkbot_meta (key, value) VALUES ($1, $2)`, key, []byte(who)); err != nil {
			return fmt.Errorf("register this process: %w", db.classify(ctx, err))
		}
		db.opener = key
		secret := make([]byte, phoneKeySecretSize)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		tag, err := db.pool.Exec(ctx, `INSERT INTO linkbot_meta (key, value) VALUES ('phone_key_secret', $1) ON CONFLICT (key) DO NOTHING`, secret)
		if err != nil {
			return fmt.Errorf("create the phone key secret: %w", db.classify(ctx, err))
		}
		db.madeSecret = tag.RowsAffected() == 1
	}
	var secret []byte
	err := db.pool.QueryRow(ctx, `SELECT value FROM linkbot_meta WHERE key = 'phone_key_secret'`).Scan(&secret)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil // read-only, and nothing has written here yet
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return errors.New("it has no linkbot tables: run `linkbot migrate` (or start the bot once) with this LINKBOT_DATABASE_URL, and check its search_path")
	case err != nil:
		return fmt.Errorf("read the phone key secret: %w", db.classify(ctx, err))
	}
	db.secret.Store(&secret)
	return nil
}

// phoneKeySecret is the database's phone-key secret, nil when it has none.
func (db *DB) phoneKeySecret() []byte {
	if s := db.secret.Load(); s != nil {
		return *s
	}
	return nil
}

// classify turns a failure to reach the server into an error wrapping
// pairing.ErrUnavailable ("try again"), and a call cut short by its ctx
// into one wrapping ctx.Err(). Anything else (a change function's error,
// ErrNotFound, a constraint) passes through as it is.
func (db *DB) classify(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		if errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	case unreachable(err):
		return fmt.Errorf("%w: %w", pairing.ErrUnavailable, db.scrub(err))
	}
	return err
}

// unreachable says whether err means the server could not be reached or
// dropped the connection: a failed connect, a network error, a connection
// closed under the call, or the server saying it is shutting down,
// starting up, out of connection slots or a read-only standby (a
// failover in progress), or a transaction limit (sessionDefaults) cutting a
// wait short.
func unreachable(err error) bool {
	var (
		connectErr *pgconn.ConnectError
		pgErr      *pgconn.PgError
		netErr     net.Error
	)
	switch {
	case errors.As(err, &pgErr):
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection_exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "25006", // read_only_sql_transaction: a standby
			// The session limits (sessionDefaults): a lock another session
			// held too long, this session ended for idling in a
			// transaction, a statement that ran too long. Nothing of the
			// transaction was stored; asking again may succeed.
			pgErr.Code == "55P03", // lock_not_available (lock_timeout)
			pgErr.Code == "25P03", // idle_in_transaction_session_timeout
			pgErr.Code == "57014": // query_canceled (statement_timeout)
			return true
		}
		return false
	case errors.As(err, &connectErr), errors.As(err, &netErr), pgconn.SafeToRetry(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	return strings.Contains(err.Error(), "conn closed")
}

// inTx runs f in one READ COMMITTED transaction (whatever the server's
// default isolation), committing when f returns nil. It never retries: a
// transaction that fails is rolled back and its error returned.
func (db *DB) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tx, err := db.pool.BeginTx(ctx, db.txOptions())
	if err != nil {
		return db.classify(ctx, err)
	}
	if err := f(tx); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		tx.Rollback(rctx)
		return db.classify(ctx, err)
	}
	return db.classify(ctx, tx.Commit(ctx))
}

// txOptions begins a READ COMMITTED transaction with the session limits
// set in it, in one round trip: BEGIN and the SET LOCALs travel as one
// simple-protocol query.
func (db *DB) txOptions() pgx.TxOptions {
	if len(db.limits) == 0 {
		return pgx.TxOptions{IsoLevel: pgx.ReadCommitted}
	}
	return pgx.TxOptions{BeginQuery: "BEGIN ISOLATION LEVEL READ COMMITTED; " + strings.Join(db.limits, "; ")}
}

// inPipelinedTx runs one READ COMMITTED transaction in two round trips,
// for the hot path (Reserve): BEGIN travels with the statements of reads,
// and COMMIT with the statements decide returns after looking at what
// they read. A failure anywhere rolls the transaction back; a connection
// still inside a transaction is never handed to another caller (the pool
// closes it on release).
func (db *DB) inPipelinedTx(ctx context.Context, reads *pgx.Batch, decide func() (*pgx.Batch, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return db.classify(ctx, err)
	}
	defer conn.Release()
	first := &pgx.Batch{}
	first.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	for _, l := range db.limits {
		first.Queue(l)
	}
	first.QueuedQueries = append(first.QueuedQueries, reads.QueuedQueries...)
	err = conn.SendBatch(ctx, first).Close()
	var writes *pgx.Batch
	if err == nil {
		writes, err = decide()
	}
	if err == nil {
		writes.Queue(`COMMIT`)
		err = conn.SendBatch(ctx, writes).Close()
	}
	if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Exec(rctx, `ROLLBACK`)
	}
	return db.classify(ctx, err)
}

// Time bounds that unix nanoseconds can hold.
var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// nanos is t in unix nanoseconds, saturating outside 1678–2262 (the zero
// time is the smallest).
func nanos(t time.Time) int64 {
	switch {
	case !t.After(minNanoTime):
		return math.MinInt64
	case !t.Before(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// addNanos is a+b, saturating.
func addNanos(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// sqlNow is PostgreSQL's now() in unix nanoseconds (microsecond steps).
const sqlNow = `(extract(epoch from now()) * 1000000000)::bigint`

// nowParam is what a query's COALESCE($n::bigint, sqlNow) is given: the
// caller's time with CallerClock, else NULL, so the database's clock is
// used.
func (db *DB) nowParam(callerNow time.Time) *int64 {
	if !db.callerClock {
		return nil
	}
	n := nanos(callerNow)
	return &n
}

// dbNow reads the clock leases are measured on, inside tx: now() of the
// transaction, or the caller's time with CallerClock.
func (db *DB) dbNow(ctx context.Context, tx pgx.Tx, callerNow time.Time) (int64, error) {
	var n int64
	err := tx.QueryRow(ctx, `SELECT COALESCE($1::bigint, `+sqlNow+`)`, db.nowParam(callerNow)).Scan(&n)
	return n, err
}

// lease is when a pairing expiring at expires by the caller's clock (whose
// reading is now) stops holding its instance, on the database's clock
// (dbNow): the duration is the caller's, the instant the database's.
func lease(dbNow int64, expires, now time.Time) int64 {
	return addNanos(dbNow, int64(expires.Sub(now)))
}

// DB is the PostgreSQL implementation of the service's storage.
var _ pairing.Storage = (*DB)(nil)
