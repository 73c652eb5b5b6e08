package pairing

import (
	"errors"
	"log/slog"
	"time"
)

// The model: a pairing and its states, the limits, the audit events, and
// what the service asks of its storage (reservations, settlements,
// interruptions, audit queries, pruning). Storage implementations (package
// store for bbolt) import these; this package imports none of them.

// State is where a pairing stands. A pairing is live while it is
// Requesting or Live and has not passed ExpiresAt; every other state is
// final. A Requesting pairing's ExpiresAt is its lease (the Hold): past it,
// the request is interrupted.
type State string

// Pairing states.
const (
	StateRequesting State = "requesting"  // a code request is on its way to Wawp
	StateLive       State = "live"        // a code is shown and may be entered
	StateWarmingUp  State = "warming_up"  // Wawp's engine was starting; retry allowed at RetryAt
	StateLinked     State = "linked"      // WhatsApp reported the session working with the right phone
	StateWrongPhone State = "wrong_phone" // the session came up with another number
	StateExpired    State = "expired"     // the code was not entered in time
	StateCancelled  State = "cancelled"   // the requester cancelled
	StateSuperseded State = "superseded"  // a newer code for the same request replaced it
	StateFailed     State = "failed"      // Wawp or the instance failed
	StateRefused    State = "refused"     // the request never reached Wawp's request-code
	// StateInterrupted: the request never settled (the process stopped
	// mid-request) and its lease ran out. It counts: request-code may have
	// reached WhatsApp.
	StateInterrupted State = "interrupted"
)

