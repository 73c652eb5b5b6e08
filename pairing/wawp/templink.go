package wawp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// Temporary access links, the QR fallback (issue 10; DESIGN.md "Wawp
// facts"; Wawp's page for /v2/session/temp-link): POST makes a hosted QR
// page, https://app.wawp.net/temp-qr/{token} with a random 64-character
// token, valid for 30 minutes, and answers it with its expiry; it expires
// any older link of the instance. GET answers the active link, or
// {"link": null} when there is none. DELETE revokes every active link of
// the instance at once. Wawp: "Call DELETE after a successful connection
// to prevent replay."
//
// The link is a credential like the access token: whoever opens it can
// link a phone to the instance. So:
//   - a link is accepted only on an origin a Wawp QR page may have (see
//     linkOrigins): an unreadable, wrong or hostile answer can never make
//     the bot show an arbitrary link; anything else is ErrBadResponse;
//   - no error this file returns holds a link or its token (see
//     redactor): an error is logged, and a link Wawp echoed in an error
//     page, or one this client refused, would otherwise reach the log;
//   - a TempLink prints and logs without its URL.

// TempLinkLifetime is how long Wawp keeps a temporary link valid.
const TempLinkLifetime = 30 * time.Minute

// WawpLinkOrigin is where Wawp hosts its QR pages.
const WawpLinkOrigin = "https://app.wawp.net"

// Endpoint names of the temp-link calls, in errors (APIError.Endpoint)
// and metrics: the three share one path.
const (
	EndpointTempLinkCreate = "POST " + pathTempLink
	EndpointTempLinkGet    = "GET " + pathTempLink
	EndpointTempLinkRevoke = "DELETE " + pathTempLink
)

// tempQRPath is the path of a hosted QR page: /temp-qr/ and the token.
// Wawp documents the token as random and 64 characters long; it is taken
// to be of the URL-safe alphabet (hex is), so it needs no escaping.
var tempQRPath = regexp.MustCompile(`^/temp-qr/[A-Za-z0-9_-]{64}$`)

// TempLink is a hosted QR page for linking a phone to an instance.
type TempLink struct {
	// URL is the page. A credential: show it only to its requester, never
	// log it, drop it when it is no longer needed.
	URL string
	// ExpiresAt is the expiry Wawp gave (UTC); zero when its answer had
	// none that reads. The link lives TempLinkLifetime at most.
	ExpiresAt time.Time
}

// String is the link without its URL, so printing a TempLink (%v, %s,
// %+v) cannot leak it.
func (l TempLink) String() string {
	if l.ExpiresAt.IsZero() {
		return "temp-link [redacted]"
	}
	return "temp-link [redacted] expires " + l.ExpiresAt.UTC().Format(time.RFC3339)
}

// Format prints every verb (%#v and %q included) as String does.
func (l TempLink) Format(f fmt.State, _ rune) { fmt.Fprint(f, l.String()) }

// LogValue logs the link's expiry, never its URL.
func (l TempLink) LogValue() slog.Value {
	return slog.GroupValue(slog.String("link", "[redacted]"), slog.Time("expires_at", l.ExpiresAt))
}

// MarshalJSON writes the link without its URL too: slog's JSON handler
// marshals a TempLink inside a slice or map without asking LogValue. A
// TempLink is never meant to be stored; whoever keeps the link keeps URL.
func (l TempLink) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Link      string    `json:"link"`
		ExpiresAt time.Time `json:"expires_at"`
	}{"[redacted]", l.ExpiresAt})
}

// linkOrigins are the origins a temp-link may point to for a client of
// base: Wawp's (https://app.wawp.net) always; and, when base is not
// Wawp's own API, base's own origin as well. A server standing in for Wawp
// at another base (pairing/fakewawp, a proxy) serves its QR pages itself;
// a "sibling" host (app. beside api.) was not chosen because such a server
// has one origin (a loopback port). Wawp itself is trusted only with its
// documented origin: a link on api.wawp.net, or any other host, is refused.
func linkOrigins(base string) []string {
	origins := []string{WawpLinkOrigin}
	if base == DefaultBaseURL {
		return origins
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return origins
	}
	if o := u.Scheme + "://" + u.Host; o != WawpLinkOrigin {
		origins = append(origins, o)
	}
	return origins
}

