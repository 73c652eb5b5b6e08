// Package wawp is the client of Wawp's API: the only code that knows Wawp's
// URLs and JSON. Package pairing uses it through its own small interface
// (pairing.Wawp), so the domain can be run against a stub as easily as
// against pairing/fakewawp.
package wawp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Wawp endpoints. Only this package knows Wawp's URLs and JSON.
const (
	DefaultBaseURL      = "https://api.wawp.net"
	pathSessionInfo     = "/v2/session/info"
	pathRequestCode     = "/v2/auth/request-code"
	pathTempLink        = "/v2/session/temp-link"
	maxWawpResponseBody = 64 << 10
)

// Status is a Wawp session status.
type Status string

// The statuses Wawp documents. Anything else is treated as pending.
const (
	StatusStopped  Status = "STOPPED"
	StatusStarting Status = "STARTING"
	StatusScanQR   Status = "SCAN_QR_CODE"
	StatusWorking  Status = "WORKING"
	StatusFailed   Status = "FAILED"
)

// Session is what Wawp reports about an instance's WhatsApp session.
type Session struct {
	Name   string
	Status Status
	// Me is the linked phone's digits (from me.id "201012345678@c.us"),
	// empty until a phone is linked.
	Me string
}

// Errors a Wawp call can end in; an *APIError matches one of them with errors.Is.
var (
	ErrBadRequest   = errors.New("wawp: bad request")
	ErrUnauthorized = errors.New("wawp: access token rejected")
	ErrNoInstance   = errors.New("wawp: instance does not exist")
	ErrNotReady     = errors.New("wawp: session not in the expected state")
	ErrRateLimited  = errors.New("wawp: rate limited")
	ErrServer       = errors.New("wawp: internal error")
	ErrUpstream     = errors.New("wawp: upstream connection failed")
	ErrBadResponse  = errors.New("wawp: unreadable response")
	ErrTimeout      = errors.New("wawp: timed out")
	ErrUnreachable  = errors.New("wawp: unreachable")
	// ErrForbidden: the call is not allowed for this account, although its
	// token is good (Wawp answers a bad token with 401): a plan without
	// temporary links answers temp-link with 403 (or 402).
	ErrForbidden = errors.New("wawp: not allowed for this account")
	// ErrLockedOut: WhatsApp refused to pair the phone (its hidden lock-out
	// after a few codes in a short window), passed on by Wawp as an answer
	// to request-code whose code is "rate-overlimit".
	ErrLockedOut = errors.New("wawp: WhatsApp blocked pairing for this number")
)

