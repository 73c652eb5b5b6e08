package store

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

// storedPhoneKeys returns the phone_key of every stored audit event, as
// written in the file.
func storedPhoneKeys(t *testing.T, db *DB) []string {
	t.Helper()
	var keys []string
	db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
			if strings.Contains(string(v), "201112223333") {
				t.Errorf("stored event holds the phone's digits: %s", v)
			}
			var raw map[string]any
			json.Unmarshal(v, &raw)
			k, _ := raw["phone_key"].(string)
			keys = append(keys, k)
			return nil
		})
	})
	return keys
}

// TestPhoneKeyIsKeyed: the phone key bbolt stores is the HMAC under the
// database's secret, not the unkeyed sha256 of older versions, which let
// one event's key and mask give the number away in 223 guesses, and the
// file never holds the digits (storedPhoneKeys checks). That two databases
// key one phone differently, and that keys are never returned, is the
// storage contract's (storetest).
func TestPhoneKeyIsKeyed(t *testing.T) {
	db := openTest(t)
	if err := db.AppendAudit(t.Context(), pairing.Event{Time: t0, Kind: "requested", User: "U1", Instance: "support-eg", Phone: "+20 111 ••• 3333", Digits: "201112223333"}); err != nil {
		t.Fatal(err)
	}
	keys := storedPhoneKeys(t, db)
	if len(keys) != 1 || keys[0] == "" {
		t.Fatalf("stored keys %q, want one", keys)
	}
	if legacy := legacyPhoneKey("201112223333"); keys[0] == legacy {
		t.Errorf("key %s is the unkeyed sha256 anyone can recompute", legacy)
	}
	if secret := db.phoneKeySecret(t); keys[0] != keyedPhoneKey(secret, "201112223333") {
		t.Errorf("key %s is not the HMAC under the database's secret", keys[0])
	}
}

// phoneKeySecret is the database's phone key secret.
func (db *DB) phoneKeySecret(t *testing.T) []byte {
	t.Helper()
	var secret []byte
	db.bolt.View(func(tx *bolt.Tx) error {
		secret = slices.Clone(tx.Bucket(bucketMeta).Get(metaPhoneKeySecret))
		return nil
	})
	if len(secret) != phoneKeySecretSize {
		t.Fatalf("secret of %d bytes, want %d", len(secret), phoneKeySecretSize)
	}
	return secret
}

// openFixture copies testdata/audit_v0.db.gz, a database written by the
// version before indexes and keyed phones (unkeyed sha256 phone keys, no
// meta bucket), and returns its path.
func openFixture(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "audit_v0.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v0.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func kindsOf(events []pairing.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.User+":"+string(e.Kind))
	}
	return out
}

// TestAuditFindsOldFormEvents: events written before the upgrade carry the
// old unkeyed phone key and no index entries. Read-only (the upgrade has
// not run) and after the upgrade, a phone's and an instance's events are
// found, old and new alike.
func TestAuditFindsOldFormEvents(t *testing.T) {
	path := openFixture(t)
	oldPhone := []string{"U1:requested", "U1:code_issued", "U1:linked", "U2:requested", "U2:code_issued"}
	oldEG := []string{"U1:requested", "U1:code_issued", "U1:linked", "U1:requested"}

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := ro.Audit(t.Context(), pairing.AuditQuery{Phone: "201112223333"})
	if diff := cmp.Diff(oldPhone, kindsOf(got)); diff != "" || err != nil {
		t.Errorf("read-only, by phone (-want +got):\n%s%v", diff, err)
	}
	got, _, _ = ro.Audit(t.Context(), pairing.AuditQuery{Instances: []string{"support-eg"}})
	if diff := cmp.Diff(oldEG, kindsOf(got)); diff != "" {
		t.Errorf("read-only, by instance (-want +got):\n%s", diff)
	}
	ro.Close()

	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	db.AppendAudit(t.Context(), pairing.Event{Time: at, Kind: "requested", User: "U3", Instance: "support-eg", InstanceID: "A1B2C3D4E5F6", Digits: "201112223333"})
	got, _, err = db.Audit(t.Context(), pairing.AuditQuery{Phone: "201112223333"})
	if diff := cmp.Diff(append(oldPhone, "U3:requested"), kindsOf(got)); diff != "" || err != nil {
		t.Errorf("upgraded, by phone (-want +got):\n%s%v", diff, err)
	}
	// As /link history and linkbot audit ask: by the instance's alias and ID.
	got, _, _ = db.Audit(t.Context(), pairing.AuditQuery{Instances: []string{"support-eg", "A1B2C3D4E5F6"}})
	if diff := cmp.Diff(append(oldEG, "U3:requested"), kindsOf(got)); diff != "" {
		t.Errorf("upgraded, by instance (-want +got):\n%s", diff)
	}
	got, _, _ = db.Audit(t.Context(), pairing.AuditQuery{Instances: []string{"A1B2C3D4E5F6"}})
	if diff := cmp.Diff([]string{"U3:requested"}, kindsOf(got)); diff != "" {
		t.Errorf("upgraded, by instance ID (-want +got):\n%s", diff)
	}
	checkAuditIndexes(t, db)
}

