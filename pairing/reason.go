package pairing

import (
	"errors"
	"strings"
	"time"
)

// Reason is why a pairing ended as it did, kept so its message can be
// drawn again from the store alone: after a restart, or when the first post
// of it was lost. It is the pairing's Outcome — the one vocabulary the
// audit log, the metrics and the view choice share — and, where the view
// needs more than the outcome says, a detail after a colon:
//
//	limit_phone, status_working, instance_gone, internal_error   the outcome alone
//	wawp_error:timeout       the kind of failed Wawp call (see ReasonError)
//	status_unknown:OPENING   an undocumented session status as Wawp sent it, bounded (see ReasonStatus)
//	dm_refused:messages_tab_disabled   Slack's error for a hand-off's DM it refused (see ReasonDM)
//
// (A wrong phone's is its outcome, "linked " and the masked number that
// came up.) Versions before the vocabulary was one wrote "status:WORKING",
// "status:OPENING", "wawp:timeout", "internal" and "limit:phone": they are
// read in today's spelling (ParseReason, through UnmarshalText), as old
// outcomes are, so nothing else meets them.
type Reason string

// ReasonInternal is the Reason of a request the bot itself failed.
const ReasonInternal = Reason(OutcomeInternalError)

// reasonOf is outcome o with detail, if any.
func reasonOf(o Outcome, detail string) Reason {
	if detail == "" {
		return Reason(o)
	}
	return Reason(string(o) + ":" + detail)
}

// Outcome is the outcome r records (r without its detail).
func (r Reason) Outcome() Outcome {
	o, _, _ := strings.Cut(string(r), ":")
	return Outcome(o)
}

// detail is what r records beyond its outcome ("" for none).
func (r Reason) detail() string {
	_, d, _ := strings.Cut(string(r), ":")
	return d
}

// wawpReasons names each kind of failed Wawp call in a Reason's detail.
var wawpReasons = []struct {
	kind error
	name string
}{
	{ErrBadRequest, "bad_request"}, {ErrUnauthorized, "unauthorized"}, {ErrNoInstance, "no_instance"},
	{ErrNotReady, "not_ready"}, {ErrRateLimited, "rate_limited"}, {ErrServer, "server"},
	{ErrUpstream, "upstream"}, {ErrBadResponse, "bad_response"}, {ErrTimeout, "timeout"},
	{ErrUnreachable, "unreachable"}, {ErrForbidden, "forbidden"}, {ErrLockedOut, "locked_out"},
}

// DMError says the DM a hand-off's code was to go to could not be posted:
// Code is Slack's error (messages_tab_disabled, …), or how the call failed.
// The request then ends before request-code, so it never counts.
type DMError struct {
	Code string
	// Refused, when set, says the recipient may not get the code at all (a
	// renewal's recipient check: OutcomeRecipientBot, …): it is the
	// outcome and Reason recorded instead of dm_refused, as a first
	// request refused for it audits.
	Refused Outcome
}

func (e *DMError) Error() string { return "the recipient's DM could not be posted: " + e.Code }

// ReasonDM is the Slack error a failed pairing's Reason names when its
// hand-off DM could not be posted ("dm_refused:messages_tab_disabled"; ""
// and false for any other reason).
func ReasonDM(r Reason) (string, bool) {
	if r.Outcome() != OutcomeDMRefused {
		return "", false
	}
	return r.detail(), true
}

// failureReason is the Reason of a request that failed with cause:
// dm_refused and Slack's error for a hand-off's DM that could not be
// posted ("dm_refused:messages_tab_disabled"), wawp_error and the kind of
// call failure ("wawp_error:timeout"), else ReasonInternal.
func failureReason(cause error) Reason {
	if derr, ok := errors.AsType[*DMError](cause); ok {
		if derr.Refused != "" {
			return Reason(derr.Refused)
		}
		return reasonOf(OutcomeDMRefused, derr.Code)
	}
	for _, r := range wawpReasons {
		if errors.Is(cause, r.kind) {
			return reasonOf(OutcomeWawpError, r.name)
		}
	}
	return ReasonInternal
}

// settledFailure is how a request that got no code (or QR link) because
// of cause is settled at now: warming up (a 422 or a STARTING session:
// try again after warmup, with cause made that StatusError), refused (a
// session status that cannot pair, serr says which), else failed with
// failureReason. Start and StartQR settle their failures alike.
func settledFailure(cause error, now time.Time, warmup time.Duration) (state State, reason Reason, serr *StatusError, settled error) {
	state, reason = StateFailed, failureReason(cause)
	switch {
	case errors.Is(cause, ErrNotReady) || errors.As(cause, &serr) && serr.Status == StatusStarting:
		serr = &StatusError{Status: StatusStarting, RetryAt: now.Add(warmup)}
		return StateWarmingUp, "", serr, serr
	case serr != nil:
		return StateRefused, statusReason(serr.Status), serr, cause
	}
	return state, reason, nil, cause
}

// statusReason is the Reason of a request session status st refused: its
// outcome, and for a status Wawp does not document the status itself,
// bounded ("status_unknown:OPENING").
func statusReason(st Status) Reason {
	o := StatusOutcome(st)
	if o != OutcomeStatusUnknown {
		return Reason(o)
	}
	return reasonOf(o, string(boundedStatus(st)))
}

// ReasonError is the Wawp error a failed pairing's Reason names (one of the
// Err* sentinels, for errors.Is), or nil when it names none.
func ReasonError(r Reason) error {
	if r.Outcome() != OutcomeWawpError {
		return nil
	}
	for _, w := range wawpReasons {
		if w.name == r.detail() {
			return w.kind
		}
	}
	return nil
}

// ReasonStatus is the session status a refused pairing's Reason names.
func ReasonStatus(r Reason) Status {
	switch o := r.Outcome(); {
	case o == OutcomeStatusUnknown:
		return Status(r.detail())
	case o.IsStatus():
		return Status(strings.ToUpper(strings.TrimPrefix(string(o), "status_")))
	}
	return ""
}

// ParseReason reads a Reason as any version wrote it (see Reason).
func ParseReason(s string) Reason {
	if kind, ok := strings.CutPrefix(s, "wawp:"); ok {
		return reasonOf(OutcomeWawpError, kind)
	}
	if st, ok := strings.CutPrefix(s, "status:"); ok && st != "" {
		return statusReason(Status(st))
	}
	if s == "internal" {
		return ReasonInternal
	}
	if strings.HasPrefix(s, "limit:") {
		return Reason(ParseOutcome(s))
	}
	return Reason(s)
}

// UnmarshalText reads a stored Reason through ParseReason, so pairings
// written by older versions read in today's spelling.
func (r *Reason) UnmarshalText(b []byte) error {
	*r = ParseReason(string(b))
	return nil
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
