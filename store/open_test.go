package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

// TestOpenDamagedFile: a truncated or overwritten database file is
// refused with a sentence naming the file and the way out (restore a
// backup), never a bbolt panic or a SIGBUS on the mapped file.
func TestOpenDamagedFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	db, err := Open(good, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		phone := fmt.Sprintf("2011122%05d", i)
		if _, err := db.Reserve(t.Context(), reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), phone, fmt.Sprint("U", i), t0)); err != nil {
			t.Fatal(err)
		}
	}
	var used int // bytes of pages in use; the file may be longer
	db.bolt.View(func(tx *bolt.Tx) error { used = int(tx.Size()); return nil })
	db.Close()
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if used < 64<<10 {
		t.Fatalf("the seeded file uses only %d bytes; the truncations below need more pages", used)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"truncated to two pages", raw[:8192]},
		{"truncated to half", raw[:used/2]},
		{"truncated mid-page", raw[:used-1000]},
		{"truncated inside the first page", raw[:100]},
		{"text", []byte("this is not a database, just a note someone saved here\n")},
		{"random bytes", random(len(raw))},
		{"pages after the meta pages overwritten", append(append([]byte{}, raw[:8192]...), random(len(raw)-8192)...)},
	}
	for _, tt := range tests {
		for _, readOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/readonly=%v", tt.name, readOnly), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "linkbot.db")
				if err := os.WriteFile(path, tt.data, 0o600); err != nil {
					t.Fatal(err)
				}
				db, err := Open(path, Options{NoSync: true, ReadOnly: readOnly})
				if err == nil {
					db.Close()
					t.Fatal("Open succeeded on a damaged file")
				}
				if !errors.Is(err, ErrDamaged) {
					t.Errorf("err = %v, want ErrDamaged", err)
				}
				for _, want := range []string{path, "restore", "backup"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("err = %q, want it to mention %q", err, want)
					}
				}
			})
		}
	}
}

// corruptMiddleLeaf writes a database with many audit events, then marks
// one leaf page of the audit bucket from the middle of the file (neither
// the first nor the last page of any bucket, which Open's quick look reads)
// as a freelist page: a page bbolt cannot read as part of a bucket, and
// panics on. Only a page holding audit records (JSON) that bbolt has not
// freed will do: a page of an index is read only by queries through that
// index, and a freed page by nothing, so damaging one of those let the
// reads below pass by luck (the phone index's pages fall where the random
// phone-key secret puts them).
func corruptMiddleLeaf(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "linkbot.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 3000 {
		e := pairing.Event{Time: now.Add(-time.Duration(3000-i) * time.Second), Kind: "requested", User: fmt.Sprint("U", i),
			Instance: "support-eg", Phone: "+20 111 ••• 3333", Digits: fmt.Sprintf("2011122%05d", i), Outcome: "ok"}
		if err := db.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bolt.Open(path, 0o600, nil) // read-write: bbolt loads its freelist
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	var leaves []int
	err = b.View(func(tx *bolt.Tx) error {
		for id := 2; (id+1)*ps <= len(raw); id++ {
			page := raw[id*ps : (id+1)*ps]
			if binary.LittleEndian.Uint64(page) != uint64(id) || binary.LittleEndian.Uint16(page[8:]) != 0x02 ||
				!bytes.Contains(page, []byte(`"kind":"requested"`)) {
				continue
			}
			if info, err := tx.Page(id); err != nil || info == nil || info.Type != "leaf" {
				continue // freed
			}
			leaves = append(leaves, id)
		}
		return nil
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(leaves) < 10 {
		t.Fatalf("only %d leaf pages", len(leaves))
	}
	mid := leaves[len(leaves)/2]
	binary.LittleEndian.PutUint16(raw[mid*ps+8:], 0x10) // freelist
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDamagedMiddlePageIsErrDamaged: a file with one bad page in the middle
// passes Open's quick look (it reads only each bucket's first and last
// page); reading that page later, as `linkbot audit` or the bot's pruning
// does, must return ErrDamaged, never panic inside bbolt.
func TestDamagedMiddlePageIsErrDamaged(t *testing.T) {
	for _, readOnly := range []bool{true, false} {
		t.Run(fmt.Sprint("readonly=", readOnly), func(t *testing.T) {
			path := corruptMiddleLeaf(t)
			db, err := Open(path, Options{NoSync: true, ReadOnly: readOnly})
			if err != nil {
				if !errors.Is(err, ErrDamaged) {
					t.Fatalf("Open: %v, want ErrDamaged", err)
				}
				return // refused: fine
			}
			defer db.Close()
			reads := map[string]func() error{
				"Audit": func() error { _, _, err := db.Audit(t.Context(), pairing.AuditQuery{Limit: 100000}); return err },
			}
			if !readOnly {
				reads["Prune"] = func() error {
					_, err := db.Prune(t.Context(), time.Now(), pairing.PruneBefore{AuditEvents: time.Now()})
					return err
				}
			}
			for name, read := range reads {
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Errorf("%s panicked on the damaged file: %v", name, r)
						}
					}()
					if err := read(); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "backup") {
						t.Errorf("%s: %v, want ErrDamaged saying to restore a backup", name, err)
					}
				}()
			}
		})
	}
}

// TestAuditUpgradeOnDamagedFileIsErrDamaged: a file written before the
// audit indexes (Open's upgrade re-reads every event) with one bad page:
// Open returns ErrDamaged instead of panicking in the upgrade.
func TestAuditUpgradeOnDamagedFileIsErrDamaged(t *testing.T) {
	path := corruptMiddleLeaf(t)
	// Make it a file from before the indexes: drop the "indexed" mark with
	// bbolt directly, leaving the damaged page as it is.
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaAuditIndexed) })
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("Open panicked: %v", r)
		}
	}()
	db, err := Open(path, Options{NoSync: true})
	if err == nil {
		db.Close()
		t.Errorf("Open accepted the damaged file")
	} else if !errors.Is(err, ErrDamaged) {
		t.Errorf("Open: %v, want ErrDamaged", err)
	}
}

// TestBugInTransactionIsNotDamage: a panic in linkbot's own code inside a
// transaction is a bug, not a damaged file: it must not be reported as
// ErrDamaged (which tells the admin to restore a backup).
func TestBugInTransactionIsNotDamage(t *testing.T) {
	db := openTest(t)
	var got any
	func() {
		defer func() { got = recover() }()
		err := db.view(t.Context(), func(*bolt.Tx) error {
			var m map[string]int
			m["x"] = 1 // a bug
			return nil
		})
		t.Errorf("view returned %v, want the bug's panic to go on", err)
	}()
	if got == nil {
		t.Errorf("no panic")
	}
	// The file is fine afterwards: the transaction was rolled back.
	if _, err := db.Pairing(t.Context(), "none"); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("Pairing after the panic: %v", err)
	}
}
