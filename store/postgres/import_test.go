package postgres

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// TestImportRefusesDatabaseInUse (issue 11: copy-store
// "bot stopped"; "refuses a non-empty target"): a replica already runs on
// the target database (it migrated it and made its phone-key secret) but
// has not handled a command yet, so Import's emptiness check (pairings,
// attempts, budgets, audit events, slots) passes, and the file's secret
// replaces the database's under the running replica, which keeps the old
// one in memory. Every event that replica records from then on is keyed
// with a secret the database no longer has: `linkbot audit --phone` (and
// the history shown in Slack) no longer finds them. Import must refuse a
// database a replica is using (a leader lease, dedupe keys, holds …), or
// the replica must not cache the secret.
func TestImportRefusesDatabaseInUse(t *testing.T) {
	url := pgtest.URL(t)
	running := mustOpen(t, url, Options{CallerClock: true})
	if _, err := running.Lead(t.Context(), "replica-1", pairing.Term{}, pairing.DefaultLeaderTTL, t0); err != nil {
		t.Fatal(err)
	}
	copier := mustOpen(t, url, Options{CallerClock: true})
	fileSecret := bytes.Repeat([]byte{7}, 32)
	_, err := copier.Import(t.Context(), Import{PhoneKeySecret: fileSecret}, func(func(pairing.Event) error) error { return nil })
	if err != nil {
		t.Logf("Import refused: %v", err)
		return // refusing is a fix
	}
	e := pairing.Event{Time: t0, Kind: pairing.EventRequested, User: "U1", Instance: "I1", Digits: "201112223333", Pairing: "p1"}
	if err := running.AppendAudit(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	reader := mustOpen(t, url, Options{ReadOnly: true})
	ev, _, err := reader.Audit(t.Context(), pairing.AuditQuery{Phone: "201112223333"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 {
		t.Errorf("Import into a database a replica was running on was accepted; the replica's later event is found by phone %d times, want 1", len(ev))
	}
}

// TestImportKeepsSecretOfAnotherProcess: a replica that has opened the
// database (and made its phone-key secret) but has not yet written
// anything else still holds that secret in memory; Import refuses rather
// than replace it.
func TestImportKeepsSecretOfAnotherProcess(t *testing.T) {
	url := pgtest.URL(t)
	running := mustOpen(t, url, Options{CallerClock: true})
	copier := mustOpen(t, url, Options{CallerClock: true})
	_, err := copier.Import(t.Context(), Import{PhoneKeySecret: bytes.Repeat([]byte{7}, 32)}, func(func(pairing.Event) error) error { return nil })
	if !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Import over a secret another process made: %v; want ErrNotEmpty", err)
	}
	if got := copier.phoneKeySecret(); !bytes.Equal(got, running.phoneKeySecret()) {
		t.Errorf("the copier's secret changed although Import was refused")
	}
	// A database this store made the secret of takes the file's.
	fresh := mustOpen(t, pgtest.URL(t), Options{CallerClock: true})
	st, err := fresh.Import(t.Context(), Import{PhoneKeySecret: bytes.Repeat([]byte{7}, 32)}, func(func(pairing.Event) error) error { return nil })
	if err != nil || !st.Secret {
		t.Errorf("Import into a new database: %+v, %v; want the secret taken over", st, err)
	}
}

// TestImportSecretUnderReplicaOpenedAfterCopier: the reverse order of
// TestImportKeepsSecretOfAnotherProcess. copy-store opens the empty
// database first (so it made the phone-key secret: madeSecret), then a
// replica starts and opens it (reading that secret into memory) but has
// not written anything yet (a follower, or not yet at its first Lead).
// Import's checks all pass (the secret is the copier's own, every table is
// empty) and the secret is swapped under the running replica: every event
// it records from then on is keyed with a secret the database no longer
// has, and `linkbot audit --phone` does not find it.
func TestImportSecretUnderReplicaOpenedAfterCopier(t *testing.T) {
	url := pgtest.URL(t)
	copier := mustOpen(t, url, Options{CallerClock: true})
	running := mustOpen(t, url, Options{CallerClock: true})
	_, err := copier.Import(t.Context(), Import{PhoneKeySecret: bytes.Repeat([]byte{7}, 32)}, func(func(pairing.Event) error) error { return nil })
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "1 other process(es) have it open") {
		t.Fatalf("Import under a replica that opened the database after the copier: %v; want ErrNotEmpty, naming the other process", err)
	}
	e := pairing.Event{Time: t0, Kind: pairing.EventRequested, User: "U1", Instance: "I1", Digits: "201112223333", Pairing: "p1"}
	if err := running.AppendAudit(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	reader := mustOpen(t, url, Options{ReadOnly: true})
	ev, _, err := reader.Audit(t.Context(), pairing.AuditQuery{Phone: "201112223333"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 {
		t.Errorf("the replica's event is found by phone %d times, want 1", len(ev))
	}

	// A replica that closed holds no secret: Import into a database
	// nobody else has open (and that holds nothing) goes ahead.
	url = pgtest.URL(t)
	copier = mustOpen(t, url, Options{CallerClock: true})
	mustOpen(t, url, Options{CallerClock: true}).Close()
	if st, err := copier.Import(t.Context(), Import{PhoneKeySecret: bytes.Repeat([]byte{7}, 32)}, func(func(pairing.Event) error) error { return nil }); err != nil || !st.Secret {
		t.Errorf("Import once the other process closed: %+v, %v; want the secret taken over", st, err)
	}
}
