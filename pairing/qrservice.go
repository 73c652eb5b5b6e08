package pairing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/linkbot/linkbot/pairing/wawp"
)

// The QR fallback's service side (issue 10; the model is in qr.go). A QR
// link is asked for like a code — limits, the session precheck, one Wawp
// call (temp-link POST), one settlement — and watched like a code by
// Advance. What differs:
//
//   - Limits: at most Config.QRLimit links per instance (DefaultQRLimit:
//     3 an hour), checked and recorded in Reserve's transaction, beside
//     the user's window; never the phone's (a link is no request for a
//     code, so it cannot feed WhatsApp's per-phone lock-out).
//   - One live pairing per instance, code or QR. A QR request on an
//     instance held by someone else's pairing is refused (LimitInstance).
//     The requester's own pairing may be replaced (QRRequest.Replaces: the
//     "Link by QR instead" click on a code's message): once Wawp was asked
//     it ends as superseded, and the QR pairing takes over its message. A
//     request that certainly never reached Wawp gives it its instance back.
//   - The link is revoked (temp-link DELETE, which revokes every link of
//     the instance) whenever the pairing ends: linked, wrong phone,
//     cancelled, expired, instance failed or gone, interrupted, a request
//     whose answer was lost. Wawp asks for it "to prevent replay". The
//     revocation is made while the pairing still holds its instance where
//     it can (so it cannot hit a newer link of someone else's), never
//     holds up the end: a revocation that fails is retried by later ticks
//     with backoff (RevokeAt), at most maxRevokeTries times and only while
//     the link could still work, and the pairing stays watched meanwhile
//     (UnwatchDue). A link a newer one replaced needs none: Wawp expired
//     it when it made the newer one.
//   - The link is a credential like the code: it is in Pairing.Link only
//     while the pairing is live, never in a log line or the audit log.

// DefaultQRLimit is how many QR links one instance may get per period:
// each is a credential handed out, and issue 10 asks for "at most a few
// per instance per hour".
var DefaultQRLimit = Window{Max: 3, Period: time.Hour}

// QRLinkLifetime is how long Wawp keeps a QR link valid; a QR pairing is
// live that long at most.
const QRLinkLifetime = wawp.TempLinkLifetime

// Retries of a revocation that failed: the n-th waits firstRevokeRetry
// doubled n-1 times (at most maxRevokeRetry); after maxRevokeTries
// failures, or once the link has run out anyway, it is given up.
const (
	maxRevokeTries   = 8
	firstRevokeRetry = 5 * time.Second
	maxRevokeRetry   = 5 * time.Minute
)

// qrEndMargin is how long before Wawp's expiry a QR pairing ends (and
// its link is revoked): the message showing the link is replaced through
// the response_url of the click that asked for it ("Link by QR instead"),
// which Slack honours for 30 minutes, as long as the link lives; ended a
// minute early, the link still leaves the message (issue 10).
const qrEndMargin = time.Minute

// ErrQRUnavailable means QR links cannot be had for the instance: its
// account's plan has no temporary links (Wawp answered 403 or 402; the
// *APIError is wrapped too), QR links are turned off (Config.QRLimit.Max
// below zero), or its client cannot make them. Nothing was made, and the
// request does not count.
var ErrQRUnavailable = errors.New("QR links are not available for this instance")

// Audit events of the QR fallback; the end of a QR pairing is audited as
// a code's is (linked, wrong_phone, expired, cancelled, error,
// interrupted, superseded). No event ever holds the link.
const (
	EventQRRequested EventKind = "qr_requested" // a QR link was asked for, and the limits let it
	EventQRIssued    EventKind = "qr_issued"    // Wawp made the link; shown to its requester only
	EventQRRevoked   EventKind = "qr_revoked"   // the link was revoked at Wawp
)

