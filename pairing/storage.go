package pairing

import (
	"context"
	"time"
)

// Storage is what the service needs to keep: pairings and the limits they
// are counted against, the audit log, and response_url budgets, in the
// domain's terms. Package store implements it on a bbolt file; another
// backend (PostgreSQL for several replicas) implements the same methods
// and passes the same contract.
//
// The interface is declared here, where it is used, not beside its
// implementation (Go Code Review Comments, "Interfaces"; benbjohnson/wtf
// declares its services in the root package and implements them in
// sqlite/): the domain does not import its storage, the storage imports
// the domain.
//
// Every method is safe for concurrent use. Errors are storage failures,
// except the ones documented (ErrNotFound, ErrBudgetSpent, and whatever a
// change function returns); a backend on a server wraps ErrUnavailable
// around a failure to reach it. Package store/storetest is the contract in
// full: every implementation runs it and passes.
//
// Every method takes the caller's ctx first, for a backend that talks to
// a server (cancellation, deadlines). A call with a ctx already done
// returns an error that is ctx.Err() (errors.Is) and changes nothing; a
// ctx done during a call may cut it short, but a call either applies all
// it promises or nothing (a backend that cannot cancel, bbolt, finishes
// it).
type Storage interface {
	// Reserve checks the per-phone, per-user and per-instance limits and,
	// when all allow it, records the attempt, stores the pairing as
	// Requesting, watches it and appends r.Granted — all at once: two
	// requests racing for one phone can never both pass. When a limit says
	// no it appends r.Refused (with the limit's outcome) and, for a request
	// of its own (no r.Replaces), stores and watches the refused pairing
	// (Decision.RefusedPairing). The instance is checked first, then the
	// phone, then the user: the first limit that says no is reported. The
	// attempt counts in the phone's and the user's windows until a
	// settlement that does not count removes it from both. A QR link
	// (r.Pairing.Method MethodQR) is counted in its instance's QR window
	// (r.Pairing.AttemptKey(), never the phone's) instead, refused as
	// LimitQR, and holds the instance as a code does.
	//
	// With r.Dedupe.Key set, the key is checked before anything else: one
	// already claimed (by Reserve or ClaimCommand) and unexpired at r.Now
	// makes a Decision with only Duplicate set, and nothing is stored;
	// otherwise the key is claimed until r.Dedupe.Until in the same
	// transaction as the decision, granted or refused. Two reservations
	// with one key, racing on any replica: exactly one is decided.
	Reserve(ctx context.Context, r Reservation) (Decision, error)
	// ClaimCommand claims d.Key for a command that reserves nothing (a
	// Cancel, a Refresh, a refusal): true when this call claimed it, false
	// when it was already claimed and is unexpired at now (a duplicate:
	// nothing changes). An expired key is claimed again. An empty key is
	// always claimed, and nothing is stored.
	ClaimCommand(ctx context.Context, d Dedupe, now time.Time) (bool, error)
	// Settle applies s to a reserved request in one step and returns the
	// pairing as stored; when s.Change fails, nothing of s is stored. A
	// replaced pairing that already reached a final state keeps it, and
	// gets no second end in the audit log; one this call ends (superseded,
	// or expired when its code ran out before an uncounted renewal
	// settled) has s.ReplacedAudit appended with that end. A request
	// that s.Change makes live is refused with ErrInterrupted, nothing
	// stored, when it no longer holds its instance: its lease ran out on
	// the storage's clock (PostgreSQL's now(), whatever s.Now says) or
	// its instance slot names another pairing.
	Settle(ctx context.Context, s Settlement) (Pairing, error)
	// Interrupt ends a request still Requesting as interrupted (see
	// Interruption); it reports whether this call ended it. A pairing the
	// request renewed ends as superseded, as with a counted Settle.
	Interrupt(ctx context.Context, in Interruption) (Pairing, bool, error)

	// Pairing returns the pairing with id, or ErrNotFound.
	Pairing(ctx context.Context, id string) (Pairing, error)
	// ReservedPairing returns the pairing a Reserve of p stored (by
	// p.ID), or ErrNotFound, once no Reserve of p is in flight any more:
	// it first waits for what Reserve holds while it decides (the phone's,
	// the user's and the instance's locks, in Reserve's order), so a
	// Reserve whose reply was lost while its COMMIT was still on the way
	// is seen, not missed (undoReserve).
	ReservedPairing(ctx context.Context, p Pairing) (Pairing, error)
	// Holder returns the pairing that holds instance at now (one live code
	// per instance), without its code or link (WipeCredentials), or
	// ErrNotFound when none does. A refusal's Decision.Holder is wiped
	// alike.
	Holder(ctx context.Context, instance string, now time.Time) (Pairing, error)
	// UpdatePairing applies change to the stored pairing and saves it. When
	// the pairing is no longer live afterwards, its code and link are
	// wiped (WipeCredentials) and its instance released; so it is with
	// every write that ends a pairing (Settle, Interrupt). An error from change aborts the update and is
	// returned (wrapped) with the pairing as change left it.
	UpdatePairing(ctx context.Context, id string, now time.Time, change func(*Pairing) error) (Pairing, error)
	// WatchedPairings returns the pairings whose messages are still kept
	// current: live ones, and ended ones whose final view is not shown yet.
	WatchedPairings(ctx context.Context) ([]Pairing, error)
	// RecordModal stores m as pairing id's code window, in one step, and
	// watches the pairing while m is open (not Closed): a window recorded
	// on a pairing that ended and stopped being watched meanwhile (a
	// Cancel on any replica) is kept current again until it shows the
	// final state (the Slack edge then stops watching it, as any
	// pairing's). A superseded pairing is refused with ErrReplaced,
	// nothing changed (its renewal, on any replica, owns the message),
	// unless superseded is set: the caller knows it was replaced and
	// records the window so that it is told so.
	RecordModal(ctx context.Context, id string, m ModalSurface, now time.Time, superseded bool) (Pairing, error)
	// RecordView remembers the key of the view pairing id's message shows
	// now; unwatch stops keeping the message current for good. It claims
	// nothing: ClaimView and FinishView are the edits' path; the Slack
	// edge records with it what it decides without posting (a superseded
	// pairing's message left as it is, a final pairing no longer watched,
	// a step skipped for want of a response_url use).
	RecordView(ctx context.Context, id, key string, unwatch bool) error
	// ClaimView claims the edit c names (see ViewClaim), in one step: it
	// wins (true) when pairing c.ID shows c.From on c.Surface (View) and no
	// other claim on that surface holds (unfinished, and before the time
	// its For ran out on the storage's clock, as Lead's leases); the claim
	// then holds until c.For has passed or FinishView ends it, and with
	// c.URL one use of the url is taken in the same step. Otherwise it
	// returns false and changes nothing; ErrBudgetSpent, changing nothing,
	// when the claim would win but the url has no use it may take;
	// ErrNotFound when the pairing is gone; ErrNoSurface for a surface
	// pairings do not have. Of any number of claims racing for one
	// surface, on any replicas, at most one wins. A superseded pairing's
	// claim never wins (its renewal owns the message) but on its code
	// window (SurfaceModal: a window recorded on it as it was replaced is
	// its own, told it was replaced), nor does a claim of
	// a renewal shown in its Renews pairing's message (Message set) while
	// that pairing's claim on the surface holds. A claim changes no view
	// (Pairing is as it was): FinishView does.
	ClaimView(ctx context.Context, c ViewClaim) (bool, error)
	// FinishView ends claim token on pairing id's surface: the surface is
	// as shown from now on (Pairing.WithShown): shown.LastView is the view
	// it shows (the claim's To when its post landed; its From when the
	// post certainly did not, so the edit may be claimed again; any other
	// view, such as a message that is gone), and for the DM and the card
	// shown is also where the message is (a message posted anew, the
	// first post's channel and ts, or Slack's refusal); the claim stops
	// holding, and with unwatch the message is no longer kept current. It
	// returns true, or false and changes nothing when token is not the
	// surface's claim any more (it ran out and another claim was made
	// since); ErrNotFound when the pairing is gone; ErrNoSurface for a
	// surface pairings do not have. A claim that ran out but was not
	// replaced can still be finished.
	FinishView(ctx context.Context, id, surface, token string, shown Surface, unwatch bool) (bool, error)
	// SetHold records that the Slack calls named key (a Web API method's
	// Retry-After: "chat.update", "chat.postMessage U123") may not be
	// made before until, so that a restarted process, or a replica starting meanwhile,
	// honours it too. A later until replaces an earlier one; an earlier
	// one changes nothing.
	SetHold(ctx context.Context, key string, until time.Time) error
	// Holds returns the holds still running at now (until after now), by
	// key; a hold that ran out is never returned (and may be deleted).
	Holds(ctx context.Context, now time.Time) (map[string]time.Time, error)
	// NextAllowed returns when phone may next get a code under limit (now
	// if it may already) and how many requests are in its window.
	NextAllowed(ctx context.Context, phone string, now time.Time, limit Window) (time.Time, int, error)

	// AppendAudit appends e to the audit log (nothing when e.Kind is empty).
	AppendAudit(ctx context.Context, e Event) error
	// Audit returns the events q selects, oldest first, and whether q's
	// limit left older matching events out.
	Audit(ctx context.Context, q AuditQuery) (events []Event, more bool, err error)

	// UseResponseURL takes one of url's ResponseURLUses posts, keeping keep
	// uses for later posts; ErrBudgetSpent when none may be taken or the url
	// is past ResponseURLLifetime since issued. The count survives restarts.
	UseResponseURL(ctx context.Context, url string, issued, now time.Time, keep int) error
	// RefundResponseURL gives back a use Slack certainly did not count.
	RefundResponseURL(ctx context.Context, url string) error

	// Lead elects leader as the ticker's leader, or renews its term, in
	// one step, with a lease measured on the storage's clock (PostgreSQL's
	// now(): replicas whose clocks disagree still agree on when a lease
	// has run out; elsewhere the clock now gives). A lease runs while the
	// clock is before its expiry:
	//   - held is a term of leader's whose lease still runs: the lease is
	//     renewed for ttl from now, and held returned;
	//   - no lease runs (none was taken, it ran out, or its leader
	//     resigned): leader is elected for ttl, and its new Term returned
	//     (ElectedAt: now on the storage's clock);
	//   - otherwise (another leader's lease runs; or leader's own, from a
	//     term it does not name): the zero Term, and nothing changes.
	// held is the zero Term, or a term Lead returned to leader; ttl is
	// positive. Of any number of candidates racing, on any replicas, at
	// most one holds a running lease.
	Lead(ctx context.Context, leader string, held Term, ttl time.Duration, now time.Time) (Term, error)
	// TakeEdit takes one of the perMinute chat.update and chat.delete
	// calls the workspace allows in any minute, shared by every process
	// on the storage (Slack counts them per workspace, not per process):
	// true when taken; false, changing nothing, when perMinute were taken
	// within the minute before now already. The minute slides, on the
	// storage's clock (PostgreSQL's now(), as Lead's leases; elsewhere
	// now): no minute, whichever instant it starts at, holds more than
	// perMinute takes, as Slack counts. Of any number of callers racing,
	// on any replicas, at most perMinute win in one minute.
	TakeEdit(ctx context.Context, now time.Time, perMinute int) (bool, error)
	// Resign ends term's lease at once, so that another replica is
	// elected at its next attempt instead of waiting the lease out (a
	// replica stopping). A term that no longer holds the lease changes
	// nothing.
	Resign(ctx context.Context, term Term) error

	// Prune deletes what before allows: old attempts, ended and unwatched
	// pairings, instance slots no live pairing holds, expired response_url
	// budgets and old audit events; and command keys expired at now, and
	// claimed edits that ran out (a storage may keep those until the
	// pairing goes). PruneStats counts each attempt once.
	Prune(ctx context.Context, now time.Time, before PruneBefore) (PruneStats, error)
}
