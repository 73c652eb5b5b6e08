// Package fakewawp is an in-process Wawp API for tests and the demo. It
// speaks Wawp's HTTP+JSON over a real socket and enforces what the real one
// (and WhatsApp behind it) does: the access token, instance existence, JSON
// bodies, session statuses, the 422 warm-up, slow answers, WhatsApp's
// hidden per-phone pairing lock-out, and temporary QR links (see
// templink.go).
package fakewawp

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Call is one request the fake received.
type Call struct {
	Endpoint string
	Method   string
	Instance string
	Phone    string
	Status   int
	At       time.Time
}

// Failure is an answer to inject instead of the real one.
type Failure struct {
	Status      int
	ContentType string
	Body        string
	// Hang makes the fake never answer (until the client gives up).
	Hang bool
	// Arrived, when set, is sent to (without blocking: give it room) when
	// a call takes this failure, so a test can wait for the call with a
	// select instead of polling Calls.
	Arrived chan<- struct{}
}

// arrived tells f's Arrived, if any, that a call took f.
func (f Failure) arrived() {
	if f.Arrived != nil {
		select {
		case f.Arrived <- struct{}{}:
		default:
		}
	}
}

type instance struct {
	status     string
	me         string
	code       string // live code, without dash
	codePhone  string
	warmUntil  time.Time
	failures   map[string][]Failure
	alwaysFail map[string]*Failure
	token      string // the instance's own account token, if not the server's
	// link is the instance's temporary QR link, nil when it has none;
	// noTempLinks: its account's plan has no temporary links.
	link        *tempLink
	noTempLinks bool
}

// Server is a fake Wawp.
type Server struct {
	URL   string
	Token string

	srv       *httptest.Server
	closed    chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex
	now       func() time.Time
	delay     time.Duration
	instances map[string]*instance
	calls     []Call
	requests  map[string][]time.Time // phone → request-code times
	locked    map[string]time.Time   // phone → locked until
	// LockoutAfter requests for one phone within LockoutWindow lock it out,
	// as WhatsApp does after 3–5 codes.
	lockoutAfter  int
	lockoutWindow time.Duration
	// linkOrigin is where the QR pages of temporary links are (the fake's
	// own URL unless SetLinkOrigin changed it); ended holds the tokens of
	// links that were revoked or replaced, and why.
	linkOrigin string
	ended      map[string]string
}

// New starts a fake Wawp that accepts token.
func New(token string) *Server {
	s := &Server{
		Token: token, now: time.Now, instances: map[string]*instance{},
		requests: map[string][]time.Time{}, locked: map[string]time.Time{},
		lockoutAfter: 4, lockoutWindow: time.Hour, closed: make(chan struct{}),
		ended: map[string]string{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	s.linkOrigin = s.URL
	return s
}

// Close stops the server.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetClock makes the fake use now instead of the wall clock.
func (s *Server) SetClock(now func() time.Time) { s.mu.Lock(); s.now = now; s.mu.Unlock() }

// SetDelay makes every answer wait d (respecting the client's deadline).
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// SetLockout changes WhatsApp's hidden limit: more than after requests for
// one phone within window lock it out.
func (s *Server) SetLockout(after int, window time.Duration) {
	s.mu.Lock()
	s.lockoutAfter, s.lockoutWindow = after, window
	s.mu.Unlock()
}

// AddInstance creates an instance with a status (SCAN_QR_CODE when empty).
func (s *Server) AddInstance(id, status string) {
	if status == "" {
		status = "SCAN_QR_CODE"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[id] = &instance{status: status, failures: map[string][]Failure{}, alwaysFail: map[string]*Failure{}}
}

// SetToken puts an instance on another Wawp account: only token opens it.
func (s *Server) SetToken(id, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		in.token = token
	}
}

// SetStatus changes an instance's status; me is the linked phone's digits.
func (s *Server) SetStatus(id, status, me string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		in.status, in.me = status, me
		if status != "SCAN_QR_CODE" {
			in.code = ""
		}
	}
}

// WarmUp puts an instance in STARTING for d, answering request-code with 422,
// then in SCAN_QR_CODE.
func (s *Server) WarmUp(id string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		in.warmUntil = s.now().Add(d)
	}
}

// FailNext makes the next call to endpoint on instance answer f (queued).
// endpoint is a path (SessionInfo, RequestCode) or, for temp-link, one of
// TempLinkCreate, TempLinkGet, TempLinkRevoke.
func (s *Server) FailNext(id, endpoint string, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		in.failures[endpoint] = append(in.failures[endpoint], f)
	}
}

// FailAlways makes every call to endpoint on instance answer f; nil stops it.
func (s *Server) FailAlways(id, endpoint string, f *Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		in.alwaysFail[endpoint] = f
	}
}

// Code returns the instance's live pairing code (without dash), if any.
func (s *Server) Code(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		return in.code
	}
	return ""
}

// EnterCode simulates the phone owner typing code into WhatsApp: if it is
// the instance's live code the session becomes WORKING with that phone.
func (s *Server) EnterCode(id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return fmt.Errorf("no instance %s", id)
	}
	code = strings.ToUpper(strings.ReplaceAll(code, "-", ""))
	if in.code == "" || in.code != code {
		return fmt.Errorf("wrong or expired code")
	}
	in.status, in.me, in.code = "WORKING", in.codePhone, ""
	return nil
}

