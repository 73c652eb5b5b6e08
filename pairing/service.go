package pairing

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/linkbot/linkbot/store"
)

// Defaults for Config fields left zero.
const (
	DefaultCodeLifetime = 150 * time.Second // WhatsApp closes the login socket after ~160 s
	DefaultWarmup       = 10 * time.Second  // Wawp's advice after a 422 or STARTING
	DefaultCallTimeout  = 10 * time.Second
)

// DefaultPhoneLimit keeps a phone well under WhatsApp's hidden lock-out,
// which triggers after 3–5 codes in a short window.
var DefaultPhoneLimit = store.Window{Max: 3, Period: 15 * time.Minute}

// DefaultUserLimit stops one agent (or a stuck script) from burning through
// many phones' allowances.
var DefaultUserLimit = store.Window{Max: 20, Period: time.Hour}

// Instance is a Wawp instance as the bot knows it.
type Instance struct {
	ID     string // 12 characters
	Name   string // alias, or the ID when it has none
	Region string // region for national numbers; empty means the default
}

// ErrUnknownInstance means the name is neither a configured alias nor a
// 12-character instance ID.
var ErrUnknownInstance = errors.New("unknown instance")

// Directory resolves what an agent typed to an instance.
type Directory struct {
	byName        map[string]Instance
	defaultRegion string
}

// NewDirectory indexes instances by alias (case-insensitive) and by ID.
func NewDirectory(instances []Instance, defaultRegion string) *Directory {
	d := &Directory{byName: map[string]Instance{}, defaultRegion: strings.ToUpper(defaultRegion)}
	for _, in := range instances {
		d.byName[strings.ToLower(in.Name)] = in
		d.byName[strings.ToLower(in.ID)] = in
	}
	return d
}

// IsInstanceID reports whether s has the shape of a Wawp instance ID.
func IsInstanceID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}

// Resolve returns the instance named name, with its region filled in.
func (d *Directory) Resolve(name string) (Instance, error) {
	in, ok := d.byName[strings.ToLower(name)]
	if !ok {
		if !IsInstanceID(name) {
			return Instance{}, fmt.Errorf("%q: %w", name, ErrUnknownInstance)
		}
		in = Instance{ID: name, Name: name}
	}
	if in.Region == "" {
		in.Region = d.defaultRegion
	}
	return in, nil
}

// Names lists the configured aliases, for help messages.
func (d *Directory) Names() []string {
	var out []string
	for k, in := range d.byName {
		if k == strings.ToLower(in.Name) && in.Name != in.ID {
			out = append(out, in.Name)
		}
	}
	return out
}

// LimitError says a limit refused a request; Wawp was not called.
type LimitError struct {
	Limit   store.Limit
	Phone   Phone // the number that was asked for
	Count   int
	Window  store.Window
	RetryAt time.Time
	Holder  store.Pairing // for store.LimitInstance: who holds it, until when
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s limit reached (%d in %s), next at %s", e.Limit, e.Count, e.Window.Period, e.RetryAt.UTC().Format(time.RFC3339))
}

// StatusError says the instance's session is not waiting for a pairing
// (only SCAN_QR_CODE is). RetryAt is set when it is warming up.
type StatusError struct {
	Status  Status
	Me      string // linked phone digits, for WORKING
	RetryAt time.Time
}

func (e *StatusError) Error() string { return fmt.Sprintf("session status %s", e.Status) }

// TooSoonError means a "Try again" came before the warm-up wait was over.
type TooSoonError struct{ RetryAt time.Time }

func (e *TooSoonError) Error() string {
	return "retry before " + e.RetryAt.UTC().Format(time.RFC3339)
}

// ErrNotYours means someone other than the requester pressed a button.
var ErrNotYours = errors.New("pairing belongs to another user")

// ErrEnded means the pairing already reached a final state.
var ErrEnded = errors.New("pairing already ended")

// ErrReplaced means a New code or Try again came from a copy of a message
// that another pairing has taken over since: the renewal its first click
// asked for (the second half of a double click carries the first
// pairing's ID). Nothing is renewed; Renew returns the pairing that now
// holds the message, or the clicked one when none is live.
var ErrReplaced = errors.New("the message now shows another pairing")

// ErrInterrupted means the request was ended as interrupted before its
// answer was stored: its lease ran out, or a shutdown could not wait for it.
var ErrInterrupted = errors.New("code request interrupted")

