package pairing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store"
)

// The service's own tests: pairing.Service with an injected clock, a stub
// Wawp in the same process (it records every call and answers as scripted)
// and the real bbolt store in a temporary directory. They are an external
// test package because store imports pairing.

var t0 = time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)

const (
	digits   = "201112223333"
	masked   = "+20 11 ••• 333"
	otherNum = "201009998888"
	code     = "ABCD1234"
)

var (
	inst1 = pairing.Instance{ID: "INST00000001", Name: "support-eg"}
	inst2 = pairing.Instance{ID: "INST00000002", Name: "field-ng"}
)

// clock is the injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// stubWawp is a pairing.Wawp that answers as scripted and records calls.
// An instance it has no session for is waiting for a phone (SCAN_QR_CODE).
type stubWawp struct {
	mu         sync.Mutex
	sessions   map[string]pairing.Session
	sessionErr map[string]error
	codes      []string // handed out in turn; the last one repeats
	codeErr    error
	calls      []string
	// duringCode, if set, runs inside the next RequestCode call (once),
	// before it answers: what happens while the request is in flight.
	duringCode func()
}

func newStub() *stubWawp {
	return &stubWawp{sessions: map[string]pairing.Session{}, sessionErr: map[string]error{}, codes: []string{code}}
}

func (w *stubWawp) SessionInfo(_ context.Context, instance string) (pairing.Session, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, "session "+instance)
	if err := w.sessionErr[instance]; err != nil {
		return pairing.Session{}, err
	}
	if s, ok := w.sessions[instance]; ok {
		return s, nil
	}
	return pairing.Session{Name: instance, Status: pairing.StatusScanQR}, nil
}

func (w *stubWawp) RequestCode(_ context.Context, instance, phone string) (string, error) {
	w.mu.Lock()
	w.calls = append(w.calls, "code "+instance+" "+phone)
	during := w.duringCode
	w.duringCode = nil
	w.mu.Unlock()
	if during != nil {
		during()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.codeErr != nil {
		return "", w.codeErr
	}
	c := w.codes[0]
	if len(w.codes) > 1 {
		w.codes = w.codes[1:]
	}
	return c, nil
}

func (w *stubWawp) setStatus(instance string, st pairing.Status, me string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sessions[instance] = pairing.Session{Name: instance, Status: st, Me: me}
	delete(w.sessionErr, instance)
}

func (w *stubWawp) failSession(instance string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sessionErr[instance] = err
}

func (w *stubWawp) failCode(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.codeErr = err
}

// takeCalls returns the calls since the last takeCalls.
func (w *stubWawp) takeCalls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.calls
	w.calls = nil
	return c
}

// apiError is a failed Wawp call of kind; sent says whether it may have
// reached Wawp.
func apiError(endpoint string, kind error, sent bool) error {
	return &pairing.APIError{Endpoint: endpoint, Kind: kind, Sent: sent}
}

type rig struct {
	t     *testing.T
	clock *clock
	wawp  *stubWawp
	db    *store.DB
	svc   *pairing.Service
}

// newRig is a service at t0 over a fresh store, with cfg's zero fields
// defaulted (the clock is the rig's).
func newRig(t *testing.T, cfg pairing.Config) *rig {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "linkbot.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &rig{t: t, clock: &clock{t: t0}, wawp: newStub(), db: db}
	cfg.Now = r.clock.Now
	r.svc = pairing.NewService(r.wawp, db, cfg)
	return r
}

// request is U1's /link for phone on in.
func request(in pairing.Instance, phone, user string) pairing.Request {
	return pairing.Request{
		Instance: in, Phone: pairing.PhoneFromDigits(phone), User: user, Team: "T1", Channel: "C1",
		ResponseURL: "https://hooks.slack.test/commands/" + user, URLIssued: t0,
	}
}

// start runs req and fails the test unless a code is issued.
func (r *rig) start(req pairing.Request) pairing.Pairing {
	r.t.Helper()
	p, err := r.svc.Start(context.Background(), req)
	if err != nil {
		r.t.Fatalf("Start(%s, %s): %v", req.Instance.Name, req.Phone.Digits, err)
	}
	return p
}

// events is the whole audit log, oldest first.
func (r *rig) events() []pairing.Event {
	r.t.Helper()
	ev, _, err := r.db.Audit(r.t.Context(), pairing.AuditQuery{})
	if err != nil {
		r.t.Fatal(err)
	}
	return ev
}

// kinds is each event as kind[:outcome], for short diffs.
func kinds(ev []pairing.Event) []string {
	var out []string
	for _, e := range ev {
		s := string(e.Kind)
		if e.Outcome != "" {
			s += ":" + string(e.Outcome)
		}
		out = append(out, s)
	}
	return out
}

