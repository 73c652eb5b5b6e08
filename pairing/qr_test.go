package pairing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

// The QR fallback's service tests (issue 10): the same rig, with a stub
// Wawp that also makes QR links (pairing.TempLinks) and a captured log.

const linkToken = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

const testLink = "https://app.wawp.net/temp-qr/" + linkToken

// qrStub is stubWawp that also makes and revokes QR links, as scripted.
type qrStub struct {
	*stubWawp
	link      pairing.TempLink
	createErr error
	// revokeErrs are the answers to the revocations, in turn (the last one
	// repeats); none: every revocation succeeds.
	revokeErrs []error
	// duringCreate, if set, runs inside the next CreateTempLink (once).
	duringCreate func()
}

func (w *qrStub) CreateTempLink(_ context.Context, instance string) (pairing.TempLink, error) {
	w.mu.Lock()
	w.calls = append(w.calls, "templink create "+instance)
	during := w.duringCreate
	w.duringCreate = nil
	w.mu.Unlock()
	if during != nil {
		during()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.createErr != nil {
		return pairing.TempLink{}, w.createErr
	}
	return w.link, nil
}

func (w *qrStub) RevokeTempLink(_ context.Context, instance string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, "templink revoke "+instance)
	if len(w.revokeErrs) == 0 {
		return nil
	}
	err := w.revokeErrs[0]
	if len(w.revokeErrs) > 1 {
		w.revokeErrs = w.revokeErrs[1:]
	}
	return err
}

func (w *qrStub) failRevokes(errs ...error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.revokeErrs = errs
}

// lockedBuffer is a log sink several goroutines may write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type qrRig struct {
	*rig
	qr  *qrStub
	log *lockedBuffer
}

// newQRRig is newRig with a Wawp that makes QR links (valid 30 minutes
// from t0 by Wawp's answer) and every log line captured.
func newQRRig(t *testing.T, cfg pairing.Config) *qrRig {
	t.Helper()
	r := newRig(t, pairing.Config{})
	qr := &qrStub{stubWawp: r.wawp, link: pairing.TempLink{URL: testLink, ExpiresAt: t0.Add(30 * time.Minute)}}
	logs := &lockedBuffer{}
	cfg.Now = r.clock.Now
	cfg.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.svc = pairing.NewService(qr, r.db, cfg)
	q := &qrRig{rig: r, qr: qr, log: logs}
	t.Cleanup(q.checkNoLink)
	return q
}

// checkNoLink fails the test if the link, or its token, appears in any
// log line or audit event: the link is a credential like the code.
func (r *qrRig) checkNoLink() {
	r.t.Helper()
	ev, _, err := r.db.Audit(context.Background(), pairing.AuditQuery{}) // t.Context() is done by now
	if err != nil {
		r.t.Fatal(err)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		r.t.Fatal(err)
	}
	for where, text := range map[string]string{"log": r.log.String(), "audit log": string(raw)} {
		if strings.Contains(text, linkToken[:20]) {
			r.t.Errorf("the QR link appears in the %s:\n%s", where, text)
		}
	}
}

// qrRequest is user's ask for a QR link on in, for phone ("" for any).
func qrRequest(in pairing.Instance, phone, user string) pairing.QRRequest {
	req := pairing.QRRequest{
		Instance: in, User: user, Team: "T1", Channel: "C1",
		ResponseURL: "https://hooks.slack.test/commands/" + user, URLIssued: t0,
	}
	if phone != "" {
		req.Phone = pairing.PhoneFromDigits(phone)
	}
	return req
}

// startQR runs req and fails the test unless a link is issued.
func (r *qrRig) startQR(req pairing.QRRequest) pairing.Pairing {
	r.t.Helper()
	p, err := r.svc.StartQR(context.Background(), req)
	if err != nil {
		r.t.Fatalf("StartQR(%s): %v", req.Instance.Name, err)
	}
	return p
}

// watched says whether pairing id is still watched.
func (r *qrRig) watched(id string) bool {
	r.t.Helper()
	w, err := r.db.WatchedPairings(r.t.Context())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range w {
		if p.ID == id {
			return true
		}
	}
	return false
}