// APIError is a failed Wawp call. It never carries the access token.
type APIError struct {
	Endpoint string // e.g. "/v2/auth/request-code"
	Status   int    // HTTP status, 0 when no answer arrived
	Code     string // Wawp's error code string, when it sent one
	Message  string // Wawp's message, shortened, token redacted
	Kind     error  // one of the Err* sentinels
	// Sent is true when the request may have reached Wawp (and so WhatsApp).
	Sent bool
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", e.Endpoint, e.Kind)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " code=%s", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotReady) and the like work.
func (e *APIError) Is(target error) bool { return e.Kind == target }

// Observer receives every Wawp call's outcome (for metrics). Status is the
// HTTP status, or "timeout" / "unreachable" when no answer came.
type Observer interface {
	WawpCall(endpoint, status string, d time.Duration)
}

// Client calls Wawp's API for one access token.
type Client struct {
	baseURL string
	token   string
	http    *http.Client
	obs     Observer
	// linkOrigins are the origins (scheme://host[:port]) a temp-link may
	// point to; see TempLink.
	linkOrigins []string
}

// Observe makes c report every call to o; call it before the client is used.
func (c *Client) Observe(o Observer) *Client {
	c.obs = o
	return c
}

// NewClient returns a client for baseURL (DefaultBaseURL when empty). The
// caller's context bounds each call; httpClient may be nil.
//
// The client never follows a redirect, whatever httpClient's CheckRedirect
// says: the URL carries the access token, and on a 307/308 Go would re-send
// it (and the body) to whatever host Location names, https→http included,
// and request-code would reach Wawp twice. A 3xx is an unreadable answer.
func NewClient(baseURL, token string, httpClient *http.Client) *Client {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	hc := http.Client{Timeout: 15 * time.Second}
	if httpClient != nil {
		hc = *httpClient // a copy shares the Transport (and its connections)
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	baseURL = strings.TrimRight(baseURL, "/")
	return &Client{baseURL: baseURL, token: token, http: &hc, linkOrigins: linkOrigins(baseURL)}
}

// SessionInfo asks Wawp for the status of instance's session.
func (c *Client) SessionInfo(ctx context.Context, instance string) (Session, error) {
	status, body, err := c.post(ctx, pathSessionInfo, instance, nil)
	if err != nil {
		return Session{}, err
	}
	return decodeSession(status, body, c.token)
}

// RequestCode asks Wawp for a pairing code for phone (digits, country code
// first) and returns it as 8 upper-case characters without a dash. Every call
// may count against WhatsApp's hidden per-phone limit: never retry it in a loop.
func (c *Client) RequestCode(ctx context.Context, instance, phone string) (string, error) {
	status, body, err := c.post(ctx, pathRequestCode, instance, map[string]string{"phone_number": phone})
	if err != nil {
		return "", err
	}
	return decodeCode(status, body, c.token)
}

// post calls Wawp the way its request-code sample does
// (/work/shared/seed-wawp-request-code.txt, "Request Samples"; DESIGN.md
// "Wawp facts"): instance_id and access_token in the query string, the
// call's own fields as a JSON object in the body. The token is sent once,
// in the URL, which is why every error is redacted and no redirect is
// followed.
func (c *Client) post(ctx context.Context, path, instance string, fields map[string]string) (int, []byte, error) {
	return c.call(ctx, http.MethodPost, path, path, instance, fields)
}

// call sends one request as post describes, with method: POST and DELETE
// carry the JSON body (an empty object when there are no fields); GET
// carries none (RFC 9110 §9.3.1: a GET body has no defined meaning, and
// some proxies refuse one). endpoint names the call in errors and
// metrics.
func (c *Client) call(ctx context.Context, method, endpoint, path, instance string, fields map[string]string) (int, []byte, error) {
	q := url.Values{"instance_id": {instance}, "access_token": {c.token}}
	var body io.Reader
	if method != http.MethodGet {
		if fields == nil {
			fields = map[string]string{}
		}
		raw, err := json.Marshal(fields)
		if err != nil {
			return 0, nil, &APIError{Endpoint: endpoint, Kind: ErrBadRequest, Message: err.Error()}
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path+"?"+q.Encode(), body)
	if err != nil {
		return 0, nil, &APIError{Endpoint: endpoint, Kind: ErrUnreachable, Message: redact(err.Error(), c.token)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		terr := transportError(endpoint, err, c.token)
		c.observe(endpoint, terr.Kind, 0, start)
		return 0, nil, terr
	}
	c.observe(endpoint, nil, resp.StatusCode, start)
	defer resp.Body.Close()
	b, err := readAnswer(resp.Body, maxWawpResponseBody, c.token)
	if err != nil {
		e := transportError(endpoint, err, c.token)
		e.Status, e.Sent = resp.StatusCode, true
		return 0, nil, e
	}
	return resp.StatusCode, b, nil
}

// readAnswer reads at most limit bytes of an answer. When the answer is
// longer, the cut may fall inside a copy of the token (an error page that
// echoes the request URL), and redact cannot find a token cut in two: so a
// tail that is the token's beginning, as it is or query-escaped, is
// dropped with it.
func readAnswer(r io.Reader, limit int, token string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil || len(b) <= limit {
		return b, err
	}
	b = b[:limit]
	if token == "" {
		return b, nil
	}
	for _, form := range []string{token, url.QueryEscape(token)} {
		for k := min(len(form), len(b)); k > 0; k-- {
			if bytes.HasSuffix(b, []byte(form[:k])) {
				b = b[:len(b)-k]
				break
			}
		}
	}
	return b, nil
}

func (c *Client) observe(path string, kind error, status int, start time.Time) {
	if c.obs == nil {
		return
	}
	label := strconv.Itoa(status)
	switch kind {
	case ErrTimeout:
		label = "timeout"
	case ErrUnreachable:
		label = "unreachable"
	}
	c.obs.WawpCall(path, label, time.Since(start))
}

// transportError describes a call that got no (complete) answer. A
// *url.Error prints the whole URL, token included, so only its cause is kept.
func transportError(path string, err error, token string) *APIError {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	kind := ErrUnreachable
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		kind = ErrTimeout
	}
	// A refused or unresolvable connection never reached Wawp; anything
	// later (timeouts, resets) may have.
	var operr *net.OpError
	sent := !(errors.As(err, &operr) && operr.Op == "dial")
	return &APIError{Endpoint: path, Kind: kind, Message: redact(err.Error(), token), Sent: sent}
}

func redact(s, token string) string {
	if token == "" {
		return s
	}
	s = strings.ReplaceAll(s, token, "[redacted]")
	return strings.ReplaceAll(s, url.QueryEscape(token), "[redacted]")
}

// wawpBody is the union of the JSON shapes Wawp has been seen to send.
type wawpBody struct {
	Code       json.RawMessage `json:"code"`
	Status     json.RawMessage `json:"status"`
	StatusCode int             `json:"statusCode"`
	Message    json.RawMessage `json:"message"`
	Error      json.RawMessage `json:"error"`
	Name       string          `json:"name"`
	Me         *struct {
		ID string `json:"id"`
	} `json:"me"`
}

// pairingCode matches a code with or without its separator, e.g.
// ABCD-1234 or ABCD 1234.
var pairingCode = regexp.MustCompile(`^[A-Za-z0-9]{4}[- ]?[A-Za-z0-9]{4}$`)

// byteOrderMark is stripped from a body before it is read as JSON.
const byteOrderMark = "\ufeff"

// decodeCode reads request-code's answer. A 2xx answer the bot cannot
// read may still carry a working code in a shape not recognised (Wawp's
// page types the answer only as "application/json string",
// seed-wawp-request-code.txt), and the error is logged: such an error
// keeps no text of the body, and no "code" that looks like a pairing code
// (WhatsApp's error names, such as rate-overlimit, stay).
func decodeCode(status int, body []byte, token string) (string, error) {
	const endpoint = pathRequestCode
	r := redactor{token: token}
	body = bytes.TrimPrefix(bytes.TrimSpace(body), []byte(byteOrderMark))
	var bare string
	if status >= 200 && status <= 299 && json.Unmarshal(body, &bare) == nil && pairingCode.MatchString(bare) {
		return normaliseCode(bare), nil // a bare JSON string: the page's own type
	}
	b, err := decodeBody(endpoint, status, body, r)
	if err == nil {
		code := jsonString(b.Code)
		if pairingCode.MatchString(code) {
			return normaliseCode(code), nil
		}
		// "code" then holds an error name such as "invalid_session", or is missing.
		err = errorIn2xx(endpoint, status, b, body, r)
	}
	var aerr *APIError
	if errors.As(err, &aerr) && aerr.Status >= 200 && aerr.Status <= 299 {
		aerr.Message = ""
		if looksLikeCode.MatchString(aerr.Code) {
			aerr.Code = ""
		}
	}
	return "", lockedOut(err)
}

// looksLikeCode finds a pairing code anywhere in a string.
var looksLikeCode = regexp.MustCompile(`(?i)\b[a-z0-9]{4}[-\s]?[a-z0-9]{4}\b`)

// normaliseCode is a code as the bot keeps it: upper case, no separator.
func normaliseCode(code string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
}

// lockedOutCode is the code of WhatsApp's refusal to pair a phone that
// asked too often (WhatsApp's own error name; Wawp passes it on, so far
// as an HTTP 200 with an error body).
const lockedOutCode = "rate-overlimit"

// lockedOut makes a request-code error that carries WhatsApp's lock-out
// code an ErrLockedOut, whatever the HTTP status: that answer says the
// phone must wait (for hours), not that Wawp failed.
func lockedOut(err error) error {
	var aerr *APIError
	if errors.As(err, &aerr) && strings.EqualFold(aerr.Code, lockedOutCode) {
		aerr.Kind = ErrLockedOut
	}
	return err
}

func decodeSession(status int, body []byte, token string) (Session, error) {
	const endpoint = pathSessionInfo
	r := redactor{token: token}
	b, err := decodeBody(endpoint, status, body, r)
	if err != nil {
		return Session{}, err
	}
	st := jsonString(b.Status)
	if st == "" {
		return Session{}, errorIn2xx(endpoint, status, b, body, r)
	}
	s := Session{Name: b.Name, Status: Status(strings.ToUpper(st))}
	if b.Me != nil {
		id, _, _ := strings.Cut(b.Me.ID, "@")
		id, _, _ = strings.Cut(id, ":") // multi-device ids look like 2010...:12@s.whatsapp.net
		s.Me = strings.TrimPrefix(id, "+")
	}
	return s, nil
}

// decodeBody reads a 2xx JSON answer; any other status, or a body that is
// not JSON, becomes a typed error.
func decodeBody(endpoint string, status int, body []byte, r redactor) (wawpBody, error) {
	var b wawpBody
	if status < 200 || status > 299 {
		return b, statusError(endpoint, status, body, r)
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return b, &APIError{Endpoint: endpoint, Status: status, Kind: ErrBadResponse, Message: snippet(body, r), Sent: true}
	}
	return b, nil
}

// errorIn2xx is the error for a 2xx answer without the expected field:
// some Wawp failures arrive as HTTP 200 with an error body, sometimes
// carrying the real status as NestJS's statusCode.
func errorIn2xx(endpoint string, status int, b wawpBody, body []byte, r redactor) *APIError {
	if b.StatusCode >= 400 {
		return statusError(endpoint, b.StatusCode, body, r)
	}
	e := statusError(endpoint, status, body, r)
	e.Kind = ErrBadResponse
	return e
}

// statusError maps an HTTP status to a typed error, keeping whatever code
// and message the body has (JSON of either shape, plain text, HTML or XML).
func statusError(endpoint string, status int, body []byte, r redactor) *APIError {
	e := &APIError{Endpoint: endpoint, Status: status, Sent: true}
	switch {
	case status == http.StatusBadRequest:
		e.Kind = ErrBadRequest
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = ErrUnauthorized
	case status == http.StatusNotFound:
		e.Kind = ErrNoInstance
	case status == http.StatusUnprocessableEntity:
		e.Kind = ErrNotReady
	case status == http.StatusTooManyRequests:
		e.Kind = ErrRateLimited
	case status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		e.Kind = ErrUpstream
	case status >= 500:
		e.Kind = ErrServer
	default:
		e.Kind = ErrBadResponse
	}
	var b wawpBody
	if json.Unmarshal(body, &b) == nil {
		e.Code = shorten(r.clean(jsonString(b.Code)), 60)
		msg := jsonString(b.Message)
		if msg == "" {
			msg = jsonString(b.Error)
		}
		e.Message = shorten(r.clean(msg), 200)
		return e
	}
	e.Message = snippet(body, r)
	return e
}

var tags = regexp.MustCompile(`<[^>]*>`)

// snippet is a short, single-line, tag-free excerpt of a body, for logs.
// The token is redacted before anything is cut, so a cut cannot leave its
// first characters behind.
func snippet(body []byte, r redactor) string {
	s := tags.ReplaceAllString(r.clean(string(body)), " ")
	s = strings.Join(strings.Fields(s), " ")
	return shorten(r.clean(s), 200)
}

// shorten cuts s to n characters. Redact before shortening, never after:
// a token cut in two is no longer found by redact.
func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// jsonString reads a JSON string, a number, or an array of strings (NestJS
// validation messages) as one string.
func jsonString(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return strings.Join(list, "; ")
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}
