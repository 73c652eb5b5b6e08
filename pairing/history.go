package pairing

import (
	"context"
	"slices"
	"time"
)

// Refusal is a command turned away before any limit was asked: by the
// access rules, or because it came from another workspace.
type Refusal struct {
	Time    time.Time
	User    string
	Team    string
	Channel string
	// Instance is the instance asked for; zero when the command named none
	// the bot knows.
	Instance Instance
	// Phone is the number as typed. It is recorded masked (and keyed, so
	// the phone's history finds it) when it reads as a number in the
	// instance's region; otherwise it is left out.
	Phone   string
	Outcome Outcome // OutcomeAccessDenied, OutcomeForeignTeam, or a hand-off's OutcomeRecipient…
	// Recipient is who a refused hand-off named.
	Recipient string
}

// AuditRefusal appends refusal r to the audit log.
func (s *Service) AuditRefusal(ctx context.Context, r Refusal) error {
	e := Event{
		Time: r.Time, Kind: EventRefused, User: r.User, Team: r.Team, Channel: r.Channel,
		Instance: r.Instance.Name, InstanceID: r.Instance.ID, Outcome: r.Outcome, Recipient: r.Recipient,
	}
	if p, err := NormalizePhone(r.Phone, r.Instance.Region); err == nil {
		e.Phone, e.Digits = p.Masked(), p.Digits
	}
	return s.db.AppendAudit(ctx, e)
}

// HistoryQuery asks for the history of a phone or of an instance.
type HistoryQuery struct {
	Phone     string   // digits, country code first
	Instances []string // an instance's alias and ID (events record either)
	// Allowed, if set, says which instances' events the asker may see;
	// the others are left out.
	Allowed func(instanceID string) bool
	// Limit is how many events to return at most: the newest.
	Limit int
}

// History returns the newest events q selects, newest first. The audit
// log is indexed by phone and instance, so this reads what it returns,
// whatever the size of the log. An event is judged by Allowed through the
// instance ID it records or, written before IDs were recorded, through the
// instance its alias names today (the default rules, "", when it names
// none).
func (s *Service) History(ctx context.Context, q HistoryQuery) ([]Event, error) {
	aq := AuditQuery{Phone: q.Phone, Instances: q.Instances, Limit: q.Limit}
	if q.Allowed != nil {
		aq.Keep = func(e Event) bool { return q.Allowed(s.eventInstanceID(e)) }
	}
	events, _, err := s.db.Audit(ctx, aq)
	if err != nil {
		return nil, err
	}
	slices.Reverse(events)
	return events, nil
}

// eventInstanceID is the instance an audit event belongs to, for access
// checks: the ID it records, or the ID its alias names today, or "" when
// neither is known.
func (s *Service) eventInstanceID(e Event) string {
	if e.InstanceID != "" {
		return e.InstanceID
	}
	if in, err := s.cfg.Directory.Resolve(e.Instance); err == nil {
		return in.ID
	}
	return ""
}