// advance runs one tick and fails the test if it fails.
func (r *qrRig) advance() []pairing.Pairing {
	r.t.Helper()
	w, err := r.svc.Advance(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return w
}

// TestStartQR: the session is checked, then Wawp makes the link; the
// pairing is stored live with the link until the link's expiry, holds its
// instance, counts as the instance's first QR link (not against the
// phone), and is audited without the link.
func TestStartQR(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	p := r.startQR(qrRequest(inst1, digits, "U1"))
	if diff := cmp.Diff([]string{"session INST00000001", "templink create INST00000001"}, r.wawp.takeCalls()); diff != "" {
		t.Errorf("Wawp calls (-want +got):\n%s", diff)
	}
	want := pairing.Pairing{
		ID: p.ID, Instance: inst1.ID, InstanceName: inst1.Name, Phone: digits, RequestedBy: "U1", Team: "T1", Channel: "C1",
		ResponseURL: "https://hooks.slack.test/commands/U1", URLIssued: t0, RequestedAt: t0, IssuedAt: t0,
		ExpiresAt: t0.Add(29 * time.Minute), State: pairing.StateLive, Attempt: 1,
		Method: pairing.MethodQR, Link: testLink, RevokeDue: true,
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("pairing (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, r.stored(p.ID)); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	if got := r.liveOn(inst1.ID); len(got) != 1 || got[0] != p.ID {
		t.Errorf("live on the instance: %v, want the QR pairing", got)
	}
	if n := r.count(digits); n != 0 {
		t.Errorf("the phone counts %d code requests after a QR link, want 0", n)
	}
	if at := r.svc.NextQRAt(context.Background(), inst1.ID, t0); !at.Equal(t0) {
		t.Errorf("NextQRAt = %s, want now (1 of 3)", at)
	}
	if diff := cmp.Diff([]string{"qr_requested", "qr_issued"}, kinds(r.events())); diff != "" {
		t.Errorf("audited (-want +got):\n%s", diff)
	}
	for _, e := range r.events() {
		if e.Phone != masked || e.Pairing != p.ID || e.InstanceID != inst1.ID {
			t.Errorf("event %+v: want the masked phone, the pairing and the instance", e)
		}
	}
	if got := pairing.OutcomeOfQR(nil); got != pairing.OutcomeQRIssued {
		t.Errorf("OutcomeOfQR(nil) = %q", got)
	}
}

// TestQRLinkExpiry: the link is live until Wawp's expiry, never longer
// than 29 minutes after it arrived (a minute before Wawp's 30, while the
// response_url of the click that asked for it still works), whatever Wawp says.
func TestQRLinkExpiry(t *testing.T) {
	tests := []struct {
		name     string
		reported time.Time
		want     time.Time
	}{
		{"Wawp's expiry", t0.Add(29 * time.Minute), t0.Add(29 * time.Minute)},
		{"none given", time.Time{}, t0.Add(29 * time.Minute)},
		{"later than 29 minutes (a minute before Wawp's 30: the click's response_url still works)", t0.Add(2 * time.Hour), t0.Add(29 * time.Minute)},
		{"already past", t0.Add(-time.Minute), t0.Add(29 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newQRRig(t, pairing.Config{})
			r.qr.link.ExpiresAt = tt.reported
			if p := r.startQR(qrRequest(inst1, "", "U1")); !p.ExpiresAt.Equal(tt.want) {
				t.Errorf("ExpiresAt = %s, want %s", p.ExpiresAt, tt.want)
			}
		})
	}
}

// TestStartQRRefused: a limit that says no is never followed by a Wawp
// call: the instance's QR window (configurable), the instance held by
// someone else's pairing; and QR links turned off, or an account whose
// client cannot make them, are ErrQRUnavailable before anything is
// stored.
func TestStartQRRefused(t *testing.T) {
	t.Run("QR window", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{QRLimit: pairing.Window{Max: 2, Period: 10 * time.Minute}})
		for range 2 {
			p := r.startQR(qrRequest(inst1, "", "U1"))
			if _, err := r.svc.Cancel(context.Background(), p.ID, "U1", pairing.Click{}); err != nil {
				t.Fatal(err)
			}
			r.clock.Add(time.Minute)
		}
		r.wawp.takeCalls()
		p, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U2"))
		lerr, ok := errors.AsType[*pairing.LimitError](err)
		if !ok || lerr.Limit != pairing.LimitQR || lerr.Count != 2 || !lerr.RetryAt.Equal(t0.Add(10*time.Minute)) || lerr.Window != r.svc.QRLimit() {
			t.Fatalf("third link in 10 minutes: %v (%+v), want the QR limit, 2 in the window, next at 14:10", err, lerr)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp was called after the QR limit said no: %v", calls)
		}
		if p.State != pairing.StateRefused || p.RefusedBy() != pairing.LimitQR || pairing.OutcomeOfQR(err) != pairing.OutcomeLimitQR {
			t.Errorf("refused pairing %s by %q, outcome %q", p.State, p.RefusedBy(), pairing.OutcomeOfQR(err))
		}
		if ev := r.events(); ev[len(ev)-1].Kind != pairing.EventRefused || ev[len(ev)-1].Outcome != pairing.OutcomeLimitQR {
			t.Errorf("last event %+v, want refused:limit_qr", ev[len(ev)-1])
		}
		if at := r.svc.NextQRAt(context.Background(), inst1.ID, r.clock.Now()); !at.Equal(t0.Add(10 * time.Minute)) {
			t.Errorf("NextQRAt = %s, want 14:10", at)
		}
		r.clock.Add(8 * time.Minute) // 14:10: the first link left the window
		r.startQR(qrRequest(inst1, "", "U2"))
	})
	t.Run("instance held", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		code := r.start(request(inst1, otherNum, "U2"))
		r.wawp.takeCalls()
		_, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U1"))
		if lerr, ok := errors.AsType[*pairing.LimitError](err); !ok || lerr.Limit != pairing.LimitInstance || lerr.Holder.ID != code.ID || lerr.Holder.Code != "" {
			t.Fatalf("QR on an instance with someone's live code: %v, want refused, held by the code (hidden)", err)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp was called: %v", calls)
		}
	})
	t.Run("turned off", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{QRLimit: pairing.Window{Max: -1}})
		if _, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U1")); !errors.Is(err, pairing.ErrQRUnavailable) {
			t.Errorf("QR links off: err = %v, want ErrQRUnavailable", err)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 || len(r.events()) != 0 {
			t.Errorf("QR links off: Wawp calls %v, events %v; want none", calls, r.events())
		}
	})
	t.Run("client without temp links", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		if _, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U1")); !errors.Is(err, pairing.ErrQRUnavailable) {
			t.Errorf("a Wawp without temp links: err = %v, want ErrQRUnavailable", err)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp calls %v, want none", calls)
		}
	})
}

