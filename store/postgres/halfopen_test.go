package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// halfOpenProxy is a TCP proxy to PostgreSQL that, once a client sends a
// chunk containing trigger, stops forwarding anything in either
// direction without closing a socket: a half-open connection (a network
// partition, a replica frozen by its host), as the server sees it.
type halfOpenProxy struct {
	ln      net.Listener
	trigger []byte
	mu      sync.Mutex
	holed   chan struct{}
	once    sync.Once
	conns   []net.Conn
}

func newHalfOpenProxy(t *testing.T, target string, trigger string) *halfOpenProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &halfOpenProxy{ln: ln, trigger: []byte(trigger), holed: make(chan struct{})}
	t.Cleanup(b.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			b.mu.Lock()
			b.conns = append(b.conns, c, s)
			b.mu.Unlock()
			go b.pipe(s, c, true)
			go b.pipe(c, s, false)
		}
	}()
	return b
}

// cut closes the proxy and every connection through it: the network
// finally drops them, and their clients and the server notice.
func (b *halfOpenProxy) cut() {
	b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
}

func (b *halfOpenProxy) pipe(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient && bytes.Contains(buf[:n], b.trigger) {
				b.once.Do(func() { close(b.holed) })
			}
			select {
			case <-b.holed:
				io.Copy(io.Discard, src) // swallow everything from now on
				return
			default:
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// withParams is raw with the query parameters kv (name, value, …) set.
func withParams(t *testing.T, raw string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String()
}

// TestHalfOpenTransactionDoesNotBlockLimits (issue 11: "not a session
// advisory lock, which poolers and half-open connections break"):
// replica A's check-and-record sent BEGIN, its advisory locks and reads,
// and then its connection went half-open before its writes and COMMIT
// arrived. The server keeps A's session idle in transaction, holding the
// phone's, the user's and the instance's locks, until TCP notices (hours
// by default), and the bot sets no deadline of its own: replica B's
// request for that phone must still be decided, or refused as
// unavailable ("try again"), within seconds. The limits every
// transaction sets by default (sessionDefaults: 10 s idle in transaction,
// 5 s lock wait) are shortened here through the URL, which also shows that a
// URL's own settings are kept.
func TestHalfOpenTransactionDoesNotBlockLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		aParams    []string // A's session (the half-open one)
		bParams    []string // B's session
		wantGrant  bool     // B granted once A's session is ended
		wantWithin time.Duration
	}{
		{
			name:       "the server ends the idle transaction",
			aParams:    []string{"idle_in_transaction_session_timeout", "500ms"},
			bParams:    []string{"lock_timeout", "20s"},
			wantGrant:  true,
			wantWithin: 10 * time.Second,
		},
		{
			// Nothing in A's URL: the default, SET LOCAL at BEGIN, ends it.
			name:       "linkbot's own idle limit ends the transaction",
			bParams:    []string{"lock_timeout", "30s"},
			wantGrant:  true,
			wantWithin: 16 * time.Second,
		},
		{
			name:       "the lock wait gives up: try again",
			aParams:    []string{"idle_in_transaction_session_timeout", "60s"},
			bParams:    []string{"lock_timeout", "300ms"},
			wantWithin: 10 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := pgtest.URL(t)
			u, _ := url.Parse(base)
			hole := newHalfOpenProxy(t, u.Host, "INSERT INTO attempts")
			viaHole := *u
			viaHole.Host = hole.ln.Addr().String()
			a := mustOpen(t, withParams(t, viaHole.String(), tc.aParams...), Options{CallerClock: true})
			b := mustOpen(t, withParams(t, base, tc.bParams...), Options{CallerClock: true})

			aDone := make(chan error, 1)
			aCtx, aCancel := context.WithCancel(t.Context())
			defer aCancel()
			// At the end, the partition ends A's connection for good (else
			// closing A's pool waits out pgx's 15 s for it).
			defer hole.cut()
			go func() {
				_, err := a.Reserve(aCtx, reservation("a", "I1", "201112223333", "U1", t0))
				aDone <- err
			}()
			select {
			case <-hole.holed:
			case err := <-aDone:
				t.Fatalf("A's Reserve ended before its writes were held back: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("A's Reserve never sent its writes")
			}

			bCtx, bCancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer bCancel()
			type result struct {
				d   pairing.Decision
				err error
			}
			bDone := make(chan result, 1)
			start := time.Now()
			go func() {
				d, err := b.Reserve(bCtx, reservation("b", "I2", "201112223333", "U2", t0.Add(time.Second)))
				bDone <- result{d, err}
			}()
			select {
			case r := <-bDone:
				took := time.Since(start)
				t.Logf("B's Reserve: %s, %v", took.Round(time.Millisecond), r.err)
				if took > tc.wantWithin {
					t.Errorf("B's Reserve took %s behind A's half-open transaction; want within %s", took.Round(time.Millisecond), tc.wantWithin)
				}
				switch {
				case tc.wantGrant && (r.err != nil || r.d.Refused != pairing.LimitNone):
					t.Errorf("B's Reserve once A's session ended: %+v, %v; want granted (A stored nothing)", r.d.Refused, r.err)
				case !tc.wantGrant && !errors.Is(r.err, pairing.ErrUnavailable):
					t.Errorf("B's Reserve behind A's locks: %+v, %v; want ErrUnavailable (\"try again\")", r.d.Refused, r.err)
				}
			case <-time.After(35 * time.Second):
				t.Fatal("B's Reserve for the same phone still waits after 35 s behind A's half-open transaction")
			}
		})
	}
}