// Pairing is one request for a pairing code and everything needed to keep
// its Slack messages current: its surfaces. Slack forgets ephemeral
// messages on reload, so this record, keyed by ID, is the only state there
// is; the surfaces are stored in it (so a restart resumes their edits).
//
// The surfaces, and what Slack lets the bot do with each (issue 9):
//   - The ephemeral surface, the requester's, in the channel where /link was
//     typed. ResponseURL is the slash command's response_url: each post to
//     it adds a new ephemeral message, and Slack documents no way to
//     replace an earlier one through it (slackapi/bolt-python issue 1268,
//     bolt-js issue 2287), so it carries the code message and then the
//     final state only. ClickURL is the response_url of the latest click
//     on one of the pairing's ephemeral messages: it replaces the message
//     that held the button, so once set it is the surface's editor
//     (countdown steps and the final state in place). LastView is the view
//     the surface shows.
//   - DM, the code in the app's DM with Recipient (delivery: dm), kept live
//     with chat.update by channel and ts.
//   - Card, a status card in the channel (announce), kept current the same
//     way.
//
// A QR pairing (Method MethodQR, issue 10; see qr.go) has the same
// surfaces: its Link is shown where a code would be (the ephemeral
// message, or the DM), never on the card, which shows only its state.
//
// Records written before surfaces existed have only ResponseURL and
// LastView; ResponseURL is then read as a command's (posts add messages),
// the safe reading: such a pairing still shows its final state.
type Pairing struct {
	ID           string `json:"id"`
	Instance     string `json:"instance"`      // 12-character Wawp instance ID
	InstanceName string `json:"instance_name"` // alias as configured, or the ID
	Phone        string `json:"phone"`         // digits, country code first
	RequestedBy  string `json:"requested_by"`
	Team         string `json:"team"`
	Channel      string `json:"channel"`
	// ResponseURL is the slash command's response_url (empty for a
	// renewal, which a click asked for): each post adds a message.
	ResponseURL string    `json:"response_url"`
	URLIssued   time.Time `json:"url_issued"`
	// ClickURL is the response_url of the latest click on the pairing's
	// ephemeral message; it replaces that message in place. ClickTS is
	// that message's ts (from the click), which tells a click on it from
	// one on an older copy, such as the code message posted through the
	// command's response_url before the final state came below it.
	ClickURL    string    `json:"click_url,omitempty"`
	ClickIssued time.Time `json:"click_issued,omitempty"`
	ClickTS     string    `json:"click_ts,omitempty"`
	// Delivery is where the code goes: the requester's ephemeral messages
	// (the default) or their DM with the app.
	Delivery Delivery `json:"delivery,omitempty"`
	// DM is the code's message in the app's DM with its recipient, for
	// delivery dm (zero otherwise).
	DM Surface `json:"dm,omitzero"`
	// Card is the pairing's status card in the channel (announce; zero
	// otherwise): Channel is set when the card is wanted, TS once posted.
	Card Surface `json:"card,omitzero"`
	// Modal is the live code window (issue 10): a modal its requester
	// opened, kept current with views.update (zero when none was opened).
	Modal ModalSurface `json:"modal,omitzero"`

	Code        string    `json:"code,omitempty"` // wiped when the pairing ends
	RequestedAt time.Time `json:"requested_at"`
	IssuedAt    time.Time `json:"issued_at,omitempty"` // when the code arrived
	ExpiresAt   time.Time `json:"expires_at"`
	RetryAt     time.Time `json:"retry_at,omitempty"`
	State       State     `json:"state"`
	Attempt     int       `json:"attempt"` // n-th code for this phone in the window
	LinkedPhone string    `json:"linked_phone,omitempty"`
	EndedAt     time.Time `json:"ended_at,omitempty"`
	Renews      string    `json:"renews,omitempty"`    // the pairing this one asked to replace ("New code")
	Message     string    `json:"message,omitempty"`   // the Slack message it is shown in; empty: its own (see MessageID)
	HeldBy      string    `json:"held_by,omitempty"`   // for a request refused by the instance limit: the pairing holding it
	Reason      Reason    `json:"reason,omitempty"`    // why it ended as it did (a final state's outcome; see Reason)
	LastView    string    `json:"last_view,omitempty"` // key of the view the ephemeral surface shows

	// The QR fallback (issue 10; see qr.go). Method is MethodQR for a
	// hosted QR page instead of a code; Phone is then the number expected
	// to scan it, or empty for any.
	Method Method `json:"method,omitempty"`
	// Link is a QR pairing's hosted QR page: a credential like Code, wiped
	// with it when the pairing ends.
	Link string `json:"link,omitempty"`
	// RevokeDue says a QR link may exist at Wawp that is not revoked yet
	// (from the request on, until a revocation succeeds or is not needed);
	// RevokeTries counts the revocations that failed, and the next is not
	// tried before RevokeAt. UnwatchDue: its surfaces are done with an
	// ended pairing, which stays watched only until its link is revoked.
	RevokeDue   bool      `json:"revoke_due,omitempty"`
	RevokeTries int       `json:"revoke_tries,omitempty"`
	RevokeAt    time.Time `json:"revoke_at,omitempty"`
	UnwatchDue  bool      `json:"unwatch_due,omitempty"`
	// ExpiredInARow is, for a code that expired, how many codes for its
	// phone on its instance expired in a row, this one included.
	ExpiredInARow int `json:"expired_in_a_row,omitempty"`
}

// Delivery is where a pairing's code is shown.
type Delivery string

// Deliveries (the config file's delivery).
const (
	// DeliveryEphemeral shows the code in the requester's ephemeral
	// messages in the channel (the default; also "").
	DeliveryEphemeral Delivery = "ephemeral"
	// DeliveryDM shows it in the requester's DM with the app, kept live
	// with chat.update; the channel gets one ephemeral line.
	DeliveryDM Delivery = "dm"
)

// Surface is a non-ephemeral Slack message a pairing is shown in (its DM,
// its status card): the bot edits it with chat.update by Channel and TS.
type Surface struct {
	// Channel is the conversation: the D… ID chat.postMessage returned for
	// a DM, a C… ID for a card. Empty until posted.
	Channel string `json:"channel,omitempty"`
	TS      string `json:"ts,omitempty"` // the message's ts; empty until posted
	// LastView is the key of the view the message shows.
	LastView string `json:"last_view,omitempty"`
	// Recipient is who a DM is for: the requester (delivery dm), or the
	// person they handed the code to (hand-off).
	Recipient string `json:"recipient,omitempty"`
	// Failed is Slack's error when the message could not be posted (e.g.
	// messages_tab_disabled); the pairing went on without it.
	Failed string `json:"failed,omitempty"`
}

