package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var editCases = []testCase{
	{"per minute, a sliding minute", testEditBudgetSlidingMinute},
	{"no more than the budget across a minute boundary", testEditBudgetAcrossMinuteBoundary},
	{"50 concurrent takers, exactly the minute's edits", testEditBudgetConcurrent},
}

// testEditBudgetSlidingMinute: a minute gives perMinute edits, then none;
// each edit comes back a minute after it was taken; a done context takes
// nothing.
func testEditBudgetSlidingMinute(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	start := t0.Truncate(time.Minute)
	take := func(at time.Time, want bool, what string) {
		t.Helper()
		got, err := s.TakeEdit(t.Context(), at, 3)
		if err != nil || got != want {
			t.Errorf("%s: TakeEdit = %v, %v; want %v", what, got, err, want)
		}
	}
	take(start, true, "first")
	take(start.Add(20*time.Second), true, "second")
	take(start.Add(40*time.Second), true, "third")
	take(start.Add(59*time.Second), false, "fourth within the minute")
	take(start.Add(time.Minute), true, "a minute after the first")
	take(start.Add(time.Minute+time.Second), false, "the second's and third's minute still runs")
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.TakeEdit(done, start.Add(time.Minute+20*time.Second), 3); !errors.Is(err, context.Canceled) {
		t.Error("TakeEdit with a done context succeeded")
	}
	take(start.Add(time.Minute+20*time.Second), true, "a minute after the second, the done call took nothing")
	take(start.Add(time.Minute+21*time.Second), false, "none left again")
}

// testEditBudgetAcrossMinuteBoundary: the budget spent in a clock
// minute's last second is not given again in the next minute's first
// seconds (Slack counts any minute: fixed minutes would allow twice the
// budget within two seconds).
func testEditBudgetAcrossMinuteBoundary(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	end := t0.Truncate(time.Minute).Add(59 * time.Second)
	taken := 0
	for _, at := range []time.Time{end, end.Add(time.Millisecond), end.Add(2 * time.Millisecond), end.Add(2 * time.Second), end.Add(3 * time.Second)} {
		ok, err := s.TakeEdit(t.Context(), at, 3)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			taken++
		}
	}
	if taken != 3 {
		t.Errorf("%d edits taken within three seconds across a minute boundary; want the budget, 3", taken)
	}
	if ok, err := s.TakeEdit(t.Context(), end.Add(time.Minute), 3); err != nil || !ok {
		t.Errorf("a minute after the first: TakeEdit = %v, %v; want true", ok, err)
	}
}

// testEditBudgetConcurrent: 50 callers racing for a minute of 7 edits get
// exactly 7.
func testEditBudgetConcurrent(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	var (
		taken atomic.Int32
		wg    sync.WaitGroup
	)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.TakeEdit(t.Context(), t0, 7)
			if err != nil {
				t.Error(err)
			}
			if ok {
				taken.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := taken.Load(); n != 7 {
		t.Errorf("50 concurrent takers of 7 edits took %d", n)
	}
}
