// Package pgtest gives tests a PostgreSQL schema of their own on the
// server LINKBOT_TEST_DATABASE_URL names (.ci/run starts the machine's
// server and sets it). Each schema is created for one test and dropped
// when it ends, and the URL it returns puts it first on the search_path,
// so packages testing in parallel on one database never see each other's
// tables.
//
// Without the variable, or without a server behind it, a test fails when
// CI is set (a CI that skipped the PostgreSQL tests would pass for the
// wrong reason) and is skipped on a developer's machine.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is the variable naming the test server.
const Env = "LINKBOT_TEST_DATABASE_URL"

// Base returns the test server's URL, failing the test (CI) or skipping
// it (a developer's machine) when there is none or it cannot be reached.
func Base(t testing.TB) string {
	t.Helper()
	base := os.Getenv(Env)
	if base == "" {
		unavailable(t, Env+" is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		unavailable(t, "cannot reach "+Env+": "+err.Error())
	}
	conn.Close(ctx)
	return base
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s, and CI is set: the PostgreSQL tests must run in CI (.ci/run starts the server and sets %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", why, Env)
	}
	t.Skipf("%s: skipping a PostgreSQL test (set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run it)", why, Env)
}

// URL creates an empty schema on the test server for t, drops it (and
// everything in it) when t ends, and returns a URL whose search_path is
// that schema.
func URL(t testing.TB) string {
	t.Helper()
	base := Base(t)
	name := "linkbot_test_" + randomHex(8)
	exec(t, base, "CREATE SCHEMA "+name)
	t.Cleanup(func() { exec(t, base, "DROP SCHEMA IF EXISTS "+name+" CASCADE") })
	return WithSearchPath(t, base, name)
}

// WithSearchPath returns base with its search_path set to schema.
func WithSearchPath(t testing.TB, base, schema string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Exec runs one statement on the server at url (a test's own setup or
// inspection), failing the test on error.
func Exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	exec(t, url, sql, args...)
}

func exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
