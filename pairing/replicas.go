package pairing

import (
	"errors"
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