// TestSessionDefaults: every transaction the store runs (inTx, and the
// pipelined one Reserve runs) bounds lock waits, idle time and
// statements with SET LOCAL, unless the URL (or its options) sets a limit
// itself; nothing of it travels as a startup parameter (poolers refuse
// those: TestOpenThroughPooler), and the client's keepalives are set on
// its dialer.
func TestSessionDefaults(t *testing.T) {
	names := []string{"idle_in_transaction_session_timeout", "lock_timeout", "statement_timeout"}
	const q = `SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('lock_timeout'), current_setting('statement_timeout')`
	show := func(t *testing.T, db *DB) (inTx, pipelined, outside map[string]string) {
		t.Helper()
		scan := func(row pgx.Row) map[string]string {
			v := make([]string, len(names))
			if err := row.Scan(&v[0], &v[1], &v[2]); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for i, n := range names {
				got[n] = v[i]
			}
			return got
		}
		if err := db.inTx(t.Context(), func(tx pgx.Tx) error {
			inTx = scan(tx.QueryRow(t.Context(), q))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		reads := &pgx.Batch{}
		reads.Queue(q).QueryRow(func(row pgx.Row) error { pipelined = scan(row); return nil })
		if err := db.inPipelinedTx(t.Context(), reads, func() (*pgx.Batch, error) { return &pgx.Batch{}, nil }); err != nil {
			t.Fatal(err)
		}
		outside = scan(db.pool.QueryRow(t.Context(), q))
		return inTx, pipelined, outside
	}
	base := pgtest.URL(t)
	db := mustOpen(t, base, Options{})
	var server map[string]string
	{
		conn, err := pgx.Connect(t.Context(), base)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		v := make([]string, 3)
		if err := conn.QueryRow(t.Context(), q).Scan(&v[0], &v[1], &v[2]); err != nil {
			t.Fatal(err)
		}
		server = map[string]string{names[0]: v[0], names[1]: v[1], names[2]: v[2]}
	}
	want := map[string]string{"idle_in_transaction_session_timeout": "10s", "lock_timeout": "5s", "statement_timeout": "1min"}
	inTx, pipelined, outside := show(t, db)
	if diff := cmp.Diff(want, inTx); diff != "" {
		t.Errorf("defaults in inTx (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, pipelined); diff != "" {
		t.Errorf("defaults in the pipelined transaction (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(server, outside); diff != "" {
		t.Errorf("the session itself keeps the server's settings (-want +got):\n%s", diff)
	}
	explicit := withParams(t, base, "lock_timeout", "250ms", "options", "-c statement_timeout=0 -c idle_in_transaction_session_timeout=2s")
	want = map[string]string{"idle_in_transaction_session_timeout": "2s", "lock_timeout": "250ms", "statement_timeout": "0"}
	inTx, pipelined, _ = show(t, mustOpen(t, explicit, Options{}))
	if diff := cmp.Diff(want, inTx); diff != "" {
		t.Errorf("the URL's own settings in inTx (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, pipelined); diff != "" {
		t.Errorf("the URL's own settings in the pipelined transaction (-want +got):\n%s", diff)
	}
	cfg, _, err := parseURL(base)
	if err != nil {
		t.Fatal(err)
	}
	for name := range cfg.ConnConfig.RuntimeParams {
		if name != "application_name" && name != "search_path" { // search_path: pgtest's schema
			t.Errorf("startup parameter %q sent for a URL that sets none", name)
		}
	}
	if cfg.ConnConfig.DialFunc == nil {
		t.Error("no dialer with client-side keepalives")
	}
}

// TestSessionLimitsUnavailable: what the session limits end is answered
// as unavailable ("try again"), never as a failure of its own.
func TestSessionLimitsUnavailable(t *testing.T) {
	for _, code := range []string{"55P03", "25P03", "57014"} {
		err := (&DB{}).classify(context.Background(), &pgconn.PgError{Code: code})
		if !errors.Is(err, pairing.ErrUnavailable) {
			t.Errorf("SQLSTATE %s: %v; want ErrUnavailable", code, err)
		}
	}
}