// QRRequest is one ask for a QR link. The caller has checked access.
type QRRequest struct {
	Instance Instance
	// Phone is the number expected to scan the code: another number
	// linking is then the wrong phone. Zero: any number links; with
	// Replaces, the replaced pairing's phone.
	Phone   Phone
	User    string
	Team    string
	Channel string
	// ResponseURL is the slash command's, for a QR link asked for with a
	// command (empty for one asked for with a button): posts to it add
	// messages (see Pairing).
	ResponseURL string
	URLIssued   time.Time
	// ClickURL is the response_url of the click that asked for the link
	// ("New link" on a QR pairing's message, "Link by QR instead" on a
	// code's; empty for a click on a DM, which is edited with
	// chat.update): it replaces the clicked message, as a code renewal's
	// (Request.ClickURL).
	ClickURL    string
	ClickIssued time.Time
	ClickTS     string // the clicked message's ts
	// Modal is the live code window the request was made from (issue 10),
	// if any; with Replaces, the replaced pairing's.
	Modal ModalSurface
	// Delivery is where the link goes, as a code (Request.Delivery): the
	// requester's ephemeral messages, or their DM (DeliveryDM; with no DM,
	// the requester's). Card asks for a status card (Request.Card), which
	// never shows the link, as it never shows a code. With Replaces, all
	// three are the replaced pairing's instead.
	Delivery Delivery
	DM       Surface
	Card     Surface
	// Replaces is the requester's own pairing on Instance whose message
	// offered the QR link (a code, or an earlier QR link: "New link"); the
	// QR pairing is shown in that message, and takes over its DM and card,
	// if any, as a code renewal does (Renew). ErrNotYours when it is
	// someone else's or on another instance.
	Replaces string
	// DedupeKey is the command's identity (see Dedupe): a request whose
	// key was claimed before does nothing and returns ErrDuplicate.
	DedupeKey string
}

// QRLimit is the per-instance window of QR links in force.
func (s *Service) QRLimit() Window { return s.cfg.QRLimit }

// NextQRAt is when instance's QR window next allows a link: now (or
// earlier) when it already does; a whole window from now when the count
// cannot be read.
func (s *Service) NextQRAt(ctx context.Context, instance string, now time.Time) time.Time {
	at, _, err := s.db.NextAllowed(ctx, QRKey(instance), now, s.cfg.QRLimit)
	if err != nil {
		return now.Add(s.cfg.QRLimit.Period)
	}
	return at
}

// qrLinks is the temp-link client of instance's account, if QR links may
// be had for it at all.
func (s *Service) qrLinks(instance string) (TempLinks, bool) {
	if s.cfg.QRLimit.Max < 0 {
		return nil, false
	}
	links, ok := s.client(instance).(TempLinks)
	return links, ok
}