// Config configures a Service.
type Config struct {
	PhoneLimit   store.Window
	UserLimit    store.Window
	CodeLifetime time.Duration
	Warmup       time.Duration
	CallTimeout  time.Duration
	Now          func() time.Time
	Log          *slog.Logger
	// Accounts holds a client per instance whose Wawp account (access
	// token) differs from the default client's.
	Accounts map[string]*Client
	// AuditRetention is how long audit events are kept; zero keeps them.
	AuditRetention time.Duration
}

// Service runs pairings: limits, Wawp calls, state and audit.
type Service struct {
	wawp *Client
	db   *store.DB
	cfg  Config

	inFlight sync.Map // IDs of the requests between Reserve and their settlement
}

// NewService returns a Service; zero Config fields take the defaults.
func NewService(wawp *Client, db *store.DB, cfg Config) *Service {
	if cfg.PhoneLimit.Max == 0 {
		cfg.PhoneLimit = DefaultPhoneLimit
	}
	if cfg.UserLimit.Max == 0 {
		cfg.UserLimit = DefaultUserLimit
	}
	if cfg.CodeLifetime == 0 {
		cfg.CodeLifetime = DefaultCodeLifetime
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = DefaultWarmup
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{wawp: wawp, db: db, cfg: cfg}
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.cfg.Now() }

// RequestLease is how long a code request may take: the session check and
// request-code, each up to the call timeout, plus a margin. The instance is
// held that long (so a crash cannot lock it forever), and a request still
// unsettled after it is over for good: it ends as interrupted.
func (s *Service) RequestLease() time.Duration { return 2*s.cfg.CallTimeout + 5*time.Second }

// PhoneLimit is the per-phone window in force.
func (s *Service) PhoneLimit() store.Window { return s.cfg.PhoneLimit }

// UserLimit is the per-user window in force.
func (s *Service) UserLimit() store.Window { return s.cfg.UserLimit }

// Request is one ask for a pairing code.
type Request struct {
	Instance    Instance
	Phone       Phone
	User        string
	Team        string
	Channel     string
	ResponseURL string
	URLIssued   time.Time
	// Replaces is the pairing a "New code" or "Try again" click renews.
	Replaces string
	// Message is the Slack message the pairing is shown in, when it is not
	// a message of its own: a renewal is shown where its button was.
	Message string
}

// Start runs a request: limits, session precheck, request-code. It returns
// the stored pairing (State live with Code set on success) and, on failure,
// a *LimitError, *StatusError or *APIError. Every outcome has a pairing
// record, watched until its message shows it, except a renewal's limit
// refusal, which stores nothing but the audit event (it only answers a click).
func (s *Service) Start(ctx context.Context, req Request) (store.Pairing, error) {
	now := s.cfg.Now()
	p := store.Pairing{
		ID: newID(), Instance: req.Instance.ID, InstanceName: req.Instance.Name, Phone: req.Phone.Digits,
		RequestedBy: req.User, Team: req.Team, Channel: req.Channel,
		ResponseURL: req.ResponseURL, URLIssued: req.URLIssued, Renews: req.Replaces, Message: req.Message,
	}
	log := s.cfg.Log.With("request", RequestID(ctx), "pairing", p.ID, "instance", p.InstanceName, "phone", req.Phone.Masked(), "user", req.User)
	d, err := s.db.Reserve(store.Reservation{
		Pairing: p, PhoneLimit: s.cfg.PhoneLimit, UserLimit: s.cfg.UserLimit,
		Replaces: req.Replaces, Now: now, Hold: s.RequestLease(),
		Granted: s.event(now, "requested", p, ""),
		Refused: s.event(now, "refused", p, ""),
	})
	if err != nil {
		return store.Pairing{}, err
	}
	if d.Refused != store.LimitNone {
		lerr := &LimitError{Limit: d.Refused, Phone: req.Phone, Count: d.Count, RetryAt: d.RetryAt, Holder: d.Holder}
		switch d.Refused {
		case store.LimitPhone:
			lerr.Window = s.cfg.PhoneLimit
		case store.LimitUser:
			lerr.Window = s.cfg.UserLimit
		}
		log.Info("request refused by limit", "limit", d.Refused, "retry_at", d.RetryAt)
		return d.Pairing, lerr
	}
	p = d.Pairing
	s.inFlight.Store(p.ID, true)
	defer s.inFlight.Delete(p.ID)

	session, err := s.sessionInfo(ctx, p.Instance)
	if err == nil && session.Status != StatusScanQR {
		err = &StatusError{Status: session.Status, Me: session.Me}
	}
	if err != nil {
		return s.fail(p, req, log, err, false)
	}

	callCtx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	code, err := s.client(p.Instance).RequestCode(callCtx, p.Instance, p.Phone)
	cancel()
	if err != nil {
		var aerr *APIError
		// WhatsApp may have counted a request that reached Wawp, unless Wawp
		// turned it away before pairing (bad token, no instance, not ready).
		counted := errors.As(err, &aerr) && aerr.Sent &&
			!errors.Is(err, ErrUnauthorized) && !errors.Is(err, ErrNoInstance) &&
			!errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrNotReady)
		return s.fail(p, req, log, err, counted)
	}
	issued := s.cfg.Now()
	p, err = s.db.Settle(store.Settlement{
		ID: p.ID, Now: issued, Outcome: "code_issued", Counted: true, Replaced: req.Replaces,
		Change: func(p *store.Pairing) error {
			if p.State != store.StateRequesting {
				return ErrInterrupted
			}
			p.State, p.Code, p.IssuedAt, p.ExpiresAt = store.StateLive, code, issued, issued.Add(s.cfg.CodeLifetime)
			return nil
		},
		Audit:         s.event(issued, "code_issued", p, ""),
		ReplacedAudit: s.replacedEvent(p, req.Replaces),
	})
	if errors.Is(err, ErrInterrupted) {
		// Ended meanwhile (its lease ran out, or a shutdown cut it short):
		// the code came too late to be shown.
		log.Warn("code arrived after the request was ended as interrupted")
		return s.stored(p), ErrInterrupted
	}
	if err != nil {
		return store.Pairing{}, err
	}
	log.Info("code issued", "attempt", p.Attempt, "expires_at", p.ExpiresAt)
	return p, nil
}

