package store

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

// TestPruneViewClaims: the view_claims bucket keeps only claims that
// still hold: Prune deletes one that ran out (its claimer is gone) and
// one whose pairing was pruned, and keeps one that holds.
func TestPruneViewClaims(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	for id, phone := range map[string]string{"a": "201112223334", "b": "201112223335"} {
		if d, err := db.Reserve(ctx, reservation(id, "I-"+id, phone, "U-"+id, t0)); err != nil || d.Refused != pairing.LimitNone {
			t.Fatal(d, err)
		}
	}
	claim := func(id, surface string, hold time.Duration) {
		t.Helper()
		c := pairing.ViewClaim{ID: id, Surface: surface, To: "x", Token: id + surface, Now: t0, For: hold}
		if won, err := db.ClaimView(ctx, c); !won || err != nil {
			t.Fatalf("claim %s %s: %v, %v", id, surface, won, err)
		}
	}
	claim("a", "dm", time.Minute)                   // runs out
	claim("a", "card", time.Hour)                   // holds
	claim("b", pairing.SurfaceEphemeral, time.Hour) // its pairing goes
	if err := db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPairings).Delete([]byte("b")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Prune(ctx, t0.Add(time.Minute), pairing.PruneBefore{}); err != nil {
		t.Fatal(err)
	}
	var left []string
	db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketViewClaims).ForEach(func(k, _ []byte) error { left = append(left, string(k)); return nil })
	})
	if len(left) != 1 || left[0] != "a\x00card" {
		t.Errorf("claims left after pruning: %q; want only a's card claim", left)
	}
}