// validLink reports whether raw is a hosted QR page on one of origins, in
// its plain form: scheme://host/temp-qr/{token}, no user, port other than
// the origin's, query, fragment or escapes.
func validLink(raw string, origins []string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawPath != "" {
		return false
	}
	if u.String() != raw || !tempQRPath.MatchString(u.Path) {
		return false
	}
	return slices.Contains(origins, u.Scheme+"://"+u.Host)
}

// CreateTempLink asks Wawp for a new hosted QR page for instance (POST);
// Wawp expires the instance's older link. A plan without temporary links
// answers ErrForbidden.
func (c *Client) CreateTempLink(ctx context.Context, instance string) (TempLink, error) {
	status, body, err := c.call(ctx, http.MethodPost, EndpointTempLinkCreate, pathTempLink, instance, nil)
	if err != nil {
		return TempLink{}, err
	}
	l, ok, err := decodeTempLink(EndpointTempLinkCreate, status, body, c.token, c.linkOrigins)
	if err == nil && !ok {
		err = &APIError{Endpoint: EndpointTempLinkCreate, Status: status, Kind: ErrBadResponse, Message: "no link in the answer", Sent: true}
	}
	return l, err
}

// ActiveTempLink asks Wawp for instance's active hosted QR page (GET):
// false when it has none.
func (c *Client) ActiveTempLink(ctx context.Context, instance string) (TempLink, bool, error) {
	status, body, err := c.call(ctx, http.MethodGet, EndpointTempLinkGet, pathTempLink, instance, nil)
	if err != nil {
		return TempLink{}, false, err
	}
	return decodeTempLink(EndpointTempLinkGet, status, body, c.token, c.linkOrigins)
}

// RevokeTempLink revokes every active hosted QR page of instance (DELETE),
// so a link that did its job (or was given up) cannot be used again.
func (c *Client) RevokeTempLink(ctx context.Context, instance string) error {
	status, body, err := c.call(ctx, http.MethodDelete, EndpointTempLinkRevoke, pathTempLink, instance, nil)
	if err != nil {
		return err
	}
	return decodeRevoke(EndpointTempLinkRevoke, status, body, c.token)
}

// tempLinkBody is the union of the shapes a temp-link answer may take.
// Only {"link": null} is documented; the rest is read defensively: the
// link as a string or as an object holding url (or link) and the expiry,
// at the top or under "data", the expiry under any of the usual names.
type tempLinkBody struct {
	Link       json.RawMessage `json:"link"`
	URL        json.RawMessage `json:"url"`
	ExpiresAt  json.RawMessage `json:"expires_at"`
	ExpiresAt2 json.RawMessage `json:"expiresAt"`
	ExpireAt   json.RawMessage `json:"expire_at"`
	Expires    json.RawMessage `json:"expires"`
	Expiry     json.RawMessage `json:"expiry"`
	Expiration json.RawMessage `json:"expiration"`
	Data       json.RawMessage `json:"data"`
}

// expiry is the first expiry field that is set.
func (b tempLinkBody) expiry() json.RawMessage {
	for _, raw := range []json.RawMessage{b.ExpiresAt, b.ExpiresAt2, b.ExpireAt, b.Expires, b.Expiry, b.Expiration} {
		if len(raw) > 0 && string(raw) != "null" {
			return raw
		}
	}
	return nil
}

