package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
	"github.com/linkbot/linkbot/pairing/wawp"
	"github.com/linkbot/linkbot/store"
	"github.com/linkbot/linkbot/store/postgres"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// testPassword is put in every PostgreSQL URL these tests give the bot
// (the test server trusts local connections and never asks for it), so
// each can check it shows nowhere.
const testPassword = "Pg-S3cret-4711"

// pgURL is a fresh schema on the test server, as a URL with testPassword.
func pgURL(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), testPassword)
	return u.String()
}

// runCommand runs `linkbot args…` with h's environment and returns what it
// printed (stdout, then stderr).
func (h *harness) runCommand(args ...string) (string, error) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"linkbot"}, args...), func(k string) string { return h.env[k] }, &out, &errOut)
	return out.String() + errOut.String(), err
}

// noPassword fails the test if testPassword is in any of texts.
func noPassword(t *testing.T, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, testPassword) {
			t.Errorf("the database password is in %s:\n%s", what, s)
		}
	}
}

// TestPostgresSelected: with LINKBOT_DATABASE_URL the bot keeps its state
// in PostgreSQL (no bbolt file is made), the limits hold there, `linkbot
// audit` reads it, and the URL's password is in no log line or output.
func TestPostgresSelected(t *testing.T) {
	h := newHarness(t)
	dbURL := pgURL(t)
	h.env["LINKBOT_DATABASE_URL"] = dbURL
	h.start()
	first := h.command("U1", "support-eg +201112223333")
	h.waitText(first.MessageID, "Enter this code")
	second := h.command("U2", "support-eg +201009998888")
	h.waitText(second.MessageID, "already has a live code, requested by <@U1>")
	h.stop()
	if _, err := os.Stat(h.env["LINKBOT_DB"]); !os.IsNotExist(err) {
		t.Errorf("a bbolt file was made at %s (%v); the state belongs in PostgreSQL", h.env["LINKBOT_DB"], err)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "db=\"postgres postgres@127.0.0.1:5432/test\"") {
		t.Errorf("the start line does not say which database it uses:\n%s", logs)
	}
	noPassword(t, "the log", logs)

	db, err := postgres.Open(t.Context(), dbURL, postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	watched, err := db.WatchedPairings(t.Context())
	if err != nil || len(watched) != 1 || watched[0].State != pairing.StateLive || watched[0].Instance != instanceEG || watched[0].RequestedBy != "U1" {
		t.Errorf("PostgreSQL watches %+v (%v); want U1's live code (the refusal's message is final)", watched, err)
	}

	out, err := h.runCommand("audit", "--phone", "+201112223333")
	if err != nil || !strings.Contains(out, "code_issued") || !strings.Contains(out, "+20 11 ••• 333") {
		t.Errorf("linkbot audit on PostgreSQL: %v\n%s", err, out)
	}
	noPassword(t, "audit's output", out)
}

// TestPostgresURLChecked: a malformed LINKBOT_DATABASE_URL is a
// configuration error (exit 78) listed with the others, before anything
// connects, and the message does not repeat the password.
func TestPostgresURLChecked(t *testing.T) {
	for _, bad := range []string{
		"postgres://linkbot:" + testPassword + "@db.example:port/linkbot",
		"mysql://linkbot:" + testPassword + "@db.example/linkbot",
		"postgres://linkbot:" + testPassword + "@db.example/linkbot?sslmode=sometimes",
	} {
		h := newHarness(t)
		h.env["LINKBOT_DATABASE_URL"] = bad
		for _, args := range [][]string{{"run"}, {"audit"}, {"migrate"}, {"copy-store"}} {
			out, err := h.runCommand(args...)
			var cerr *configError
			if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "LINKBOT_DATABASE_URL ") {
				t.Errorf("linkbot %s with %s: %v; want a configuration error naming LINKBOT_DATABASE_URL", args[0], bad, err)
			}
			if status := exitStatus(err, io.Discard); status != exitConfig {
				t.Errorf("linkbot %s: exit status %d, want %d", args[0], status, exitConfig)
			}
			noPassword(t, "the error", fmtErr(err), out)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPostgresUnreachableAtStart: a database that cannot be reached at
// start stops the bot with an error naming the host (exit 1: it may be
// back after a restart), never the password.
func TestPostgresUnreachableAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := newHarness(t)
	h.env["LINKBOT_DATABASE_URL"] = "postgres://linkbot:" + testPassword + "@" + addr + "/linkbot?sslmode=disable"
	done, cancel := h.runAsync()
	defer cancel()
	err = h.result(done)
	if !errors.Is(err, pairing.ErrUnavailable) || !strings.Contains(err.Error(), "linkbot@"+addr+"/linkbot") {
		t.Errorf("run = %v; want ErrUnavailable naming linkbot@%s/linkbot", err, addr)
	}
	var stderr bytes.Buffer
	if status := exitStatus(err, &stderr); status != exitFailure {
		t.Errorf("exit status %d, want %d", status, exitFailure)
	}
	noPassword(t, "the error or the log", stderr.String(), h.logs.String())
	if n, _ := h.slack.Connections(); n != 0 {
		t.Errorf("the bot connected to Slack without its database")
	}
}

// TestMigrateCommand: `linkbot migrate` needs LINKBOT_DATABASE_URL (exit
// 78 without), applies what is missing and says so, and says when there
// is nothing left to apply.
func TestMigrateCommand(t *testing.T) {
	h := newHarness(t)
	out, err := h.runCommand("migrate")
	if status := exitStatus(err, io.Discard); status != exitConfig || !strings.Contains(out+fmtErr(err), "LINKBOT_DATABASE_URL is not set") {
		t.Errorf("migrate without a URL: exit %d, %v\n%s", status, err, out)
	}
	h.env["LINKBOT_DATABASE_URL"] = pgURL(t)
	out, err = h.runCommand("migrate")
	if err != nil || !strings.Contains(out, "applied 00001_init.sql") || !strings.Contains(out, "applied 00002_replicas.sql") ||
		!strings.Contains(out, "applied 00003_holds.sql") || !strings.Contains(out, "applied 00004_edit_budget.sql") ||
		!strings.Contains(out, "applied 00005_edit_window.sql") || !strings.Contains(out, "applied 00006_renews_index.sql") ||
		!strings.Contains(out, "PostgreSQL at postgres@127.0.0.1:5432/test is now at schema version 6") {
		t.Errorf("first migrate: %v\n%s", err, out)
	}
	out, err = h.runCommand("migrate")
	if err != nil || strings.Contains(out, "applied") || !strings.Contains(out, "up to date: schema version 6, nothing to apply") {
		t.Errorf("second migrate: %v\n%s", err, out)
	}
	noPassword(t, "migrate's output", out)
}

// TestCopyStore: a bot's state moves from its bbolt file to PostgreSQL
// with `linkbot copy-store`, and the bot carries on there as if nothing
// happened: the phone's requests still count, the live code still holds
// its instance and is still kept current, and the audit log is still
// found by phone (the file's phone-key secret came along). It refuses
// while the bot holds the file, and refuses a database that is not empty
// (so a second run copies nothing twice).
func TestCopyStore(t *testing.T) {
	h := newHarness(t)
	ids := []string{"INST00000001", "INST00000002", "INST00000003"}
	for _, id := range ids {
		h.wawp.AddInstance(id, "")
	}
	h.start()
	var last string
	for i, id := range ids[:2] {
		env := h.command("U1", id+" +44 7400 123456")
		h.waitText(env.MessageID, []string{"Code 1 of 3", "Code 2 of 3"}[i])
		last = env.MessageID
	}
	h.click(last, "U1", "refresh") // a response_url budget of a click
	h.waitText(last, "min left")   // Refresh's answer, in place of the code message
	dbURL := pgURL(t)
	h.env["LINKBOT_DATABASE_URL"] = dbURL
	out, err := h.runCommand("copy-store")
	if err == nil || !strings.Contains(err.Error(), "stop the bot first") {
		t.Errorf("copy-store while the bot runs: %v\n%s", err, out)
	}
	h.stop()

	out, err = h.runCommand("copy-store", "--from", h.env["LINKBOT_DB"])
	if err != nil {
		t.Fatalf("copy-store: %v\n%s", err, out)
	}
	for _, want := range []string{
		"to PostgreSQL at postgres@127.0.0.1:5432/test:",
		"  2 attempts (the limits' windows)",
		"  2 pairings (2 watched, 2 holding their instance)",
		"response_url budgets",
		"the phone-key secret",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("copy-store output lacks %q:\n%s", want, out)
		}
	}
	noPassword(t, "copy-store's output", out)
	out, err = h.runCommand("copy-store", "--from", h.env["LINKBOT_DB"])
	if !errors.Is(err, postgres.ErrNotEmpty) || !strings.Contains(err.Error(), "nothing was copied") {
		t.Errorf("copy-store again: %v; want refused, the database not being empty\n%s", err, out)
	}

	fileEvents := h.auditEvents()
	h.start() // now on PostgreSQL
	third := h.command("U1", ids[2]+" +44 7400 123456")
	h.waitText(third.MessageID, "Code 3 of 3")
	again := h.command("U2", ids[0]+" +201112223333")
	h.waitText(again.MessageID, "already has a live code, requested by <@U1>")
	h.stop()
	out, err = h.runCommand("audit", "--phone", "+447400123456")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "code_issued"); n != 3 {
		t.Errorf("audit --phone on PostgreSQL shows %d codes, want the 2 from the file and the new one:\n%s", n, out)
	}
	if len(fileEvents) < 4 {
		t.Errorf("the file had only %d events", len(fileEvents))
	}
	if _, err := os.Stat(h.env["LINKBOT_DB"]); err != nil {
		t.Errorf("the file is gone after the copy: %v", err)
	}
	if db, err := store.Open(h.env["LINKBOT_DB"], store.Options{ReadOnly: true}); err == nil {
		db.Close()
	} else {
		t.Errorf("the file cannot be opened after the copy: %v", err)
	}
}

