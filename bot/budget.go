package bot

import (
	"sync"
	"time"
)

// DefaultEditsPerMinute is the shared edit budget's default rate: Slack
// allows chat.update about 50 times a minute per workspace (Tier 3, "50+
// per minute"), and the bot stays below it, with room for a burst.
const DefaultEditsPerMinute = 40

// editBudget is the workspace's chat.update budget, shared by every live
// pairing's DM (a token bucket): rate uses a minute, up to burst at once,
// so no minute ever sees more than burst + rate calls. A 429 blocks it
// until its Retry-After runs out. It runs on the service's clock.
type editBudget struct {
	mu           sync.Mutex
	now          func() time.Time
	perSecond    float64
	burst        float64
	tokens       float64
	last         time.Time
	blockedUntil time.Time
}

// newEditBudget is a full budget of perMinute uses a minute; the burst is
// a quarter of it (at most 10), so burst and a minute's refill stay within
// Slack's ~50 a minute at the default rate.
func newEditBudget(perMinute int, now func() time.Time) *editBudget {
	burst := float64(min(10, max(1, perMinute/4)))
	return &editBudget{now: now, perSecond: float64(perMinute) / 60, burst: burst, tokens: burst, last: now()}
}

// refill adds what the time since the last call earned. e.mu must be held.
func (e *editBudget) refill(now time.Time) {
	if now.After(e.last) {
		e.tokens = min(e.burst, e.tokens+now.Sub(e.last).Seconds()*e.perSecond)
		e.last = now
	}
}

// take spends one use if there is one now (and no Retry-After is running).
func (e *editBudget) take() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	e.refill(now)
	if now.Before(e.blockedUntil) || e.tokens < 1 {
		return false
	}
	e.tokens--
	return true
}

// refund gives back a use taken but not spent.
func (e *editBudget) refund() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens = min(e.burst, e.tokens+1)
}

// blocked reports whether a Retry-After is running.
func (e *editBudget) blocked() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now().Before(e.blockedUntil)
}

// block stops every use for d (Slack's Retry-After), and empties the
// bucket: Slack counted more calls in the workspace's minute than the
// bucket let through (another process on the same workspace, or a
// budget set above Slack's limit), so it starts again from nothing.
func (e *editBudget) block(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	if until := now.Add(d); until.After(e.blockedUntil) {
		e.blockedUntil = until
	}
	e.tokens, e.last = 0, now
}