// Calls returns the calls received for endpoint ("" for all).
func (s *Server) Calls(endpoint string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if endpoint == "" || c.Endpoint == endpoint {
			out = append(out, c)
		}
	}
	return out
}

// LockedOut reports whether WhatsApp would now refuse pairing for phone.
func (s *Server) LockedOut(phone string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now().Before(s.locked[phone])
}

// Endpoints.
const (
	SessionInfo = "/v2/session/info"
	RequestCode = "/v2/auth/request-code"
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	// Reading the body first lets net/http notice a client that gives up.
	reqBody, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	status, ctype, body, hang := s.answer(r, reqBody)
	if hang {
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		return
	}
	if ctype == "" {
		ctype = "application/json"
	}
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func jsonBody(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (s *Server) answer(r *http.Request, reqBody []byte) (status int, ctype, body string, hang bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	call := Call{Endpoint: r.URL.Path, Method: r.Method, Instance: r.URL.Query().Get("instance_id"), At: now}
	defer func() {
		call.Status = status
		s.calls = append(s.calls, call)
	}()
	if strings.HasPrefix(r.URL.Path, qrPagePath) {
		call.Endpoint, call.Instance = qrPagePath, ""
		return s.qrPage(r, now)
	}
	if r.URL.Path != SessionInfo && r.URL.Path != RequestCode && r.URL.Path != TempLink {
		return http.StatusNotFound, "text/html", "<html><body><h1>Cannot " + r.Method + " " + r.URL.Path + "</h1></body></html>", false
	}
	key := r.URL.Path // what FailNext and FailAlways are keyed by
	switch {
	case r.URL.Path == TempLink:
		if r.Method != http.MethodPost && r.Method != http.MethodGet && r.Method != http.MethodDelete {
			return http.StatusMethodNotAllowed, "text/plain", "method not allowed", false
		}
		key = r.Method + " " + TempLink
	case r.Method != http.MethodPost && !(r.Method == http.MethodGet && r.URL.Path == SessionInfo):
		return http.StatusMethodNotAllowed, "text/plain", "method not allowed", false
	}
	in := s.instances[call.Instance]
	want := s.Token
	if in != nil && in.token != "" {
		want = in.token
	}
	if r.URL.Query().Get("access_token") != want {
		return http.StatusUnauthorized, "", jsonBody(map[string]any{"statusCode": 401, "message": "Invalid or missing access token", "error": "Unauthorized"}), false
	}
	if in == nil {
		return http.StatusNotFound, "", jsonBody(map[string]string{"code": "invalid_session", "message": "Session does not exist"}), false
	}
	if q := in.failures[key]; len(q) > 0 {
		f := q[0]
		in.failures[key] = q[1:]
		f.arrived()
		return f.Status, f.ContentType, f.Body, f.Hang
	}
	if f := in.alwaysFail[key]; f != nil {
		f.arrived()
		return f.Status, f.ContentType, f.Body, f.Hang
	}
	if r.URL.Path == TempLink {
		return s.tempLink(r, reqBody, in, now)
	}
	warming := now.Before(in.warmUntil)
	if r.URL.Path == SessionInfo {
		st := in.status
		if warming {
			st = "STARTING"
		}
		info := map[string]any{"name": call.Instance, "status": st}
		if in.me != "" && st == "WORKING" {
			info["me"] = map[string]string{"id": in.me + "@c.us", "pushName": "Field phone"}
		}
		return http.StatusOK, "", jsonBody(info), false
	}
	// request-code
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return http.StatusBadRequest, "", jsonBody(map[string]any{"statusCode": 400, "message": "Content-Type must be application/json", "error": "Bad Request"}), false
	}
	var req struct {
		Phone string `json:"phone_number"`
	}
	if err := json.Unmarshal(reqBody, &req); err != nil || req.Phone == "" || strings.Trim(req.Phone, "0123456789") != "" || len(req.Phone) < 8 || len(req.Phone) > 15 {
		return http.StatusBadRequest, "", jsonBody(map[string]any{"statusCode": 400, "message": []string{"phone_number must be digits with country code"}, "error": "Bad Request"}), false
	}
	call.Phone = req.Phone
	if warming || in.status != "SCAN_QR_CODE" {
		return http.StatusUnprocessableEntity, "", jsonBody(map[string]any{"statusCode": 422, "message": "Session status is not as expected", "error": "Unprocessable Entity"}), false
	}
	// WhatsApp counts the request whatever happens next.
	times := append(s.requests[req.Phone], now)
	s.requests[req.Phone] = times
	recent := 0
	for _, t := range times {
		if now.Sub(t) < s.lockoutWindow {
			recent++
		}
	}
	if recent > s.lockoutAfter {
		s.locked[req.Phone] = now.Add(3 * time.Hour)
	}
	if now.Before(s.locked[req.Phone]) {
		// WhatsApp's lock-out surfaces as a 200 with an error body.
		return http.StatusOK, "", jsonBody(map[string]string{"code": "rate-overlimit", "message": "Pairing temporarily blocked for this number"}), false
	}
	in.code, in.codePhone = newCode(), req.Phone
	return http.StatusOK, "", jsonBody(map[string]string{"code": in.code[:4] + "-" + in.code[4:]}), false
}

const codeAlphabet = "ABCDEFGHJKLMNPQRSTVWXYZ123456789"

func newCode() string {
	b := make([]byte, 8)
	rand.Read(b)
	for i := range b {
		b[i] = codeAlphabet[int(b[i])%len(codeAlphabet)]
	}
	return string(b)
}