// TestStartQRPlanRefuses: an account whose plan has no temporary links
// (Wawp answers 403) gets ErrQRUnavailable, still carrying Wawp's answer;
// nothing was made, so nothing is revoked and the request does not count.
func TestStartQRPlanRefuses(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	r.qr.createErr = &pairing.APIError{Endpoint: "POST /v2/session/temp-link", Status: 403, Kind: pairing.ErrForbidden, Message: "Temporary access links are not available on your plan", Sent: true}
	p, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U1"))
	if !errors.Is(err, pairing.ErrQRUnavailable) || !errors.Is(err, pairing.ErrForbidden) {
		t.Fatalf("err = %v, want ErrQRUnavailable wrapping ErrForbidden", err)
	}
	if aerr, ok := errors.AsType[*pairing.APIError](err); !ok || !strings.Contains(aerr.Message, "plan") {
		t.Errorf("Wawp's answer is not kept: %v", err)
	}
	if got := pairing.OutcomeOfQR(err); got != pairing.OutcomeQRUnavailable {
		t.Errorf("outcome %q, want %q", got, pairing.OutcomeQRUnavailable)
	}
	if diff := cmp.Diff([]string{"session INST00000001", "templink create INST00000001"}, r.wawp.takeCalls()); diff != "" {
		t.Errorf("Wawp calls (-want +got):\n%s", diff)
	}
	if p.State != pairing.StateFailed || p.Link != "" || p.RevokeDue || !errors.Is(pairing.ReasonError(p.Reason), pairing.ErrForbidden) {
		t.Errorf("pairing %+v: want failed for a plan without links, nothing to revoke", p)
	}
	if at := r.svc.NextQRAt(context.Background(), inst1.ID, r.clock.Now()); !at.Equal(r.clock.Now()) {
		t.Errorf("the refused request counts in the QR window (next at %s)", at)
	}
	if diff := cmp.Diff([]string{"qr_requested", "error:qr_unavailable"}, kinds(r.events())); diff != "" {
		t.Errorf("audited (-want +got):\n%s", diff)
	}
	r.advance()
	if calls := r.wawp.takeCalls(); len(calls) != 0 {
		t.Errorf("a tick called Wawp for a request that made nothing: %v", calls)
	}
}

// TestStartQRStatus: only a session waiting for a phone gets a link; the
// others are refused as for a code, before temp-link is called.
func TestStartQRStatus(t *testing.T) {
	for _, tt := range []struct {
		status pairing.Status
		state  pairing.State
	}{{pairing.StatusWorking, pairing.StateRefused}, {pairing.StatusStopped, pairing.StateRefused}, {pairing.StatusStarting, pairing.StateWarmingUp}} {
		t.Run(string(tt.status), func(t *testing.T) {
			r := newQRRig(t, pairing.Config{})
			r.wawp.setStatus(inst1.ID, tt.status, otherNum)
			p, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U1"))
			if _, ok := errors.AsType[*pairing.StatusError](err); !ok || p.State != tt.state {
				t.Errorf("StartQR = %s, %v; want %s with a StatusError", p.State, err, tt.state)
			}
			if diff := cmp.Diff([]string{"session INST00000001"}, r.wawp.takeCalls()); diff != "" {
				t.Errorf("Wawp calls (-want +got):\n%s", diff)
			}
			if p.RevokeDue || len(r.liveOn(inst1.ID)) != 0 {
				t.Errorf("a refused request holds its instance or owes a revocation: %+v", p)
			}
		})
	}
}

