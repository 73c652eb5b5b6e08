package pairing_test

import (
	"context"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// TestClaimView: the service fills in a claim's token, time and hold;
// of two claims of one edit only the first wins; the winner's finish
// shows its view; HoldsAt lets a post go ahead only until a third of the
// hold before the claim could run out.
func TestClaimView(t *testing.T) {
	r := newRig(t, pairing.Config{})
	p := r.start(request(inst1, digits, "U1"))
	ctx := context.Background()
	ask := pairing.ViewClaim{ID: p.ID, Surface: pairing.SurfaceEphemeral, From: "", To: "live:0"}
	c, won, err := r.svc.ClaimView(ctx, ask)
	if err != nil || !won {
		t.Fatalf("first claim: %v, %v", won, err)
	}
	if c.Token == "" || !c.Now.Equal(t0) || c.For != pairing.DefaultEditClaim {
		t.Errorf("claim as made: %+v; want a token, now, the default hold", c)
	}
	c2, won, err := r.svc.ClaimView(ctx, ask)
	if err != nil || won || c2.Token == c.Token {
		t.Errorf("second claim: %v, %v (token %q); want lost, with a token of its own", won, err, c2.Token)
	}
	if done, err := r.svc.FinishView(ctx, c2, pairing.Surface{LastView: "live:0"}, false); done || err != nil {
		t.Errorf("the loser finishing: %v, %v", done, err)
	}
	if done, err := r.svc.FinishView(ctx, c, pairing.Surface{LastView: "live:0"}, false); !done || err != nil {
		t.Errorf("the winner finishing: %v, %v", done, err)
	}
	if got := r.stored(p.ID); got.LastView != "live:0" {
		t.Errorf("last view %q, want live:0", got.LastView)
	}
	safe := c.Now.Add(pairing.DefaultEditClaim * 2 / 3)
	if !c.HoldsAt(safe.Add(-time.Nanosecond)) || c.HoldsAt(safe) {
		t.Errorf("HoldsAt: want true until %s, false from then", safe)
	}
}