// decodeTempLink reads an answer to POST or GET temp-link: the link
// (checked against origins) and its expiry; false, no error, when the
// answer says there is no active link ({"link": null}). Errors never
// hold the link or its token.
func decodeTempLink(endpoint string, status int, body []byte, token string, origins []string) (TempLink, bool, error) {
	r := redactor{token: token, links: true}
	b, err := decodeBody(endpoint, status, body, r)
	if err != nil {
		return TempLink{}, false, forbidden(err)
	}
	if b.StatusCode >= 400 {
		return TempLink{}, false, forbidden(errorIn2xx(endpoint, status, b, body, r))
	}
	var top tempLinkBody
	if json.Unmarshal(body, &top) != nil {
		return TempLink{}, false, errorIn2xx(endpoint, status, b, body, r)
	}
	fields := top
	if top.Link == nil && top.URL == nil && isObject(top.Data) {
		if json.Unmarshal(top.Data, &fields) != nil {
			return TempLink{}, false, errorIn2xx(endpoint, status, b, body, r)
		}
	}
	raw := fields.Link
	if raw == nil {
		raw = fields.URL
	}
	if raw == nil {
		// No link at all: an error body in a 2xx, or an answer of
		// another shape.
		return TempLink{}, false, errorIn2xx(endpoint, status, b, body, r)
	}
	if string(raw) == "null" {
		return TempLink{}, false, nil
	}
	exp := fields.expiry()
	if isObject(raw) {
		var inner tempLinkBody
		if json.Unmarshal(raw, &inner) != nil {
			return TempLink{}, false, badLink(endpoint, status, "no readable link in the answer")
		}
		raw = inner.URL
		if raw == nil {
			raw = inner.Link
		}
		if e := inner.expiry(); e != nil {
			exp = e
		}
	}
	var link string
	if json.Unmarshal(raw, &link) != nil || link == "" {
		return TempLink{}, false, badLink(endpoint, status, "no readable link in the answer")
	}
	if !validLink(link, origins) {
		return TempLink{}, false, badLink(endpoint, status, "the link is not a Wawp QR page ("+WawpLinkOrigin+"/temp-qr/…)")
	}
	return TempLink{URL: link, ExpiresAt: parseExpiry(exp)}, true, nil
}

// badLink is the error for an answer whose link cannot be used. It says
// why, never what the link was.
func badLink(endpoint string, status int, why string) *APIError {
	return &APIError{Endpoint: endpoint, Status: status, Kind: ErrBadResponse, Message: why, Sent: true}
}

// decodeRevoke reads an answer to DELETE temp-link: any 2xx whose body is
// empty or a JSON object that reports no failure (a statusCode of 400 or
// more, or "success": false) is a revocation.
func decodeRevoke(endpoint string, status int, body []byte, token string) error {
	r := redactor{token: token, links: true}
	if status < 200 || status > 299 {
		return forbidden(statusError(endpoint, status, body, r))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var b struct {
		wawpBody
		Success *bool `json:"success"`
	}
	if json.Unmarshal(body, &b) != nil {
		return &APIError{Endpoint: endpoint, Status: status, Kind: ErrBadResponse, Message: snippet(body, r), Sent: true}
	}
	if b.StatusCode >= 400 || (b.Success != nil && !*b.Success) {
		return forbidden(errorIn2xx(endpoint, status, b.wawpBody, body, r))
	}
	return nil
}

// forbidden makes a temp-link error whose status is 403 (or 402, payment
// required) an ErrForbidden: Wawp answers a bad token with 401, so these
// mean the account may not use temporary links (its plan).
func forbidden(err error) error {
	var aerr *APIError
	if errors.As(err, &aerr) && (aerr.Status == http.StatusForbidden || aerr.Status == http.StatusPaymentRequired) {
		aerr.Kind = ErrForbidden
	}
	return err
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// parseExpiry reads an expiry as RFC 3339 text or as a Unix time in
// seconds or milliseconds (a number, or digits in a string); zero when
// it reads as none of these.
func parseExpiry(raw json.RawMessage) time.Time {
	s := jsonString(raw)
	if s == "" {
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC()
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f >= 1e15 {
		return time.Time{}
	}
	if f >= 1e12 {
		return time.UnixMilli(int64(f)).UTC()
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

// tokenRun is text that may be a QR page's token: 20 or more characters
// of the token's alphabet in a row. A 64-character token is such a run
// whatever surrounds it, and a piece of one long enough to matter is too.
var tokenRun = regexp.MustCompile(`[A-Za-z0-9_-]{20,}`)

// redactor takes secrets out of text Wawp sent before it goes into an
// error, and so into a log line: the access token always; with links (the
// answers to temp-link), also any run of text that may be a QR page's
// token (tokenRun), so a link the answer holds — an error page quoting
// it, a link this client refused — never reaches the log. Long words of
// an error message are lost with it; the status and kind remain.
type redactor struct {
	token string
	links bool
}

func (r redactor) clean(s string) string {
	s = redact(s, r.token)
	if r.links {
		s = tokenRun.ReplaceAllString(s, "[redacted]")
	}
	return s
}