// StartQR runs a request for a QR link: the limits (the instance's QR
// window, the user's window, one live pairing per instance), the session
// precheck (only SCAN_QR_CODE), then Wawp's temp-link POST. It returns the
// stored pairing (Method MethodQR, State live with Link and ExpiresAt on
// success) and, on failure, a *LimitError (limit_qr, limit_user,
// limit_instance), a *StatusError, ErrQRUnavailable (a plan without QR
// links), an *APIError, ErrNotYours (Replaces is not the requester's),
// or ErrDuplicate. As with Start, every outcome has a pairing record,
// watched until its message shows it, except a replacing request's limit
// refusal.
func (s *Service) StartQR(ctx context.Context, req QRRequest) (Pairing, error) {
	now := s.cfg.Now()
	links, ok := s.qrLinks(req.Instance.ID)
	if !ok {
		return Pairing{}, s.refuse(ctx, req.DedupeKey, ErrQRUnavailable)
	}
	p := Pairing{
		ID: newID(), Method: MethodQR, Instance: req.Instance.ID, InstanceName: req.Instance.Name, Phone: req.Phone.Digits,
		RequestedBy: req.User, Team: req.Team, Channel: req.Channel,
		ResponseURL: req.ResponseURL, URLIssued: req.URLIssued, ClickURL: req.ClickURL, ClickIssued: req.ClickIssued, ClickTS: req.ClickTS,
		Delivery: req.Delivery, DM: req.DM, Card: req.Card, Modal: req.Modal, Renews: req.Replaces,
		// From the request on, a link may exist at Wawp until revoked.
		RevokeDue: true,
	}
	var replacedAudit Event
	if req.Replaces != "" {
		old, err := s.db.Pairing(ctx, req.Replaces)
		if err != nil {
			return Pairing{}, err
		}
		if old.RequestedBy != req.User || old.Instance != req.Instance.ID {
			return Pairing{}, s.refuse(ctx, req.DedupeKey, ErrNotYours) // no one else's pairing handed out
		}
		p.Message = old.MessageID()
		if p.Phone == "" {
			p.Phone = old.Phone
		}
		// Shown where the old pairing was: its DM message (which shows
		// nothing of the link yet) and its card carry on with the link.
		p.Delivery, p.DM, p.Card, p.Modal = old.Delivery, old.DM, old.Card, old.Modal
		p.DM.LastView, p.Modal.LastView = "", ""
		replacedAudit = s.event(time.Time{}, "", old, "")
	}
	if p.Delivery == DeliveryDM && p.DM.Recipient == "" {
		p.DM.Recipient = req.User
	}
	log := s.cfg.Log.With("request", RequestID(ctx), "pairing", p.ID, "method", MethodQR, "instance", p.InstanceName, "phone", maskDigits(p.Phone), "user", req.User)
	d, err := s.db.Reserve(ctx, Reservation{
		Pairing: p, PhoneLimit: s.cfg.QRLimit, UserLimit: s.cfg.UserLimit,
		Replaces: req.Replaces, Now: now, Hold: s.RequestLease(),
		Granted: s.event(now, EventQRRequested, p, ""),
		Refused: s.event(now, EventRefused, p, ""),
		Dedupe:  s.dedupe(req.DedupeKey, now),
	})
	if errors.Is(err, ErrUnavailable) {
		s.undoReserve(ctx, p, log, func(found Pairing) { s.failQR(ctx, found, req, log, err, false, replacedAudit) })
	}
	if err != nil {
		return Pairing{}, err
	}
	if d.Duplicate {
		log.Info("duplicate command dropped", "dedupe_key", req.DedupeKey)
		return Pairing{}, ErrDuplicate
	}
	if d.Refused != LimitNone {
		lerr := &LimitError{Limit: d.Refused, Phone: qrPhone(p.Phone), Count: d.Count, RetryAt: d.RetryAt, Holder: d.Holder, Window: s.window(d.Refused)}
		log.Info("QR request refused by limit", "limit", d.Refused, "retry_at", d.RetryAt)
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
		return s.failQR(ctx, p, req, log, err, false, replacedAudit)
	}

	callCtx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	link, err := links.CreateTempLink(callCtx, p.Instance)
	cancel()
	if err != nil {
		made := linkMayExist(err)
		if errors.Is(err, ErrForbidden) {
			err = fmt.Errorf("%w: %w", ErrQRUnavailable, err)
		}
		return s.failQR(ctx, p, req, log, err, made, replacedAudit)
	}
	issued := s.cfg.Now()
	expires := linkExpiry(link, issued)
	// The link came: it is recorded even if ctx ended meanwhile.
	rctx, cancelRecord := RecordContext(ctx)
	defer cancelRecord()
	// Retried while the database does not answer, as a code's (see
	// settleRetrying): the link is made, and is not lost to a blip.
	settled, err := s.settleRetrying(ctx, p.ExpiresAt, Settlement{
		ID: p.ID, Now: issued, Counted: true, Replaced: req.Replaces,
		Change: func(q *Pairing) error {
			if q.State == StateLive && q.Link == link.URL && q.IssuedAt.Equal(issued) {
				return errSettledBefore // an earlier try applied, its reply lost
			}
			// As with a code: a request past its lease no longer holds the
			// instance, and its link is never shown.
			if q.State != StateRequesting || !issued.Before(q.ExpiresAt) {
				return ErrInterrupted
			}
			q.State, q.Link, q.IssuedAt, q.ExpiresAt = StateLive, link.URL, issued, expires
			return nil
		},
		Audit:         s.event(issued, EventQRIssued, p, ""),
		ReplacedAudit: replacedAudit,
	})
	if errors.Is(err, errSettledBefore) {
		settled, err = s.db.Pairing(rctx, p.ID)
	}
	if errors.Is(err, ErrInterrupted) {
		// The link came too late to be shown: it ends as interrupted, and
		// the link is revoked at once (or by later ticks).
		s.interrupt(rctx, p.ID, true)
		log.Warn("QR link arrived after the request's lease ran out or it was interrupted; revoking it")
		s.revokeNow(ctx, rctx, p.ID, log)
		return s.stored(rctx, p), ErrInterrupted
	}
	if err != nil {
		// Made but not stored: it still holds the instance (until its
		// lease runs out and a tick ends it, retrying this revocation).
		if rev, rerr := s.revokeLink(ctx, p, s.cfg.Now()); rev != revoked {
			log.Error("storing the QR link failed, and so did revoking it", "err", rerr)
		}
		return Pairing{}, err
	}
	if req.Replaces != "" {
		// Wawp expired the replaced pairing's link, if it had one, when it
		// made this one.
		s.settleRevocation(rctx, req.Replaces, linkGone, issued, log)
	}
	log.Info("QR link issued", "attempt", settled.Attempt, "expires_at", settled.ExpiresAt)
	return settled, nil
}

