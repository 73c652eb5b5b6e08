package pairing

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultCodeLifetime = 150 * time.Second // WhatsApp closes the login socket after ~160 s
	DefaultWarmup       = 10 * time.Second  // Wawp's advice after a 422 or STARTING
	DefaultCallTimeout  = 10 * time.Second
)

// DefaultPhoneLimit keeps a phone well under WhatsApp's hidden lock-out,
// which triggers after 3–5 codes in a short window.
var DefaultPhoneLimit = Window{Max: 3, Period: 15 * time.Minute}

// DefaultUserLimit stops one agent (or a stuck script) from burning through
// many phones' allowances.
var DefaultUserLimit = Window{Max: 20, Period: time.Hour}

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

// Instances lists the configured instances, each once, by name, with
// their regions filled in.
func (d *Directory) Instances() []Instance {
	var out []Instance
	for k, in := range d.byName {
		if k != strings.ToLower(in.ID) {
			continue // its alias's key: the ID's key lists it
		}
		if in.Region == "" {
			in.Region = d.defaultRegion
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)) })
	return out
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
	Limit   Limit
	Phone   Phone // the number that was asked for
	Count   int
	Window  Window
	RetryAt time.Time
	Holder  Pairing // for LimitInstance: who holds it, until when
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
// It comes with no pairing (the zero Pairing): the clicker is never handed
// the requester's pairing, let alone its code.
var ErrNotYours = errors.New("pairing belongs to another user")

// ErrEnded means the pairing already reached a final state.
var ErrEnded = errors.New("pairing already ended")

// ErrNotAllowed means the access rules no longer let the user request codes
// for the pairing's instance.
var ErrNotAllowed = errors.New("not allowed by the access rules")

// ErrReplaced means a New code or Try again came from a copy of a message
// that another pairing has taken over since: the renewal its first click
// asked for (the second half of a double click carries the first
// pairing's ID). Nothing is renewed; Renew returns the pairing that now
// holds the message, or the clicked one when none is live.
var ErrReplaced = errors.New("the message now shows another pairing")

// ErrInterrupted means the request was ended as interrupted before its
// answer was stored: its lease ran out, or a shutdown could not wait for it.
var ErrInterrupted = errors.New("code request interrupted")

// RecordTimeout bounds a write that records what already happened — what
// Wawp answered a request, a post that reached Slack — when it runs on a
// context of its own (RecordContext). One write to the bbolt file takes
// milliseconds; a PostgreSQL write that needs longer is failing anyway.
const RecordTimeout = 2 * time.Second

// RecordContext is the context for recording what already happened: not
// cancelled with ctx (it keeps ctx's values), and ended after
// RecordTimeout. A shutdown that cuts work short cancels the work's ctx
// (see bot's drain), but Wawp's answer to a request, once it came, is a
// fact: dropping it would leave the request unsettled until its lease ran
// out, log a storage error for what is a requested stop, and count the
// request under the wrong outcome. The write is bounded, so the work
// still returns soon after the cut.
func RecordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), RecordTimeout)
}