// ModalSurface is a modal a pairing is shown in (the live code window):
// the bot updates it with views.update by ViewID, passing Hash so that an
// update racing another one fails (hash_conflict) instead of overwriting
// it (https://api.slack.com/methods/views.update).
type ModalSurface struct {
	ViewID string `json:"view_id,omitempty"`
	// Hash is the view's hash as of the bot's last update; empty when it
	// is not known (a response_action update answers no hash), and the
	// next update then goes without one.
	Hash string `json:"hash,omitempty"`
	// User is whose modal it is (the requester's, or a hand-off's
	// recipient's).
	User string `json:"user,omitempty"`
	// LastView is the key of the view the modal shows.
	LastView string `json:"last_view,omitempty"`
	// Closed says the user closed it (view_closed) or Slack no longer
	// knows it (not_found): nothing more is shown in it. Closing cancels
	// nothing.
	Closed bool `json:"closed,omitempty"`
}

// Open reports whether the modal exists and is still open.
func (m ModalSurface) Open() bool { return m.ViewID != "" && !m.Closed }

// Posted reports whether the surface's message exists (was posted and has
// not failed).
func (s Surface) Posted() bool { return s.TS != "" && s.Failed == "" }

// InDM reports whether p's code is shown in a DM: delivery dm (its DM has
// a recipient), and the DM did not fail (then the code is shown
// ephemerally instead).
func (p Pairing) InDM() bool { return p.DM.Recipient != "" && p.DM.Failed == "" }

// HandedTo is who the requester handed the code to (/link <instance>
// <phone> @agent): the recipient of its DM when that is someone else, ""
// when the requester keeps the code.
func (p Pairing) HandedTo() string {
	if p.DM.Recipient != p.RequestedBy {
		return p.DM.Recipient
	}
	return ""
}

// MayUse reports whether user may use p's buttons: its requester, who owns
// it, or the person it was handed to, who holds the phone (Refresh, Cancel,
// and New code once the code has expired: issue 9's hand-off).
func (p Pairing) MayUse(user string) bool {
	return user != "" && (user == p.RequestedBy || user == p.HandedTo())
}

// Announced reports whether p has a status card to keep current: announce
// was on for it, and the card was not refused (the bot not in the
// channel: the pairing then goes on without one).
func (p Pairing) Announced() bool { return p.Card.Channel != "" && p.Card.Failed == "" }

// Click is what a click on one of a pairing's ephemeral messages brings:
// a response_url that replaces the clicked message, when it was issued,
// and the clicked message's ts. The zero Click stands for a click on the
// pairing's DM, which is edited with chat.update and binds nothing.
type Click struct {
	ResponseURL string
	Issued      time.Time
	TS          string
}

// Editor is the response_url the pairing's ephemeral message is edited
// through, and whether it replaces that message (a click's) or only adds
// messages below it (the command's).
func (p Pairing) Editor() (url string, issued time.Time, replaces bool) {
	if p.ClickURL != "" {
		return p.ClickURL, p.ClickIssued, true
	}
	return p.ResponseURL, p.URLIssued, false
}

// View is the key of the view shown on surface (see ViewClaim): LastView
// for the ephemeral message, DM.LastView, Card.LastView; "" for none, and
// for a surface p does not have.
func (p Pairing) View(surface string) string {
	switch surface {
	case SurfaceEphemeral:
		return p.LastView
	case SurfaceDM:
		return p.DM.LastView
	case SurfaceCard:
		return p.Card.LastView
	case SurfaceModal:
		return p.Modal.LastView
	}
	return ""
}

// WithShown is p with surface as a claimed edit left it (see
// Storage.FinishView): shown.LastView is the view it shows; for the DM and
// the card, shown is the whole message as the post left it (Channel and TS
// of a message posted anew, Failed when Slack refused it), except its
// Recipient, which stays p's. For the ephemeral message only LastView
// counts, and so it is for the modal (its view ID and hash stay p's). A
// surface p does not have changes nothing.
func (p Pairing) WithShown(surface string, shown Surface) Pairing {
	switch surface {
	case SurfaceEphemeral:
		p.LastView = shown.LastView
	case SurfaceDM:
		shown.Recipient = p.DM.Recipient
		p.DM = shown
	case SurfaceCard:
		shown.Recipient = p.Card.Recipient
		p.Card = shown
	case SurfaceModal:
		p.Modal.LastView = shown.LastView
	}
	return p
}