// linkMayExist says whether a temp-link POST that failed with err may
// have made a link anyway: it may have reached Wawp and was not turned
// away before anything was made (a timeout, a lost or unreadable answer,
// a 5xx, a link this client refused to show).
func linkMayExist(err error) bool {
	var aerr *APIError
	if errors.As(err, &aerr) && !aerr.Sent {
		return false
	}
	for _, refused := range []error{ErrBadRequest, ErrUnauthorized, ErrNoInstance, ErrNotReady, ErrRateLimited, ErrForbidden} {
		if errors.Is(err, refused) {
			return false
		}
	}
	return true
}

// linkExpiry is when the pairing of a link issued at issued ends: Wawp's
// expiry, but never later than QRLinkLifetime less qrEndMargin after
// issued (an expiry that is missing, unreadable, too late, or not after
// issued reads as that).
func linkExpiry(l TempLink, issued time.Time) time.Time {
	exp := issued.Add(QRLinkLifetime - qrEndMargin)
	if l.ExpiresAt.After(issued) && l.ExpiresAt.Before(exp) {
		return l.ExpiresAt
	}
	return exp
}

// failQR ends a reserved QR request that produced no link, as fail does
// a code request (recorded on a context of its own; a call cut off by a
// shutdown ends it as interrupted, its revocation left to the ticks).
// made says a link may exist anyway: it is revoked at once (the request
// still holds the instance), and the request counts, so a pairing it
// replaced ends as superseded; otherwise nothing happened at Wawp, the
// request does not count and a replaced pairing gets its instance back.
func (s *Service) failQR(ctx context.Context, p Pairing, req QRRequest, log *slog.Logger, cause error, made bool, replacedAudit Event) (Pairing, error) {
	rctx, cancel := RecordContext(ctx)
	defer cancel()
	if ctx.Err() != nil && (errors.Is(cause, ErrTimeout) || errors.Is(cause, ErrUnreachable)) {
		s.interrupt(rctx, p.ID, false)
		log.Warn("no QR link: the request was cut short; a later tick revokes any link made", "err", cause)
		return s.stored(rctx, p), ErrInterrupted
	}
	now := s.cfg.Now()
	rev := linkGone
	var revErr error
	if made {
		rev, revErr = s.revokeLink(ctx, p, now)
	}
	state, reason, serr, cause := settledFailure(cause, now, s.cfg.Warmup)
	outcome := OutcomeOf(cause)
	updated, err := s.db.Settle(rctx, Settlement{
		ID: p.ID, Now: now, Counted: made,
		Replaced: req.Replaces, ReplacedURL: req.ClickURL,
		Change: func(q *Pairing) error {
			// As in fail: past its lease it no longer holds the instance.
			if q.State != StateRequesting || !now.Before(q.ExpiresAt) {
				return ErrInterrupted
			}
			q.State, q.Reason = state, reason
			if serr != nil {
				q.RetryAt, q.LinkedPhone = serr.RetryAt, serr.Me
			}
			s.noteRevocation(q, rev, now)
			return nil
		},
		Audit:         s.event(now, EventError, p, outcome),
		ReplacedAudit: replacedAudit,
	})
	if errors.Is(err, ErrInterrupted) {
		s.interrupt(rctx, p.ID, true)
		log.Warn("no QR link, and the request's lease ran out or it was interrupted", "err", cause)
		if rev != revokeFailed && rev != revokeLater {
			s.settleRevocation(rctx, p.ID, rev, now, log)
		}
		return s.stored(rctx, p), ErrInterrupted
	}
	if err != nil {
		log.Error("ending pairing", "err", err)
		updated = p
	} else if rev == revoked {
		s.audit(rctx, s.event(now, EventQRRevoked, updated, ""))
	}
	if revErr != nil {
		log.Warn("revoking a QR link that may exist failed; later ticks retry", "err", revErr)
	}
	log.Warn("no QR link", "outcome", outcome, "counted", made, "err", cause)
	return updated, cause
}

