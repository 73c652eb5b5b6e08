package pairing

import (
	"context"

	"github.com/linkbot/linkbot/pairing/wawp"
)

// Wawp is what the service needs from Wawp: an instance's session, and a
// pairing code for a phone. *wawp.Client implements it (pairing/wawp is the
// only code that knows Wawp's URLs and JSON); tests may hand in a stub.
// The interface lives here, with the code that uses it (Go Code Review
// Comments, "Interfaces").
type Wawp interface {
	// SessionInfo reports the status of instance's WhatsApp session.
	SessionInfo(ctx context.Context, instance string) (Session, error)
	// RequestCode asks for a pairing code for phone (digits, country code
	// first). Every call may count against WhatsApp's hidden per-phone
	// limit: the service never retries it.
	RequestCode(ctx context.Context, instance, phone string) (string, error)
}

// The Wawp terms the domain speaks in. They are pairing/wawp's own types
// under the domain's names, so the Slack edge (package bot) names a session
// status or a kind of failed call through pairing, and never imports the
// Wawp client.
type (
	// Session is what Wawp reports about an instance's WhatsApp session.
	Session = wawp.Session
	// Status is a Wawp session status.
	Status = wawp.Status
	// APIError is a failed Wawp call; it never carries the access token.
	APIError = wawp.APIError
	// TempLink is a hosted QR page (the QR fallback; see TempLinks).
	TempLink = wawp.TempLink
)

// The session statuses Wawp documents. Anything else is treated as pending.
const (
	StatusStopped  = wawp.StatusStopped
	StatusStarting = wawp.StatusStarting
	StatusScanQR   = wawp.StatusScanQR
	StatusWorking  = wawp.StatusWorking
	StatusFailed   = wawp.StatusFailed
)

// The kinds of failed Wawp call; an *APIError matches one with errors.Is.
var (
	ErrBadRequest   = wawp.ErrBadRequest
	ErrUnauthorized = wawp.ErrUnauthorized
	ErrNoInstance   = wawp.ErrNoInstance
	ErrNotReady     = wawp.ErrNotReady
	ErrRateLimited  = wawp.ErrRateLimited
	ErrServer       = wawp.ErrServer
	ErrUpstream     = wawp.ErrUpstream
	ErrBadResponse  = wawp.ErrBadResponse
	ErrTimeout      = wawp.ErrTimeout
	ErrUnreachable  = wawp.ErrUnreachable
	ErrForbidden    = wawp.ErrForbidden // the account may not (its plan: no temporary links)
	ErrLockedOut    = wawp.ErrLockedOut // WhatsApp's lock-out of a phone that asked too often
)

// TempLinks is what the QR fallback needs from Wawp (issue 10): a hosted
// QR page for an instance, and its revocation. It is a second interface,
// not part of Wawp, so a Wawp that cannot make links (a stub, another
// account's client) still serves codes: the service asks a client for it
// with a type assertion, and without it QR links are unavailable
// (ErrQRUnavailable). *wawp.Client implements it.
type TempLinks interface {
	// CreateTempLink makes a new hosted QR page for instance; Wawp expires
	// the instance's older one.
	CreateTempLink(ctx context.Context, instance string) (TempLink, error)
	// RevokeTempLink revokes every active hosted QR page of instance.
	RevokeTempLink(ctx context.Context, instance string) error
}

// The Wawp client is the production Wawp, QR links included.
var (
	_ Wawp      = (*wawp.Client)(nil)
	_ TempLinks = (*wawp.Client)(nil)
)
