package postgres

import (
	"testing"
	"time"
)

// TestEditBudgetAcrossMinuteBoundary (issue 11: "never
// overspend a budget"; the workspace's chat.update budget is shared so
// that all replicas together stay within Slack's ~50 a minute): minutes
// are fixed windows, so replicas may spend a whole minute's budget in
// its last second and the next minute's in the first second after:
// 2×50 chat.update calls within two seconds. Slack (and fakeslack, which
// counts a sliding minute: calls[len-perMinute] + a minute) answers the
// second half with 429. The process's own budget is a token bucket for
// exactly this reason ("no minute ever sees more than burst + rate").
func TestEditBudgetAcrossMinuteBoundary(t *testing.T) {
	dbs := replicas(t, 2, Options{CallerClock: true})
	end := t0.Truncate(time.Minute).Add(59 * time.Second)
	taken := 0
	for i := range 50 {
		if ok, err := dbs[i%2].TakeEdit(t.Context(), end.Add(time.Duration(i)*time.Millisecond), 50); err != nil {
			t.Fatal(err)
		} else if ok {
			taken++
		}
	}
	for i := range 50 {
		if ok, err := dbs[i%2].TakeEdit(t.Context(), end.Add(2*time.Second+time.Duration(i)*time.Millisecond), 50); err != nil {
			t.Fatal(err)
		} else if ok {
			taken++
		}
	}
	if taken > 50 {
		t.Errorf("%d chat.update calls taken from the shared budget within about two seconds; Slack allows about 50 in any minute", taken)
	}
}