// cancelQR is Cancel of live QR pairing p by its requester (or the person
// it was handed to): the link is revoked first, while the pairing still
// holds its instance, then the pairing ends as cancelled (a revocation
// that failed is retried by later ticks). The click's response_url (none
// for a click on the DM) becomes the ephemeral message's editor, as in
// Cancel.
func (s *Service) cancelQR(ctx context.Context, p Pairing, user string, click Click) (Pairing, error) {
	now := s.cfg.Now()
	log := s.cfg.Log.With("request", RequestID(ctx), "pairing", p.ID, "method", MethodQR, "instance", p.InstanceName, "user", user)
	rev, revErr := s.revokeLink(ctx, p, now)
	q, err := s.db.UpdatePairing(ctx, p.ID, now, func(q *Pairing) error {
		if !q.MayUse(user) {
			return ErrNotYours
		}
		if !q.Live(now) {
			return ErrEnded
		}
		q.State = StateCancelled
		if click.ResponseURL != "" && q.ClickURL != click.ResponseURL {
			q.ClickURL, q.ClickIssued, q.ClickTS = click.ResponseURL, click.Issued, click.TS
		}
		s.noteRevocation(q, rev, now)
		return nil
	})
	if errors.Is(err, ErrEnded) {
		// It ended meanwhile (linked, say); the revocation stands.
		if rev == revoked {
			s.settleRevocation(ctx, p.ID, rev, now, log)
		}
		return s.Cancel(ctx, p.ID, user, click)
	}
	if errors.Is(err, ErrNotYours) {
		return Pairing{}, err
	}
	if err != nil {
		return q, err
	}
	s.audit(ctx, s.event(now, EventCancelled, q, ""))
	if rev == revoked {
		s.audit(ctx, s.event(now, EventQRRevoked, q, ""))
	}
	if revErr != nil {
		log.Warn("revoking the cancelled QR link failed; later ticks retry", "err", revErr)
	}
	log.Info("QR link cancelled", "revoked", rev == revoked)
	return q, nil
}

// audit appends e, logging a failure (an audit event never fails the
// operation it records).
func (s *Service) audit(ctx context.Context, e Event) {
	if err := s.db.AppendAudit(ctx, e); err != nil {
		s.logStorageError(ctx, "audit", "err", err)
	}
}

// revocation is what came of revoking a pairing's link.
type revocation int

const (
	// linkGone: no revocation is needed (any more): a newer link replaced
	// it, it ran out, or none can have been made.
	linkGone revocation = iota
	// revoked: Wawp revoked the instance's links (DELETE answered, or the
	// instance is gone with them).
	revoked
	// revokeLater: not tried now: another QR request on the instance is
	// under way, and a DELETE would revoke the link it is making (or the
	// storage could not say). It costs no try.
	revokeLater
	// revokeFailed: the DELETE failed.
	revokeFailed
)

