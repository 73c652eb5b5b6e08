package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// pgbouncerLike is a pooler in front of the test server that, as
// PgBouncer does unless told otherwise (ignore_startup_parameters), closes
// a connection whose startup packet carries a parameter it does not track:
// "FATAL: unsupported startup parameter: … (SQLSTATE 08P01)"
// (https://github.com/pgbouncer/pgbouncer/issues/1074,
// https://www.pgbouncer.org/config.html#ignore_startup_parameters). It
// lets search_path through as well, only so this test can use its own
// schema. Otherwise it forwards the bytes as they are.
func pgbouncerLike(t *testing.T, target string) string {
	allowed := map[string]bool{"user": true, "database": true, "application_name": true, "client_encoding": true,
		"datestyle": true, "timezone": true, "standard_conforming_strings": true, "intervalstyle": true, "search_path": true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var pkt []byte
				for {
					var hdr [8]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					n := binary.BigEndian.Uint32(hdr[:4])
					if binary.BigEndian.Uint32(hdr[4:]) == 80877103 { // SSLRequest
						c.Write([]byte("N"))
						continue
					}
					rest := make([]byte, n-8)
					if _, err := io.ReadFull(c, rest); err != nil {
						return
					}
					pkt = append(hdr[:], rest...)
					fields := bytes.Split(bytes.TrimRight(rest, "\x00"), []byte{0})
					for i := 0; i+1 < len(fields); i += 2 {
						if k := strings.ToLower(string(fields[i])); !allowed[k] {
							msg := "SFATAL\x00C08P01\x00Munsupported startup parameter: " + string(fields[i]) + "\x00\x00"
							out := []byte{'E', 0, 0, 0, 0}
							binary.BigEndian.PutUint32(out[1:], uint32(4+len(msg)))
							c.Write(append(out, msg...))
							return
						}
					}
					break
				}
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				s.Write(pkt)
				go func() { io.Copy(s, c); s.Close() }()
				io.Copy(c, s)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestOpenThroughPooler: linkbot on PostgreSQL behind PgBouncer (the
// README and DESIGN name poolers as a deployment the leader lease is made
// for). Since b07d648 every connection's startup packet carries
// idle_in_transaction_session_timeout, lock_timeout, statement_timeout and
// tcp_keepalives_*, which PgBouncer refuses by default: the bot no longer
// starts at all. The limits are SET LOCAL in each transaction instead,
// which a pooler passes.
func TestOpenThroughPooler(t *testing.T) {
	raw := pgtest.URL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = pgbouncerLike(t, u.Host)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, u.String(), Options{})
	if err != nil {
		t.Fatalf("Open through a pooler that tracks PgBouncer's default startup parameters: %v", err)
	}
	defer db.Close()
	// Transactions (their limits are SET LOCAL) run through it too.
	granted(t, db, reservation("a", "I1", "201112223333", "U1", t0))
}
