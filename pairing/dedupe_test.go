package pairing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

// TestStartDuplicate: a redelivered /link (same envelope ID) does nothing
// at all — no Wawp call, no attempt, no pairing, no audit event — and says
// ErrDuplicate; once the dedupe window is over the key is free again.
func TestStartDuplicate(t *testing.T) {
	r := newRig(t, pairing.Config{})
	req := request(inst1, digits, "U1")
	req.DedupeKey = "envelope:E1"
	first := r.start(req)
	r.wawp.takeCalls()
	events := r.events()

	r.clock.Add(time.Second)
	p, err := r.svc.Start(context.Background(), req)
	if !errors.Is(err, pairing.ErrDuplicate) || p.ID != "" {
		t.Errorf("redelivery = %+v, %v; want nothing, ErrDuplicate", p, err)
	}
	if calls := r.wawp.takeCalls(); len(calls) != 0 {
		t.Errorf("Wawp called for a duplicate: %v", calls)
	}
	if n := r.count(digits); n != 1 {
		t.Errorf("the phone has %d requests in its window, want 1", n)
	}
	if diff := cmp.Diff(kinds(events), kinds(r.events())); diff != "" {
		t.Errorf("the audit log changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{first.ID}, r.liveOn(inst1.ID)); diff != "" {
		t.Errorf("live on the instance (-want +got):\n%s", diff)
	}

	// Another envelope is another command (refused here by the instance
	// limit, as it should be).
	other := request(inst1, otherNum, "U2")
	other.DedupeKey = "envelope:E2"
	if _, err := r.svc.Start(context.Background(), other); !errors.As(err, new(*pairing.LimitError)) {
		t.Errorf("another envelope: %v; want the instance limit's refusal", err)
	}

	r.clock.Add(pairing.DefaultDedupeWindow)
	if _, err := r.svc.Start(context.Background(), req); errors.Is(err, pairing.ErrDuplicate) {
		t.Errorf("the same key after the dedupe window: %v; want it handled again", err)
	}
}

// TestRenewDuplicate: a click delivered twice renews once; a click
// refused before the limits (not the requester's, no longer allowed, too
// soon) is answered once, and audited once.
func TestRenewDuplicate(t *testing.T) {
	t.Run("renewal", func(t *testing.T) {
		r := newRig(t, pairing.Config{})
		old := r.start(request(inst1, digits, "U1"))
		r.wawp.codes = []string{"EFGH5678"}
		r.wawp.takeCalls()
		click := renewal(old.ID, "U1")
		click.DedupeKey = "click:" + old.ID + ":new_code:1700000000.000100"
		renewed, err := r.svc.Renew(context.Background(), click)
		if err != nil {
			t.Fatal(err)
		}
		r.wawp.takeCalls()
		p, err := r.svc.Renew(context.Background(), click)
		if !errors.Is(err, pairing.ErrDuplicate) {
			t.Errorf("the click again = %+v, %v; want ErrDuplicate", p, err)
		}
		if calls := r.wawp.takeCalls(); len(calls) != 0 {
			t.Errorf("Wawp called for a duplicate: %v", calls)
		}
		if n := r.count(digits); n != 2 {
			t.Errorf("the phone has %d requests, want 2", n)
		}
		if diff := cmp.Diff([]string{renewed.ID}, r.liveOn(inst1.ID)); diff != "" {
			t.Errorf("live on the instance (-want +got):\n%s", diff)
		}
	})
	for _, tt := range []struct {
		name    string
		refusal func(error) bool
		setup   func(r *rig, click *pairing.Renewal) // makes the click one that is refused
	}{
		{"not yours", func(err error) bool { return errors.Is(err, pairing.ErrNotYours) }, func(_ *rig, c *pairing.Renewal) { c.User = "U2" }},
		{"no longer allowed", func(err error) bool { return errors.Is(err, pairing.ErrNotAllowed) }, func(_ *rig, c *pairing.Renewal) {
			c.Allowed = func(string, string, string) bool { return false }
		}},
		{"too soon", func(err error) bool { return errors.As(err, new(*pairing.TooSoonError)) }, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, pairing.Config{})
			var old pairing.Pairing
			if tt.setup == nil {
				r.wawp.setStatus(inst1.ID, pairing.StatusStarting, "")
				old, _ = r.svc.Start(context.Background(), request(inst1, digits, "U1"))
			} else {
				old = r.start(request(inst1, digits, "U1"))
			}
			click := renewal(old.ID, "U1")
			click.DedupeKey = "click:" + old.ID + ":new_code:1700000000.000100"
			if tt.setup != nil {
				tt.setup(r, &click)
			}
			r.wawp.takeCalls()
			before := len(r.events())
			if _, err := r.svc.Renew(context.Background(), click); !tt.refusal(err) {
				t.Errorf("first delivery: %v; want the refusal", err)
			}
			audited := len(r.events()) - before
			if _, err := r.svc.Renew(context.Background(), click); !errors.Is(err, pairing.ErrDuplicate) {
				t.Errorf("second delivery: %v; want ErrDuplicate", err)
			}
			if n := len(r.events()) - before; n != audited {
				t.Errorf("the duplicate audited %d more events", n-audited)
			}
			if calls := r.wawp.takeCalls(); len(calls) != 0 {
				t.Errorf("Wawp called: %v", calls)
			}
		})
	}
}

// TestClaimCommand: a command that reserves nothing claims its key first:
// nil the first time, ErrDuplicate after, nil again once the window is
// over; an empty key is never a duplicate.
func TestClaimCommand(t *testing.T) {
	r := newRig(t, pairing.Config{DedupeWindow: time.Minute})
	ctx := context.Background()
	if err := r.svc.ClaimCommand(ctx, "click:p1:cancel:1"); err != nil {
		t.Errorf("first claim: %v", err)
	}
	r.clock.Add(time.Minute - time.Nanosecond)
	if err := r.svc.ClaimCommand(ctx, "click:p1:cancel:1"); !errors.Is(err, pairing.ErrDuplicate) {
		t.Errorf("second claim within the window: %v, want ErrDuplicate", err)
	}
	r.clock.Add(time.Nanosecond)
	if err := r.svc.ClaimCommand(ctx, "click:p1:cancel:1"); err != nil {
		t.Errorf("claim after the window: %v", err)
	}
	for range 2 {
		if err := r.svc.ClaimCommand(ctx, ""); err != nil {
			t.Errorf("empty key: %v", err)
		}
	}
}