// TestQRRevokedInEveryEnding: however a QR pairing ends, its link is
// revoked at Wawp once (temp-link DELETE), the link is wiped, the
// revocation is audited, and the pairing's message may stop being
// watched; the link never reaches a log line or the audit log
// (checkNoLink).
func TestQRRevokedInEveryEnding(t *testing.T) {
	revoke := "templink revoke INST00000001"
	session := "session INST00000001"
	tests := []struct {
		name  string
		phone string
		end   func(r *qrRig, p pairing.Pairing) // ends p (or its request)
		state pairing.State
		calls []string // from the end on
		// linked is the number the pairing reports as linked.
		linked string
		ended  []string // the audit events of the ending
	}{
		{"linked", digits, func(r *qrRig, p pairing.Pairing) {
			r.wawp.setStatus(inst1.ID, pairing.StatusWorking, digits)
			r.advance()
		}, pairing.StateLinked, []string{session, revoke}, digits, []string{"linked", "qr_revoked"}},
		{"linked, any number", "", func(r *qrRig, p pairing.Pairing) {
			r.wawp.setStatus(inst1.ID, pairing.StatusWorking, otherNum)
			r.advance()
		}, pairing.StateLinked, []string{session, revoke}, otherNum, []string{"linked", "qr_revoked"}},
		{"wrong phone", digits, func(r *qrRig, p pairing.Pairing) {
			r.wawp.setStatus(inst1.ID, pairing.StatusWorking, otherNum)
			r.advance()
		}, pairing.StateWrongPhone, []string{session, revoke}, otherNum, []string{"wrong_phone:linked +20 10 ••• 888", "qr_revoked"}},
		{"cancelled", digits, func(r *qrRig, p pairing.Pairing) {
			if _, err := r.svc.Cancel(context.Background(), p.ID, "U1", pairing.Click{ResponseURL: "https://hooks.slack.test/actions/cancel", Issued: r.clock.Now(), TS: "1700000000.000002"}); err != nil {
				r.t.Fatal(err)
			}
		}, pairing.StateCancelled, []string{revoke}, "", []string{"cancelled", "qr_revoked"}},
		{"expired", digits, func(r *qrRig, p pairing.Pairing) {
			r.clock.Add(30 * time.Minute)
			r.advance()
		}, pairing.StateExpired, []string{session, revoke}, "", []string{"expired", "qr_revoked"}},
		{"instance failed", digits, func(r *qrRig, p pairing.Pairing) {
			r.wawp.setStatus(inst1.ID, pairing.StatusFailed, "")
			r.advance()
		}, pairing.StateFailed, []string{session, revoke}, "", []string{"error:instance_failed", "qr_revoked"}},
		{"instance gone", digits, func(r *qrRig, p pairing.Pairing) {
			r.wawp.failSession(inst1.ID, apiError("/v2/session/info", pairing.ErrNoInstance, true))
			r.advance()
		}, pairing.StateFailed, []string{session, revoke}, "", []string{"error:instance_gone", "qr_revoked"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newQRRig(t, pairing.Config{})
			p := r.startQR(qrRequest(inst1, tt.phone, "U1"))
			r.wawp.takeCalls()
			before := len(r.events())
			r.clock.Add(time.Minute)
			tt.end(r, p)
			if diff := cmp.Diff(tt.calls, r.wawp.takeCalls()); diff != "" {
				t.Errorf("Wawp calls (-want +got):\n%s", diff)
			}
			got := r.stored(p.ID)
			if got.State != tt.state || got.Link != "" || got.RevokeDue || got.LinkedPhone != tt.linked {
				t.Errorf("stored %s (link %q, revoke due %v, linked %q); want %s, no link, revoked, linked %q",
					got.State, got.Link, got.RevokeDue, got.LinkedPhone, tt.state, tt.linked)
			}
			if diff := cmp.Diff(tt.ended, kinds(r.events()[before:])); diff != "" {
				t.Errorf("audited (-want +got):\n%s", diff)
			}
			if tt.state == pairing.StateLinked {
				if e := r.events()[before]; e.Phone != pairing.MaskPhone(pairing.PhoneFromDigits(tt.linked).International) {
					t.Errorf("the link is audited with phone %q, want the linked number masked", e.Phone)
				}
			}
			if err := r.svc.RecordView(context.Background(), p.ID, "final", true); err != nil {
				t.Fatal(err)
			}
			if r.watched(p.ID) {
				t.Error("still watched after its final view was shown")
			}
			r.advance()
			r.clock.Add(time.Hour)
			r.advance()
			for _, c := range r.wawp.takeCalls() {
				if c == revoke {
					t.Errorf("revoked again on a later tick")
				}
			}
		})
	}
}