// seedQueryEvents appends 60 events: 3 phones, 2 instances (one also known
// by its ID), one a minute.
func seedQueryEvents(t *testing.T, db *DB) {
	t.Helper()
	for i := range 60 {
		e := pairing.Event{
			Time: t0.Add(time.Duration(i) * time.Minute), Kind: "requested", User: fmt.Sprintf("U%d", i%4),
			Instance: []string{"support-eg", "Field-NG"}[i%2], Pairing: fmt.Sprint("p", i),
			Digits: fmt.Sprintf("20111222333%d", i%3),
		}
		if i%2 == 0 && i >= 30 {
			e.InstanceID = "A1B2C3D4E5F6"
		}
		if i%10 == 9 {
			e.Digits = "" // a refusal before the phone was understood
		}
		if err := db.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// One audit record that does not parse (a damaged page, a bad restore) is
// skipped, and a warning says how many were: every other event is still
// read, by time, phone and instance alike.
func TestAuditSkipsDamagedRecord(t *testing.T) {
	var logs strings.Builder
	db, err := Open(filepath.Join(t.TempDir(), "r.db"), Options{NoSync: true, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 3 {
		e := pairing.Event{Time: t0.Add(time.Duration(i) * time.Minute), Kind: "requested", User: "U1", Instance: "support-eg", Digits: "201112223333"}
		if err := db.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	db.bolt.Update(func(tx *bolt.Tx) error {
		pk := append(timeBytes(t0.Add(30*time.Second)), 0, 0, 0, 0, 0, 0, 0, 99)
		for _, ix := range []indexEntry{{bucketAuditByInstance, indexKey("support-eg", pk)}, {bucketAudit, pk}} {
			if err := tx.Bucket(ix.bucket).Put(ix.key, []byte(`{"time":"garbage`)); err != nil {
				return err
			}
		}
		return nil
	})
	for _, q := range []pairing.AuditQuery{{}, {Instances: []string{"support-eg"}}, {Phone: "201112223333"}} {
		got, _, err := db.Audit(t.Context(), q)
		if err != nil || len(got) != 3 {
			t.Errorf("Audit(%+v) with one damaged record among 3 good ones = %d events, %v; want the 3 good ones", q, len(got), err)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "skipped=1") {
		t.Errorf("no warning about the skipped record:\n%s", logs.String())
	}
}

// checkAuditIndexes fails unless the index buckets hold exactly one entry
// per (event, phone key) and (event, instance name or ID) pair.
func checkAuditIndexes(t *testing.T, db *DB) {
	t.Helper()
	want := map[string][]string{}
	got := map[string][]string{}
	db.bolt.View(func(tx *bolt.Tx) error {
		tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var e pairing.Event
			json.Unmarshal(v, &e)
			for _, ix := range indexEntries(e, k) {
				want[string(ix.bucket)] = append(want[string(ix.bucket)], string(ix.key))
			}
			return nil
		})
		for _, b := range [][]byte{bucketAuditByPhone, bucketAuditByInstance} {
			tx.Bucket(b).ForEach(func(k, _ []byte) error {
				got[string(b)] = append(got[string(b)], string(k))
				return nil
			})
			slices.Sort(want[string(b)])
		}
		return nil
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit indexes out of step with the events (-want +got):\n%s", diff)
	}
}

// TestPruneKeepsAuditIndexesConsistent: pruning old events removes their
// index entries too, so an index never points at a pruned event. (That
// queries are right after pruning is the storage contract's: storetest.)
func TestPruneKeepsAuditIndexesConsistent(t *testing.T) {
	db := openTest(t)
	seedQueryEvents(t, db)
	checkAuditIndexes(t, db)
	st, err := db.Prune(t.Context(), t0.Add(time.Hour), pairing.PruneBefore{AuditEvents: t0.Add(25 * time.Minute)})
	if err != nil || st.AuditEvents != 25 {
		t.Fatalf("pruned %+v, %v; want 25 audit events", st, err)
	}
	checkAuditIndexes(t, db)
}

// TestAuditIndexesConsistentAfterRandomPrunes: after random appends and
// prunes, the indexes hold exactly the entries of the stored events, and
// indexed queries (with limits and windows) give exactly what a scan of the
// whole log filtered by hand gives.
func TestAuditIndexesConsistentAfterRandomPrunes(t *testing.T) {
	db := openTest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	phones := []string{"201112223333", "201009998888", "2348031234567", ""}
	instances := [][2]string{{"support-eg", "A1B2C3D4E5F6"}, {"Field-NG", "B1B2C3D4E5F6"}, {"A1B2C3D4E5F6", ""}, {"support-eg", ""}, {"", ""}}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for round := range 5 {
		for i := range 300 {
			in := instances[rng.IntN(len(instances))]
			ph := phones[rng.IntN(len(phones))]
			e := pairing.Event{Time: base.Add(time.Duration(rng.IntN(10000)) * time.Second), Kind: "requested", User: fmt.Sprint("U", i%7),
				Instance: in[0], InstanceID: in[1], Digits: ph, Pairing: fmt.Sprint(round, "-", i)}
			if ph != "" {
				e.Phone = "masked"
			}
			if err := db.AppendAudit(t.Context(), e); err != nil {
				t.Fatal(err)
			}
		}
		cut := base.Add(time.Duration(rng.IntN(10000)) * time.Second)
		if _, err := db.Prune(t.Context(), base.Add(20000*time.Second), pairing.PruneBefore{AuditEvents: cut}); err != nil {
			t.Fatal(err)
		}
		checkAuditIndexes(t, db)
		all, _, err := db.Audit(t.Context(), pairing.AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []pairing.AuditQuery{
			{Phone: "201112223333"}, {Phone: "201112223333", Limit: 7}, {Instances: []string{"SUPPORT-EG"}},
			{Instances: []string{"a1b2c3d4e5f6", "support-eg"}, Limit: 13, Since: base.Add(5000 * time.Second)},
			{Phone: "2348031234567", Instances: []string{"field-ng", "B1B2C3D4E5F6"}, Until: base.Add(8000 * time.Second)},
			{Limit: 11, Since: base.Add(9000 * time.Second)},
		} {
			got, more, err := db.Audit(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			want := filterByHand(db, all, q)
			wantMore := q.Limit > 0 && len(want) > q.Limit
			if wantMore {
				want = want[len(want)-q.Limit:]
			}
			if diff := cmp.Diff(want, got); diff != "" || more != wantMore {
				t.Errorf("round %d query %+v (more %v want %v) (-want +got):\n%s", round, q, more, wantMore, diff)
			}
		}
	}
}

// filterByHand is what q selects from all (every event, oldest first),
// read the slow way: an event that records its instance ID is matched by
// that ID only, an older one by the alias it recorded.
func filterByHand(db *DB, all []pairing.Event, q pairing.AuditQuery) []pairing.Event {
	var out []pairing.Event
	for _, e := range all {
		if e.Time.Before(q.Since) || !q.Until.IsZero() && !e.Time.Before(q.Until) {
			continue
		}
		if q.Phone != "" && !eventHasPhone(db, e, q.Phone) {
			continue
		}
		if len(q.Instances) > 0 && !slices.ContainsFunc(q.Instances, func(s string) bool {
			if e.InstanceID != "" {
				return strings.EqualFold(s, e.InstanceID)
			}
			return e.Instance != "" && strings.EqualFold(s, e.Instance)
		}) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// eventHasPhone reports whether the stored record of e (found by its
// pairing ID, which Audit returns) carries digits' phone key.
func eventHasPhone(db *DB, e pairing.Event, digits string) bool {
	found := false
	db.bolt.View(func(tx *bolt.Tx) error {
		want := keyedPhoneKey(tx.Bucket(bucketMeta).Get(metaPhoneKeySecret), digits)
		return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
			if bytes.Contains(v, []byte(`"pairing":"`+e.Pairing+`"`)) && bytes.Contains(v, []byte(want)) {
				found = true
			}
			return nil
		})
	})
	return found
}

// TestUpgradeIndexesOldEventsInChunks: a log written before the indexes is
// indexed on the first read-write open, a chunk per transaction, and every
// event is found afterwards.
func TestUpgradeIndexesOldEventsInChunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	// Rewind the file to the old layout: events without index entries, with
	// the unkeyed phone key, and no "indexed" mark.
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		for i := range 50 {
			e := pairing.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: "requested", User: "U1", Instance: "support-eg", PhoneKey: legacyPhoneKey("201112223333")}
			if err := putJSON(tx.Bucket(bucketAudit), binary.BigEndian.AppendUint64(timeBytes(e.Time), uint64(i)), e); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(metaAuditIndexed)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	defer func(n int) { auditIndexChunk = n }(auditIndexChunk)
	auditIndexChunk = 7
	db, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkAuditIndexes(t, db)
	for _, q := range []pairing.AuditQuery{{Phone: "201112223333"}, {Instances: []string{"SUPPORT-EG"}}} {
		if got, _, err := db.Audit(t.Context(), q); len(got) != 50 || err != nil {
			t.Errorf("Audit(%+v) found %d events, %v; want 50", q, len(got), err)
		}
	}
}