// revokeLink revokes p's link (DELETE revokes every link of p's
// instance) unless another QR pairing holds the instance: a live one's
// link replaced p's (Wawp expired p's when it made it), and one still
// being requested must not have its link revoked as it arrives.
func (s *Service) revokeLink(ctx context.Context, p Pairing, now time.Time) (revocation, error) {
	links, ok := s.client(p.Instance).(TempLinks)
	if !ok {
		return linkGone, nil
	}
	holder, err := s.db.Holder(ctx, p.Instance, now)
	switch {
	case err == nil && holder.ID != p.ID && holder.Method == MethodQR:
		if holder.State == StateLive {
			return linkGone, nil
		}
		return revokeLater, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return revokeLater, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	err = links.RevokeTempLink(ctx, p.Instance)
	if err == nil || errors.Is(err, ErrNoInstance) {
		return revoked, nil
	}
	return revokeFailed, err
}

// noteRevocation records on QR pairing q what came of revoking its link
// at now: due no more, or due again after a backoff.
func (s *Service) noteRevocation(q *Pairing, r revocation, now time.Time) {
	if q.Method != MethodQR {
		return
	}
	switch r {
	case linkGone, revoked:
		q.RevokeDue, q.RevokeAt = false, time.Time{}
	case revokeLater:
		q.RevokeAt = now
	case revokeFailed:
		q.RevokeTries++
		wait := min(firstRevokeRetry<<(min(q.RevokeTries, 16)-1), maxRevokeRetry)
		q.RevokeAt = now.Add(wait)
	}
}

// errNoRevocationDue aborts an update of a pairing with no revocation due.
var errNoRevocationDue = errors.New("no revocation due")

// settleRevocation records r on pairing id, if a revocation is still due
// on it (giving it up after maxRevokeTries failures), audits a
// revocation made or given up, and stops watching a pairing whose
// surfaces were done with it. It returns the pairing as stored (no ID
// when nothing was written).
func (s *Service) settleRevocation(ctx context.Context, id string, r revocation, now time.Time, log *slog.Logger) Pairing {
	gaveUp := false
	q, err := s.db.UpdatePairing(ctx, id, now, func(q *Pairing) error {
		if q.Method != MethodQR || !q.RevokeDue {
			return errNoRevocationDue
		}
		s.noteRevocation(q, r, now)
		if q.RevokeDue && q.RevokeTries >= maxRevokeTries {
			q.RevokeDue, q.RevokeAt, gaveUp = false, time.Time{}, true
		}
		return nil
	})
	if errors.Is(err, errNoRevocationDue) || errors.Is(err, ErrNotFound) {
		return Pairing{}
	}
	if err != nil {
		s.logStorageError(ctx, "recording a QR link's revocation", "pairing", id, "err", err)
		return Pairing{}
	}
	switch {
	case r == revoked:
		s.audit(ctx, s.event(now, EventQRRevoked, q, ""))
	case gaveUp:
		log.Error("gave up revoking a QR link: it may work until it runs out", "pairing", id, "instance", q.InstanceName, "tries", q.RevokeTries, "link_runs_out_by", s.revokeDeadline(q))
		s.audit(ctx, s.event(now, EventError, q, OutcomeQRRevokeFailed))
	}
	if !q.RevokeDue && q.UnwatchDue {
		if err := s.db.RecordView(ctx, id, q.LastView, true); err != nil {
			s.logStorageError(ctx, "unwatching a revoked QR pairing", "pairing", id, "err", err)
		}
	}
	return q
}

// revokeNow revokes the link of ended QR pairing id at once (a Wawp call
// on ctx: none once ctx is done), recording what came of it on rctx
// (later ticks retry a failure).
func (s *Service) revokeNow(ctx, rctx context.Context, id string, log *slog.Logger) {
	p, err := s.db.Pairing(rctx, id)
	if err != nil || !p.RevokeDue {
		return
	}
	now := s.cfg.Now()
	r, rerr := s.revokeLink(ctx, p, now)
	if rerr != nil {
		log.Warn("revoking a QR link failed; later ticks retry", "pairing", id, "err", rerr)
	}
	s.settleRevocation(rctx, id, r, now, log)
}

// revokeDeadline is when p's link has certainly run out at Wawp: a link
// lives QRLinkLifetime from its POST, which left within the request's
// lease. A revocation due after it is moot.
func (s *Service) revokeDeadline(p Pairing) time.Time {
	return p.RequestedAt.Add(s.RequestLease() + QRLinkLifetime)
}

// retryRevocations retries the revocations due on ended QR pairings
// among watched (each at most once per tick, after its backoff), and
// gives up those whose link has run out anyway. It updates watched.
func (s *Service) retryRevocations(ctx context.Context, watched []Pairing, now time.Time) {
	for i, p := range watched {
		if ctx.Err() != nil {
			return // a shutdown: the next tick (of this process or another) retries
		}
		if p.Method != MethodQR || !p.Final() || !p.RevokeDue || now.Before(p.RevokeAt) {
			continue
		}
		log := s.cfg.Log.With("pairing", p.ID, "method", MethodQR, "instance", p.InstanceName)
		r := linkGone
		if now.Before(s.revokeDeadline(p)) {
			var err error
			if r, err = s.revokeLink(ctx, p, now); err != nil {
				log.Warn("retrying a QR link's revocation", "tries", p.RevokeTries+1, "err", err)
			}
		}
		if q := s.settleRevocation(ctx, p.ID, r, now, log); q.ID != "" {
			watched[i] = q
		}
	}
}

// keepForRevocation is asked when a surface stops watching pairing id: a
// QR pairing whose link is still to be revoked stays watched (the ticks
// retry the revocation), with show applied (what the surface shows now)
// and UnwatchDue set, and is unwatched once the revocation is settled. It
// reports whether it kept the pairing; false means the caller unwatches.
func (s *Service) keepForRevocation(ctx context.Context, id string, show func(*Pairing)) (bool, error) {
	p, err := s.db.Pairing(ctx, id)
	if err != nil || p.Method != MethodQR || !p.RevokeDue {
		return false, nil // the caller's own call reports a storage failure
	}
	if q := p; p.UnwatchDue {
		// Kept already (the surface asks again each tick): write only a
		// change of what it shows.
		if show(&q); q.LastView == p.LastView {
			return true, nil
		}
	}
	_, err = s.db.UpdatePairing(ctx, id, s.cfg.Now(), func(q *Pairing) error {
		if !q.RevokeDue {
			return errNoRevocationDue
		}
		show(q)
		q.UnwatchDue = true
		return nil
	})
	if errors.Is(err, errNoRevocationDue) || errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// QRSuggested reports whether a code cannot do the job for pairing p (or
// the result err of asking for it), so its message should offer "Link by
// QR instead" (issue 10): the phone's limit is reached (a refusal by it,
// in err or stored in p), WhatsApp's lock-out answer came back (err, or a
// pairing that failed with it), the wrong phone linked, or two codes in a
// row expired for this phone on this instance (p.ExpiredInARow). It reads
// only p and err. A QR pairing never suggests QR.
func QRSuggested(p Pairing, err error) bool {
	if p.Method == MethodQR {
		return false
	}
	if lerr, ok := errors.AsType[*LimitError](err); ok && lerr.Limit == LimitPhone {
		return true
	}
	if errors.Is(err, ErrLockedOut) {
		return true
	}
	switch {
	case p.RefusedBy() == LimitPhone, p.State == StateWrongPhone:
		return true
	case p.State == StateFailed && ReasonError(p.Reason) == ErrLockedOut:
		return true
	case p.State == StateExpired && p.ExpiredInARow >= 2:
		return true
	}
	return false
}

// QRSuggested is the package's QRSuggested, for a pairing whose instance
// can have QR links at all (they are not turned off, and its account's
// client can make them). It does no I/O.
func (s *Service) QRSuggested(p Pairing, err error) bool {
	if _, ok := s.qrLinks(p.Instance); !ok {
		return false
	}
	return QRSuggested(p, err)
}

// maxExpiredStreak bounds how far back expiredInARow reads.
const maxExpiredStreak = 5

// expiredInARow is how many codes for p's phone on p's instance expired
// in a row, p (expiring now) included, as the audit log tells: the codes
// before p that expired, up to the last one that ended otherwise (linked,
// wrong phone, cancelled, replaced by a New code) or a QR link. 1 when
// the log cannot be read.
func (s *Service) expiredInARow(ctx context.Context, p Pairing) int {
	events, _, err := s.db.Audit(ctx, AuditQuery{
		Phone: p.Phone, Instances: []string{p.Instance}, Limit: 10 * maxExpiredStreak,
		Keep: func(e Event) bool { return e.Pairing != p.ID },
	})
	if err != nil {
		s.cfg.Log.Warn("reading a phone's history for its expired codes", "pairing", p.ID, "err", err)
		return 1
	}
	n := 1
	for i := len(events) - 1; i >= 0 && n < maxExpiredStreak; i-- {
		switch events[i].Kind {
		case EventExpired:
			n++
		case EventLinked, EventWrongPhone, EventCancelled, EventSuperseded, EventQRIssued:
			return n
		}
	}
	return n
}

// maskDigits is a phone's digits masked for a log line or an audit
// event; "" for none (a QR link for any number).
func maskDigits(digits string) string {
	if digits == "" {
		return ""
	}
	return MaskPhone(PhoneFromDigits(digits).International)
}

// qrPhone is the Phone of digits, zero for none.
func qrPhone(digits string) Phone {
	if digits == "" {
		return Phone{}
	}
	return PhoneFromDigits(digits)
}
