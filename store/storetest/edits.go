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
	{"per minute, fixed windows", testEditBudgetMinutes},
	{"50 concurrent takers, exactly the minute's edits", testEditBudgetConcurrent},
}

// testEditBudgetMinutes: a minute gives perMinute edits, then none; the
// next minute gives perMinute again; a done context takes nothing.
func testEditBudgetMinutes(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	start := t0.Truncate(time.Minute)
	take := func(at time.Time, want bool, what string) {
		t.Helper()
		got, err := s.TakeEdit(t.Context(), at, 3)
		if err != nil || got != want {
			t.Errorf("%s: TakeEdit = %v, %v; want %v", what, got, err, want)
		}
	}
	take(start, true, "first of the minute")
	take(start.Add(20*time.Second), true, "second")
	take(start.Add(40*time.Second), true, "third")
	take(start.Add(59*time.Second), false, "fourth in the same minute")
	take(start.Add(time.Minute), true, "first of the next minute")
	take(start.Add(time.Minute+time.Second), true, "second of the next minute")
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.TakeEdit(done, start.Add(time.Minute), 3); !errors.Is(err, context.Canceled) {
		t.Error("TakeEdit with a done context succeeded")
	}
	take(start.Add(time.Minute+2*time.Second), true, "third of the next minute, the done call took nothing")
	take(start.Add(time.Minute+3*time.Second), false, "fourth of the next minute")
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
