package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

var t0 = time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)

func openTest(t testing.TB) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "test.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func reservation(id, instance, phone, user string, now time.Time) pairing.Reservation {
	return pairing.Reservation{
		Pairing:    pairing.Pairing{ID: id, Instance: instance, Phone: phone, RequestedBy: user},
		PhoneLimit: pairing.Window{Max: 3, Period: 15 * time.Minute},
		UserLimit:  pairing.Window{Max: 5, Period: time.Hour},
		Now:        now, Hold: 30 * time.Second,
	}
}

// end marks a pairing final, and its final view shown, so its instance is
// free again and nothing watches it.
func end(t *testing.T, db *DB, id string, now time.Time) {
	t.Helper()
	if _, err := db.UpdatePairing(t.Context(), id, now, func(p *pairing.Pairing) error { p.State = pairing.StateExpired; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordView(t.Context(), id, string(pairing.StateExpired), true); err != nil {
		t.Fatal(err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(path, Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("second open: %v, want ErrLocked", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestPruneKeepsFileBounded(t *testing.T) {
	db := openTest(t)
	var sizes []int64
	now := t0
	for cycle := range 6 {
		for i := range 200 {
			r := reservation(fmt.Sprintf("c%d-%d", cycle, i), fmt.Sprintf("I%d", i), fmt.Sprintf("2010%08d", i), fmt.Sprintf("U%d", i), now)
			if d, err := db.Reserve(t.Context(), r); err != nil || d.Refused != pairing.LimitNone {
				t.Fatalf("cycle %d: %+v %v", cycle, d, err)
			}
			db.UseResponseURL(t.Context(), fmt.Sprintf("https://r/%d-%d", cycle, i), now, now, 0)
			end(t, db, r.Pairing.ID, now)
		}
		now = now.Add(2 * time.Hour)
		st, err := db.Prune(t.Context(), now, pairing.PruneBefore{Attempts: now.Add(-time.Hour), Pairings: now.Add(-time.Hour)})
		if err != nil || st.Pairings != 200 || st.Attempts != 200 || st.ResponseURLs != 200 {
			t.Fatalf("cycle %d: pruned %+v, %v; want 200 pairings, 200 attempts, 200 urls", cycle, st, err)
		}
		sizes = append(sizes, db.FileSize())
	}
	if last, early := sizes[len(sizes)-1], sizes[2]; last > early*3/2 {
		t.Errorf("file grows although pruned: sizes %v", sizes)
	}
}

// A watched pairing whose record does not parse can never be advanced or
// shown: pruning drops it (and its record), and says how many it dropped,
// instead of keeping it watched for good.
func TestPruneDropsDamagedWatchedPairing(t *testing.T) {
	db := openTest(t)
	db.bolt.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketPairings).Put([]byte("bad"), []byte(`{"state":`))
		return tx.Bucket(bucketWatched).Put([]byte("bad"), nil)
	})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	st, err := db.Prune(t.Context(), now, pairing.PruneBefore{Attempts: now, Pairings: now})
	if err != nil {
		t.Fatal(err)
	}
	if n := db.WatchedCount(); n != 0 {
		t.Errorf("after pruning, %d watched entries for a pairing nobody can read", n)
	}
	if st.DamagedPairings != 1 || st.Pairings != 1 {
		t.Errorf("prune stats %+v, want the damaged pairing counted and removed", st)
	}
}

// Opening a database watches requests left unwatched by an older version,
// so their messages reach a final state too.
func TestOpenWatchesUnsettledRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Reserve(t.Context(), reservation("a", "I1", "201112223333", "U1", t0))
	db.RecordView(t.Context(), "a", "", true)
	db.Close()
	db, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if w, _ := db.WatchedPairings(t.Context()); len(w) != 1 || w[0].ID != "a" {
		t.Errorf("watched %+v after reopening, want the unsettled request", w)
	}
}
