package pairing

import (
	"errors"
	"strings"
)

// A pairing that ended without a code keeps why in its Reason, so its
// message can be drawn again from the store alone: after a restart, or when
// the first post of it was lost.

// wawpReasons names each kind of failed Wawp call in a stored Reason.
var wawpReasons = []struct {
	kind error
	name string
}{
	{ErrBadRequest, "bad_request"}, {ErrUnauthorized, "unauthorized"}, {ErrNoInstance, "no_instance"},
	{ErrNotReady, "not_ready"}, {ErrRateLimited, "rate_limited"}, {ErrServer, "server"},
	{ErrUpstream, "upstream"}, {ErrBadResponse, "bad_response"}, {ErrTimeout, "timeout"},
	{ErrUnreachable, "unreachable"},
}

// Reasons stored for failures that are not Wawp's.
const (
	ReasonInternal = "internal" // the bot itself failed
	reasonWawp     = "wawp:"
	reasonStatus   = "status:"
)

// failureReason names cause for a failed pairing's Reason: "wawp:timeout"
// and the like for a failed Wawp call, else ReasonInternal.
func failureReason(cause error) string {
	for _, r := range wawpReasons {
		if errors.Is(cause, r.kind) {
			return reasonWawp + r.name
		}
	}
	return ReasonInternal
}

// ReasonError is the Wawp error a failed pairing's Reason names (one of the
// Err* sentinels, for errors.Is), or nil when it names none.
func ReasonError(reason string) error {
	name, ok := strings.CutPrefix(reason, reasonWawp)
	if !ok {
		return nil
	}
	for _, r := range wawpReasons {
		if r.name == name {
			return r.kind
		}
	}
	return nil
}

// ReasonStatus is the session status a refused pairing's Reason names.
func ReasonStatus(reason string) Status {
	return Status(strings.TrimPrefix(reason, reasonStatus))
}

// maxStatusLen bounds a session status as it is kept (Reason, the log,
// the refusal's message).
const maxStatusLen = 40

// boundedStatus is st as the bot keeps and shows it: Wawp's JSON may hold
// any string of any length as a status (a proxy's error, a broken
// deploy), so only ASCII letters, digits, '_', '-' and '.' are kept (any
// other character becomes '?') and at most maxStatusLen of them ("…"
// marks a cut). Documented statuses are unchanged.
func boundedStatus(st Status) Status {
	var b strings.Builder
	for i, r := range string(st) {
		if i >= maxStatusLen {
			b.WriteString("…")
			break
		}
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
	}
	return Status(b.String())
}