// count is how many requests phone has in its window now.
func (r *rig) count(phone string) int {
	r.t.Helper()
	_, n, err := r.db.NextAllowed(r.t.Context(), phone, r.clock.Now(), pairing.DefaultPhoneLimit)
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

func (r *rig) stored(id string) pairing.Pairing {
	r.t.Helper()
	p, err := r.db.Pairing(r.t.Context(), id)
	if err != nil {
		r.t.Fatalf("Pairing(%s): %v", id, err)
	}
	return p
}

// liveOn lists the pairings live on instance now.
func (r *rig) liveOn(instance string) []string {
	r.t.Helper()
	w, err := r.db.WatchedPairings(r.t.Context())
	if err != nil {
		r.t.Fatal(err)
	}
	var ids []string
	for _, p := range w {
		if p.Instance == instance && p.Live(r.clock.Now()) {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// TestStart: the happy path. Wawp is asked for the session, then for a
// code for the phone's digits; the pairing is stored live with the code
// for the code's lifetime and watched; the audit log records the request
// and the code (masked phone, never the code).
func TestStart(t *testing.T) {
	r := newRig(t, pairing.Config{CodeLifetime: 2 * time.Minute})
	req := request(inst1, digits, "U1")
	req.URLIssued = t0.Add(-time.Second)
	r.wawp.duringCode = func() { r.clock.Add(3 * time.Second) } // Wawp takes 3 s
	p := r.start(req)

	if diff := cmp.Diff([]string{"session INST00000001", "code INST00000001 " + digits}, r.wawp.takeCalls()); diff != "" {
		t.Errorf("Wawp calls (-want +got):\n%s", diff)
	}
	issued := t0.Add(3 * time.Second)
	want := pairing.Pairing{
		ID: p.ID, Instance: inst1.ID, InstanceName: inst1.Name, Phone: digits, RequestedBy: "U1", Team: "T1", Channel: "C1",
		ResponseURL: req.ResponseURL, URLIssued: req.URLIssued, Code: code, RequestedAt: t0, IssuedAt: issued,
		ExpiresAt: issued.Add(2 * time.Minute), State: pairing.StateLive, Attempt: 1,
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("pairing (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, r.stored(p.ID)); diff != "" {
		t.Errorf("stored pairing (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{p.ID}, r.liveOn(inst1.ID)); diff != "" {
		t.Errorf("watched live pairings (-want +got):\n%s", diff)
	}
	e := pairing.Event{User: "U1", Team: "T1", Channel: "C1", Instance: inst1.Name, InstanceID: inst1.ID, Phone: masked, Pairing: p.ID}
	requested, issuedEv := e, e
	requested.Time, requested.Kind = t0, pairing.EventRequested
	issuedEv.Time, issuedEv.Kind = issued, pairing.EventCodeIssued
	got, _, err := r.db.Audit(t.Context(), pairing.AuditQuery{Phone: digits})
	if diff := cmp.Diff([]pairing.Event{requested, issuedEv}, got); diff != "" || err != nil {
		t.Errorf("audit log, found by the phone (-want +got):\n%s%v", diff, err)
	}
	raw, _ := json.Marshal(got)
	if strings.Contains(string(raw), code) || strings.Contains(string(raw), digits) {
		t.Errorf("the audit log holds the code or the digits: %s", raw)
	}
	if n := r.count(digits); n != 1 {
		t.Errorf("phone counts %d requests, want 1", n)
	}
}

// TestStartAccounts: an instance with its own Wawp account is asked
// through that account's client, and only through it.
func TestStartAccounts(t *testing.T) {
	other := newStub()
	r := newRig(t, pairing.Config{})
	r.svc = pairing.NewService(r.wawp, r.db, pairing.Config{Now: r.clock.Now, Accounts: map[string]pairing.Wawp{inst2.ID: other}})
	r.start(request(inst2, digits, "U1"))
	if calls := r.wawp.takeCalls(); len(calls) != 0 {
		t.Errorf("default account called: %v", calls)
	}
	if diff := cmp.Diff([]string{"session INST00000002", "code INST00000002 " + digits}, other.takeCalls()); diff != "" {
		t.Errorf("the instance's account (-want +got):\n%s", diff)
	}
}

// TestStartRefusedByLimit: a limit that says no is a *LimitError saying
// which, how many, until when (and, for the instance, who holds it), with
// the refusal stored and audited; Wawp is never called.
func TestStartRefusedByLimit(t *testing.T) {
	tests := []struct {
		name  string
		cfg   pairing.Config
		setup func(r *rig) // requests that fill the limit
		req   pairing.Request
		want  func(r *rig) *pairing.LimitError
	}{
		{
			name: "phone",
			setup: func(r *rig) {
				for i, in := range []string{"INST0000000A", "INST0000000B", "INST0000000C"} {
					r.start(request(pairing.Instance{ID: in, Name: in}, digits, fmt.Sprint("U", i)))
					r.clock.Add(time.Minute)
				}
			},
			req: request(inst1, digits, "U9"),
			want: func(r *rig) *pairing.LimitError {
				return &pairing.LimitError{Limit: pairing.LimitPhone, Phone: pairing.PhoneFromDigits(digits), Count: 3,
					Window: pairing.DefaultPhoneLimit, RetryAt: t0.Add(15 * time.Minute)}
			},
		},
		{
			name: "user",
			cfg:  pairing.Config{UserLimit: pairing.Window{Max: 2, Period: time.Hour}},
			setup: func(r *rig) {
				r.start(request(pairing.Instance{ID: "INST0000000A"}, "201112220001", "U1"))
				r.clock.Add(time.Minute)
				r.start(request(pairing.Instance{ID: "INST0000000B"}, "201112220002", "U1"))
			},
			req: request(inst1, digits, "U1"),
			want: func(r *rig) *pairing.LimitError {
				return &pairing.LimitError{Limit: pairing.LimitUser, Phone: pairing.PhoneFromDigits(digits), Count: 2,
					Window: pairing.Window{Max: 2, Period: time.Hour}, RetryAt: t0.Add(time.Hour)}
			},
		},
		{
			name:  "instance",
			setup: func(r *rig) { r.start(request(inst1, otherNum, "U1")) },
			req:   request(inst1, digits, "U2"),
			want: func(r *rig) *pairing.LimitError {
				holder := r.stored(r.liveOn(inst1.ID)[0])
				holder.Code = ""
				return &pairing.LimitError{Limit: pairing.LimitInstance, Phone: pairing.PhoneFromDigits(digits),
					RetryAt: holder.ExpiresAt, Holder: holder}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.cfg)
			tt.setup(r)
			r.wawp.takeCalls()
			before := len(r.events())
			p, err := r.svc.Start(context.Background(), tt.req)
			if calls := r.wawp.takeCalls(); len(calls) != 0 {
				t.Errorf("Wawp called although a limit said no: %v", calls)
			}
			lerr, ok := errors.AsType[*pairing.LimitError](err)
			if !ok {
				t.Fatalf("err = %v, want a *LimitError", err)
			}
			if diff := cmp.Diff(tt.want(r), lerr); diff != "" {
				t.Errorf("LimitError (-want +got):\n%s", diff)
			}
			if p.State != pairing.StateRefused || p.RefusedBy() != lerr.Limit || p.ID == "" {
				t.Errorf("pairing = %+v; want the stored refusal", p)
			}
			// Its message can be drawn again from the record alone.
			if diff := cmp.Diff(lerr, r.svc.LimitError(t.Context(), r.stored(p.ID))); diff != "" {
				t.Errorf("LimitError drawn from the stored refusal (-Start's +drawn):\n%s", diff)
			}
			ev := r.events()[before:]
			if diff := cmp.Diff([]string{"refused:" + string(lerr.Limit.Outcome())}, kinds(ev)); diff != "" {
				t.Errorf("audited (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStartSessionStatus: a session that is not waiting for a phone stops
// the request before request-code: it does not count, frees the instance,
// and says what to do (warming up: retry after the warm-up wait). A status
// Wawp does not document is refused too (no code is asked of a session
// the bot does not understand), counted and audited as the one outcome
// status_unknown — the outcome is a metrics label, and each string Wawp
// sends would otherwise be a time series of its own, of any length —
// while the status itself, bounded, is kept in the pairing's Reason.
func TestStartSessionStatus(t *testing.T) {
	long := pairing.Status(strings.Repeat("X", 300))
	tests := []struct {
		status    pairing.Status
		me        string
		wantState pairing.State
		wantErr   pairing.StatusError
		reason    pairing.Reason
		outcome   pairing.Outcome
	}{
		{pairing.StatusStarting, "", pairing.StateWarmingUp, pairing.StatusError{Status: pairing.StatusStarting, RetryAt: t0.Add(pairing.DefaultWarmup)}, "", pairing.OutcomeStatusStarting},
		{pairing.StatusWorking, otherNum, pairing.StateRefused, pairing.StatusError{Status: pairing.StatusWorking, Me: otherNum}, "status_working", pairing.OutcomeStatusWorking},
		{pairing.StatusStopped, "", pairing.StateRefused, pairing.StatusError{Status: pairing.StatusStopped}, "status_stopped", pairing.OutcomeStatusStopped},
		{pairing.StatusFailed, "", pairing.StateRefused, pairing.StatusError{Status: pairing.StatusFailed}, "status_failed", pairing.OutcomeStatusFailed},
		{"OPENING", "", pairing.StateRefused, pairing.StatusError{Status: "OPENING"}, "status_unknown:OPENING", pairing.OutcomeStatusUnknown},
		{"QR_TIMEOUT_9F3A", "", pairing.StateRefused, pairing.StatusError{Status: "QR_TIMEOUT_9F3A"}, "status_unknown:QR_TIMEOUT_9F3A", pairing.OutcomeStatusUnknown},
		{long, "", pairing.StateRefused, pairing.StatusError{Status: long[:40] + "…"}, pairing.Reason("status_unknown:" + long[:40] + "…"), pairing.OutcomeStatusUnknown},
		{"<!here> 1", "", pairing.StateRefused, pairing.StatusError{Status: "??here??1"}, "status_unknown:??here??1", pairing.OutcomeStatusUnknown},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20s", tt.status), func(t *testing.T) {
			r := newRig(t, pairing.Config{})
			r.wawp.setStatus(inst1.ID, tt.status, tt.me)
			p, err := r.svc.Start(context.Background(), request(inst1, digits, "U1"))
			if diff := cmp.Diff([]string{"session INST00000001"}, r.wawp.takeCalls()); diff != "" {
				t.Errorf("Wawp calls (-want +got):\n%s", diff)
			}
			serr, ok := errors.AsType[*pairing.StatusError](err)
			if !ok {
				t.Fatalf("err = %v, want a *StatusError", err)
			}
			if diff := cmp.Diff(tt.wantErr, *serr); diff != "" {
				t.Errorf("StatusError (-want +got):\n%s", diff)
			}
			if p.State != tt.wantState || p.Reason != tt.reason || !p.RetryAt.Equal(tt.wantErr.RetryAt) || p.LinkedPhone != tt.me || p.Code != "" {
				t.Errorf("pairing = %+v; want %s, reason %q", p, tt.wantState, tt.reason)
			}
			if diff := cmp.Diff(p, r.stored(p.ID)); diff != "" {
				t.Errorf("stored (-returned +stored):\n%s", diff)
			}
			if n := r.count(digits); n != 0 {
				t.Errorf("phone counts %d requests; a request that never reached request-code does not count", n)
			}
			if o := pairing.OutcomeOf(err); o != tt.outcome {
				t.Errorf("outcome (the metrics label) %.50q, want %s", o, tt.outcome)
			}
			want := []string{"requested", "error:" + string(tt.outcome)}
			if diff := cmp.Diff(want, kinds(r.events())); diff != "" {
				t.Errorf("audited (-want +got):\n%s", diff)
			}
			if ids := r.liveOn(inst1.ID); len(ids) != 0 {
				t.Errorf("instance still held by %v", ids)
			}
		})
	}
}

// TestStartWawpError: a failed Wawp call ends the request as failed (or
// warming up, for Wawp's 422), is never retried, and counts only when it
// may have reached WhatsApp: request-code sent, and not turned away by
// Wawp before pairing (bad token, no instance, bad request, not ready).
func TestStartWawpError(t *testing.T) {
	const session, reqCode = "/v2/session/info", "/v2/auth/request-code"
	tests := []struct {
		name      string
		session   error // from session info
		code      error // from request-code
		wantState pairing.State
		reason    pairing.Reason
		counted   bool
	}{
		{"session timeout", apiError(session, pairing.ErrTimeout, true), nil, pairing.StateFailed, "wawp_error:timeout", false},
		{"session unreachable", apiError(session, pairing.ErrUnreachable, false), nil, pairing.StateFailed, "wawp_error:unreachable", false},
		{"session no instance", apiError(session, pairing.ErrNoInstance, true), nil, pairing.StateFailed, "wawp_error:no_instance", false},
		{"session unauthorized", apiError(session, pairing.ErrUnauthorized, true), nil, pairing.StateFailed, "wawp_error:unauthorized", false},
		{"session garbage", apiError(session, pairing.ErrBadResponse, true), nil, pairing.StateFailed, "wawp_error:bad_response", false},
		{"code unauthorized", nil, apiError(reqCode, pairing.ErrUnauthorized, true), pairing.StateFailed, "wawp_error:unauthorized", false},
		{"code no instance", nil, apiError(reqCode, pairing.ErrNoInstance, true), pairing.StateFailed, "wawp_error:no_instance", false},
		{"code bad request", nil, apiError(reqCode, pairing.ErrBadRequest, true), pairing.StateFailed, "wawp_error:bad_request", false},
		{"code not ready (422)", nil, apiError(reqCode, pairing.ErrNotReady, true), pairing.StateWarmingUp, "", false},
		{"code rate limited", nil, apiError(reqCode, pairing.ErrRateLimited, true), pairing.StateFailed, "wawp_error:rate_limited", true},
		{"code server error", nil, apiError(reqCode, pairing.ErrServer, true), pairing.StateFailed, "wawp_error:server", true},
		{"code upstream", nil, apiError(reqCode, pairing.ErrUpstream, true), pairing.StateFailed, "wawp_error:upstream", true},
		{"code garbage", nil, apiError(reqCode, pairing.ErrBadResponse, true), pairing.StateFailed, "wawp_error:bad_response", true},
		{"code timeout after sending", nil, apiError(reqCode, pairing.ErrTimeout, true), pairing.StateFailed, "wawp_error:timeout", true},
		{"code timeout before sending", nil, apiError(reqCode, pairing.ErrTimeout, false), pairing.StateFailed, "wawp_error:timeout", false},
		{"code unreachable", nil, apiError(reqCode, pairing.ErrUnreachable, false), pairing.StateFailed, "wawp_error:unreachable", false},
		{"code: not a Wawp error", nil, context.Canceled, pairing.StateFailed, pairing.ReasonInternal, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, pairing.Config{})
			if tt.session != nil {
				r.wawp.failSession(inst1.ID, tt.session)
			}
			r.wawp.failCode(tt.code)
			p, err := r.svc.Start(context.Background(), request(inst1, digits, "U1"))
			wantCalls := []string{"session INST00000001"}
			if tt.session == nil {
				wantCalls = append(wantCalls, "code INST00000001 "+digits) // once: never retried
			}
			if diff := cmp.Diff(wantCalls, r.wawp.takeCalls()); diff != "" {
				t.Errorf("Wawp calls (-want +got):\n%s", diff)
			}
			cause := tt.session
			if cause == nil {
				cause = tt.code
			}
			wantOutcome := pairing.OutcomeWawpError
			switch {
			case tt.wantState == pairing.StateWarmingUp:
				wantOutcome = pairing.OutcomeStatusStarting
				if serr, ok := errors.AsType[*pairing.StatusError](err); !ok || serr.Status != pairing.StatusStarting || !serr.RetryAt.Equal(t0.Add(pairing.DefaultWarmup)) {
					t.Errorf("err = %v, want warming up until %s", err, t0.Add(pairing.DefaultWarmup))
				}
			case !errors.Is(err, cause):
				t.Errorf("err = %v, want %v", err, cause)
			}
			if errors.Is(cause, context.Canceled) {
				wantOutcome = pairing.OutcomeInternalError
			}
			if p.State != tt.wantState || p.Reason != tt.reason || p.Code != "" {
				t.Errorf("pairing = %s, reason %q; want %s, %q", p.State, p.Reason, tt.wantState, tt.reason)
			}
			if diff := cmp.Diff(p, r.stored(p.ID)); diff != "" {
				t.Errorf("stored (-returned +stored):\n%s", diff)
			}
			if n, want := r.count(digits), map[bool]int{true: 1, false: 0}[tt.counted]; n != want {
				t.Errorf("phone counts %d requests, want %d", n, want)
			}
			if diff := cmp.Diff([]string{"requested", "error:" + string(wantOutcome)}, kinds(r.events())); diff != "" {
				t.Errorf("audited (-want +got):\n%s", diff)
			}
			if ids := r.liveOn(inst1.ID); len(ids) != 0 {
				t.Errorf("instance still held by %v", ids)
			}
		})
	}
}

// TestStartAfterLeaseRanOut: a code that arrives after the request's
// lease ran out is not shown: by then the instance may be another's, and
// two live codes on one instance would let the wrong one link. The request
// ends as interrupted (it counts) and the other request's code stands.
func TestStartAfterLeaseRanOut(t *testing.T) {
	r := newRig(t, pairing.Config{})
	var second pairing.Pairing
	r.wawp.duringCode = func() {
		// The process stalls past the lease; meanwhile another agent
		// takes the instance (the lease no longer holds it).
		r.clock.Add(r.svc.RequestLease())
		second = r.start(request(inst1, otherNum, "U2"))
	}
	r.wawp.codes = []string{code, "EFGH5678"}
	p, err := r.svc.Start(context.Background(), request(inst1, digits, "U1"))
	if !errors.Is(err, pairing.ErrInterrupted) {
		t.Errorf("err = %v, want ErrInterrupted", err)
	}
	if p.State != pairing.StateInterrupted || p.Code != "" {
		t.Errorf("late request = %+v; want interrupted, no code", p)
	}
	if diff := cmp.Diff([]string{second.ID}, r.liveOn(inst1.ID)); diff != "" {
		t.Errorf("live codes on the instance (-want +got):\n%s", diff)
	}
	if n := r.count(digits); n != 1 {
		t.Errorf("the late request counts %d, want 1: request-code reached Wawp", n)
	}
}

// TestInterrupt: a shutdown that cannot wait ends the requests in flight
// as interrupted; their answer, when it comes, is not shown.
func TestInterrupt(t *testing.T) {
	r := newRig(t, pairing.Config{})
	inFlight, release := make(chan struct{}), make(chan struct{})
	r.wawp.duringCode = func() {
		close(inFlight)
		<-release
	}
	type result struct {
		p   pairing.Pairing
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := r.svc.Start(context.Background(), request(inst1, digits, "U1"))
		done <- result{p, err}
	}()
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("request-code never called")
	}
	r.clock.Add(time.Second)
	ended := r.svc.Interrupt(t.Context())
	if len(ended) != 1 || ended[0].State != pairing.StateInterrupted || !ended[0].EndedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("Interrupt() = %+v; want the request in flight, interrupted now", ended)
	}
	close(release)
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return")
	}
	if !errors.Is(res.err, pairing.ErrInterrupted) || res.p.State != pairing.StateInterrupted || res.p.Code != "" {
		t.Errorf("Start = %+v, %v; want the interrupted pairing without a code, ErrInterrupted", res.p, res.err)
	}
	if n := r.count(digits); n != 1 {
		t.Errorf("interrupted request counts %d, want 1", n)
	}
	if diff := cmp.Diff([]string{"requested", "interrupted"}, kinds(r.events())); diff != "" {
		t.Errorf("audited (-want +got):\n%s", diff)
	}
	if again := r.svc.Interrupt(t.Context()); len(again) != 0 {
		t.Errorf("a second Interrupt ended %d more", len(again))
	}
}

// TestStartCutShort: a shutdown that cannot wait cancels the request's ctx
// while Wawp is being asked (after ending it as interrupted, or before it
// could). What Wawp answered is still recorded — on a context of its own,
// since the request's is done — so a call cut off ends the request as
// interrupted (it counts: request-code may have reached WhatsApp) and says
// ErrInterrupted, whose outcome the metrics count, instead of a storage
// error logged and wawp_error counted; a code that came as the cut did is
// stored and shown by the next tick. No ERROR is logged.
func TestStartCutShort(t *testing.T) {
	cutOff := apiError("/v2/auth/request-code", pairing.ErrTimeout, true)
	tests := []struct {
		name        string
		interrupted bool  // the shutdown's Interrupt ran before the cut
		answer      error // what request-code returns after the cut; nil: a code
		wantState   pairing.State
		want        pairing.Outcome // of Start's error: what the metrics count
		audited     []string
	}{
		{"interrupted, then cut off", true, cutOff, pairing.StateInterrupted, pairing.OutcomeInterrupted, []string{"requested", "interrupted"}},
		{"cut off before Interrupt found it", false, cutOff, pairing.StateInterrupted, pairing.OutcomeInterrupted, []string{"requested", "interrupted"}},
		{"connection cut", false, apiError("/v2/auth/request-code", pairing.ErrUnreachable, true), pairing.StateInterrupted, pairing.OutcomeInterrupted, []string{"requested", "interrupted"}},
		{"interrupted, then the code came", true, nil, pairing.StateInterrupted, pairing.OutcomeInterrupted, []string{"requested", "interrupted"}},
		{"the code came as the cut did", false, nil, pairing.StateLive, pairing.OutcomeCodeIssued, []string{"requested", "code_issued"}},
		{"a clear answer came as the cut did", false, apiError("/v2/auth/request-code", pairing.ErrNotReady, true), pairing.StateWarmingUp, pairing.OutcomeStatusStarting, []string{"requested", "error:status_starting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &strings.Builder{}
			var mu sync.Mutex
			r := newRig(t, pairing.Config{Log: slog.New(slog.NewTextHandler(lockedWriter{&mu, logs}, nil))})
			ctx, cancel := context.WithCancel(t.Context())
			r.wawp.duringCode = func() {
				if tt.interrupted {
					if ended := r.svc.Interrupt(t.Context()); len(ended) != 1 {
						t.Errorf("Interrupt ended %d requests, want 1", len(ended))
					}
				}
				cancel()
			}
			r.wawp.failCode(tt.answer)
			p, err := r.svc.Start(ctx, request(inst1, digits, "U1"))
			if o := pairing.OutcomeOf(err); o != tt.want {
				t.Errorf("outcome %s (err %v), want %s", o, err, tt.want)
			}
			if got := r.stored(p.ID); p.State != tt.wantState || got.State != tt.wantState {
				t.Errorf("returned %s, stored %s; want %s", p.State, got.State, tt.wantState)
			}
			if diff := cmp.Diff(tt.audited, kinds(r.events())); diff != "" {
				t.Errorf("audited (-want +got):\n%s", diff)
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("a request cut short logged an error:\n%s", logs)
			}
		})
	}
}

// lockedWriter is a log destination safe for concurrent writers.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// renewal is U1's "New code" click on pairing id.
func renewal(id, user string) pairing.Renewal {
	return pairing.Renewal{ID: id, User: user, Team: "T1", ResponseURL: "https://hooks.slack.test/actions/" + id, URLIssued: t0}
}

// TestRenew: a "New code" or "Try again" click asks again through the
// same limits, only for the requester and only while the access rules
// allow it, never before a warm-up is over.
func TestRenew(t *testing.T) {
	t.Run("new code replaces the old", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		old := r.start(request(inst1, digits, "U1"))
		r.wawp.codes = []string{"EFGH5678"}
		r.clock.Add(30 * time.Second)
		r.wawp.takeCalls()
		click := renewal(old.ID, "U1")
		click.URLIssued, click.ClickTS = r.clock.Now(), "1700000000.000002"
		p, err := r.svc.Renew(context.Background(), click)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"session INST00000001", "code INST00000001 " + digits}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got):\n%s", diff)
		}
		// The click's url replaces the clicked message: the renewal's
		// editor. It has no command url of its own.
		if p.State != pairing.StateLive || p.Code != "EFGH5678" || p.Renews != old.ID || p.MessageID() != old.ID ||
			p.ClickURL != click.ResponseURL || !p.ClickIssued.Equal(click.URLIssued) || p.ClickTS != click.ClickTS || p.ResponseURL != "" || p.Attempt != 2 || p.Channel != old.Channel {
			t.Errorf("renewal = %+v", p)
		}
		if o := r.stored(old.ID); o.State != pairing.StateSuperseded || o.Code != "" {
			t.Errorf("old pairing = %s, code %q; want superseded without its code", o.State, o.Code)
		}
	})
	t.Run("delivery dm: the renewal carries on in the same DM message", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		req := request(inst1, digits, "U1")
		req.Delivery = pairing.DeliveryDM
		old := r.start(req)
		if old.DM != (pairing.Surface{Recipient: "U1"}) {
			t.Fatalf("DM of a dm delivery = %+v, want the requester's, not yet posted", old.DM)
		}
		dm := pairing.Surface{Channel: "D1", TS: "1700000000.000100", LastView: "live:0", Recipient: "U1"}
		if _, err := r.svc.RecordDM(t.Context(), old.ID, dm, false); err != nil {
			t.Fatal(err)
		}
		r.wawp.codes = []string{"EFGH5678"}
		click := renewal(old.ID, "U1")
		click.ResponseURL = "" // clicked in the DM, which chat.update edits
		p, err := r.svc.Renew(context.Background(), click)
		if err != nil {
			t.Fatal(err)
		}
		want := dm
		want.LastView = "" // the message shows nothing of the renewal yet
		if p.Delivery != pairing.DeliveryDM || p.DM != want || p.ClickURL != "" || p.ResponseURL != "" || p.Code != "EFGH5678" {
			t.Errorf("renewal = %+v; want the new code in the old pairing's DM message, no response_url", p)
		}
	})
	t.Run("not yours", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		old := r.start(request(inst1, digits, "U1"))
		r.wawp.takeCalls()
		p, err := r.svc.Renew(context.Background(), renewal(old.ID, "U2"))
		if !errors.Is(err, pairing.ErrNotYours) || p.ID != "" {
			t.Errorf("Renew by another user = %q, %v; want ErrNotYours and no pairing", p.ID, err)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp called: %v", calls)
		}
		if diff := cmp.Diff(old, r.stored(old.ID)); diff != "" {
			t.Errorf("pairing changed (-want +got):\n%s", diff)
		}
	})
	t.Run("access rules no longer allow it", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		old := r.start(request(inst1, digits, "U1"))
		r.wawp.takeCalls()
		click := renewal(old.ID, "U1")
		click.Team = "T-click"
		var asked []string
		click.Allowed = func(user, instanceID, channel string) bool {
			asked = append(asked, user+" "+instanceID+" "+channel)
			return false
		}
		before := len(r.events())
		_, err := r.svc.Renew(context.Background(), click)
		if !errors.Is(err, pairing.ErrNotAllowed) {
			t.Errorf("err = %v, want ErrNotAllowed", err)
		}
		if diff := cmp.Diff([]string{"U1 " + inst1.ID + " C1"}, asked); diff != "" {
			t.Errorf("access asked about (-want +got):\n%s", diff)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp called: %v", calls)
		}
		ev := r.events()[before:]
		if len(ev) != 1 || ev[0].Kind != pairing.EventRefused || ev[0].Outcome != pairing.OutcomeAccessDenied || ev[0].Team != "T-click" || ev[0].Pairing != old.ID {
			t.Errorf("audited %+v; want one access_denied refusal with the clicker's team", ev)
		}
	})
	t.Run("too soon after a warm-up", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		r.wawp.setStatus(inst1.ID, pairing.StatusStarting, "")
		warm, _ := r.svc.Start(context.Background(), request(inst1, digits, "U1"))
		r.wawp.takeCalls()
		r.clock.Add(pairing.DefaultWarmup - time.Second)
		_, err := r.svc.Renew(context.Background(), renewal(warm.ID, "U1"))
		if terr, ok := errors.AsType[*pairing.TooSoonError](err); !ok || !terr.RetryAt.Equal(t0.Add(pairing.DefaultWarmup)) {
			t.Errorf("err = %v, want too soon until %s", err, t0.Add(pairing.DefaultWarmup))
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp called: %v", calls)
		}
		r.clock.Add(time.Second)
		r.wawp.setStatus(inst1.ID, pairing.StatusScanQR, "")
		p, err := r.svc.Renew(context.Background(), renewal(warm.ID, "U1"))
		if err != nil || p.State != pairing.StateLive || p.MessageID() != warm.ID {
			t.Errorf("after the warm-up: %+v, %v; want a live code in the same message", p, err)
		}
	})
	t.Run("refused by a limit stores nothing", func(t *testing.T) {
		r := newRig(t, pairing.Config{PhoneLimit: pairing.Window{Max: 1, Period: 15 * time.Minute}})
		old := r.start(request(inst1, digits, "U1"))
		r.wawp.takeCalls()
		p, err := r.svc.Renew(context.Background(), renewal(old.ID, "U1"))
		if lerr, ok := errors.AsType[*pairing.LimitError](err); !ok || lerr.Limit != pairing.LimitPhone {
			t.Errorf("err = %v, want the phone limit", err)
		}
		if p.ID != "" {
			t.Errorf("a renewal's refusal was stored: %+v", p)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp called: %v", calls)
		}
		if o := r.stored(old.ID); o.State != pairing.StateLive || o.Code != code {
			t.Errorf("old pairing = %s; want still live with its code", o.State)
		}
	})
	t.Run("turned away by Wawp: the old code goes on, and the next click replaces it", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		old := r.start(request(inst1, digits, "U1"))
		r.wawp.failCode(apiError("/v2/auth/request-code", pairing.ErrUnauthorized, true))
		click := renewal(old.ID, "U1")
		failed, err := r.svc.Renew(context.Background(), click)
		if !errors.Is(err, pairing.ErrUnauthorized) || failed.State != pairing.StateFailed {
			t.Fatalf("Renew = %s, %v; want failed, ErrUnauthorized", failed.State, err)
		}
		o := r.stored(old.ID)
		if o.State != pairing.StateLive || o.Code != code || o.ClickURL != click.ResponseURL || o.ResponseURL != old.ResponseURL {
			t.Errorf("old pairing = %+v; want live with its code, edited through the click's url", o)
		}
		r.wawp.failCode(nil)
		r.wawp.codes = []string{"EFGH5678"}
		p, err := r.svc.Renew(context.Background(), renewal(failed.ID, "U1"))
		if err != nil || p.Renews != old.ID || p.Code != "EFGH5678" {
			t.Errorf("next click = %+v, %v; want a code replacing %s", p, err, old.ID)
		}
		if o := r.stored(old.ID); o.State != pairing.StateSuperseded {
			t.Errorf("old pairing = %s, want superseded", o.State)
		}
		if diff := cmp.Diff([]string{p.ID}, r.liveOn(inst1.ID)); diff != "" {
			t.Errorf("live on the instance (-want +got):\n%s", diff)
		}
	})
	t.Run("turned away by Wawp after its lease ran out: no orphan code", func(t *testing.T) {
		// The lease rule (a request past its lease no longer holds the
		// instance) holds for a renewal turned away as for one that got a
		// code (TestStartAfterLeaseRanOut): before, the late 422 settled,
		// and the replaced pairing stayed live, code and all, unwatched,
		// while another agent's request held the instance.
		r := newRig(t, pairing.Config{})
		old := r.start(request(inst1, digits, "U1"))
		var other pairing.Pairing
		r.wawp.codes = []string{"OTHR0001"}
		r.wawp.duringCode = func() {
			r.clock.Add(r.svc.RequestLease())
			other = r.start(request(inst1, otherNum, "U2"))
			r.wawp.failCode(apiError("/v2/auth/request-code", pairing.ErrNotReady, true))
		}
		p, err := r.svc.Renew(context.Background(), renewal(old.ID, "U1"))
		if !errors.Is(err, pairing.ErrInterrupted) || p.State != pairing.StateInterrupted {
			t.Errorf("late renewal = %s, %v; want interrupted, ErrInterrupted", p.State, err)
		}
		if o := r.stored(old.ID); o.State != pairing.StateSuperseded || o.Code != "" {
			t.Errorf("replaced pairing = %s, code %q; want superseded without its code", o.State, o.Code)
		}
		if diff := cmp.Diff([]string{other.ID}, r.liveOn(inst1.ID)); diff != "" {
			t.Errorf("live on the instance (-want +got):\n%s", diff)
		}
		r.clock.Add(pairing.DefaultCodeLifetime) // the old code's time is over
		if _, err := r.svc.Advance(context.Background()); err != nil {
			t.Fatal(err)
		}
		if o := r.stored(old.ID); !o.Final() || o.Code != "" {
			t.Errorf("replaced pairing after its expiry and a tick: %s, code %q; want it ended with its code wiped", o.State, o.Code)
		}
	})
	t.Run("double click: the renewal holding the message answers, through the second click's url", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		old := r.start(request(inst1, digits, "U1"))
		r.wawp.codes = []string{"EFGH5678"}
		first, err := r.svc.Renew(context.Background(), renewal(old.ID, "U1"))
		if err != nil {
			t.Fatal(err)
		}
		r.wawp.takeCalls()
		r.clock.Add(time.Second)
		second := renewal(old.ID, "U1") // the second half carries the first pairing's ID
		second.ResponseURL, second.URLIssued = "https://hooks.slack.test/actions/second", r.clock.Now()
		p, err := r.svc.Renew(context.Background(), second)
		if !errors.Is(err, pairing.ErrReplaced) || p.ID != first.ID {
			t.Fatalf("second half = %s, %v; want %s, ErrReplaced", p.ID, err, first.ID)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp called: %v", calls)
		}
		want := first
		want.ClickURL, want.ClickIssued = second.ResponseURL, second.URLIssued
		if diff := cmp.Diff(want, r.stored(first.ID)); diff != "" {
			t.Errorf("the renewal holding the message (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, p); diff != "" {
			t.Errorf("returned (-want +got):\n%s", diff)
		}
	})
	t.Run("a click on an older copy of the message leaves the holder's editor", func(t *testing.T) {
		// The code as first posted through the command's url (ts 1), the
		// final state below it (ts 2), where New code was clicked: the
		// renewal's editor replaces ts 2. New code on ts 1 then finds the
		// renewal holding the message; the renewal is the answer, but its
		// editor stays the message showing it (the Slack edge takes the old
		// code off ts 1 through that click's own url).
		r := newRig(t, pairing.Config{})
		old := r.start(request(inst1, digits, "U1"))
		r.wawp.codes = []string{"EFGH5678"}
		click := renewal(old.ID, "U1")
		click.ClickTS = "1700000000.000002"
		first, err := r.svc.Renew(context.Background(), click)
		if err != nil || first.ClickTS != click.ClickTS {
			t.Fatalf("first click: ts %q, %v", first.ClickTS, err)
		}
		r.clock.Add(time.Second)
		older := renewal(old.ID, "U1")
		older.ResponseURL, older.URLIssued, older.ClickTS = "https://hooks.slack.test/actions/older", r.clock.Now(), "1700000000.000001"
		p, err := r.svc.Renew(context.Background(), older)
		if !errors.Is(err, pairing.ErrReplaced) || p.ID != first.ID {
			t.Fatalf("click on the older copy = %s, %v; want %s, ErrReplaced", p.ID, err, first.ID)
		}
		if diff := cmp.Diff(first, r.stored(first.ID)); diff != "" {
			t.Errorf("the renewal holding the message (-want +got):\n%s", diff)
		}
		if p.ClickURL != first.ClickURL || p.ClickTS != first.ClickTS {
			t.Errorf("returned the editor %q (ts %q), want the holder's %q (ts %q)", p.ClickURL, p.ClickTS, first.ClickURL, first.ClickTS)
		}
	})
	t.Run("unknown pairing", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		if _, err := r.svc.Renew(context.Background(), renewal("nope", "U1")); !errors.Is(err, pairing.ErrNotFound) {
			t.Errorf("err = %v, want ErrNotFound", err)
		}
	})
}

