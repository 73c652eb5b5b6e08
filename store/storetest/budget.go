package storetest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

var budgetCases = []testCase{
	{"five uses, keep respected", testBudgetUses},
	{"refund", testBudgetRefund},
	{"thirty minutes", testBudgetLifetime},
	{"50 concurrent users of one url", testBudgetConcurrent},
}

const hookURL = "https://hooks.slack.test/actions/T1/1/abc"

// use takes one use of url at now keeping keep, and fails the test unless
// the outcome is want (nil or ErrBudgetSpent).
func use(t *testing.T, s pairing.Storage, url string, issued, now time.Time, keep int, want error, what string) {
	t.Helper()
	err := s.UseResponseURL(t.Context(), url, issued, now, keep)
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Errorf("%s: UseResponseURL(keep=%d) = %v, want %v", what, keep, err, want)
	}
}

// testBudgetUses: Slack allows five posts per response_url; a post that
// must leave keep uses for later ones is refused when it would not; one
// url's budget is its own.
func testBudgetUses(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	for i := range 4 {
		use(t, s, hookURL, t0, t0.Add(time.Duration(i)*time.Second), 1, nil, fmt.Sprintf("use %d", i+1))
	}
	use(t, s, hookURL, t0, t0.Add(5*time.Second), 1, pairing.ErrBudgetSpent, "5th use keeping one")
	use(t, s, hookURL, t0, t0.Add(5*time.Second), 0, nil, "5th use, the last")
	use(t, s, hookURL, t0, t0.Add(6*time.Second), 0, pairing.ErrBudgetSpent, "6th use")

	other := hookURL + "-other"
	use(t, s, other, t0, t0, pairing.ResponseURLUses, pairing.ErrBudgetSpent, "keeping all five")
	use(t, s, other, t0, t0, 4, nil, "1st use keeping four")
	use(t, s, other, t0, t0, 4, pairing.ErrBudgetSpent, "2nd use keeping four")
	use(t, s, other, t0, t0, 3, nil, "2nd use keeping three")
}

// testBudgetRefund: a refund gives back one use Slack did not count, never
// more uses than Slack allows, and nothing for a url never used.
func testBudgetRefund(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	for i := range pairing.ResponseURLUses {
		use(t, s, hookURL, t0, t0, 0, nil, fmt.Sprintf("use %d", i+1))
	}
	use(t, s, hookURL, t0, t0, 0, pairing.ErrBudgetSpent, "6th use")
	if err := s.RefundResponseURL(t.Context(), hookURL); err != nil {
		t.Fatal(err)
	}
	use(t, s, hookURL, t0, t0, 0, nil, "after a refund")
	use(t, s, hookURL, t0, t0, 0, pairing.ErrBudgetSpent, "after a refund, again")

	fresh := hookURL + "-fresh"
	if err := s.RefundResponseURL(t.Context(), fresh); err != nil {
		t.Errorf("refunding a url never used: %v", err)
	}
	use(t, s, fresh, t0, t0, 0, nil, "1st use")
	for range 3 {
		if err := s.RefundResponseURL(t.Context(), fresh); err != nil {
			t.Fatal(err)
		}
	}
	for i := range pairing.ResponseURLUses {
		use(t, s, fresh, t0, t0, 0, nil, fmt.Sprintf("use %d after refunds", i+1))
	}
	use(t, s, fresh, t0, t0, 0, pairing.ErrBudgetSpent, "6th use after refunds")
}

// testBudgetLifetime: a response_url works for thirty minutes from the
// interaction that issued it, whether used before or not.
func testBudgetLifetime(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	end := t0.Add(pairing.ResponseURLLifetime)
	use(t, s, hookURL, t0, t0, 0, nil, "at once")
	use(t, s, hookURL, t0, end.Add(-time.Nanosecond), 0, nil, "just before 30 min")
	use(t, s, hookURL, t0, end, 0, pairing.ErrBudgetSpent, "at 30 min")
	use(t, s, hookURL+"-late", t0, end.Add(time.Minute), 0, pairing.ErrBudgetSpent, "first use after 30 min")
}

// testBudgetConcurrent: 50 writers racing for one url's posts never take
// more than Slack allows, nor more than keep leaves them.
func testBudgetConcurrent(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	for _, keep := range []int{0, 1} {
		url := fmt.Sprintf("%s-keep%d", hookURL, keep)
		var took, spent atomic.Int32
		parallel(50, func(int) {
			switch err := s.UseResponseURL(t.Context(), url, t0, t0, keep); {
			case err == nil:
				took.Add(1)
			case errors.Is(err, pairing.ErrBudgetSpent):
				spent.Add(1)
			default:
				t.Error(err)
			}
		})
		if want := int32(pairing.ResponseURLUses - keep); took.Load() != want || spent.Load() != 50-want {
			t.Errorf("keep=%d: %d uses taken, %d refused; want exactly %d taken", keep, took.Load(), spent.Load(), want)
		}
	}
}
