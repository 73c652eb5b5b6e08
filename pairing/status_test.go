package pairing_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

// TestStatusCache: the form opens from what the ticks and requests last
// heard from Wawp (no I/O), within the TTL; CheckStatuses asks Wawp and
// feeds the cache; a failed call or a gone instance is cached as such.
func TestStatusCache(t *testing.T) {
	r := newRig(t, pairing.Config{StatusTTL: 20 * time.Second})
	if _, ok := r.svc.CachedStatus(inst1.ID); ok {
		t.Error("a status before Wawp was ever asked")
	}
	// A request's precheck feeds it.
	r.start(request(inst1, digits, "U1"))
	r.wawp.takeCalls()
	st, ok := r.svc.CachedStatus(inst1.ID)
	if want := (pairing.InstanceStatus{Status: pairing.StatusScanQR, At: t0}); !ok || st != want {
		t.Errorf("after a request: %+v, %v; want %+v", st, ok, want)
	}
	// The tick's poll feeds it: the phone linked.
	r.clock.Add(10 * time.Second)
	r.wawp.setStatus(inst1.ID, pairing.StatusWorking, digits)
	if _, err := r.svc.Advance(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ = r.svc.CachedStatus(inst1.ID)
	if st.Status != pairing.StatusWorking || st.Me != digits || !st.At.Equal(t0.Add(10*time.Second)) {
		t.Errorf("after a tick: %+v", st)
	}
	if calls := r.wawp.takeCalls(); len(calls) != 1 {
		t.Errorf("Wawp calls %v; CachedStatus must make none", calls)
	}
	// Past the TTL it is not current any more.
	r.clock.Add(21 * time.Second)
	if st, ok := r.svc.CachedStatus(inst1.ID); ok {
		t.Errorf("a status %s old is still current: %+v", 21*time.Second, st)
	}
	// CheckStatuses asks Wawp about each instance, and caches the answers.
	r.wawp.failSession(inst2.ID, pairing.ErrNoInstance)
	got := r.svc.CheckStatuses(context.Background(), []string{inst1.ID, inst2.ID, "INST00000003"})
	now := t0.Add(31 * time.Second)
	want := map[string]pairing.InstanceStatus{
		inst1.ID:       {Status: pairing.StatusWorking, Me: digits, At: now},
		inst2.ID:       {Gone: true, At: now},
		"INST00000003": {Status: pairing.StatusScanQR, At: now},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CheckStatuses (-want +got):\n%s", diff)
	}
	for id, w := range want {
		if st, ok := r.svc.CachedStatus(id); !ok || st != w {
			t.Errorf("cached %s: %+v, %v; want %+v", id, st, ok, w)
		}
	}
}