// TestQRRevokedWhenNoLinkCanBeShown: a link that was made but cannot be
// shown is revoked too: the answer arrived after the request's lease ran
// out, or it never arrived (a timeout: Wawp may have made one).
func TestQRRevokedWhenNoLinkCanBeShown(t *testing.T) {
	t.Run("after the lease", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		r.qr.duringCreate = func() { r.clock.Add(r.svc.RequestLease()) }
		p, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U1"))
		if !errors.Is(err, pairing.ErrInterrupted) || p.State != pairing.StateInterrupted || p.Link != "" {
			t.Fatalf("StartQR = %+v, %v; want interrupted, no link", p, err)
		}
		if diff := cmp.Diff([]string{"session INST00000001", "templink create INST00000001", "templink revoke INST00000001"}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got):\n%s", diff)
		}
		if got := r.stored(p.ID); got.RevokeDue {
			t.Errorf("revocation still due after it succeeded: %+v", got)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		r.qr.createErr = apiError("POST /v2/session/temp-link", pairing.ErrTimeout, true)
		p, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U1"))
		if !errors.Is(err, pairing.ErrTimeout) || p.State != pairing.StateFailed || p.RevokeDue {
			t.Fatalf("StartQR = %+v, %v; want failed, revoked", p, err)
		}
		if diff := cmp.Diff([]string{"session INST00000001", "templink create INST00000001", "templink revoke INST00000001"}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"qr_requested", "error:wawp_error", "qr_revoked"}, kinds(r.events())); diff != "" {
			t.Errorf("audited (-want +got):\n%s", diff)
		}
	})
	t.Run("never sent", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		r.qr.createErr = apiError("POST /v2/session/temp-link", pairing.ErrUnreachable, false)
		if _, err := r.svc.StartQR(context.Background(), qrRequest(inst1, "", "U1")); !errors.Is(err, pairing.ErrUnreachable) {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"session INST00000001", "templink create INST00000001"}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("a request that never left revoked a link (-want +got):\n%s", diff)
		}
	})
	t.Run("interrupted by a stopped process", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		// The process stops during the POST: its request is found by a
		// later tick once its lease ran out.
		_, err := r.db.Reserve(t.Context(), pairing.Reservation{
			Pairing:    pairing.Pairing{ID: "stuck", Method: pairing.MethodQR, Instance: inst1.ID, InstanceName: inst1.Name, RequestedBy: "U1", RevokeDue: true},
			PhoneLimit: pairing.DefaultQRLimit, UserLimit: pairing.DefaultUserLimit, Now: t0, Hold: r.svc.RequestLease(),
		})
		if err != nil {
			t.Fatal(err)
		}
		r.clock.Add(r.svc.RequestLease())
		r.advance()
		if diff := cmp.Diff([]string{"templink revoke INST00000001"}, r.wawp.takeCalls()); diff != "" {
			t.Errorf("Wawp calls (-want +got):\n%s", diff)
		}
		if got := r.stored("stuck"); got.State != pairing.StateInterrupted || got.RevokeDue {
			t.Errorf("stuck request: %s, revoke due %v; want interrupted and revoked", got.State, got.RevokeDue)
		}
	})
}