// TestCopyStoreKeepsHolds (issue 11 review: copy-store copies "limits,
// live pairings, budgets"): a Slack Retry-After the bot recorded in its
// file (holds live in the store, so a restarted bot waits them out) is
// still running when the bot is stopped for the move. The replicas
// starting on PostgreSQL must wait it out too, and copy-store says it
// copied it.
func TestCopyStoreKeepsHolds(t *testing.T) {
	file := filepath.Join(t.TempDir(), "linkbot.db")
	src, err := store.Open(file, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	if err := src.SetHold(t.Context(), "chat.update", until); err != nil {
		t.Fatal(err)
	}
	src.Close()

	dbURL := pgURL(t)
	var out bytes.Buffer
	getenv := func(string) string { return "" }
	if err := copyStoreCommand(t.Context(), []string{"--from", file, "--to", dbURL}, getenv, &out); err != nil {
		t.Fatalf("copy-store: %v\n%s", err, out.String())
	}
	dst, err := postgres.Open(t.Context(), dbURL, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	holds, err := dst.Holds(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := holds["chat.update"]; !ok || !got.Equal(until) {
		t.Errorf("holds on PostgreSQL after copy-store: %v; want chat.update held until %s (copy-store said:\n%s)", holds, until, out.String())
	}
	if want := "  1 Slack Retry-After holds"; !strings.Contains(out.String(), want) {
		t.Errorf("copy-store's output lacks %q:\n%s", want, out.String())
	}
}

// TestReserveLostCommitReplyOnPostgres (issue 11 review: "nothing is left
// half-done"): the connection drops after Reserve's COMMIT reached the
// server but before its reply came back. Reserve answers ErrUnavailable
// (the person is told "try again", Wawp is never called) though all was
// recorded; the service then looks the request up and ends it uncounted,
// so the attempt does not count and the try again is granted.
func TestReserveLostCommitReplyOnPostgres(t *testing.T) {
	proxy, viaProxy := newDBProxy(t, pgURL(t))
	db, err := postgres.Open(t.Context(), viaProxy, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	wp := fakewawp.New("tok")
	defer wp.Close()
	wp.AddInstance("INST00000001", "")
	svc := pairing.NewService(wawp.NewClient(wp.URL, "tok", nil), db, pairing.Config{})
	req := pairing.Request{Instance: pairing.Instance{ID: "INST00000001", Name: "support"}, Phone: pairing.PhoneFromDigits("201112223333"), User: "U1", Team: "T1"}

	proxy.dropNextReply([]byte("C\x00\x00\x00\x0bCOMMIT\x00")) // CommandComplete of a COMMIT
	_, err = svc.Start(t.Context(), req)
	if !errors.Is(err, pairing.ErrUnavailable) {
		t.Fatalf("Start with Reserve's COMMIT reply lost: %v; want ErrUnavailable (\"try again\")", err)
	}
	if calls := wp.Calls(fakewawp.RequestCode); len(calls) != 0 {
		t.Errorf("request-code called %d times; want none", len(calls))
	}
	if _, n, err := db.NextAllowed(t.Context(), "201112223333", time.Now(), svc.PhoneLimit()); err != nil || n != 0 {
		t.Errorf("after the answer \"try again\": %d attempt(s) counted (%v); want 0", n, err)
	}
	p, err := svc.Start(t.Context(), req)
	if err != nil || p.State != pairing.StateLive {
		t.Errorf("the person's \"try again\": %s, %v; want granted and live", p.State, err)
	}
}
