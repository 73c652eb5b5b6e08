package pairing

import (
	"errors"
	"strings"
)

// Outcome is how a command or a code request ended. It is the one spelling
// shared by the audit log (Event.Outcome), the metrics
// (linkbot_commands_total{outcome}) and the Slack edge's choice of view:
// OutcomeOf classifies a result once, and nobody parses the string back.
type Outcome string

// Outcomes of a code request (Start, Renew): OutcomeOf names them.
const (
	OutcomeCodeIssued    Outcome = "code_issued"
	OutcomeLimitPhone    Outcome = "limit_phone"    // refused by the phone's window; Wawp not called
	OutcomeLimitUser     Outcome = "limit_user"     // refused by the user's window
	OutcomeLimitInstance Outcome = "limit_instance" // refused: another live code holds the instance
	OutcomeLimitQR       Outcome = "limit_qr"       // refused by the instance's QR link window; Wawp not called
	// The session was not waiting for a phone: status_ and its status in
	// lower case for a status Wawp documents, status_unknown for any other
	// (see StatusOutcome). A warm-up (STARTING, or Wawp's 422) is
	// status_starting.
	OutcomeStatusStarting Outcome = "status_starting"
	OutcomeStatusWorking  Outcome = "status_working"
	OutcomeStatusStopped  Outcome = "status_stopped"
	OutcomeStatusFailed   Outcome = "status_failed"
	OutcomeStatusUnknown  Outcome = "status_unknown"
	OutcomeWawpError      Outcome = "wawp_error"  // a Wawp call failed
	OutcomeInterrupted    Outcome = "interrupted" // ended before its answer was stored
	OutcomeTooSoon        Outcome = "too_soon"    // "Try again" before the warm-up wait was over
	OutcomeEnded          Outcome = "ended"       // a click on a pairing that is over, gone, or someone else's
	OutcomeReplaced       Outcome = "replaced"    // New code or Try again from a message another pairing took over (a double click)
	OutcomeAccessDenied   Outcome = "access_denied"
	OutcomeInternalError  Outcome = "internal_error" // the bot itself failed
	// OutcomeDMRefused: Slack refused the DM a hand-off's code was to go
	// to (the app's Messages tab is off, …), so no code was requested.
	OutcomeDMRefused Outcome = "dm_refused"
	// OutcomeDuplicate: Slack delivered a command or click again (a
	// redelivered or doubled envelope) and it was dropped (ErrDuplicate).
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeUnavailable: the database could not be reached, and nothing
	// was done (ErrUnavailable); the person is asked to try again.
	OutcomeUnavailable Outcome = "db_unavailable"
	// OutcomeCodeUnrecorded: Wawp issued a code but the database could
	// not record it within the request's lease (ErrCodeUnrecorded): the
	// code is not shown and the request counts.
	OutcomeCodeUnrecorded Outcome = "code_unrecorded"
)

// Outcomes of a hand-off (/link <instance> <phone> @agent) refused because
// of whom it named: a bot, a deactivated member, a member of another
// organisation, the requester themself, or someone Slack could not tell
// about.
const (
	OutcomeRecipientBot         Outcome = "recipient_bot"
	OutcomeRecipientDeactivated Outcome = "recipient_deactivated"
	OutcomeRecipientForeign     Outcome = "recipient_foreign"
	OutcomeRecipientSelf        Outcome = "recipient_self"
	OutcomeRecipientUnknown     Outcome = "recipient_unknown"
)

// Outcomes of commands answered in the ack, before any request.
const (
	OutcomeForeignTeam     Outcome = "foreign_team" // from another workspace (Slack Connect)
	OutcomeUsage           Outcome = "usage"
	OutcomeHelp            Outcome = "help"
	OutcomeForm            Outcome = "form" // /link without a phone: the form was opened
	OutcomeHistory         Outcome = "history"
	OutcomeUnknownInstance Outcome = "unknown_instance"
	OutcomeBadPhone        Outcome = "bad_phone"
)

// Outcomes of a live pairing that failed (audited with EventError).
const (
	OutcomeInstanceFailed Outcome = "instance_failed"
	OutcomeInstanceGone   Outcome = "instance_gone"
)

// Outcomes of the QR fallback (issue 10; see OutcomeOfQR). A QR request
// refused by the instance's QR window is limit_qr (OutcomeLimitQR); the
// rest (limits, statuses, Wawp errors) are as for a code.
const (
	OutcomeQRIssued      Outcome = "qr_issued"      // Wawp made a QR link, shown to its requester
	OutcomeQRUnavailable Outcome = "qr_unavailable" // the account's plan has no QR links (ErrQRUnavailable)
	// OutcomeQRRevokeFailed: the link of an ended QR pairing could not be
	// revoked before the retries ran out (audited with EventError).
	OutcomeQRRevokeFailed Outcome = "qr_revoke_failed"
)

// OutcomeOfQR classifies the result of StartQR (and of a Renew of a QR
// pairing): qr_issued when it succeeded, else as OutcomeOf.
func OutcomeOfQR(err error) Outcome {
	if err == nil {
		return OutcomeQRIssued
	}
	return OutcomeOf(err)
}

