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

// hold is a Retry-After that stops calls until it runs out.
type hold interface {
	blocked() bool
	block(d time.Duration)
}

// postHolds are chat.postMessage's Retry-Afters, one per destination:
// Slack limits posting per channel ("1 message per second to a specific
// channel", api.slack.com/methods/chat.postMessage, Rate limiting), so a
// 429 on one channel holds up that channel's posts, not the workspace's.
// A DM's destination is its user, whose DM it is.
type postHolds struct {
	mu    sync.Mutex
	now   func() time.Time
	until map[string]time.Time
}

// newPostHolds is postHolds on the clock now.
func newPostHolds(now func() time.Time) *postHolds {
	return &postHolds{now: now, until: map[string]time.Time{}}
}

// on is the hold of posts to destination to.
func (h *postHolds) on(to string) hold { return postHold{h, to} }

type postHold struct {
	h  *postHolds
	to string
}

func (p postHold) blocked() bool {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	until, ok := p.h.until[p.to]
	if ok && !p.h.now().Before(until) {
		delete(p.h.until, p.to) // run out: the map keeps only running holds
		return false
	}
	return ok
}

func (p postHold) block(d time.Duration) {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	if until := p.h.now().Add(d); until.After(p.h.until[p.to]) {
		p.h.until[p.to] = until
	}
}