// TestCancel: the requester ends a live code (wiped, instance free,
// audited); anyone else is refused; a pairing that already ended is left
// as it is, bound to the click's url so its message can show how it ended.
func TestCancel(t *testing.T) {
	const clickURL = "https://hooks.slack.test/actions/cancel"
	tests := []struct {
		name    string
		user    string
		end     bool // the code expired before the click
		wantErr error
		want    func(p pairing.Pairing, at time.Time) pairing.Pairing
		audited []string
	}{
		{"by the requester", "U1", false, nil, func(p pairing.Pairing, at time.Time) pairing.Pairing {
			p.State, p.Code, p.EndedAt, p.ClickURL, p.ClickIssued, p.ClickTS = pairing.StateCancelled, "", at, clickURL, at, "1700000000.000002"
			return p
		}, []string{"cancelled"}},
		{"by someone else", "U2", false, pairing.ErrNotYours, func(p pairing.Pairing, _ time.Time) pairing.Pairing { return p }, nil},
		{"after it ended", "U1", true, pairing.ErrEnded, func(p pairing.Pairing, at time.Time) pairing.Pairing {
			p.ClickURL, p.ClickIssued, p.ClickTS = clickURL, at, "1700000000.000002"
			return p
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, pairing.Config{})
			p := r.start(request(inst1, digits, "U1"))
			if tt.end {
				r.clock.Add(pairing.DefaultCodeLifetime)
				if _, err := r.svc.Advance(context.Background()); err != nil {
					t.Fatal(err)
				}
				p = r.stored(p.ID)
			}
			r.clock.Add(10 * time.Second)
			at := r.clock.Now()
			before := len(r.events())
			got, err := r.svc.Cancel(t.Context(), p.ID, tt.user, pairing.Click{ResponseURL: clickURL, Issued: at, TS: "1700000000.000002"})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			want := tt.want(p, at)
			if diff := cmp.Diff(want, r.stored(p.ID)); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
			if tt.wantErr != pairing.ErrNotYours {
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("returned (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.audited, kinds(r.events()[before:])); diff != "" {
				t.Errorf("audited (-want +got):\n%s", diff)
			}
			var wantLive []string
			if tt.wantErr == pairing.ErrNotYours {
				wantLive = []string{p.ID}
			}
			if diff := cmp.Diff(wantLive, r.liveOn(inst1.ID)); diff != "" {
				t.Errorf("live on the instance (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("from a copy a renewal took over", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		req := request(inst1, digits, "U1")
		req.Delivery = pairing.DeliveryDM
		old := r.start(req)
		r.wawp.codes = []string{"EFGH5678"}
		renewed, err := r.svc.Renew(t.Context(), renewal(old.ID, "U1"))
		if err != nil {
			t.Fatal(err)
		}
		// The channel's line still carries the first pairing's ID.
		got, err := r.svc.Cancel(t.Context(), old.ID, "U1", pairing.Click{})
		if err != nil || got.ID != renewed.ID || got.State != pairing.StateCancelled || r.stored(renewed.ID).Code != "" {
			t.Errorf("Cancel from the old copy: %+v, %v; want the renewal cancelled", got, err)
		}
		if _, err := r.svc.Cancel(t.Context(), old.ID, "U2", pairing.Click{}); !errors.Is(err, pairing.ErrNotYours) {
			t.Errorf("someone else's Cancel from the old copy: %v, want ErrNotYours", err)
		}
	})
	t.Run("unknown pairing", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		if _, err := r.svc.Cancel(t.Context(), "nope", "U1", pairing.Click{ResponseURL: clickURL, Issued: t0}); !errors.Is(err, pairing.ErrNotFound) {
			t.Errorf("err = %v, want ErrNotFound", err)
		}
	})
}

// TestRefresh: only the requester may refresh; the click's fresh url
// becomes the editor of the message (its ClickURL; the command's url
// stays as it was).
func TestRefresh(t *testing.T) {
	r := newRig(t, pairing.Config{})
	p := r.start(request(inst1, digits, "U1"))
	const clickURL = "https://hooks.slack.test/actions/refresh"
	at := t0.Add(5 * time.Second)
	if _, err := r.svc.Refresh(t.Context(), p.ID, "U2", pairing.Click{ResponseURL: clickURL, Issued: at}); !errors.Is(err, pairing.ErrNotYours) {
		t.Errorf("Refresh by another user: %v, want ErrNotYours", err)
	}
	if diff := cmp.Diff(p, r.stored(p.ID)); diff != "" {
		t.Errorf("another user's click changed the pairing (-want +got):\n%s", diff)
	}
	got, err := r.svc.Refresh(t.Context(), p.ID, "U1", pairing.Click{ResponseURL: clickURL, Issued: at, TS: "1700000000.000002"})
	want := p
	want.ClickURL, want.ClickIssued, want.ClickTS = clickURL, at, "1700000000.000002"
	if diff := cmp.Diff(want, got); diff != "" || err != nil {
		t.Errorf("Refresh (-want +got):\n%s%v", diff, err)
	}
	if diff := cmp.Diff(want, r.stored(p.ID)); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	// The same url again changes nothing, not even its issue time.
	if got, _ := r.svc.Refresh(t.Context(), p.ID, "U1", pairing.Click{ResponseURL: clickURL, Issued: at.Add(time.Minute)}); !got.ClickIssued.Equal(at) {
		t.Errorf("refreshing through the same url moved its issue time to %s", got.ClickIssued)
	}
	// A click on the DM brings no url for the ephemeral message.
	if got, err := r.svc.Refresh(t.Context(), p.ID, "U1", pairing.Click{Issued: at.Add(time.Minute)}); err != nil || got.ClickURL != clickURL {
		t.Errorf("a DM click's refresh: %+v, %v; want the click url kept", got, err)
	}
	if _, err := r.svc.Refresh(t.Context(), "nope", "U1", pairing.Click{ResponseURL: clickURL, Issued: at}); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("unknown pairing: %v, want ErrNotFound", err)
	}
}

// TestNotYoursHandsOutNoPairing: a click by someone other than the
// requester (Refresh, New code, Try again, Cancel) is refused with
// ErrNotYours and no pairing at all: the Slack edge must never be handed
// another user's pairing, let alone its live code. (Before, each returned
// the requester's pairing, code and all, beside the error.)
func TestNotYoursHandsOutNoPairing(t *testing.T) {
	const clickURL = "https://hooks.slack.test/actions/other"
	for _, tt := range []struct {
		name string
		call func(svc *pairing.Service, id string) (pairing.Pairing, error)
	}{
		{"Refresh", func(svc *pairing.Service, id string) (pairing.Pairing, error) {
			return svc.Refresh(context.Background(), id, "U2", pairing.Click{ResponseURL: clickURL, Issued: t0})
		}},
		{"Renew", func(svc *pairing.Service, id string) (pairing.Pairing, error) {
			return svc.Renew(context.Background(), renewal(id, "U2"))
		}},
		{"Cancel", func(svc *pairing.Service, id string) (pairing.Pairing, error) {
			return svc.Cancel(context.Background(), id, "U2", pairing.Click{ResponseURL: clickURL, Issued: t0})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, pairing.Config{})
			p := r.start(request(inst1, digits, "U1"))
			r.wawp.takeCalls()
			got, err := tt.call(r.svc, p.ID)
			if !errors.Is(err, pairing.ErrNotYours) {
				t.Errorf("err = %v, want ErrNotYours", err)
			}
			if diff := cmp.Diff(pairing.Pairing{}, got); diff != "" {
				t.Errorf("handed to another user (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(p, r.stored(p.ID)); diff != "" {
				t.Errorf("another user's click changed the pairing (-want +got):\n%s", diff)
			}
			if calls := r.wawp.takeCalls(); len(calls) != 0 {
				t.Errorf("Wawp called: %v", calls)
			}
		})
	}
}

// TestAdvance: each tick asks Wawp once per instance with a live code and
// ends a pairing only on a clear answer or its own expiry; Wawp faults
// change nothing.
func TestAdvance(t *testing.T) {
	const session = "/v2/session/info"
	tests := []struct {
		name      string
		after     time.Duration // since the code was issued
		status    pairing.Status
		me        string
		err       error
		wantState pairing.State
		reason    pairing.Reason
		linked    string
		audited   []string
	}{
		{"linked", time.Minute, pairing.StatusWorking, digits, nil, pairing.StateLinked, "", digits, []string{"linked"}},
		{"wrong phone", time.Minute, pairing.StatusWorking, otherNum, nil, pairing.StateWrongPhone, "linked +20 10 ••• 888", otherNum, []string{"wrong_phone:linked +20 10 ••• 888"}},
		{"working, nobody named yet", time.Minute, pairing.StatusWorking, "", nil, pairing.StateLive, "", "", nil},
		{"still waiting", time.Minute, pairing.StatusScanQR, "", nil, pairing.StateLive, "", "", nil},
		{"expired", pairing.DefaultCodeLifetime, pairing.StatusScanQR, "", nil, pairing.StateExpired, "", "", []string{"expired"}},
		{"instance failed", time.Minute, pairing.StatusFailed, "", nil, pairing.StateFailed, "instance_failed", "", []string{"error:instance_failed"}},
		{"instance gone", time.Minute, "", "", apiError(session, pairing.ErrNoInstance, true), pairing.StateFailed, "instance_gone", "", []string{"error:instance_gone"}},
		{"starting blip", time.Minute, pairing.StatusStarting, "", nil, pairing.StateLive, "", "", nil},
		{"timeout", time.Minute, "", "", apiError(session, pairing.ErrTimeout, true), pairing.StateLive, "", "", nil},
		{"server error", time.Minute, "", "", apiError(session, pairing.ErrServer, true), pairing.StateLive, "", "", nil},
		{"garbage", time.Minute, "", "", apiError(session, pairing.ErrBadResponse, true), pairing.StateLive, "", "", nil},
		{"unauthorized", time.Minute, "", "", apiError(session, pairing.ErrUnauthorized, true), pairing.StateLive, "", "", nil},
		{"timeout after expiry", pairing.DefaultCodeLifetime, "", "", apiError(session, pairing.ErrTimeout, true), pairing.StateExpired, "", "", []string{"expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, pairing.Config{})
			p := r.start(request(inst1, digits, "U1"))
			r.wawp.takeCalls()
			before := len(r.events())
			if tt.err != nil {
				r.wawp.failSession(inst1.ID, tt.err)
			} else {
				r.wawp.setStatus(inst1.ID, tt.status, tt.me)
			}
			r.clock.Add(tt.after)
			watched, err := r.svc.Advance(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"session INST00000001"}, r.wawp.takeCalls()); diff != "" {
				t.Errorf("Wawp calls (-want +got):\n%s", diff)
			}
			got := r.stored(p.ID)
			if diff := cmp.Diff([]pairing.Pairing{got}, watched); diff != "" {
				t.Errorf("Advance returned (-stored +returned):\n%s", diff)
			}
			want := p
			if tt.wantState != pairing.StateLive {
				want.State, want.Reason, want.LinkedPhone, want.Code, want.EndedAt = tt.wantState, tt.reason, tt.linked, "", r.clock.Now()
			}
			if tt.wantState == pairing.StateExpired {
				want.ExpiredInARow = 1 // the first code for this phone that expired
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("pairing (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.audited, kinds(r.events()[before:])); diff != "" {
				t.Errorf("audited (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAdvancePolls: one session call per instance with a live code, none
// for instances whose pairings are all ended; a request whose lease ran
// out unsettled ends as interrupted.
func TestAdvancePolls(t *testing.T) {
	r := newRig(t, pairing.Config{})
	r.start(request(inst1, digits, "U1"))
	r.start(request(inst2, otherNum, "U2"))
	r.svc.Start(context.Background(), request(inst1, "201112220001", "U3")) // refused: watched, not polled
	// A request left in flight by a process that stopped.
	_, err := r.db.Reserve(t.Context(), pairing.Reservation{
		Pairing:    pairing.Pairing{ID: "stuck", Instance: "INST00000003", InstanceName: "stuck", Phone: "201112220002", RequestedBy: "U4"},
		PhoneLimit: pairing.DefaultPhoneLimit, UserLimit: pairing.DefaultUserLimit, Now: t0, Hold: r.svc.RequestLease(),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.wawp.takeCalls()
	r.clock.Add(r.svc.RequestLease())
	watched, err := r.svc.Advance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	calls := r.wawp.takeCalls()
	slices.Sort(calls)
	if diff := cmp.Diff([]string{"session INST00000001", "session INST00000002"}, calls); diff != "" {
		t.Errorf("Wawp calls (-want +got):\n%s", diff)
	}
	states := map[string]pairing.State{}
	for _, p := range watched {
		states[p.RequestedBy] = p.State
	}
	want := map[string]pairing.State{"U1": pairing.StateLive, "U2": pairing.StateLive, "U3": pairing.StateRefused, "U4": pairing.StateInterrupted}
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("watched pairings' states (-want +got):\n%s", diff)
	}
	if ev := r.events(); ev[len(ev)-1].Kind != pairing.EventInterrupted || ev[len(ev)-1].Pairing != "stuck" {
		t.Errorf("last event %+v, want the stuck request interrupted", ev[len(ev)-1])
	}
}

// TestHistory: a phone's or an instance's events, newest first, limited,
// without the events of instances the asker may not see (an old event
// without an instance ID is judged through the instance its alias names).
func TestHistory(t *testing.T) {
	dir := pairing.NewDirectory([]pairing.Instance{inst1, inst2}, "EG")
	r := newRig(t, pairing.Config{Directory: dir})
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, e := range []pairing.Event{
		{Time: at(0), Kind: pairing.EventRequested, User: "U1", Instance: inst1.Name, Digits: digits, Pairing: "old-alias"},
		{Time: at(1), Kind: pairing.EventRequested, User: "U1", Instance: inst2.Name, InstanceID: inst2.ID, Digits: digits, Pairing: "other-instance"},
		{Time: at(2), Kind: pairing.EventLinked, User: "U1", Instance: inst1.Name, InstanceID: inst1.ID, Digits: digits, Pairing: "p1"},
		{Time: at(3), Kind: pairing.EventRequested, User: "U2", Instance: inst1.Name, InstanceID: inst1.ID, Digits: otherNum, Pairing: "other-phone"},
		{Time: at(4), Kind: pairing.EventRequested, User: "U1", Instance: "gone", Digits: digits, Pairing: "unknown-alias"},
	} {
		if err := r.db.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.svc.AuditRefusal(t.Context(), pairing.Refusal{Time: at(5), User: "U3", Team: "T1", Channel: "C1", Instance: pairing.Instance{ID: inst1.ID, Name: inst1.Name, Region: "EG"}, Phone: "0111 222 3333", Outcome: pairing.OutcomeAccessDenied}); err != nil {
		t.Fatal(err)
	}
	onlyInst1 := func(id string) bool { return id == inst1.ID }
	tests := []struct {
		name string
		q    pairing.HistoryQuery
		want []string
	}{
		{"phone", pairing.HistoryQuery{Phone: digits}, []string{"", "unknown-alias", "p1", "other-instance", "old-alias"}},
		{"phone, limit", pairing.HistoryQuery{Phone: digits, Limit: 2}, []string{"", "unknown-alias"}},
		{"phone, allowed instances", pairing.HistoryQuery{Phone: digits, Allowed: onlyInst1}, []string{"", "p1", "old-alias"}},
		{"phone, allowed, limit", pairing.HistoryQuery{Phone: digits, Allowed: onlyInst1, Limit: 2}, []string{"", "p1"}},
		{"instance by alias and ID", pairing.HistoryQuery{Instances: []string{inst1.Name, inst1.ID}}, []string{"", "other-phone", "p1", "old-alias"}},
		{"default rules for an alias nobody has", pairing.HistoryQuery{Phone: digits, Allowed: func(id string) bool { return id == "" }}, []string{"unknown-alias"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.svc.History(t.Context(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range got {
				ids = append(ids, e.Pairing)
			}
			if diff := cmp.Diff(tt.want, ids, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
		})
	}
	// The refusal was recorded with the phone masked, as typed in the
	// instance's region.
	got, _ := r.svc.History(t.Context(), pairing.HistoryQuery{Phone: digits, Limit: 1})
	if len(got) != 1 || got[0].Phone != masked || got[0].Outcome != pairing.OutcomeAccessDenied || got[0].InstanceID != inst1.ID {
		t.Errorf("recorded refusal = %+v", got)
	}
}

// TestDoneContext: the service hands its caller's ctx to the storage, so a
// request given up on (a ctx already done) is refused by the storage
// before anything happens: no Wawp call, no stored change, no audit event,
// and the error says why (context.Canceled).
func TestDoneContext(t *testing.T) {
	r := newRig(t, pairing.Config{})
	p := r.start(request(inst1, digits, "U1"))
	r.wawp.takeCalls()
	events := r.events()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	const clickURL = "https://hooks.slack.test/actions/done"
	for _, tt := range []struct {
		name string
		call func() error
	}{
		{"Start", func() error { _, err := r.svc.Start(ctx, request(inst2, otherNum, "U2")); return err }},
		{"Renew", func() error {
			_, err := r.svc.Renew(ctx, pairing.Renewal{ID: p.ID, User: "U1", Team: "T1", ResponseURL: clickURL, URLIssued: t0})
			return err
		}},
		{"Cancel", func() error {
			_, err := r.svc.Cancel(ctx, p.ID, "U1", pairing.Click{ResponseURL: clickURL, Issued: t0})
			return err
		}},
		{"Refresh", func() error {
			_, err := r.svc.Refresh(ctx, p.ID, "U1", pairing.Click{ResponseURL: clickURL, Issued: t0})
			return err
		}},
		{"Pairing", func() error { _, err := r.svc.Pairing(ctx, p.ID); return err }},
		{"RecordView", func() error { return r.svc.RecordView(ctx, p.ID, "x", true) }},
		{"UseResponseURL", func() error { return r.svc.UseResponseURL(ctx, clickURL, t0, 0) }},
		{"RefundResponseURL", func() error { return r.svc.RefundResponseURL(ctx, clickURL) }},
		{"AuditRefusal", func() error {
			return r.svc.AuditRefusal(ctx, pairing.Refusal{Time: t0, User: "U3", Instance: inst1, Outcome: pairing.OutcomeAccessDenied})
		}},
		{"History", func() error { _, err := r.svc.History(ctx, pairing.HistoryQuery{Phone: digits}); return err }},
		{"Advance", func() error { _, err := r.svc.Advance(ctx); return err }},
		{"Prune", func() error { _, err := r.svc.Prune(ctx); return err }},
	} {
		if err := tt.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", tt.name, err)
		}
	}
	if ended := r.svc.Interrupt(ctx); len(ended) != 0 {
		t.Errorf("Interrupt with a cancelled context ended %d requests", len(ended))
	}
	if calls := r.wawp.takeCalls(); len(calls) != 0 {
		t.Errorf("Wawp was called: %v", calls)
	}
	if diff := cmp.Diff(p, r.stored(p.ID)); diff != "" {
		t.Errorf("the pairing changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(kinds(events), kinds(r.events())); diff != "" {
		t.Errorf("the audit log changed (-want +got):\n%s", diff)
	}
}

// handOff is U1's /link for phone on in, handed to U2: the code goes to
// U2's DM, opened by prepare just before request-code.
func handOff(in pairing.Instance, phone string, prepare func(context.Context, pairing.Pairing) error) pairing.Request {
	req := request(in, phone, "U1")
	req.Delivery, req.DM, req.Prepare = pairing.DeliveryDM, pairing.Surface{Recipient: "U2"}, prepare
	return req
}

// TestHandOff (issue 9): a code handed to someone else is the requester's
// (their limits, their access, their pairing) and is audited with its
// recipient; the recipient may use its buttons, nobody else; a DM that
// Slack refuses ends the request before request-code, uncounted.
func TestHandOff(t *testing.T) {
	t.Run("audited with the recipient", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		var prepared []string
		p := r.start(handOff(inst1, digits, func(_ context.Context, p pairing.Pairing) error {
			prepared = append(prepared, string(p.State)+" "+p.DM.Recipient)
			return nil
		}))
		if diff := cmp.Diff([]string{"session INST00000001", "code INST00000001 " + digits}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"requesting U2"}, prepared); diff != "" {
			t.Errorf("prepare ran for (-want +got):\n%s", diff)
		}
		if p.RequestedBy != "U1" || p.HandedTo() != "U2" || !p.InDM() {
			t.Errorf("pairing %+v; want U1's, handed to U2, in a DM", p)
		}
		if _, err := r.svc.Cancel(context.Background(), p.ID, "U2", pairing.Click{}); err != nil {
			t.Fatalf("the recipient's Cancel: %v", err)
		}
		for _, e := range r.events() {
			if e.User != "U1" || e.Recipient != "U2" {
				t.Errorf("event %s: user %q, recipient %q; want U1 and U2", e.Kind, e.User, e.Recipient)
			}
		}
		if diff := cmp.Diff([]string{"requested", "code_issued", "cancelled"}, kinds(r.events())); diff != "" {
			t.Errorf("audit (-want +got):\n%s", diff)
		}
	})
	t.Run("the recipient's New code is the requester's request", func(t *testing.T) {
		r := newRig(t, pairing.Config{UserLimit: pairing.Window{Max: 2, Period: time.Hour}})
		old := r.start(handOff(inst1, digits, nil))
		click := renewal(old.ID, "U2")
		var asked []string
		click.Allowed = func(user, instanceID, channel string) bool {
			asked = append(asked, user)
			return true
		}
		p, err := r.svc.Renew(context.Background(), click)
		if err != nil || p.RequestedBy != "U1" || p.HandedTo() != "U2" || p.DM.Recipient != "U2" {
			t.Fatalf("Renew by the recipient = %+v, %v; want U1's new code, still for U2", p, err)
		}
		if diff := cmp.Diff([]string{"U1"}, asked); diff != "" {
			t.Errorf("access asked about (-want +got):\n%s", diff)
		}
		// Both codes count against the requester: a third is refused.
		_, err = r.svc.Renew(context.Background(), renewal(p.ID, "U2"))
		if lerr, ok := errors.AsType[*pairing.LimitError](err); !ok || lerr.Limit != pairing.LimitUser {
			t.Errorf("third code: %v, want U1's user limit", err)
		}
	})
	t.Run("nobody else may use its buttons", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		p := r.start(handOff(inst1, digits, nil))
		r.wawp.takeCalls()
		if _, err := r.svc.Cancel(context.Background(), p.ID, "U3", pairing.Click{}); !errors.Is(err, pairing.ErrNotYours) {
			t.Errorf("Cancel by U3: %v, want ErrNotYours", err)
		}
		if _, err := r.svc.Renew(context.Background(), renewal(p.ID, "U3")); !errors.Is(err, pairing.ErrNotYours) {
			t.Errorf("Renew by U3: %v, want ErrNotYours", err)
		}
		if _, err := r.svc.Refresh(context.Background(), p.ID, "U3", pairing.Click{}); !errors.Is(err, pairing.ErrNotYours) {
			t.Errorf("Refresh by U3: %v, want ErrNotYours", err)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp called: %v", calls)
		}
	})
	t.Run("a DM Slack refuses costs no attempt", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		p, err := r.svc.Start(context.Background(), handOff(inst1, digits, func(context.Context, pairing.Pairing) error {
			return &pairing.DMError{Code: "messages_tab_disabled"}
		}))
		if derr, ok := errors.AsType[*pairing.DMError](err); !ok || derr.Code != "messages_tab_disabled" {
			t.Fatalf("err = %v, want the DM's refusal", err)
		}
		if pairing.OutcomeOf(err) != pairing.OutcomeDMRefused {
			t.Errorf("outcome %s", pairing.OutcomeOf(err))
		}
		if code, ok := pairing.ReasonDM(p.Reason); p.State != pairing.StateFailed || !ok || code != "messages_tab_disabled" || p.Code != "" {
			t.Errorf("pairing %+v; want failed for the DM, no code", p)
		}
		if diff := cmp.Diff([]string{"session INST00000001"}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got):\n%s", diff)
		}
		if n := r.count(digits); n != 0 {
			t.Errorf("the phone's window counts %d codes, want 0", n)
		}
		ev := r.events()
		if diff := cmp.Diff([]string{"requested", "error:dm_refused"}, kinds(ev)); diff != "" {
			t.Errorf("audit (-want +got):\n%s", diff)
		}
		if ev[len(ev)-1].Recipient != "U2" {
			t.Errorf("the refusal's recipient is %q", ev[len(ev)-1].Recipient)
		}
		// The instance is free again.
		r.start(request(inst1, digits, "U1"))
	})
}