// MessageID names the Slack message the pairing is shown in. A /link
// starts a message of its own; a renewal (New code, Try again) is shown in
// the message whose button asked for it, so it inherits that message.
func (p Pairing) MessageID() string {
	if p.Message != "" {
		return p.Message
	}
	return p.ID
}

// RefusedBy is the limit that refused the request (LimitNone if none did).
// Its Reason is the limit's outcome (limit_phone; older versions wrote
// limit:phone, which ParseReason reads too).
func (p Pairing) RefusedBy() Limit {
	if p.State != StateRefused {
		return LimitNone
	}
	return ParseReason(string(p.Reason)).Outcome().Limit()
}

// Final reports whether the pairing has reached a state it never leaves.
func (p Pairing) Final() bool {
	switch p.State {
	case StateRequesting, StateLive:
		return false
	}
	return true
}

// Live reports whether the pairing still holds its instance at now.
func (p Pairing) Live(now time.Time) bool {
	return (p.State == StateRequesting || p.State == StateLive) && now.Before(p.ExpiresAt)
}

// Window is a sliding-window limit: at most Max events per Period.
type Window struct {
	Max    int
	Period time.Duration
}

// Limit names which limit refused a reservation.
type Limit string

// The limits a reservation is checked against.
const (
	LimitNone     Limit = ""
	LimitPhone    Limit = "phone"
	LimitUser     Limit = "user"
	LimitInstance Limit = "instance"
	LimitQR       Limit = "qr" // QR links per instance (the QR fallback's PhoneLimit)
)

// ErrNotFound is returned when a pairing does not exist (or was pruned).
var ErrNotFound = errors.New("not found")

// ErrUnavailable means the storage could not be reached (a database server
// down, restarting or failing over, a connection lost mid-call). The call
// was not applied (a transaction cut off is rolled back; only a connection
// lost while its commit was on the way leaves the outcome unknown), and the
// same call may succeed in a moment. The Slack edge answers it with "try
// again" (issue 11); the bbolt file never returns it.
var ErrUnavailable = errors.New("storage unreachable, try again")

// ErrCodeUnrecorded means Wawp issued a code but the storage could not be
// reached to record it, for as long as the request's lease ran: the code
// is never shown, the request counts (WhatsApp counted it), and it ends
// as interrupted when its lease is over. It wraps the ErrUnavailable that
// caused it, but is answered on its own: something was done.
var ErrCodeUnrecorded = errors.New("a code was issued but could not be recorded")

// Reservation asks to record a code request and create its pairing, if the
// limits allow it.
type Reservation struct {
	Pairing Pairing // State, RequestedAt and ExpiresAt are set by Reserve
	// PhoneLimit is the window of Pairing.AttemptKey(): the phone's, or
	// for a QR link (Pairing.Method MethodQR) the instance's QR window,
	// whose refusal is LimitQR (Pairing.KeyLimit()).
	PhoneLimit Window
	UserLimit  Window
	// Replaces is the pairing a "New code" click renews: it may hold the
	// instance, since the requester is replacing their own code. It stays
	// live until the Settlement says whether WhatsApp saw the new request.
	Replaces string
	Now      time.Time
	// Hold is how long the instance stays locked while the request is in
	// flight, so a crash cannot lock an instance forever.
	Hold time.Duration
	// Granted and Refused are appended to the audit log in the same
	// transaction, whichever applies (on refusal, Outcome is the refusing
	// limit's: Limit.Outcome).
	Granted, Refused Event
	// Dedupe names the Slack command asking (see Dedupe); its key is
	// recorded in the same transaction as the decision, so a redelivery of
	// the command finds it however the first delivery was decided.
	Dedupe Dedupe
}

