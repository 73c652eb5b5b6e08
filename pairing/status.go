package pairing

import (
	"context"
	"errors"
	"sync"
	"time"
)

// The instance status cache (issue 10): the /link form must open within
// the trigger's 3 seconds whatever Wawp does, so it shows what is known
// (this cache, fed by every session call the service makes: the ticks'
// polls, each request's precheck, the form's own refresh) and refreshes it
// after it opened (CheckStatuses). It is per process and short-lived: a
// status older than DefaultStatusTTL is not shown as current.

// DefaultStatusTTL is how long a cached status is shown as current.
const DefaultStatusTTL = 30 * time.Second

// InstanceStatus is what is known of an instance's session.
type InstanceStatus struct {
	Status Status
	Me     string // the linked phone's digits, for WORKING
	// Gone says Wawp answered that the instance does not exist.
	Gone bool
	// Failed says the last call failed otherwise (Wawp down, a timeout):
	// the status is unknown.
	Failed bool
	At     time.Time // when Wawp answered
}

// Known reports whether st says anything (the zero InstanceStatus does not).
func (st InstanceStatus) Known() bool { return !st.At.IsZero() }

type statusCache struct {
	mu sync.Mutex
	m  map[string]InstanceStatus
}

func (c *statusCache) put(instance string, st InstanceStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]InstanceStatus{}
	}
	if old, ok := c.m[instance]; ok && old.At.After(st.At) {
		return // an older answer arriving late
	}
	c.m[instance] = st
}

func (c *statusCache) get(instance string) (InstanceStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[instance]
	return st, ok
}

// statusOf is a session call's outcome as the cache keeps it.
func statusOf(sess Session, err error, at time.Time) InstanceStatus {
	switch {
	case err == nil:
		return InstanceStatus{Status: sess.Status, Me: sess.Me, At: at}
	case errors.Is(err, ErrNoInstance):
		return InstanceStatus{Gone: true, At: at}
	}
	return InstanceStatus{Failed: true, At: at}
}

// CachedStatus is instance's last known status, if Wawp answered about it
// within the status TTL. It does no I/O: the form opens from it.
func (s *Service) CachedStatus(instance string) (InstanceStatus, bool) {
	st, ok := s.statuses.get(instance)
	if !ok || s.cfg.Now().Sub(st.At) > s.cfg.StatusTTL {
		return InstanceStatus{}, false
	}
	return st, true
}

// CheckStatuses asks Wawp for each instance's session (a bounded number
// at a time, each call with its own timeout), records the answers in the
// cache and returns them. A call that fails is an InstanceStatus with
// Failed (or Gone) set.
func (s *Service) CheckStatuses(ctx context.Context, instances []string) map[string]InstanceStatus {
	set := map[string]bool{}
	for _, id := range instances {
		set[id] = true
	}
	out := map[string]InstanceStatus{}
	for id := range s.pollSessions(ctx, set) {
		out[id], _ = s.statuses.get(id)
	}
	return out
}