// Config configures a Service.
type Config struct {
	PhoneLimit   Window
	UserLimit    Window
	CodeLifetime time.Duration
	Warmup       time.Duration
	CallTimeout  time.Duration
	Now          func() time.Time
	Log          *slog.Logger
	// Accounts holds a client per instance whose Wawp account (access
	// token) differs from the default client's.
	Accounts map[string]Wawp
	// AuditRetention is how long audit events are kept; zero keeps them.
	AuditRetention time.Duration
	// Directory names the configured instances: an audit event written
	// before instance IDs were recorded is attributed through its alias.
	Directory *Directory
	// DedupeWindow is how long a command's dedupe key is remembered
	// (DefaultDedupeWindow when zero).
	DedupeWindow time.Duration
	// LeaderID names this replica in the ticker's election (see Lead); a
	// random ID when empty. Each replica's must differ.
	LeaderID string
	// LeaderTTL is how long the ticker's leader lease lasts unrenewed
	// (DefaultLeaderTTL when zero): the leader renews it every tick, so
	// about three ticks.
	LeaderTTL time.Duration
	// QRLimit is how many QR links one instance may get per period
	// (DefaultQRLimit when zero; a Max below zero turns QR links off).
	QRLimit Window
	// StatusTTL is how long a cached instance status is shown as current
	// (DefaultStatusTTL when zero; see status.go).
	StatusTTL time.Duration
	// Sleep waits d or until ctx ends (ctx.Err() then), between retries of
	// a write the database did not answer (see settleRetrying); a timer
	// when nil. Tests inject one that moves their clock instead.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Service runs pairings: limits, Wawp calls, state and audit.
type Service struct {
	wawp Wawp
	db   Storage
	cfg  Config

	inFlight sync.Map // IDs of the requests between Reserve and their settlement
	lead     leadership
	statuses statusCache // instances' last known sessions (status.go)
}

// NewService returns a Service that asks wawp (the default account's
// client) for sessions and codes; zero Config fields take the defaults.
func NewService(wawp Wawp, db Storage, cfg Config) *Service {
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
	if cfg.Directory == nil {
		cfg.Directory = NewDirectory(nil, "")
	}
	if cfg.DedupeWindow == 0 {
		cfg.DedupeWindow = DefaultDedupeWindow
	}
	if cfg.LeaderID == "" {
		cfg.LeaderID = newID()
	}
	if cfg.LeaderTTL <= 0 {
		cfg.LeaderTTL = DefaultLeaderTTL
	}
	if cfg.QRLimit.Max == 0 {
		cfg.QRLimit = DefaultQRLimit
	}
	if cfg.StatusTTL <= 0 {
		cfg.StatusTTL = DefaultStatusTTL
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
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
func (s *Service) PhoneLimit() Window { return s.cfg.PhoneLimit }

// UserLimit is the per-user window in force.
func (s *Service) UserLimit() Window { return s.cfg.UserLimit }

// Request is one ask for a pairing code.
type Request struct {
	Instance Instance
	Phone    Phone
	User     string
	Team     string
	Channel  string
	// ResponseURL is the slash command's (empty for a renewal): posts to
	// it add messages.
	ResponseURL string
	URLIssued   time.Time
	// ClickURL is a renewal's click's response_url (empty when the click
	// was on a DM, which is edited with chat.update): it replaces the
	// clicked message.
	ClickURL    string
	ClickIssued time.Time
	ClickTS     string // the clicked message's ts
	// Delivery is where the code goes; with DeliveryDM and no DM, the DM
	// is the requester's.
	Delivery Delivery
	// DM is the DM message a renewal inherits from the pairing it renews;
	// for a hand-off, its Recipient is the person the code goes to.
	DM Surface
	// Card is the status card: a renewal's, inherited; Channel alone asks
	// for one to be posted there (announce).
	Card Surface
	// Modal is the live code window the request was made from (the /link
	// form turned into it), or a renewal's, inherited (issue 10).
	Modal ModalSurface
	// Prepare, when set, runs once the request is past the limits and the
	// session check, just before request-code. A hand-off opens the
	// recipient's DM there: a DM Slack refuses then costs no attempt, and
	// no code exists that nobody could be shown. Its error ends the
	// request uncounted (request-code was never sent); a *DMError says why.
	Prepare func(ctx context.Context, p Pairing) error
	// Replaces is the pairing a "New code" or "Try again" click renews.
	Replaces string
	// Message is the Slack message the pairing is shown in, when it is not
	// a message of its own: a renewal is shown where its button was.
	Message string
	// DedupeKey is the command's identity (see Dedupe): a request whose
	// key was already claimed does nothing and returns ErrDuplicate.
	// Empty: not deduplicated.
	DedupeKey string
}

// Start runs a request: limits, session precheck, request-code. It returns
// the stored pairing (State live with Code set on success) and, on failure,
// a *LimitError, *StatusError or *APIError. Every outcome has a pairing
// record, watched until its message shows it, except a renewal's limit
// refusal, which stores nothing but the audit event (it only answers a click).
// A request whose DedupeKey was claimed before returns ErrDuplicate and
// does nothing at all: the key is claimed with the reservation, in one
// transaction, so of two deliveries of one command exactly one goes on.
func (s *Service) Start(ctx context.Context, req Request) (Pairing, error) {
	now := s.cfg.Now()
	p := Pairing{
		ID: newID(), Instance: req.Instance.ID, InstanceName: req.Instance.Name, Phone: req.Phone.Digits,
		RequestedBy: req.User, Team: req.Team, Channel: req.Channel,
		ResponseURL: req.ResponseURL, URLIssued: req.URLIssued, ClickURL: req.ClickURL, ClickIssued: req.ClickIssued, ClickTS: req.ClickTS,
		Delivery: req.Delivery, DM: req.DM, Card: req.Card, Modal: req.Modal, Renews: req.Replaces, Message: req.Message,
	}
	if p.Delivery == DeliveryDM && p.DM.Recipient == "" {
		p.DM.Recipient = req.User
	}
	log := s.cfg.Log.With("request", RequestID(ctx), "pairing", p.ID, "instance", p.InstanceName, "phone", req.Phone.Masked(), "user", req.User)
	d, err := s.db.Reserve(ctx, Reservation{
		Pairing: p, PhoneLimit: s.cfg.PhoneLimit, UserLimit: s.cfg.UserLimit,
		Replaces: req.Replaces, Now: now, Hold: s.RequestLease(),
		Granted: s.event(now, EventRequested, p, ""),
		Refused: s.event(now, EventRefused, p, ""),
		Dedupe:  s.dedupe(req.DedupeKey, now),
	})
	if errors.Is(err, ErrUnavailable) {
		s.undoReserve(ctx, p, log, func(found Pairing) { s.fail(ctx, found, req, log, err, false) })
	}
	if err != nil {
		return Pairing{}, err
	}
	if d.Duplicate {
		log.Info("duplicate command dropped", "dedupe_key", req.DedupeKey)
		return Pairing{}, ErrDuplicate
	}
	if d.Refused != LimitNone {
		lerr := &LimitError{Limit: d.Refused, Phone: req.Phone, Count: d.Count, RetryAt: d.RetryAt, Holder: d.Holder, Window: s.window(d.Refused)}
		log.Info("request refused by limit", "limit", d.Refused, "retry_at", d.RetryAt)
		return d.Pairing, lerr
	}
	p = d.Pairing
	s.inFlight.Store(p.ID, true)
	defer s.inFlight.Delete(p.ID)

	session, err := s.sessionInfo(ctx, p.Instance)
	if err == nil && session.Status != StatusScanQR {
		// Only SCAN_QR_CODE proceeds: a status Wawp does not document is
		// refused too (DESIGN says "treat unknown ones as pending", which
		// the countdown does; a new code is never asked of a session the
		// bot does not understand), and its refusal says to try again in a
		// moment, as STARTING's does.
		err = &StatusError{Status: boundedStatus(session.Status), Me: session.Me}
	}
	if err == nil && req.Prepare != nil {
		if err = req.Prepare(ctx, p); err != nil && !errors.As(err, new(*DMError)) {
			err = &DMError{Code: err.Error()}
		}
	}
	if err != nil {
		return s.fail(ctx, p, req, log, err, false)
	}

	callCtx, cancelCall := context.WithTimeout(ctx, s.cfg.CallTimeout)
	code, err := s.client(p.Instance).RequestCode(callCtx, p.Instance, p.Phone)
	cancelCall()
	if err != nil {
		var aerr *APIError
		// WhatsApp may have counted a request that reached Wawp, unless Wawp
		// turned it away before pairing (bad token, no instance, not ready).
		counted := errors.As(err, &aerr) && aerr.Sent &&
			!errors.Is(err, ErrUnauthorized) && !errors.Is(err, ErrNoInstance) &&
			!errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrNotReady)
		return s.fail(ctx, p, req, log, err, counted)
	}
	issued := s.cfg.Now()
	// The code came: it is recorded even if ctx ended meanwhile.
	rctx, cancel := RecordContext(ctx)
	defer cancel()
	settled, err := s.settleRetrying(ctx, p.ExpiresAt, Settlement{
		ID: p.ID, Now: issued, Counted: true, Replaced: req.Replaces,
		Change: func(p *Pairing) error {
			// A request past its lease no longer holds the instance, which
			// may be another request's by now: its code is never shown, or
			// one instance would have two live codes.
			if p.State == StateLive && p.Code == code && p.IssuedAt.Equal(issued) {
				// A retry whose earlier try was applied, its reply lost.
				return errSettledBefore
			}
			if p.State != StateRequesting || !issued.Before(p.ExpiresAt) {
				return ErrInterrupted
			}
			p.State, p.Code, p.IssuedAt, p.ExpiresAt = StateLive, code, issued, issued.Add(s.cfg.CodeLifetime)
			return nil
		},
		Audit:         s.event(issued, EventCodeIssued, p, ""),
		ReplacedAudit: s.replacedEvent(p, req.Replaces),
	})
	if errors.Is(err, ErrInterrupted) {
		// Ended meanwhile (a shutdown cut it short, or the countdown found
		// its lease run out), or its lease ran out just now: it ends as
		// interrupted, and the code came too late to be shown.
		s.interrupt(rctx, p.ID, true)
		log.Warn("code arrived after the request's lease ran out or it was interrupted")
		return s.stored(rctx, p), ErrInterrupted
	}
	if errors.Is(err, errSettledBefore) {
		settled, err = s.db.Pairing(rctx, p.ID)
	}
	if errors.Is(err, ErrUnavailable) {
		// WhatsApp issued a code nobody will see: the request stays
		// counted, and the ticker ends it as interrupted once its lease
		// is over. The person is told so, not "nothing was done".
		log.Error("code issued but the database never answered within the request's lease: not shown", "err", err)
		return p, fmt.Errorf("%w: %w", ErrCodeUnrecorded, err)
	}
	if err != nil {
		return Pairing{}, err
	}
	p = settled
	log.Info("code issued", "attempt", p.Attempt, "expires_at", p.ExpiresAt)
	return p, nil
}

// settleRetrying applies st, retrying it with backoff while the database
// cannot be reached (ErrUnavailable) and the request's lease, which ends
// at leaseEnd by the service's clock, still runs: a Wawp answer (a code)
// is a fact that must not be lost to a blip of the database. Retrying is
// safe because Settle is all-or-nothing and its Change checks the state
// (a retry after a settlement that did land but whose reply was lost
// finds the pairing no longer Requesting: ErrInterrupted, as when the
// countdown ended it). Only the write is retried, never the Wawp call.
// Each try has RecordTimeout; ctx's cancellation does not stop it (see
// RecordContext).
func (s *Service) settleRetrying(ctx context.Context, leaseEnd time.Time, st Settlement) (Pairing, error) {
	ctx = context.WithoutCancel(ctx)
	wait := retryFirst
	for {
		rctx, cancel := context.WithTimeout(ctx, RecordTimeout)
		p, err := s.db.Settle(rctx, st)
		cancel()
		if !errors.Is(err, ErrUnavailable) || !s.cfg.Now().Add(wait).Before(leaseEnd) {
			return p, err
		}
		if serr := s.cfg.Sleep(ctx, wait); serr != nil {
			return p, err
		}
		wait = min(2*wait, retryMax)
	}
}

// undoReserve ends, uncounted, a reservation of pairing id that Reserve
// answered with ErrUnavailable. Such a call usually stored nothing, but a
// connection lost while its COMMIT was on the way leaves the outcome
// unknown: the attempt may be counted and the instance held by a request
// nobody makes, so the "try again" the person is told would be refused.
// Once the storage answers again (retried with backoff for up to
// reserveCheckWithin), the pairing is looked up by its ID with
// ReservedPairing, which first waits for a Reserve of it still in flight
// (a COMMIT not yet visible would otherwise be missed): one still
// Requesting is ended by end (the caller's uncounted failure: Wawp was
// never asked) and so frees its instance; ErrNotFound means nothing was
// stored. Wawp is never called from here.
func (s *Service) undoReserve(ctx context.Context, p Pairing, log *slog.Logger, end func(found Pairing)) {
	ctx = context.WithoutCancel(ctx)
	deadline := s.cfg.Now().Add(reserveCheckWithin)
	wait := retryFirst
	for {
		rctx, cancel := context.WithTimeout(ctx, RecordTimeout)
		found, err := s.db.ReservedPairing(rctx, p)
		cancel()
		switch {
		case errors.Is(err, ErrUnavailable):
		case err != nil: // ErrNotFound: the reservation was not stored
			return
		default:
			if found.State == StateRequesting {
				log.Warn("the reservation the database did not confirm was stored after all: ended uncounted")
				end(found)
			}
			return
		}
		if !s.cfg.Now().Add(wait).Before(deadline) || s.cfg.Sleep(ctx, wait) != nil {
			log.Error("could not check whether an unconfirmed reservation was stored; if it was, it holds its instance until its lease ends", "err", err)
			return
		}
		wait = min(2*wait, retryMax)
	}
}

// reserveCheckWithin bounds undoReserve's retries (the person's "try
// again" answer waits for them).
const reserveCheckWithin = 10 * time.Second

// errSettledBefore is what a retried settlement's Change returns when it
// finds its own earlier try applied (a settlement whose reply was lost):
// nothing more is written, and the stored pairing is the result.
var errSettledBefore = errors.New("settled by an earlier try")

// The backoff between retries of a write the database did not answer.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 2 * time.Second
)

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sessionInfo asks Wawp for instance's session, and keeps the answer in
// the status cache (a call cut short by ctx tells nothing about Wawp).
func (s *Service) sessionInfo(ctx context.Context, instance string) (Session, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	sess, err := s.client(instance).SessionInfo(cctx, instance)
	if ctx.Err() == nil {
		s.statuses.put(instance, statusOf(sess, err, s.cfg.Now()))
	}
	return sess, err
}

// client is the Wawp client for instance's account.
func (s *Service) client(instance string) Wawp {
	if c, ok := s.cfg.Accounts[instance]; ok {
		return c
	}
	return s.wawp
}

// fail ends a reserved request that produced no code. What Wawp answered
// is recorded on a context of its own (RecordContext), so a shutdown that
// cut the request short still finds it ended; a Wawp call cut off by that
// shutdown (ctx done: no answer came) ends the request as interrupted, as
// the shutdown's Interrupt does, if that has not already.
func (s *Service) fail(ctx context.Context, p Pairing, req Request, log *slog.Logger, cause error, counted bool) (Pairing, error) {
	rctx, cancel := RecordContext(ctx)
	defer cancel()
	if ctx.Err() != nil && (errors.Is(cause, ErrTimeout) || errors.Is(cause, ErrUnreachable)) {
		s.interrupt(rctx, p.ID, false)
		log.Warn("no code: the request was cut short", "err", cause)
		return s.stored(rctx, p), ErrInterrupted
	}
	now := s.cfg.Now()
	state, reason, serr, cause := settledFailure(cause, now, s.cfg.Warmup)
	outcome := OutcomeOf(cause)
	updated, err := s.db.Settle(rctx, Settlement{
		ID: p.ID, Now: now, Counted: counted,
		Replaced: req.Replaces, ReplacedURL: req.ClickURL,
		Change: func(p *Pairing) error {
			// As in Start: a request past its lease no longer holds the
			// instance, and its settlement must not give a code it renewed
			// that instance back (another request may hold it by now).
			if p.State != StateRequesting || !now.Before(p.ExpiresAt) {
				return ErrInterrupted
			}
			p.State, p.Reason = state, reason
			if serr != nil {
				p.RetryAt, p.LinkedPhone = serr.RetryAt, serr.Me
			}
			return nil
		},
		Audit:         s.event(now, EventError, p, outcome),
		ReplacedAudit: s.replacedEvent(p, req.Replaces),
	})
	if errors.Is(err, ErrInterrupted) {
		// Ended meanwhile, or its lease ran out just now: it ends as
		// interrupted (a code it renewed is void; see Interruption).
		s.interrupt(rctx, p.ID, true)
		log.Warn("no code, and the request's lease ran out or it was interrupted", "err", cause)
		return s.stored(rctx, p), ErrInterrupted
	}
	if err != nil {
		log.Error("ending pairing", "err", err)
		updated = p
	}
	log.Warn("no code", "outcome", outcome, "counted", counted, "err", cause)
	return updated, cause
}

// logStorageError logs a storage call that failed: at ERROR, unless ctx
// is done, when the caller stopped it (a tick or a request the shutdown
// cut short) and the refusal is what was asked for: then at DEBUG.
func (s *Service) logStorageError(ctx context.Context, msg string, args ...any) {
	level := slog.LevelError
	if ctx.Err() != nil {
		level = slog.LevelDebug
	}
	s.cfg.Log.Log(ctx, level, msg, args...)
}

// stored is pairing p as the store has it now (p itself if it cannot be read).
func (s *Service) stored(ctx context.Context, p Pairing) Pairing {
	if fresh, err := s.db.Pairing(ctx, p.ID); err == nil {
		return fresh
	}
	return p
}

// Interrupt ends every request still in flight as interrupted, for a
// shutdown that cannot wait for them any longer, and returns those it
// ended. Each still counts (request-code may have reached WhatsApp); their
// messages are the caller's to update.
func (s *Service) Interrupt(ctx context.Context) []Pairing {
	var ended []Pairing
	s.inFlight.Range(func(id, _ any) bool {
		if p, ok := s.interrupt(ctx, id.(string), false); ok {
			ended = append(ended, p)
		}
		return true
	})
	return ended
}

// interrupt ends request id as interrupted: at once, or (lapsed) only if
// its lease ran out. It returns the pairing as stored (no ID if it could
// not be read) and whether it ended it.
func (s *Service) interrupt(ctx context.Context, id string, lapsed bool) (Pairing, bool) {
	now := s.cfg.Now()
	p, err := s.db.Pairing(ctx, id)
	if err != nil {
		s.logStorageError(ctx, "interrupting request", "pairing", id, "err", err)
		return p, false
	}
	p, ended, err := s.db.Interrupt(ctx, Interruption{ID: id, Now: now, Lapsed: lapsed, Audit: s.event(now, EventInterrupted, p, ""),
		ReplacedAudit: s.replacedEvent(p, p.Renews)})
	if err != nil {
		s.logStorageError(ctx, "interrupting request", "pairing", id, "err", err)
		return p, false
	}
	if ended {
		s.cfg.Log.Warn("code request interrupted", "pairing", id, "instance", p.InstanceName,
			"phone", MaskPhone(PhoneFromDigits(p.Phone).International), "user", p.RequestedBy, "lease_ran_out", lapsed)
	}
	return p, ended
}

// Renewal is a "New code" or "Try again" click.
type Renewal struct {
	ID   string // the pairing whose button was clicked
	User string // who clicked: its requester, or the person it was handed to
	Team string // the clicker's workspace
	// ResponseURL is the click's, with a fresh budget of posts: it replaces
	// the clicked ephemeral message. Empty for a click on the DM, which is
	// edited with chat.update.
	ResponseURL string
	URLIssued   time.Time
	ClickTS     string // the clicked message's ts
	// Window says the click came from the pairing's live code window (a
	// modal: no response_url of its own, issue 10). The renewal then keeps
	// the old pairing's ephemeral editors (the command's response_url, the
	// last click's), so the requester's messages follow it there as well.
	Window bool
	// Allowed says whether the access rules let user (the pairing's
	// requester, whoever clicked) request codes for instanceID when asked in
	// channel (where the pairing was requested); nil allows everyone.
	Allowed func(user, instanceID, channel string) bool
	// DedupeKey is the click's identity (see Dedupe): a click whose key
	// was already claimed does nothing and returns ErrDuplicate.
	DedupeKey string
	// Prepare is the renewal's Request.Prepare: for a hand-off, the checks
	// its first request ran before request-code (who the recipient is, the
	// DM opened), run again, since either may have changed since.
	Prepare func(ctx context.Context, p Pairing) error
}

// Renew asks again for the request behind pairing r.ID, through the same
// limits. Only its requester, or the person it was handed to, may
// (ErrNotYours, with no pairing); the renewal is the requester's, who owns
// the pairing (their user limit, their access), and only while the access
// rules still allow the requester: a message posted before the rules
// changed must not keep handing out codes, so a click they no longer allow
// is audited and refused with ErrNotAllowed. The renewal is shown where
// the old pairing was: the click's response_url edits the clicked
// ephemeral message, and the old pairing's DM and card, if any, carry on
// with the new code. A click in a hand-off's DM brings no response_url the
// requester sees: the renewal takes the old pairing's editor, so the
// requester learns how it goes. r.Prepare runs as the renewal's
// Request.Prepare (a hand-off's checks, again); a hand-off whose DM failed
// gets its DM opened anew there.
//
// A click whose DedupeKey was claimed before returns ErrDuplicate and does
// nothing: a renewal claims it with its reservation (see Start), a refusal
// before the limits (ErrNotYours, ErrNotAllowed, *TooSoonError,
// ErrReplaced) claims it alone, before it audits anything.
func (s *Service) Renew(ctx context.Context, r Renewal) (Pairing, error) {
	old, err := s.db.Pairing(ctx, r.ID)
	if err != nil {
		return Pairing{}, err
	}
	if !old.MayUse(r.User) {
		return Pairing{}, s.refuse(ctx, r.DedupeKey, ErrNotYours)
	}
	now := s.cfg.Now()
	if r.Allowed != nil && !r.Allowed(old.RequestedBy, old.Instance, old.Channel) {
		if err := s.refuse(ctx, r.DedupeKey, ErrNotAllowed); errors.Is(err, ErrDuplicate) {
			return old, err
		}
		e := s.event(now, EventRefused, old, OutcomeAccessDenied)
		e.Team = r.Team
		if err := s.db.AppendAudit(ctx, e); err != nil {
			s.cfg.Log.Error("audit", "err", err)
		}
		return old, ErrNotAllowed
	}
	if old.State == StateWarmingUp && now.Before(old.RetryAt) {
		return old, s.refuse(ctx, r.DedupeKey, &TooSoonError{RetryAt: old.RetryAt})
	}
	// A "New code" that never reached WhatsApp left the code it meant to
	// replace working; trying again replaces that one.
	replaces := r.ID
	if old.Renews != "" {
		if earlier, err := s.db.Pairing(ctx, old.Renews); err == nil && earlier.Live(now) {
			replaces = earlier.ID
		}
	}
	// A click on a message another pairing has taken over (a double click:
	// the renewal its first half asked for holds the message now, live or
	// still being requested; or it was replaced and has ended) renews
	// nothing: a second request would be refused by the instance limit at
	// best, and its refusal would cover the live code. The holder is the
	// answer, shown through the click's fresh response_url, which its
	// later edits go through too (as a Refresh's would) — unless the click
	// came from an older copy of the message than the one the holder's
	// editor replaces (the code as first posted, above the message where
	// New code was clicked): that editor stays, so the one message showing
	// the holder's code is the one kept current, and the Slack edge takes
	// the old code off the older copy through its click's own url.
	if holder, err := s.db.Holder(ctx, old.Instance, now); err == nil && holder.ID != replaces && holder.MessageID() == old.MessageID() {
		if err := s.refuse(ctx, r.DedupeKey, ErrReplaced); !errors.Is(err, ErrReplaced) {
			return holder, err
		}
		if r.ClickTS != "" && holder.ClickTS != "" && r.ClickTS != holder.ClickTS {
			return holder, ErrReplaced
		}
		rebound, err := s.rebind(ctx, holder, Click{ResponseURL: r.ResponseURL, Issued: r.URLIssued, TS: r.ClickTS})
		if err != nil {
			return holder, err
		}
		return rebound, ErrReplaced
	}
	if old.State == StateSuperseded {
		return old, s.refuse(ctx, r.DedupeKey, ErrReplaced)
	}
	if old.Method == MethodQR {
		// A QR pairing's renewal ("New link") is a new link (its POST
		// expires the old one), shown where the old one was, as a code's
		// renewal is (StartQR takes the old pairing's DM and card).
		return s.StartQR(ctx, QRRequest{
			Instance: Instance{ID: old.Instance, Name: old.InstanceName}, Phone: qrPhone(old.Phone),
			User: old.RequestedBy, Team: old.Team, Channel: old.Channel,
			ClickURL: r.ResponseURL, ClickIssued: r.URLIssued, ClickTS: r.ClickTS,
			Replaces: replaces, DedupeKey: r.DedupeKey,
		})
	}
	// A click in a hand-off's DM (the recipient's New code) brings no
	// response_url the requester sees: they learn how the renewal goes
	// through the old pairing's editor, as they did for the first code.
	clickURL, clickIssued, clickTS := r.ResponseURL, r.URLIssued, r.ClickTS
	var cmdURL string
	var cmdIssued time.Time
	// So does a click in the code window (Renewal.Window), which brings
	// none either.
	if clickURL == "" && (old.HandedTo() != "" || r.Window) {
		if url, issued, replaces := old.Editor(); replaces {
			clickURL, clickIssued, clickTS = url, issued, old.ClickTS
		} else {
			cmdURL, cmdIssued = url, issued
		}
	}
	// The renewal is shown in the old pairing's DM message, which shows
	// nothing of the renewal yet.
	dm := old.DM
	dm.LastView = ""
	modal := old.Modal // the window too, if it is open
	modal.LastView = ""
	if old.HandedTo() != "" && dm.Failed != "" {
		// A hand-off whose DM could not be posted: the renewal opens it
		// anew (Prepare), or asks for no code.
		dm = Surface{Recipient: old.DM.Recipient}
	}
	return s.Start(ctx, Request{
		Instance: Instance{ID: old.Instance, Name: old.InstanceName}, Phone: PhoneFromDigits(old.Phone),
		User: old.RequestedBy, Team: old.Team, Channel: old.Channel, ResponseURL: cmdURL, URLIssued: cmdIssued,
		ClickURL: clickURL, ClickIssued: clickIssued, ClickTS: clickTS, Delivery: old.Delivery, DM: dm, Card: old.Card, Modal: modal,
		Replaces: replaces, Message: old.MessageID(),
		DedupeKey: r.DedupeKey, Prepare: r.Prepare,
	})
}

// ClaimCommand claims the dedupe key of a command that reserves nothing
// (Cancel, Refresh, a help or history command), before it acts:
// ErrDuplicate when the key was claimed before, and the command must do
// nothing. An empty key is always claimed. A command whose process stops
// between the claim and the act is lost, not done twice; its user sees
// no answer and clicks again (a new click is a new key).
func (s *Service) ClaimCommand(ctx context.Context, key string) error {
	now := s.cfg.Now()
	first, err := s.db.ClaimCommand(ctx, s.dedupe(key, now), now)
	if err != nil {
		return err
	}
	if !first {
		s.cfg.Log.Info("duplicate command dropped", "request", RequestID(ctx), "dedupe_key", key)
		return ErrDuplicate
	}
	return nil
}

// refuse is refusal, the answer to a command that reserves nothing,
// unless the command's key was claimed before: then ErrDuplicate, and the
// refusal is not shown twice. When the key cannot be claimed (the storage
// is down) the refusal stands: it changes nothing, so showing it twice is
// the worst that can happen.
func (s *Service) refuse(ctx context.Context, key string, refusal error) error {
	err := s.ClaimCommand(ctx, key)
	if errors.Is(err, ErrDuplicate) {
		return err
	}
	if err != nil {
		s.cfg.Log.Error("claiming a command", "request", RequestID(ctx), "err", err)
	}
	return refusal
}

// dedupe is the Dedupe of a command with key at now.
func (s *Service) dedupe(key string, now time.Time) Dedupe {
	if key == "" {
		return Dedupe{}
	}
	return Dedupe{Key: key, Until: now.Add(s.cfg.DedupeWindow)}
}

// Cancel ends a live pairing at the wish of its requester or of the person
// it was handed to (ErrNotYours, with no pairing, for anyone else); the
// code is wiped. The click's response_url (empty for a click on the DM)
// becomes the ephemeral message's editor (see Refresh). A pairing that
// already ended is left as it is and returned with ErrEnded, rebound, so
// its message can show how it ended. A Cancel on a pairing a renewal
// superseded cancels the renewal, if it still holds the same message.
func (s *Service) Cancel(ctx context.Context, id, user string, click Click) (Pairing, error) {
	now := s.cfg.Now()
	// A copy of a message that a renewal took over (the channel's line of
	// a code sent by DM, where New code was clicked; a code's message where
	// Link by QR instead was clicked) cancels what that message shows now.
	q, qerr := s.db.Pairing(ctx, id)
	if qerr == nil && q.State == StateSuperseded && q.MayUse(user) {
		if holder, err := s.db.Holder(ctx, q.Instance, now); err == nil && holder.MessageID() == q.MessageID() {
			id = holder.ID
			q, qerr = s.db.Pairing(ctx, id)
		}
	}
	if qerr == nil && q.Method == MethodQR && q.MayUse(user) && q.Live(now) {
		return s.cancelQR(ctx, q, user, click) // revokes its link first
	}
	p, err := s.db.UpdatePairing(ctx, id, now, func(p *Pairing) error {
		if !p.MayUse(user) {
			return ErrNotYours
		}
		if !p.Live(now) {
			return ErrEnded
		}
		p.State = StateCancelled
		if click.ResponseURL != "" && p.ClickURL != click.ResponseURL {
			p.ClickURL, p.ClickIssued, p.ClickTS = click.ResponseURL, click.Issued, click.TS
		}
		return nil
	})
	if errors.Is(err, ErrNotYours) {
		return Pairing{}, err
	}
	if errors.Is(err, ErrEnded) {
		if p, err = s.db.Pairing(ctx, id); err != nil {
			return p, err
		}
		p, err = s.rebind(ctx, p, click)
		if err != nil {
			return p, err
		}
		return p, ErrEnded
	}
	if err != nil {
		return p, err
	}
	if err := s.db.AppendAudit(ctx, s.event(now, EventCancelled, p, "")); err != nil {
		s.cfg.Log.Error("audit", "err", err)
	}
	return p, nil
}

// FailHandoffDM ends a live hand-off whose code Slack would not put into
// its recipient's DM (errCode: chat.update or the post refused for good):
// nobody can see the code, so it is withdrawn (wiped) and the instance
// freed, and the pairing fails with dm_refused and Slack's error, which
// its requester is shown. Unlike a DM refused before request-code
// (Prepare), the code was asked for: it counted against the phone. A
// pairing that ended meanwhile is returned as it is, with ErrEnded.
func (s *Service) FailHandoffDM(ctx context.Context, id, errCode string) (Pairing, error) {
	now := s.cfg.Now()
	p, err := s.db.UpdatePairing(ctx, id, now, func(p *Pairing) error {
		if !p.Live(now) {
			return ErrEnded
		}
		p.State, p.Reason = StateFailed, reasonOf(OutcomeDMRefused, errCode)
		return nil
	})
	if err != nil {
		return p, err
	}
	if err := s.db.AppendAudit(ctx, s.event(now, EventError, p, OutcomeDMRefused)); err != nil {
		s.cfg.Log.Error("audit", "err", err)
	}
	return p, nil
}

// event is the audit record of p: masked phone, never the code.
func (s *Service) event(at time.Time, kind EventKind, p Pairing, outcome Outcome) Event {
	return Event{
		Time: at, Kind: kind, User: p.RequestedBy, Team: p.Team, Channel: p.Channel,
		Instance: p.InstanceName, InstanceID: p.Instance, Phone: maskDigits(p.Phone),
		Digits:  p.Phone, // the store keeps only a keyed hash of it
		Pairing: p.ID, Outcome: outcome, Recipient: p.HandedTo(),
	}
}

// replacedEvent is the audit record, kind and time left to the store, of
// pairing replaced, which renewal p replaces (none when replaced is empty).
// A renewal asks for the same phone on the same instance for the same
// requester and channel as the pairing it replaces, so only the pairing ID
// differs.
func (s *Service) replacedEvent(p Pairing, replaced string) Event {
	if replaced == "" {
		return Event{}
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