// Decision is the outcome of Reserve.
type Decision struct {
	Refused Limit
	// RetryAt is when the refused request would next be allowed.
	RetryAt time.Time
	// Count is the number of requests in the refusing window (phone or
	// user), or for a granted request the number for the phone including it.
	Count int
	// Holder is the live pairing that holds the instance (LimitInstance).
	Holder Pairing
	// Pairing is the stored pairing: Requesting when granted; Refused when
	// a limit refused a request of its own (not a renewal), kept so its
	// message can be drawn again if the post of the refusal is lost.
	Pairing Pairing
	// Duplicate says the reservation's dedupe key was already claimed: the
	// command was handled before (a redelivered envelope, a repeated
	// click), and nothing was checked or stored — no attempt, no pairing,
	// no audit event. Every other field is zero.
	Duplicate bool
}

// RefusedPairing is request p as stored when d refused it at now: final,
// saying which limit refused it, when it may be asked again and who holds
// the instance, so its message can be drawn again from the record alone.
func (d Decision) RefusedPairing(p Pairing, now time.Time) Pairing {
	p.State, p.Reason, p.RetryAt, p.Attempt = StateRefused, Reason(d.Refused.Outcome()), d.RetryAt, d.Count
	p.RequestedAt, p.ExpiresAt, p.EndedAt, p.HeldBy = now, now, now, d.Holder.ID
	p.RevokeDue = false // it never reached Wawp: no QR link was made
	return p
}

// Settlement is how a reserved request ended: the pairing change, whether
// the attempt keeps counting, and the audit event, written in one transaction.
type Settlement struct {
	ID     string
	Now    time.Time
	Change func(*Pairing) error
	// Counted=false removes the attempt from both windows: only when the
	// request certainly never reached WhatsApp (refused by Wawp before
	// pairing, or never sent). A counted attempt records the state the
	// pairing settled in.
	Counted bool
	Audit   Event // skipped when Kind is empty
	// Replaced is the pairing this request renewed ("New code"), if any.
	// When Counted, WhatsApp saw the new request, which voids the old code:
	// the old pairing ends as superseded. Otherwise its code still works,
	// so it takes its instance back, and its message goes on tracking it
	// (ReplacedURL, the click's fresh response_url, becomes its ClickURL
	// when set); the renewal's view is then only the click's answer, and
	// is not watched.
	Replaced    string
	ReplacedURL string
	// ReplacedAudit is the audit record of the Replaced pairing, Kind and
	// Time left empty: when Settle ends that pairing it appends the record
	// with the state it ended in (EventSuperseded, or EventExpired when its
	// code ran out before an uncounted renewal settled). Nothing is written
	// when its Pairing is empty.
	ReplacedAudit Event
}

// Interruption ends a request that never settled.
type Interruption struct {
	ID  string
	Now time.Time
	// Lapsed ends it only if its lease (the Hold given to Reserve) ran out
	// by Now: the process that asked Wawp is gone (a crash, a kill, a
	// shutdown that could not wait). Without it the request ends at once
	// (a shutdown cutting short a request it cannot wait for).
	Lapsed bool
	Audit  Event // skipped when Kind is empty
	// ReplacedAudit is the audit record of the pairing the request renewed,
	// as in Settlement.
	ReplacedAudit Event
}

// EventKind is what an audit event records.
type EventKind string

// Audit event kinds.
const (
	EventRequested   EventKind = "requested"
	EventRefused     EventKind = "refused"
	EventCodeIssued  EventKind = "code_issued"
	EventLinked      EventKind = "linked"
	EventWrongPhone  EventKind = "wrong_phone"
	EventExpired     EventKind = "expired"
	EventCancelled   EventKind = "cancelled"
	EventSuperseded  EventKind = "superseded" // a New code replaced the code (see Settlement.ReplacedAudit)
	EventError       EventKind = "error"
	EventInterrupted EventKind = "interrupted"
)

