package pairing

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestOutcomeOf: every result a request or a click can end in has one
// outcome, the label the metrics count it under.
func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		err  error
		want Outcome
	}{
		{nil, OutcomeCodeIssued},
		{&LimitError{Limit: LimitPhone}, "limit_phone"},
		{&LimitError{Limit: LimitUser}, "limit_user"},
		{fmt.Errorf("wrapped: %w", &LimitError{Limit: LimitInstance}), "limit_instance"},
		{&StatusError{Status: StatusStarting}, "status_starting"},
		{&StatusError{Status: StatusWorking}, "status_working"},
		{&StatusError{Status: StatusStopped}, "status_stopped"},
		{&StatusError{Status: StatusFailed}, "status_failed"},
		// Any other status is one label: a label of its own each would be
		// a time series per string Wawp's answer ever held.
		{&StatusError{Status: "OPENING"}, "status_unknown"},
		{&StatusError{Status: "QR_TIMEOUT_9F3A"}, "status_unknown"},
		{&StatusError{Status: Status(strings.Repeat("X", 300))}, "status_unknown"},
		{&StatusError{Status: ""}, "status_unknown"},
		{&APIError{Kind: ErrTimeout}, "wawp_error"},
		{&TooSoonError{}, "too_soon"},
		{ErrInterrupted, "interrupted"},
		{ErrNotAllowed, "access_denied"},
		{ErrEnded, "ended"},
		{fmt.Errorf("pairing %q: %w", "x", ErrNotFound), "ended"},
		{ErrNotYours, "ended"},
		{ErrReplaced, "replaced"},
		{fmt.Errorf("%w: %w", ErrQRUnavailable, &APIError{Kind: ErrForbidden}), "qr_unavailable"},
		{&LimitError{Limit: LimitQR}, "limit_qr"},
		{fmt.Errorf("hand-off: %w", &DMError{Code: "messages_tab_disabled"}), "dm_refused"},
		{ErrDuplicate, "duplicate"},
		{fmt.Errorf("reserve: %w: dial tcp: connection refused", ErrUnavailable), "db_unavailable"},
		{fmt.Errorf("%w: settle: %w: connection reset", ErrCodeUnrecorded, ErrUnavailable), "code_unrecorded"},
		// A pairing the database could not read is not "ended".
		{fmt.Errorf("pairing %q: %w: %w", "x", ErrUnavailable, ErrNotFound), "db_unavailable"},
		{fmt.Errorf("disk full"), "internal_error"},
	}
	for _, tt := range tests {
		if got := OutcomeOf(tt.err); got != tt.want {
			t.Errorf("OutcomeOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestOutcomeLimit(t *testing.T) {
	for _, l := range []Limit{LimitPhone, LimitUser, LimitInstance, LimitQR} {
		if got := l.Outcome().Limit(); got != l {
			t.Errorf("%q.Outcome().Limit() = %q", l, got)
		}
	}
	for _, o := range []Outcome{OutcomeCodeIssued, OutcomeAccessDenied, OutcomeStatusWorking, "limit_", "limit:phone", ""} {
		if got := o.Limit(); got != LimitNone {
			t.Errorf("%q.Limit() = %q, want none", o, got)
		}
	}
}

// TestParseOutcome: what older versions wrote reads in today's spelling.
func TestParseOutcome(t *testing.T) {
	tests := map[string]Outcome{
		"limit:phone":    OutcomeLimitPhone,
		"limit:user":     OutcomeLimitUser,
		"limit:instance": OutcomeLimitInstance,
		"access":         OutcomeAccessDenied,
		"warming_up":     OutcomeStatusStarting,
		"status:WORKING": OutcomeStatusWorking,
		"status:OPENING": OutcomeStatusUnknown,
		// as this version's predecessor wrote an undocumented status
		"status_opening":         OutcomeStatusUnknown,
		"status_qr_timeout_9f3a": OutcomeStatusUnknown,
		"status_unknown":         OutcomeStatusUnknown,
		"status_working":         OutcomeStatusWorking,
		// Today's spellings, and what cannot be told apart, stay as they are.
		"limit_phone":           OutcomeLimitPhone,
		"access_denied":         OutcomeAccessDenied,
		"error":                 "error",
		"foreign_team":          OutcomeForeignTeam,
		"instance_gone":         OutcomeInstanceGone,
		"linked +20 10 ••• 888": "linked +20 10 ••• 888",
		"limit:sideways":        "limit:sideways",
		"":                      "",
	}
	for in, want := range tests {
		if got := ParseOutcome(in); got != want {
			t.Errorf("ParseOutcome(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOldEventsReadInTodaysSpelling: an event as an older version stored
// it decodes with today's outcome; encoding writes it as it is.
func TestOldEventsReadInTodaysSpelling(t *testing.T) {
	var e Event
	if err := json.Unmarshal([]byte(`{"kind":"refused","user":"U1","outcome":"limit:phone"}`), &e); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Event{Kind: EventRefused, User: "U1", Outcome: OutcomeLimitPhone}, e); diff != "" {
		t.Errorf("decoded event (-want +got):\n%s", diff)
	}
	raw, _ := json.Marshal(Event{Kind: EventRefused, Outcome: OutcomeAccessDenied})
	if want := `"outcome":"access_denied"`; !strings.Contains(string(raw), want) {
		t.Errorf("encoded %s, want it to hold %s", raw, want)
	}
}

// TestBoundedStatus: a session status is kept (Reason, the log, the
// refusal's message) as letters, digits and _-. only, at most 40 of them.
func TestBoundedStatus(t *testing.T) {
	for in, want := range map[Status]Status{
		StatusWorking:                    StatusWorking,
		"QR_TIMEOUT_9F3A":                "QR_TIMEOUT_9F3A",
		"v1.2-beta":                      "v1.2-beta",
		"":                               "",
		"bad status\n<!here> `x`":        "bad?status???here???x?",
		"ÉTAT":                           "?TAT",
		Status(strings.Repeat("X", 300)): Status(strings.Repeat("X", 40) + "…"),
	} {
		if got := boundedStatus(in); got != want {
			t.Errorf("boundedStatus(%.50q) = %q, want %q", in, got, want)
		}
	}
}

// TestRefusedByReadsEitherSpelling: a refused pairing stored by an older
// version (Reason limit:phone) is still drawn as the limit's refusal.
func TestRefusedByReadsEitherSpelling(t *testing.T) {
	for reason, want := range map[Reason]Limit{"limit:phone": LimitPhone, "limit_user": LimitUser, "limit_instance": LimitInstance, "status:WORKING": LimitNone} {
		if got := (Pairing{State: StateRefused, Reason: reason}).RefusedBy(); got != want {
			t.Errorf("RefusedBy with Reason %q = %q, want %q", reason, got, want)
		}
	}
	if got := (Pairing{State: StateFailed, Reason: "limit_phone"}).RefusedBy(); got != LimitNone {
		t.Errorf("a failed pairing is refused by %q", got)
	}
	d := Decision{Refused: LimitUser}
	if got := d.RefusedPairing(Pairing{}, time.Now()).RefusedBy(); got != LimitUser {
		t.Errorf("a refusal as stored today reads as refused by %q", got)
	}
}

// TestReason: a pairing's Reason is its outcome in the one vocabulary,
// with the detail its view needs; what older versions stored reads in
// today's spelling, and the view gets the same Wawp error or status from
// either.
func TestReason(t *testing.T) {
	tests := []struct {
		stored  string // as some version wrote it
		want    Reason
		outcome Outcome
		err     error  // ReasonError
		status  Status // ReasonStatus
	}{
		{"wawp:timeout", "wawp_error:timeout", OutcomeWawpError, ErrTimeout, ""},
		{"wawp_error:timeout", "wawp_error:timeout", OutcomeWawpError, ErrTimeout, ""},
		{"wawp:unauthorized", "wawp_error:unauthorized", OutcomeWawpError, ErrUnauthorized, ""},
		{"internal", ReasonInternal, OutcomeInternalError, nil, ""},
		{"internal_error", ReasonInternal, OutcomeInternalError, nil, ""},
		{"status:WORKING", "status_working", OutcomeStatusWorking, nil, StatusWorking},
		{"status_working", "status_working", OutcomeStatusWorking, nil, StatusWorking},
		{"status:STOPPED", "status_stopped", OutcomeStatusStopped, nil, StatusStopped},
		{"status:OPENING", "status_unknown:OPENING", OutcomeStatusUnknown, nil, "OPENING"},
		{"status_unknown:OPENING", "status_unknown:OPENING", OutcomeStatusUnknown, nil, "OPENING"},
		{"status:" + strings.Repeat("X", 100), Reason("status_unknown:" + strings.Repeat("X", 40) + "…"), OutcomeStatusUnknown, nil, Status(strings.Repeat("X", 40) + "…")},
		{"limit:phone", "limit_phone", OutcomeLimitPhone, nil, ""},
		{"limit_phone", "limit_phone", OutcomeLimitPhone, nil, ""},
		{"instance_gone", "instance_gone", OutcomeInstanceGone, nil, ""},
		{"linked +20 10 ••• 888", "linked +20 10 ••• 888", "linked +20 10 ••• 888", nil, ""},
		{"", "", "", nil, ""},
	}
	for _, tt := range tests {
		var p Pairing
		raw, _ := json.Marshal(map[string]string{"reason": tt.stored})
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		if p.Reason != tt.want {
			t.Errorf("stored %.30q reads as %q, want %q", tt.stored, p.Reason, tt.want)
		}
		if o := p.Reason.Outcome(); o != tt.outcome {
			t.Errorf("%q.Outcome() = %q, want %q", p.Reason, o, tt.outcome)
		}
		if err := ReasonError(p.Reason); err != tt.err {
			t.Errorf("ReasonError(%q) = %v, want %v", p.Reason, err, tt.err)
		}
		if st := ReasonStatus(p.Reason); st != tt.status {
			t.Errorf("ReasonStatus(%q) = %q, want %q", p.Reason, st, tt.status)
		}
	}
	// What the service stores today is read back as it is.
	for _, r := range []Reason{failureReason(&APIError{Kind: ErrServer}), failureReason(errors.New("disk full")), statusReason(StatusFailed), statusReason("QR?")} {
		if got := ParseReason(string(r)); got != r {
			t.Errorf("ParseReason(%q) = %q", r, got)
		}
	}
}
