package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
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
		if _, err := db.Reserve(reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), phone, fmt.Sprint("U", i), t0)); err != nil {
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