// TestQRRevokeRetried: a revocation that fails never holds up the end:
// the pairing ends, stays watched though its final view is shown, and
// later ticks retry after a growing wait until Wawp revokes the link; then
// it is audited and unwatched. Retries are bounded: after 8 failures, or
// once the link has run out anyway, it is given up (audited).
func TestQRRevokeRetried(t *testing.T) {
	revoke := "templink revoke INST00000001"
	down := apiError("DELETE /v2/session/temp-link", pairing.ErrUpstream, true)
	revokes := func(r *qrRig) int {
		n := 0
		for _, c := range r.wawp.takeCalls() {
			if c == revoke {
				n++
			}
		}
		return n
	}

	t.Run("until it succeeds", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		p := r.startQR(qrRequest(inst1, digits, "U1"))
		r.qr.failRevokes(down, down, nil)
		r.wawp.setStatus(inst1.ID, pairing.StatusWorking, digits)
		r.wawp.takeCalls()
		r.advance()
		got := r.stored(p.ID)
		if got.State != pairing.StateLinked || got.Link != "" || !got.RevokeDue || got.RevokeTries != 1 || !got.RevokeAt.Equal(r.clock.Now().Add(5*time.Second)) {
			t.Fatalf("after a failed revocation: %+v; want linked, link wiped, retry due in 5 s", got)
		}
		if n := revokes(r); n != 1 {
			t.Errorf("%d revocations tried, want 1", n)
		}
		if err := r.svc.RecordView(context.Background(), p.ID, "linked", true); err != nil {
			t.Fatal(err)
		}
		if !r.watched(p.ID) {
			t.Fatal("unwatched while its link is still to be revoked: no tick would retry")
		}
		if got := r.stored(p.ID); got.LastView != "linked" || !got.UnwatchDue {
			t.Errorf("the view shown is not recorded: %+v", got)
		}
		r.clock.Add(4 * time.Second)
		r.advance()
		if n := revokes(r); n != 0 {
			t.Errorf("retried before the wait was over (%d)", n)
		}
		r.clock.Add(time.Second)
		r.advance()
		if got := r.stored(p.ID); revokes(r) != 1 || got.RevokeTries != 2 || !got.RevokeAt.Equal(r.clock.Now().Add(10*time.Second)) {
			t.Errorf("second try: %+v; want tried, next in 10 s", got)
		}
		r.clock.Add(10 * time.Second)
		r.advance()
		got = r.stored(p.ID)
		if revokes(r) != 1 || got.RevokeDue {
			t.Errorf("third try: %+v; want revoked", got)
		}
		if r.watched(p.ID) {
			t.Error("still watched once revoked, its final view shown")
		}
		if ev := r.events(); ev[len(ev)-1].Kind != pairing.EventQRRevoked {
			t.Errorf("last event %v, want qr_revoked", kinds(ev[len(ev)-1:]))
		}
		r.clock.Add(time.Hour)
		r.advance()
		if n := revokes(r); n != 0 {
			t.Errorf("revoked again after success (%d)", n)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		p := r.startQR(qrRequest(inst1, "", "U1"))
		r.qr.failRevokes(down)
		if _, err := r.svc.Cancel(context.Background(), p.ID, "U1", pairing.Click{}); err != nil {
			t.Fatal(err)
		}
		if got := r.stored(p.ID); got.State != pairing.StateCancelled || !got.RevokeDue {
			t.Fatalf("cancelled with a failing revocation: %+v", got)
		}
		for range 40 {
			r.clock.Add(30 * time.Second)
			r.advance()
		}
		if n := revokes(r); n != 8 {
			t.Errorf("%d revocations tried, want 8 (then given up)", n)
		}
		if got := r.stored(p.ID); got.RevokeDue {
			t.Errorf("still due after giving up: %+v", got)
		}
		if ev := r.events(); ev[len(ev)-1].Kind != pairing.EventError || ev[len(ev)-1].Outcome != pairing.OutcomeQRRevokeFailed {
			t.Errorf("last event %v, want error:qr_revoke_failed", kinds(ev[len(ev)-1:]))
		}
		if !strings.Contains(r.log.String(), "gave up revoking a QR link") {
			t.Error("giving up is not logged")
		}
	})

	t.Run("not past the link's life", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		p := r.startQR(qrRequest(inst1, "", "U1"))
		r.qr.failRevokes(down)
		r.svc.Cancel(context.Background(), p.ID, "U1", pairing.Click{})
		r.wawp.takeCalls()
		r.clock.Add(r.svc.RequestLease() + 30*time.Minute)
		r.advance()
		if n := revokes(r); n != 0 {
			t.Errorf("a revocation retried after the link ran out (%d)", n)
		}
		if got := r.stored(p.ID); got.RevokeDue {
			t.Errorf("still due after the link ran out: %+v", got)
		}
	})

	t.Run("never a newer link", func(t *testing.T) {
		r := newQRRig(t, pairing.Config{})
		a := r.startQR(qrRequest(inst1, "", "U1"))
		r.qr.failRevokes(down, nil)
		r.svc.Cancel(context.Background(), a.ID, "U1", pairing.Click{})
		b := r.startQR(qrRequest(inst1, "", "U2")) // Wawp expired a's link when it made b's
		r.wawp.takeCalls()
		r.clock.Add(time.Minute)
		r.advance()
		if n := revokes(r); n != 0 {
			t.Errorf("retrying a's revocation revoked b's live link (%d calls)", n)
		}
		if got := r.stored(a.ID); got.RevokeDue {
			t.Errorf("a's revocation still due though a newer link replaced it: %+v", got)
		}
		if got := r.stored(b.ID); got.State != pairing.StateLive || got.Link != testLink {
			t.Errorf("b: %+v, want live with its link", got)
		}
	})
}

// TestQRFinishViewKeepsWatching: a surface that finishes its last claimed
// edit of an ended QR pairing whose link is still to be revoked leaves it
// watched; once revoked it is unwatched.
func TestQRFinishViewKeepsWatching(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	p := r.startQR(qrRequest(inst1, "", "U1"))
	r.qr.failRevokes(apiError("DELETE /v2/session/temp-link", pairing.ErrTimeout, true), nil)
	r.svc.Cancel(context.Background(), p.ID, "U1", pairing.Click{})
	c, won, err := r.svc.ClaimView(context.Background(), pairing.ViewClaim{ID: p.ID, Surface: "dm", From: "", To: "cancelled"})
	if err != nil || !won {
		t.Fatalf("ClaimView = %v, %v", won, err)
	}
	if ok, err := r.svc.FinishView(context.Background(), c, pairing.Surface{LastView: "cancelled"}, true); err != nil || !ok {
		t.Fatalf("FinishView = %v, %v", ok, err)
	}
	if !r.watched(p.ID) || r.stored(p.ID).View("dm") != "cancelled" {
		t.Fatalf("after FinishView: watched %v, dm shows %q; want watched, showing cancelled", r.watched(p.ID), r.stored(p.ID).View("dm"))
	}
	r.clock.Add(time.Minute)
	r.advance()
	if r.watched(p.ID) || r.stored(p.ID).RevokeDue {
		t.Errorf("after the revocation: watched %v, due %v; want neither", r.watched(p.ID), r.stored(p.ID).RevokeDue)
	}
}