func (s *Service) sessionInfo(ctx context.Context, instance string) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	return s.client(instance).SessionInfo(ctx, instance)
}

// client is the Wawp client for instance's account.
func (s *Service) client(instance string) *Client {
	if c, ok := s.cfg.Accounts[instance]; ok {
		return c
	}
	return s.wawp
}

// fail ends a reserved request that produced no code.
func (s *Service) fail(p store.Pairing, req Request, log *slog.Logger, cause error, counted bool) (store.Pairing, error) {
	now := s.cfg.Now()
	state, outcome, reason := store.StateFailed, "error", failureReason(cause)
	var serr *StatusError
	switch {
	case errors.Is(cause, ErrNotReady) || errors.As(cause, &serr) && serr.Status == StatusStarting:
		state, outcome, reason = store.StateWarmingUp, "warming_up", ""
		serr = &StatusError{Status: StatusStarting, RetryAt: now.Add(s.cfg.Warmup)}
		cause = serr
	case serr != nil:
		state, outcome = store.StateRefused, reasonStatus+string(serr.Status)
		reason = outcome
	}
	updated, err := s.db.Settle(store.Settlement{
		ID: p.ID, Now: now, Outcome: outcome, Counted: counted,
		Replaced: req.Replaces, ReplacedURL: req.ResponseURL,
		Change: func(p *store.Pairing) error {
			if p.State != store.StateRequesting {
				return ErrInterrupted
			}
			p.State, p.Reason = state, reason
			if serr != nil {
				p.RetryAt, p.LinkedPhone = serr.RetryAt, serr.Me
			}
			return nil
		},
		Audit:         s.event(now, "error", p, outcome),
		ReplacedAudit: s.replacedEvent(p, req.Replaces),
	})
	if errors.Is(err, ErrInterrupted) {
		log.Warn("no code, and the request was already ended as interrupted", "err", cause)
		return s.stored(p), ErrInterrupted
	}
	if err != nil {
		log.Error("ending pairing", "err", err)
		updated = p
	}
	log.Warn("no code", "outcome", outcome, "counted", counted, "err", cause)
	return updated, cause
}

// stored is pairing p as the store has it now (p itself if it cannot be read).
func (s *Service) stored(p store.Pairing) store.Pairing {
	if fresh, err := s.db.Pairing(p.ID); err == nil {
		return fresh
	}
	return p
}

// Interrupt ends every request still in flight as interrupted, for a
// shutdown that cannot wait for them any longer, and returns those it
// ended. Each still counts (request-code may have reached WhatsApp); their
// messages are the caller's to update.
func (s *Service) Interrupt() []store.Pairing {
	var ended []store.Pairing
	s.inFlight.Range(func(id, _ any) bool {
		if p, ok := s.interrupt(id.(string), false); ok {
			ended = append(ended, p)
		}
		return true
	})
	return ended
}

