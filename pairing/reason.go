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
	reasonDM       = "dm:"
)

// DMError says the DM a hand-off's code was to go to could not be posted:
// Code is Slack's error (messages_tab_disabled, …), or how the call failed.
// The request then ends before request-code, so it never counts.
type DMError struct{ Code string }

func (e *DMError) Error() string { return "the recipient's DM could not be posted: " + e.Code }

// ReasonDM is the Slack error a failed pairing's Reason names when its
// hand-off DM could not be posted ("" and false for any other reason).
func ReasonDM(reason string) (string, bool) {
	return strings.CutPrefix(reason, reasonDM)
}

// failureReason names cause for a failed pairing's Reason: "wawp:timeout"
// and the like for a failed Wawp call, else ReasonInternal.
func failureReason(cause error) string {
	if derr, ok := errors.AsType[*DMError](cause); ok {
		return reasonDM + derr.Code
	}
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
