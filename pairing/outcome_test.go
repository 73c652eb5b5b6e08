package pairing

import (
	"encoding/json"
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
		{&StatusError{Status: "OPENING"}, "status_opening"},
		{&APIError{Kind: ErrTimeout}, "wawp_error"},
		{&TooSoonError{}, "too_soon"},
		{ErrInterrupted, "interrupted"},
		{ErrNotAllowed, "access_denied"},
		{ErrEnded, "ended"},
		{fmt.Errorf("pairing %q: %w", "x", ErrNotFound), "ended"},
		{ErrNotYours, "ended"},
		{ErrReplaced, "replaced"},
		{fmt.Errorf("hand-off: %w", &DMError{Code: "messages_tab_disabled"}), "dm_refused"},
		{fmt.Errorf("disk full"), "internal_error"},
	}
	for _, tt := range tests {
		if got := OutcomeOf(tt.err); got != tt.want {
			t.Errorf("OutcomeOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestOutcomeLimit(t *testing.T) {
	for _, l := range []Limit{LimitPhone, LimitUser, LimitInstance} {
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
		"status:OPENING": "status_opening",
		// Today's spellings, and what cannot be told apart, stay as they are.
		"limit_phone":             OutcomeLimitPhone,
		"access_denied":           OutcomeAccessDenied,
		"error":                   "error",
		"foreign_team":            OutcomeForeignTeam,
		"instance_gone":           OutcomeInstanceGone,
		"linked +20 100 ••• 8888": "linked +20 100 ••• 8888",
		"limit:sideways":          "limit:sideways",
		"":                        "",
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

// TestRefusedByReadsEitherSpelling: a refused pairing stored by an older
// version (Reason limit:phone) is still drawn as the limit's refusal.
func TestRefusedByReadsEitherSpelling(t *testing.T) {
	for reason, want := range map[string]Limit{"limit:phone": LimitPhone, "limit_user": LimitUser, "limit_instance": LimitInstance, "status:WORKING": LimitNone} {
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
