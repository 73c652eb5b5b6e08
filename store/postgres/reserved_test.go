package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// TestReservedPairingWaitsForReserve: undoReserve's lookup must not miss a
// Reserve whose COMMIT is still on its way (its reply lost): while another
// transaction holds the phone's advisory lock, as Reserve does until it
// has committed, ReservedPairing waits, and then sees that transaction's
// pairing.
func TestReservedPairingWaitsForReserve(t *testing.T) {
	db := mustOpen(t, pgtest.URL(t), Options{CallerClock: true})
	r := reservation("a", "I1", "201112223333", "U1", t0)
	ctx := t.Context()

	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, db.lockID("phone\x00"+r.Pairing.AttemptKey())); err != nil {
		t.Fatal(err)
	}
	p := r.Pairing
	p.State = pairing.StateRequesting
	doc, err := encodeJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO pairings (id, instance, state, watched, lease_until_ns, ended_ns, doc) VALUES ($1, $2, $3, true, 0, 0, $4)`,
		p.ID, p.Instance, string(p.State), doc); err != nil {
		t.Fatal(err)
	}

	type result struct {
		p   pairing.Pairing
		err error
	}
	done := make(chan result, 1)
	go func() {
		found, err := db.ReservedPairing(ctx, r.Pairing)
		done <- result{found, err}
	}()
	// Wait until the lookup is queued behind the lock (pg_locks), then
	// commit the "Reserve".
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	id := uint64(db.lockID("phone\x00" + r.Pairing.AttemptKey()))
	for waiting := false; !waiting; {
		select {
		case res := <-done:
			t.Fatalf("ReservedPairing answered (%q, %v) while a Reserve of it held the phone's lock; want it to wait", res.p.ID, res.err)
		case <-timeout:
			t.Fatal("ReservedPairing never waited for the phone's lock")
		case <-tick.C:
			if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
				AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1)`, int64(id>>32), int64(id&0xffffffff)).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if errors.Is(res.err, pairing.ErrNotFound) || res.err != nil || res.p.ID != "a" {
			t.Errorf("ReservedPairing after the Reserve committed: %q, %v; want pairing a", res.p.ID, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReservedPairing still waits after the Reserve committed")
	}
}