// OutcomeOf classifies the result of Start, Renew, Refresh or Cancel (for
// StartQR, see OutcomeOfQR).
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OutcomeCodeIssued
	}
	if lerr, ok := errors.AsType[*LimitError](err); ok {
		return lerr.Limit.Outcome()
	}
	switch {
	case errors.Is(err, ErrDuplicate):
		return OutcomeDuplicate
	case errors.Is(err, ErrCodeUnrecorded):
		return OutcomeCodeUnrecorded
	case errors.Is(err, ErrUnavailable):
		return OutcomeUnavailable
	}
	if serr, ok := errors.AsType[*StatusError](err); ok {
		return StatusOutcome(serr.Status)
	}
	if _, ok := errors.AsType[*TooSoonError](err); ok {
		return OutcomeTooSoon
	}
	if errors.Is(err, ErrQRUnavailable) {
		return OutcomeQRUnavailable
	}
	if _, ok := errors.AsType[*APIError](err); ok {
		return OutcomeWawpError
	}
	if derr, ok := errors.AsType[*DMError](err); ok {
		if derr.Refused != "" {
			return derr.Refused
		}
		return OutcomeDMRefused
	}
	switch {
	case errors.Is(err, ErrInterrupted):
		return OutcomeInterrupted
	case errors.Is(err, ErrNotAllowed):
		return OutcomeAccessDenied
	case errors.Is(err, ErrEnded), errors.Is(err, ErrNotFound), errors.Is(err, ErrNotYours):
		return OutcomeEnded
	case errors.Is(err, ErrReplaced):
		return OutcomeReplaced
	}
	return OutcomeInternalError
}

// StatusOutcome is the outcome of a request the session's status turned
// away: status_ and the status in lower case for the statuses Wawp
// documents, and status_unknown for any other. The outcome is a metrics
// label and is audited, and a status is whatever string Wawp's answer
// holds: each one of its own would be a new time series, of any length.
// The status itself is kept only in the pairing's Reason and the log,
// bounded (see boundedStatus).
func StatusOutcome(st Status) Outcome {
	switch st {
	case StatusStarting:
		return OutcomeStatusStarting
	case StatusWorking:
		return OutcomeStatusWorking
	case StatusStopped:
		return OutcomeStatusStopped
	case StatusFailed:
		return OutcomeStatusFailed
	}
	return OutcomeStatusUnknown
}

// IsStatus reports whether o is a session status's refusal.
func (o Outcome) IsStatus() bool { return strings.HasPrefix(string(o), "status_") }

// Outcome is the outcome of a request limit l refused.
func (l Limit) Outcome() Outcome {
	switch l {
	case LimitPhone:
		return OutcomeLimitPhone
	case LimitUser:
		return OutcomeLimitUser
	case LimitInstance:
		return OutcomeLimitInstance
	case LimitQR:
		return OutcomeLimitQR
	}
	return ""
}

// Limit is the limit whose refusal o is (LimitNone for any other outcome).
func (o Outcome) Limit() Limit {
	for _, l := range []Limit{LimitPhone, LimitUser, LimitInstance, LimitQR} {
		if l.Outcome() == o {
			return l
		}
	}
	return LimitNone
}

// linkedOther is the outcome of a pairing that linked another phone: the
// one outcome with a detail, the number that came up (masked), since the
// audit log's reader needs it and the log keeps no digits.
func linkedOther(masked string) Outcome { return Outcome("linked " + masked) }

// ParseOutcome reads an outcome as any version wrote it. Versions before
// the outcome vocabulary was one spelled some outcomes differently in the
// audit log and in refused pairings' Reason (see ParseReason): "limit:phone" (limit_phone),
// "access" (access_denied), "warming_up" (status_starting),
// "status:WORKING" (status_working). They are normalised on read, so
// history and `linkbot audit` show one spelling whatever an event's age,
// and the old spellings are recognised nowhere else. A status Wawp does
// not document reads as status_unknown, however it was written
// ("status:OPENING", or "status_opening" as one version wrote it). "error",
// which older versions wrote for a failed Wawp call and for the bot's own
// failure alike, cannot be told apart and stays as it is.
func ParseOutcome(s string) Outcome {
	if l, ok := strings.CutPrefix(s, "limit:"); ok {
		if o := Limit(l).Outcome(); o != "" {
			return o
		}
	}
	if st, ok := strings.CutPrefix(s, "status:"); ok && st != "" {
		return StatusOutcome(Status(st))
	}
	if st, ok := strings.CutPrefix(s, "status_"); ok && st != "" {
		return StatusOutcome(Status(strings.ToUpper(st)))
	}
	switch s {
	case "access":
		return OutcomeAccessDenied
	case "warming_up":
		return OutcomeStatusStarting
	}
	return Outcome(s)
}

// UnmarshalText reads a stored outcome through ParseOutcome, so events and
// pairings written by older versions read in today's spelling.
func (o *Outcome) UnmarshalText(b []byte) error {
	*o = ParseOutcome(string(b))
	return nil
}