// TestQRReplacesOwnCode: "Link by QR instead" on one's own live code: the
// QR request passes the instance limit, asks for the code's phone, takes
// over its message, and once the link is made the code is superseded.
// Someone else's pairing cannot be replaced; a request that never reached
// Wawp gives the code its instance back.
func TestQRReplacesOwnCode(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	code := r.start(request(inst1, digits, "U1"))
	r.wawp.takeCalls()
	req := qrRequest(inst1, "", "U2")
	req.Replaces = code.ID
	if _, err := r.svc.StartQR(context.Background(), req); !errors.Is(err, pairing.ErrNotYours) {
		t.Errorf("replacing someone else's code: %v, want ErrNotYours", err)
	}
	if calls := r.wawp.takeCalls(); len(calls) != 0 {
		t.Errorf("Wawp calls %v, want none", calls)
	}

	r.qr.createErr = apiError("POST /v2/session/temp-link", pairing.ErrUnreachable, false)
	req = qrRequest(inst1, "", "U1")
	req.Replaces = code.ID
	if _, err := r.svc.StartQR(context.Background(), req); err == nil {
		t.Fatal("no error")
	}
	if got := r.liveOn(inst1.ID); len(got) != 1 || got[0] != code.ID || r.stored(code.ID).Code != code.Code {
		t.Errorf("after a QR request that never reached Wawp: live %v, want the code back", got)
	}

	r.qr.createErr = nil
	qr := r.startQR(req)
	if qr.Phone != digits || qr.MessageID() != code.MessageID() || qr.Renews != code.ID {
		t.Errorf("QR pairing %+v: want the code's phone and message", qr)
	}
	if old := r.stored(code.ID); old.State != pairing.StateSuperseded || old.Code != "" {
		t.Errorf("the replaced code: %s (code %q), want superseded and wiped", old.State, old.Code)
	}
	if got := r.liveOn(inst1.ID); len(got) != 1 || got[0] != qr.ID {
		t.Errorf("live on the instance: %v, want the QR pairing", got)
	}
	if n := r.count(digits); n != 1 {
		t.Errorf("the phone counts %d requests, want 1 (the code's only)", n)
	}
}

