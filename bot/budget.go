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
	name         string // its hold's key in storage (Service.SetHold)
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
	return &editBudget{name: "chat.update", now: now, perSecond: float64(perMinute) / 60, burst: burst, tokens: burst, last: now()}
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
func (e *editBudget) block(d time.Duration) time.Time {
	return e.blockUntil(e.now().Add(d))
}

// blockUntil is block until a moment (a hold read back from storage) and
// returns when the hold runs out.
func (e *editBudget) blockUntil(until time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if until.After(e.blockedUntil) {
		e.blockedUntil = until
	}
	e.tokens, e.last = 0, e.now()
	return e.blockedUntil
}

// heldUntil is when the running Retry-After runs out (zero: none runs).
func (e *editBudget) heldUntil() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.now().Before(e.blockedUntil) {
		return e.blockedUntil
	}
	return time.Time{}
}

// key is the hold's key in storage.
func (e *editBudget) key() string { return e.name }

// hold is a Retry-After that stops calls until it runs out.
type hold interface {
	blocked() bool
	// block holds calls for d and returns when the hold runs out.
	block(d time.Duration) time.Time
	// key names the hold in storage (Service.SetHold), so that a
	// restarted bot waits it out too.
	key() string
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

func (p postHold) block(d time.Duration) time.Time {
	return p.h.blockUntil(p.to, p.h.now().Add(d))
}

func (p postHold) key() string { return postHoldPrefix + p.to }

// postHoldPrefix starts the storage key of a post hold; the destination
// follows.
const postHoldPrefix = "chat.postMessage "

// blockUntil holds posts to to until until and returns when that hold
// runs out.
func (h *postHolds) blockUntil(to string, until time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if until.After(h.until[to]) {
		h.until[to] = until
	}
	return h.until[to]
}

// heldUntil is when the hold of posts to to runs out (zero: none runs).
func (h *postHolds) heldUntil(to string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if until, ok := h.until[to]; ok && h.now().Before(until) {
		return until
	}
	return time.Time{}
}

// within is how many uses the budget can give within d from now: what it
// holds now and what it earns meanwhile, less the time a Retry-After
// still blocks it.
func (e *editBudget) within(d time.Duration) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	e.refill(now)
	tokens := e.tokens
	if now.Before(e.blockedUntil) {
		d -= e.blockedUntil.Sub(now)
		tokens = 0
	}
	if d <= 0 {
		return 0
	}
	return tokens + d.Seconds()*e.perSecond
}
