package bot

import (
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/wawp"
)

// TestOnlyTheLeaderTicks: while another replica holds the ticker's lease,
// a tick here moves nothing (no Wawp poll, no edit); once that lease runs
// out unrenewed (its replica died), the next tick here is elected and
// brings the message up to date. A bot that stops resigns, and another
// replica leads at its next tick.
func TestOnlyTheLeaderTicks(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	other := pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), r.db, pairing.Config{Now: r.clock.Now, LeaderID: "other-replica"})
	msgID := r.startRefreshed()
	before := r.changeCount(msgID)
	r.clock.Set(t0.Add(80 * time.Second)) // the countdown's first step is due
	if leading, err := other.Lead(t.Context()); !leading || err != nil {
		t.Fatalf("the other replica's Lead = %v, %v", leading, err)
	}
	r.tick()
	if got := r.changeCount(msgID); got != before {
		t.Errorf("a replica that does not lead edited the message (%d changes, want %d)", got, before)
	}
	if _, leading := r.svc.Leadership(); leading {
		t.Error("this replica leads while another's lease runs")
	}
	// The other replica is gone: its lease runs out unrenewed.
	r.clock.Set(t0.Add(80*time.Second + pairing.DefaultLeaderTTL))
	r.tick()
	if got := r.changeCount(msgID); got == before {
		t.Error("the replica that took over did not bring the message up to date")
	}
	if _, leading := r.svc.Leadership(); !leading {
		t.Error("this replica does not lead after the other's lease ran out")
	}
	r.bot.resign()
	if leading, err := other.Lead(t.Context()); !leading || err != nil {
		t.Errorf("after this replica resigned, the other's Lead = %v, %v; want elected at once", leading, err)
	}
}
