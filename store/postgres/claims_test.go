package postgres

import (
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// TestSupersededPairingLosesClaimOnSharedMessage (issue 11,
// "never the same edit twice"; "no view posted twice"): a renewal takes
// over its old pairing's DM message (same channel and ts). Replica A's
// tick read the old pairing while it was live and goes on to show its
// next countdown step; replica B meanwhile settled the renewal (the old
// pairing is superseded, its code void) and posted the renewal's code
// into that message. A's claim on the old pairing's DM still wins: the
// claim checks only the old pairing's own view and claims, not whether
// the pairing still owns the message, so A posts the void code over the
// live one (and no one corrects it until the renewal's next step).
// Claims on one Slack message must exclude each other, or a pairing that
// no longer owns its message (superseded, unwatched) must lose its claim.
func TestSupersededPairingLosesClaimOnSharedMessage(t *testing.T) {
	dbs := replicas(t, 2, Options{CallerClock: true})
	a, b := dbs[0], dbs[1]
	ctx := t.Context()
	dm := pairing.Surface{Channel: "D1", TS: "1700000000.000100", LastView: "code:4", Recipient: "U1"}

	r := reservation("old", "I1", "201112223333", "U1", t0)
	r.Pairing.DM = dm
	granted(t, a, r)
	live := func(p *pairing.Pairing) error {
		p.State, p.Code, p.IssuedAt, p.ExpiresAt = pairing.StateLive, "ABCD1234", t0, t0.Add(3*time.Minute)
		return nil
	}
	if _, err := a.Settle(ctx, pairing.Settlement{ID: "old", Now: t0, Counted: true, Change: live}); err != nil {
		t.Fatal(err)
	}

	// B: "New code" clicked; the renewal is shown in the same DM message.
	now := t0.Add(time.Minute)
	rr := reservation("new", "I1", "201112223333", "U1", now)
	rr.Replaces, rr.Pairing.Message, rr.Pairing.Renews = "old", "old", "old"
	rr.Pairing.DM = pairing.Surface{Channel: dm.Channel, TS: dm.TS, Recipient: dm.Recipient}
	granted(t, b, rr)
	renewed := func(p *pairing.Pairing) error {
		p.State, p.Code, p.IssuedAt, p.ExpiresAt = pairing.StateLive, "WXYZ9876", now, now.Add(3*time.Minute)
		return nil
	}
	if _, err := b.Settle(ctx, pairing.Settlement{ID: "new", Now: now, Counted: true, Replaced: "old", Change: renewed}); err != nil {
		t.Fatal(err)
	}
	if old, _ := b.Pairing(ctx, "old"); old.State != pairing.StateSuperseded {
		t.Fatalf("old pairing %s, want superseded", old.State)
	}
	won, err := b.ClaimView(ctx, pairing.ViewClaim{ID: "new", Surface: pairing.SurfaceDM, From: "", To: "code:3", Token: "tb", Now: now, For: time.Minute})
	if err != nil || !won {
		t.Fatalf("B's claim of the renewal's DM: %v, %v", won, err)
	}

	// A: its tick's snapshot of the old pairing still shows code:4 → code:3.
	won, err = a.ClaimView(ctx, pairing.ViewClaim{ID: "old", Surface: pairing.SurfaceDM, From: "code:4", To: "code:3", Token: "ta", Now: now, For: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if won {
		t.Errorf("a superseded pairing won a claim on the DM message its renewal now shows (and B holds a claim on): A would post the void code over the live one")
	}
}

// TestOldPairingClaimWaitsForRenewalClaim: the concurrent case of the
// shared-message rule, old pairing's side. An old pairing reinstated
// after its renewal failed uncounted goes on counting down in the
// message the renewal's failure answer is being written to: while the
// renewal's claim of that message is not yet committed (its transaction
// holds the renewal's row), the old pairing's claim waits for it, and
// then loses to it instead of claiming the same message at once.
func TestOldPairingClaimWaitsForRenewalClaim(t *testing.T) {
	db := mustOpen(t, pgtest.URL(t), Options{CallerClock: true})
	ctx := t.Context()
	granted(t, db, reservation("old", "I1", "201112223333", "U1", t0))
	rr := reservation("new", "I2", "201112224444", "U2", t0)
	rr.Pairing.Message, rr.Pairing.Renews = "old", "old"
	granted(t, db, rr)

	// The renewal's claim, in flight: its row written, not yet committed.
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE pairings SET doc = jsonb_set(doc, '{view_claims}', jsonb_build_object('dm', jsonb_build_object('token', 'TB', 'to', 'failed', 'until_ns', $1::bigint))) WHERE id = 'new'`,
		nanos(t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var won bool
	go func() {
		var err error
		won, err = db.ClaimView(ctx, pairing.ViewClaim{ID: "old", Surface: pairing.SurfaceDM, From: "", To: "code:4", Token: "TA", Now: t0.Add(time.Second), For: time.Minute})
		done <- err
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for waiting := false; !waiting; {
		select {
		case err := <-done:
			t.Fatalf("the old pairing's claim answered (%v, %v) while its renewal's claim of their message was in flight; want it to wait", won, err)
		case <-timeout:
			t.Fatal("the old pairing's claim never waited for its renewal's claim")
		case <-tick.C:
			if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'
				AND datname = current_database() AND query LIKE '%doc->>''renews'' = $1%FOR SHARE%')`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || won {
			t.Errorf("the old pairing's claim once its renewal's committed: %v, %v; want lost", won, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old pairing's claim still waits after its renewal's claim committed")
	}
}