// TestRenewQR: New link on a QR pairing asks for a new link (through the
// QR window); Wawp expires the old link when it makes the new one, so the
// old pairing is superseded without a revocation.
func TestRenewQR(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	old := r.startQR(qrRequest(inst1, "", "U1"))
	r.wawp.takeCalls()
	r.clock.Add(time.Minute)
	p, err := r.svc.Renew(context.Background(), renewal(old.ID, "U1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"session INST00000001", "templink create INST00000001"}, r.wawp.takeCalls()); diff != "" {
		t.Errorf("Wawp calls (-want +got):\n%s", diff)
	}
	if p.Method != pairing.MethodQR || p.State != pairing.StateLive || p.Attempt != 2 || p.MessageID() != old.MessageID() {
		t.Errorf("renewal %+v: want the instance's 2nd live QR link, in the same message", p)
	}
	if got := r.stored(old.ID); got.State != pairing.StateSuperseded || got.Link != "" || got.RevokeDue {
		t.Errorf("old QR pairing: %+v; want superseded, no link, nothing to revoke", got)
	}
	if got := pairing.OutcomeOfQR(err); got != pairing.OutcomeQRIssued {
		t.Errorf("outcome %q", got)
	}
}

// TestStartQRDeduplicated: the same command twice asks Wawp once.
func TestStartQRDeduplicated(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	req := qrRequest(inst1, "", "U1")
	req.DedupeKey = "envelope-1"
	r.startQR(req)
	if _, err := r.svc.StartQR(context.Background(), req); !errors.Is(err, pairing.ErrDuplicate) {
		t.Errorf("second delivery: %v, want ErrDuplicate", err)
	}
	if diff := cmp.Diff([]string{"session INST00000001", "templink create INST00000001"}, r.wawp.takeCalls()); diff != "" {
		t.Errorf("Wawp calls (-want +got):\n%s", diff)
	}
}

// TestQRSuggested: when a code cannot do the job, the message offers QR.
func TestQRSuggested(t *testing.T) {
	code := pairing.Pairing{ID: "p", Instance: inst1.ID, Phone: digits}
	with := func(f func(*pairing.Pairing)) pairing.Pairing { p := code; f(&p); return p }
	lockedOut := apiError("/v2/auth/request-code", pairing.ErrLockedOut, true)
	tests := []struct {
		name string
		p    pairing.Pairing
		err  error
		want bool
	}{
		{"phone limit", pairing.Pairing{}, &pairing.LimitError{Limit: pairing.LimitPhone}, true},
		{"phone limit, stored", with(func(p *pairing.Pairing) { p.State, p.Reason = pairing.StateRefused, "limit_phone" }), nil, true},
		{"user limit", pairing.Pairing{}, &pairing.LimitError{Limit: pairing.LimitUser}, false},
		{"instance held", pairing.Pairing{}, &pairing.LimitError{Limit: pairing.LimitInstance}, false},
		{"WhatsApp's lock-out", code, lockedOut, true},
		{"lock-out, stored", with(func(p *pairing.Pairing) { p.State, p.Reason = pairing.StateFailed, "wawp_error:locked_out" }), nil, true},
		{"Wawp's own rate limit", code, apiError("/v2/auth/request-code", pairing.ErrRateLimited, true), false},
		{"wrong phone", with(func(p *pairing.Pairing) { p.State = pairing.StateWrongPhone }), nil, true},
		{"first code expired", with(func(p *pairing.Pairing) { p.State, p.ExpiredInARow = pairing.StateExpired, 1 }), nil, false},
		{"second code in a row expired", with(func(p *pairing.Pairing) { p.State, p.ExpiredInARow = pairing.StateExpired, 2 }), nil, true},
		{"live", with(func(p *pairing.Pairing) { p.State = pairing.StateLive }), nil, false},
		{"linked", with(func(p *pairing.Pairing) { p.State = pairing.StateLinked }), nil, false},
		{"already QR", with(func(p *pairing.Pairing) { p.Method, p.State = pairing.MethodQR, pairing.StateWrongPhone }), nil, false},
	}
	for _, tt := range tests {
		if got := pairing.QRSuggested(tt.p, tt.err); got != tt.want {
			t.Errorf("%s: QRSuggested = %v, want %v", tt.name, got, tt.want)
		}
	}
	wrong := with(func(p *pairing.Pairing) { p.State = pairing.StateWrongPhone })
	if !newQRRig(t, pairing.Config{}).svc.QRSuggested(wrong, nil) {
		t.Error("Service.QRSuggested: false for a wrong phone on an instance that can have QR links")
	}
	if newRig(t, pairing.Config{}).svc.QRSuggested(wrong, nil) {
		t.Error("Service.QRSuggested: true though the instance's client cannot make QR links")
	}
	if newQRRig(t, pairing.Config{QRLimit: pairing.Window{Max: -1}}).svc.QRSuggested(wrong, nil) {
		t.Error("Service.QRSuggested: true though QR links are turned off")
	}
}

// TestExpiredInARow: a code that expires records how many codes for its
// phone on its instance expired in a row; the second suggests QR. A code
// that linked, or one on another instance, breaks the run.
func TestExpiredInARow(t *testing.T) {
	r := newQRRig(t, pairing.Config{})
	expire := func(in pairing.Instance, phone string) pairing.Pairing {
		t.Helper()
		p := r.start(request(in, phone, "U1"))
		r.clock.Add(pairing.DefaultCodeLifetime)
		r.advance()
		r.clock.Add(time.Minute)
		return r.stored(p.ID)
	}
	if p := expire(inst1, digits); p.ExpiredInARow != 1 || r.svc.QRSuggested(p, nil) {
		t.Errorf("first expired code: %d in a row, suggests QR %v; want 1, no", p.ExpiredInARow, r.svc.QRSuggested(p, nil))
	}
	if p := expire(inst2, digits); p.ExpiredInARow != 1 {
		t.Errorf("a code on another instance: %d in a row, want 1", p.ExpiredInARow)
	}
	if p := expire(inst1, digits); p.ExpiredInARow != 2 || !r.svc.QRSuggested(p, nil) {
		t.Errorf("second expired code on the instance: %d in a row, suggests QR %v; want 2, yes", p.ExpiredInARow, r.svc.QRSuggested(p, nil))
	}
	r.clock.Add(time.Hour) // out of the phone's window
	p := r.start(request(inst1, digits, "U1"))
	r.wawp.setStatus(inst1.ID, pairing.StatusWorking, digits)
	r.advance()
	r.wawp.setStatus(inst1.ID, pairing.StatusScanQR, "")
	if got := r.stored(p.ID); got.State != pairing.StateLinked {
		t.Fatalf("%s, want linked", got.State)
	}
	if p := expire(inst1, digits); p.ExpiredInARow != 1 {
		t.Errorf("an expired code after a linked one: %d in a row, want 1", p.ExpiredInARow)
	}
}
