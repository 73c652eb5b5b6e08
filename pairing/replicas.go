package pairing

import (
	"errors"
	"fmt"
	"time"
)

// What several replicas on one database need from the storage (issue 11):
// each Slack command handled once (Dedupe), one ticker at a time (Term),
// and never the same edit twice (ViewClaim). The bbolt file is one process
// and needs none of it, but implements the same contract, so the service
// and the bot use one code path whichever storage runs.

// ErrDuplicate means the command was already handled: Socket Mode
// redelivered its envelope (retry_attempt) or delivered it twice, or the
// same click arrived again. Nothing was done; the Slack edge drops it
// silently after its ack.
var ErrDuplicate = errors.New("command already handled")

// DefaultDedupeWindow is how long a command's key is remembered. Slack
// redelivers an envelope it got no ack for within minutes (its retries
// come after about 1 and 5 minutes); an hour leaves room for a replica
// that takes a while to ack, and keeps the table small.
const DefaultDedupeWindow = time.Hour

// Dedupe names one Slack command so that it is handled once across every
// replica and every redelivery. Key is the command's own identity — the
// envelope ID of a slash command; for a click, the pairing, the action_id
// and the action_ts (a redelivered envelope of a click keeps them, a new
// click has a new action_ts) — and is empty for a command that is not
// deduplicated. A key claimed once is a duplicate for every later claim
// until Until (the caller's clock, like the limits' windows: an hour
// dwarfs any skew between replicas), and free again after it.
type Dedupe struct {
	Key   string
	Until time.Time
}

// Term is one tenure of the ticker's leadership (riverqueue/river's
// leader election is the model): the replica that holds it, and when it
// was elected, on the storage's clock. A renewal names the term it
// renews, so a replica can only ever extend the tenure it won, never one
// it lost and won again meanwhile. The zero Term is no tenure.
type Term struct {
	Leader    string
	ElectedAt time.Time
}

// IsZero reports whether t is no tenure.
func (t Term) IsZero() bool { return t.Leader == "" && t.ElectedAt.IsZero() }

// Equal reports whether t and u are the same tenure.
func (t Term) Equal(u Term) bool { return t.Leader == u.Leader && t.ElectedAt.Equal(u.ElectedAt) }

// The surfaces a claimed edit names (ViewClaim.Surface): a pairing's
// messages, whose views are in its Surface fields (see Pairing.View).
const (
	// SurfaceEphemeral is the requester's ephemeral message, edited through
	// its response_url; its view is Pairing.LastView.
	SurfaceEphemeral = "ephemeral"
	// SurfaceDM is the code's message in the app's DM with its recipient,
	// edited with chat.update; its view is Pairing.DM.LastView.
	SurfaceDM = "dm"
	// SurfaceCard is the status card in the channel, edited with
	// chat.update; its view is Pairing.Card.LastView.
	SurfaceCard = "card"
	// SurfaceModal is the live code window, a modal edited with
	// views.update; its view is Pairing.Modal.LastView.
	SurfaceModal = "modal"
)

// ErrNoSurface means a claimed edit named a surface a pairing does not
// have (not SurfaceEphemeral, SurfaceDM or SurfaceCard). Nothing changed.
var ErrNoSurface = errors.New("no such surface")

// CheckSurface returns ErrNoSurface, naming surface, unless it is one of a
// pairing's surfaces.
func CheckSurface(surface string) error {
	switch surface {
	case SurfaceEphemeral, SurfaceDM, SurfaceCard, SurfaceModal:
		return nil
	}
	return fmt.Errorf("%w: %q", ErrNoSurface, surface)
}

// DefaultEditClaim is how long a claimed edit holds unless its claimer
// finishes it: longer than a post with its retries can take (the bot's:
// three tries of at most 10 s, with at most 10 s between them), so that
// only a claimer that is gone (killed mid-post) ever loses its claim.
const DefaultEditClaim = 90 * time.Second

// ViewClaim asks for the one right to make an edit of a pairing's
// message: to replace the view From, which the claimer saw shown on
// Surface, with the view To. Leases are not mutexes: two replicas that
// both believe they lead, or a tick and a click, may both decide to make
// the same edit, and only the one that wins the claim posts it (issue 11).
type ViewClaim struct {
	ID      string // the pairing
	Surface string // SurfaceEphemeral, SurfaceDM, SurfaceCard or SurfaceModal
	From    string // the view the claimer saw shown (Pairing.View(Surface)); "" for none
	To      string // the view it will post
	// Token names this claim, for FinishView; unique to each claim.
	Token string
	Now   time.Time
	// For is how long the claim holds unless it is finished: past it, its
	// claimer is taken to be gone, and the edit may be claimed again.
	For time.Duration
	// URL, when set, is the response_url the edit is posted through: one
	// of its uses is taken with the claim, as UseResponseURL takes it
	// (issued at Issued, keeping Keep for later posts).
	URL    string
	Issued time.Time
	Keep   int
}