// Event is one audit record. It never holds a pairing code, and Phone is
// stored masked by the caller.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     EventKind `json:"kind"`
	User     string    `json:"user"`
	Team     string    `json:"team,omitempty"`
	Channel  string    `json:"channel,omitempty"`
	Instance string    `json:"instance,omitempty"` // alias as configured when the event happened, or the ID
	Phone    string    `json:"phone,omitempty"`    // masked, e.g. +20 11 ••• 333
	// PhoneKey finds a phone's events without storing its digits: a keyed
	// hash of the digits, computed by the storage from Digits under a
	// secret it keeps. Storage sets it and never returns it.
	PhoneKey string  `json:"phone_key,omitempty"`
	Pairing  string  `json:"pairing,omitempty"`
	Outcome  Outcome `json:"outcome,omitempty"` // see ParseOutcome for events older versions wrote
	// InstanceID is the 12-character Wawp instance ID (events written
	// before it was recorded have only Instance).
	InstanceID string `json:"instance_id,omitempty"`
	// Recipient is who User handed the code to (/link <instance> <phone>
	// @agent), on every event of a hand-off and on its refusals; empty
	// when the requester kept the code.
	Recipient string `json:"recipient,omitempty"`
	// Digits is the phone, country code first, handed to the storage only
	// so it can compute PhoneKey; it is never stored or returned.
	Digits string `json:"-"`
}

// AuditQuery selects audit events. Every field is optional; a phone or
// instance query reads only that phone's or instance's events (through
// an index), and Limit stops the read as soon as it has enough.
type AuditQuery struct {
	Since time.Time // events at or after Since; zero: from the first
	Until time.Time // events before Until; zero: up to the newest
	// Phone is a phone's digits, country code first. It finds the events
	// of that phone, whichever form of key they were written with.
	Phone string
	// Instances are aliases or IDs, any case: events of any of them. An
	// event that records its instance ID matches by that ID only (an alias
	// can be given to another instance later); older events, which recorded
	// only the alias, match by alias.
	Instances []string
	// Keep, if set, drops the events it returns false for; dropped events
	// do not count towards Limit.
	Keep func(Event) bool
	// Limit is how many events to return at most: the newest ones. Zero
	// means no limit.
	Limit int
}

// Slack accepts at most ResponseURLUses posts to one response_url, within
// ResponseURLLifetime of the interaction that issued it.
const (
	ResponseURLUses     = 5
	ResponseURLLifetime = 30 * time.Minute
)

// ErrBudgetSpent means a response_url has no use left that the caller may
// take (or has expired). The message can no longer be edited through it.
var ErrBudgetSpent = errors.New("response_url budget spent")

// PruneBefore says what Prune may delete: entries older than each time.
// A zero AuditEvents keeps the whole audit log.
type PruneBefore struct {
	Attempts    time.Time
	Pairings    time.Time
	AuditEvents time.Time
}

// PruneStats counts what Prune removed.
type PruneStats struct {
	Attempts     int
	Pairings     int
	ResponseURLs int
	AuditEvents  int
	// DamagedPairings counts watched pairings whose record did not parse:
	// they could never be advanced or shown, so they are dropped (and
	// counted in Pairings too).
	DamagedPairings int
	// DedupeKeys counts the command keys whose Until had passed.
	DedupeKeys int
}

// KeepsWindow settles the code window of p, which renewal replaced (both
// stores call it in the renewal's transaction): a window renewal carries
// (the same view) is renewal's from now on and is closed on p; a window
// of p's own (recorded while the renewal was on its way, on any replica)
// keeps p watched (true), whatever p's state (superseded, or ended on its
// own meanwhile: linked, expired), until the Slack edge has shown there
// how p ended and taken the code out of it.
func (p *Pairing) KeepsWindow(renewal Pairing) bool {
	switch {
	case !p.Modal.Open():
		return false
	case renewal.Modal.ViewID == p.Modal.ViewID:
		p.Modal.Closed = true
		return false
	}
	return true
}

// LogValue is what a log line shows of a pairing: who, where and how it
// stands, never its code, QR link, response_url or whole number (the code
// and the link are credentials; BRIEF: never logged). It guards a future
// `"pairing", p` log line.
func (p Pairing) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", p.ID),
		slog.String("instance", p.InstanceName),
		slog.String("state", string(p.State)),
		slog.String("requested_by", p.RequestedBy),
	)
}

// SetModal records m as p's code window (both stores call it in
// RecordModal's transaction). A superseded pairing takes one only when
// superseded says the caller knows (its window is to show that the code
// was replaced); otherwise ErrReplaced.
func (p *Pairing) SetModal(m ModalSurface, superseded bool) error {
	if p.State == StateSuperseded && !superseded {
		return ErrReplaced
	}
	p.Modal = m
	return nil
}