// interrupt ends request id as interrupted: at once, or (lapsed) only if
// its lease ran out. It returns the pairing as stored (no ID if it could
// not be read) and whether it ended it.
func (s *Service) interrupt(id string, lapsed bool) (store.Pairing, bool) {
	now := s.cfg.Now()
	p, err := s.db.Pairing(id)
	if err != nil {
		s.cfg.Log.Error("interrupting request", "pairing", id, "err", err)
		return p, false
	}
	p, ended, err := s.db.Interrupt(store.Interruption{ID: id, Now: now, Lapsed: lapsed, Audit: s.event(now, "interrupted", p, ""),
		ReplacedAudit: s.replacedEvent(p, p.Renews)})
	if err != nil {
		s.cfg.Log.Error("interrupting request", "pairing", id, "err", err)
		return p, false
	}
	if ended {
		s.cfg.Log.Warn("code request interrupted", "pairing", id, "instance", p.InstanceName,
			"phone", MaskPhone(PhoneFromDigits(p.Phone).International), "user", p.RequestedBy, "lease_ran_out", lapsed)
	}
	return p, ended
}

// Renew asks again for the request behind pairing id ("New code", or "Try
// again" after a warm-up), through the same limits. The click's fresh
// response_url replaces the old one.
func (s *Service) Renew(ctx context.Context, id, user, responseURL string, urlIssued time.Time) (store.Pairing, error) {
	old, err := s.db.Pairing(id)
	if err != nil {
		return store.Pairing{}, err
	}
	if old.RequestedBy != user {
		return old, ErrNotYours
	}
	now := s.cfg.Now()
	if old.State == store.StateWarmingUp && now.Before(old.RetryAt) {
		return old, &TooSoonError{RetryAt: old.RetryAt}
	}
	// A "New code" that never reached WhatsApp left the code it meant to
	// replace working; trying again replaces that one.
	replaces := id
	if old.Renews != "" {
		if earlier, err := s.db.Pairing(old.Renews); err == nil && earlier.Live(now) {
			replaces = earlier.ID
		}
	}
	// A click on a message another pairing has taken over (a double click:
	// the renewal its first half asked for holds the message now, live or
	// still being requested; or it was replaced and has ended) renews
	// nothing: a second request would be refused by the instance limit at
	// best, and its refusal would cover the live code.
	if holder, err := s.db.Holder(old.Instance, now); err == nil && holder.ID != replaces && holder.MessageID() == old.MessageID() {
		return holder, ErrReplaced
	}
	if old.State == store.StateSuperseded {
		return old, ErrReplaced
	}
	return s.Start(ctx, Request{
		Instance: Instance{ID: old.Instance, Name: old.InstanceName}, Phone: PhoneFromDigits(old.Phone),
		User: user, Team: old.Team, Channel: old.Channel,
		ResponseURL: responseURL, URLIssued: urlIssued, Replaces: replaces, Message: old.MessageID(),
	})
}

// Cancel ends a live pairing at the requester's wish; the code is wiped.
func (s *Service) Cancel(id, user string) (store.Pairing, error) {
	now := s.cfg.Now()
	p, err := s.db.UpdatePairing(id, now, func(p *store.Pairing) error {
		if p.RequestedBy != user {
			return ErrNotYours
		}
		if !p.Live(now) {
			return ErrEnded
		}
		p.State = store.StateCancelled
		return nil
	})
	if err != nil {
		return p, err
	}
	if err := s.db.AppendAudit(s.event(now, "cancelled", p, "")); err != nil {
		s.cfg.Log.Error("audit", "err", err)
	}
	return p, nil
}

// event is the audit record of p: masked phone, never the code.
func (s *Service) event(at time.Time, kind string, p store.Pairing, outcome string) store.Event {
	return store.Event{
		Time: at, Kind: kind, User: p.RequestedBy, Team: p.Team, Channel: p.Channel,
		Instance: p.InstanceName, InstanceID: p.Instance, Phone: MaskPhone(PhoneFromDigits(p.Phone).International),
		Digits:  p.Phone, // the store keeps only a keyed hash of it
		Pairing: p.ID, Outcome: outcome,
	}
}

// replacedEvent is the audit record, kind and time left to the store, of
// pairing replaced, which renewal p replaces (none when replaced is empty).
// A renewal asks for the same phone on the same instance for the same
// requester and channel as the pairing it replaces, so only the pairing ID
// differs.
func (s *Service) replacedEvent(p store.Pairing, replaced string) store.Event {
	if replaced == "" {
		return store.Event{}
	}
	e := s.event(time.Time{}, "", p, "")
	e.Pairing = replaced
	return e
}

func newID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

type requestIDKey struct{}

// WithRequestID tags ctx with the Slack request (envelope) ID, so every log
// line about one command carries it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request ID ctx was tagged with, if any.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
