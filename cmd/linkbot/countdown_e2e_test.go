package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
	"github.com/linkbot/linkbot/store"
)

// auditKinds lists the kinds of the audit events (read after the bot stopped).
func (h *harness) auditKinds() []string {
	var kinds []string
	for _, e := range h.auditEvents() {
		kinds = append(kinds, string(e.Kind))
	}
	return kinds
}

// auditEvents reads the audit log after the bot stopped.
func (h *harness) auditEvents() []pairing.Event {
	h.t.Helper()
	db, err := store.Open(h.env["LINKBOT_DB"], store.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	defer db.Close()
	events, err := db.AuditEvents(h.t.Context(), time.Time{}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return events
}

func TestPhoneEntersCodeLinkedWithinOneTick(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Enter this code")
	code := h.wawp.Code(instanceEG)
	polls := len(h.wawp.Calls(fakewawp.SessionInfo))
	if err := h.wawp.EnterCode(instanceEG, code); err != nil {
		t.Fatal(err)
	}
	h.tick()
	v := h.waitText(env.MessageID, "✅ Linked — +20 11 12223333 is now connected to support-eg")
	// Within one tick: the first poll after the phone entered the code ends
	// the pairing, and with nothing live no further poll is made.
	h.tick()
	if n := len(h.wawp.Calls(fakewawp.SessionInfo)) - polls; n != 1 {
		t.Errorf("%d session polls between the code being entered and the linked message (and one tick after it), want 1", n)
	}
	if strings.Contains(string(v.Blocks), code[:4]) || strings.Contains(string(v.Blocks), `"header"`) {
		t.Errorf("linked message still shows the code: %s", v.Blocks)
	}
	h.stop()
	var linked *pairing.Event
	for _, e := range h.auditEvents() {
		if strings.Contains(fmt.Sprint(e), code) {
			t.Errorf("audit event holds the code: %+v", e)
		}
		if e.Kind == "linked" {
			linked = &e
		}
	}
	if linked == nil || linked.User != "U1" || linked.Instance != "support-eg" || linked.Phone != "+20 11 ••• 333" {
		t.Errorf("audit linked event = %+v", linked)
	}
}

func TestCodeExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setConfig("code_lifetime: 5s\n")
	h.manualTicks()
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	// The code's lifetime passes, then a tick: it marks the pairing expired
	// (a tick under way while the clock moved on could draw "Expired" from
	// the stored live pairing before the next one marked it).
	h.clock.advance(5 * time.Second)
	h.tick()
	v := h.waitText(env.MessageID, "Expired — the code for +20 11 12223333 was not entered in time")
	if strings.Contains(string(v.Blocks), `"header"`) {
		t.Errorf("expired message still shows the code: %s", v.Blocks)
	}
	// New code still obeys the limits, and works.
	if _, err := h.tryClick(env.MessageID, "U1", "new_code"); err != nil {
		t.Fatal(err)
	}
	h.waitText(env.MessageID, "Code 2 of 3")
	h.stop()
	want := []string{"requested", "code_issued", "expired", "requested", "code_issued"}
	if diff := cmp.Diff(want, h.auditKinds()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

func TestWrongPhoneSaidLoudly(t *testing.T) {
	h := newHarness(t)
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	h.wawp.SetStatus(instanceEG, "WORKING", "201009998888")
	h.waitText(env.MessageID, "Linked the WRONG phone* — support-eg is now +20 10 09998888, not +20 11 12223333")
	h.stop()
	events := h.auditEvents()
	if last := events[len(events)-1]; last.Kind != "wrong_phone" || last.Outcome != "linked +20 10 ••• 888" {
		t.Errorf("last audit event = %+v, want wrong_phone naming the masked number", last)
	}
}

func TestWawpTimesOutThenRecovers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	calls := len(h.wawp.Calls(fakewawp.SessionInfo))
	h.wawp.FailAlways(instanceEG, fakewawp.SessionInfo, &fakewawp.Failure{Hang: true})
	h.wawp.EnterCode(instanceEG, h.wawp.Code(instanceEG))
	// Several ticks of timeouts: the pairing stays as it is.
	if !eventually(waitLong, func() bool { return len(h.wawp.Calls(fakewawp.SessionInfo)) >= calls+3 }) {
		t.Fatal("the bot stopped polling")
	}
	if v := h.latest(env.MessageID); !strings.Contains(string(v.Blocks), `"header"`) {
		t.Fatalf("pairing ended during Wawp's outage: %s", shown(v))
	}
	h.wawp.FailAlways(instanceEG, fakewawp.SessionInfo, nil)
	h.waitText(env.MessageID, "✅ Linked")
}

func TestSlack429OnCountdownThenRecovers(t *testing.T) {
	h := newHarness(t)
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	h.slack.RateLimitNext(time.Second)
	h.slack.RateLimitNext(time.Second)
	h.wawp.EnterCode(instanceEG, h.wawp.Code(instanceEG))
	h.waitText(env.MessageID, "✅ Linked")
	if got := h.slack.ResponseURLUses(env.ResponseURL); got != 2 {
		t.Errorf("response_url uses = %d, want 2 (code, linked): 429s are not uses", got)
	}
}

func TestRestartMidCountdown(t *testing.T) {
	t.Parallel()
	for _, end := range []string{"expires", "links"} {
		t.Run(end, func(t *testing.T) {
			h := newHarness(t)
			h.setConfig("code_lifetime: 5s\n")
			h.manualTicks()
			h.start()
			env := h.command("U1", "support-eg +201112223333")
			h.waitText(env.MessageID, "Enter this code")
			h.stop() // like a crash or a deploy mid-countdown
			h.start()
			if end == "links" {
				h.wawp.EnterCode(instanceEG, h.wawp.Code(instanceEG))
				h.tick()
				h.waitText(env.MessageID, "✅ Linked")
			} else {
				h.clock.advance(5 * time.Second) // the code's lifetime passes
				h.tick()
				h.waitText(env.MessageID, "Expired")
			}
			// The instance is free again for the next phone.
			h.wawp.SetStatus(instanceEG, "SCAN_QR_CODE", "")
			env2 := h.command("U2", "support-eg +201009998888")
			h.waitText(env2.MessageID, "Enter this code")
		})
	}
}

func TestFiftyPairingsAcrossFiveInstances(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setConfig("limits:\n  user: {max: 100, window: 1h}\n")
	ids := []string{"INST00000001", "INST00000002", "INST00000003", "INST00000004", "INST00000005"}
	for _, id := range ids {
		h.wawp.AddInstance(id, "")
	}
	h.start()
	// One live code per instance: ten rounds of five at once.
	for round := range 10 {
		var msgs []string
		for i, id := range ids {
			env := h.command(fmt.Sprintf("U%d", i), fmt.Sprintf("%s +2010%d%07d", id, round%10, i))
			msgs = append(msgs, env.MessageID)
		}
		for i, id := range ids {
			h.waitText(msgs[i], "Enter this code")
			if err := h.wawp.EnterCode(id, h.wawp.Code(id)); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range msgs {
			h.waitText(m, "✅ Linked")
		}
		for _, id := range ids { // logged out again for the next round
			h.wawp.SetStatus(id, "SCAN_QR_CODE", "")
		}
	}
	if got := len(h.wawp.Calls(fakewawp.RequestCode)); got != 50 {
		t.Errorf("request-code calls = %d, want 50", got)
	}
}

// eventually checks cond every 50 ms until it holds or timeout passes; for
// conditions on fake Wawp, which has no change notification.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			return cond()
		case <-tick.C:
		}
	}
	return true
}
