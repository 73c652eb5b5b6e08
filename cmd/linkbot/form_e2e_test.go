package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// The /link form and the live code window (issue 10), end to end: the
// real program, fake Slack's modals and fake Wawp.

// modal waits until user's open modal shows want, and returns it.
func (h *harness) modal(user, want string) fakeslack.View {
	h.t.Helper()
	var v fakeslack.View
	var open bool
	if !h.slack.WaitFor(waitLong, func() bool { v, open = h.slack.Modal(user); return open && strings.Contains(v.Shown(), want) }) {
		h.t.Fatalf("%s's modal (open: %v) never showed %q; it shows:\n%s\nlogs:\n%s", user, open, want, v.Shown(), h.logs.String())
	}
	return v
}

// submitForm fills the open form and submits it; it returns the envelope,
// acked.
func (h *harness) submitForm(user, instanceID, phone, deliverTo string) *fakeslack.Envelope {
	h.t.Helper()
	if instanceID != "" {
		if err := h.slack.Fill(user, "instance", fakeslack.Input{Option: instanceID}); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.slack.Fill(user, "phone", fakeslack.Input{Text: phone}); err != nil {
		h.t.Fatal(err)
	}
	if deliverTo != "" {
		if err := h.slack.Fill(user, "deliver", fakeslack.Input{User: deliverTo}); err != nil {
			h.t.Fatal(err)
		}
	}
	env, err := h.slack.Submit(user)
	if err != nil {
		h.t.Fatal(err)
	}
	if !h.slack.WaitFor(waitLong, func() bool { return !h.slack.Envelope(env.ID).AckedAt.IsZero() }) {
		h.t.Fatal("submission never acked")
	}
	return env
}

// TestFormOpensAtOnce: /link alone opens the form within the trigger's
// 3 s with what is known (the instance not checked yet: nothing in the
// cache), with no ack message, then the states come from Wawp with
// views.update; /link <instance> opens it with the instance chosen, and
// /link help still shows help.
func TestFormOpensAtOnce(t *testing.T) {
	h := newHarness(t)
	h.setConfig("  - alias: field-ng\n    id: B1B2C3D4E5F6\n    region: NG\n")
	h.wawp.AddInstance("B1B2C3D4E5F6", "STOPPED")
	h.start()
	env := h.command("U1", "")
	v := h.modal("U1", "Link a WhatsApp number")
	if got := string(v.Versions[0].Blocks); !strings.Contains(got, "support-eg · ⏳ checking…") {
		t.Errorf("the form first offered\n%s\nwant the instance as not checked yet", got)
	}
	h.modal("U1", "Instance states as of now.")
	v, _ = h.slack.Modal("U1")
	opts := string(v.Blocks)
	for _, want := range []string{"support-eg · 🟢 ready to pair", "field-ng · ⏹ stopped"} {
		if !strings.Contains(opts, want) {
			t.Errorf("the refreshed form offers\n%s\nwant %q", opts, want)
		}
	}
	if got := v.Versions[len(v.Versions)-1].Via; got != "views.update" {
		t.Errorf("the states came by %s, want views.update", got)
	}
	if th := h.slack.Thread(env.MessageID); len(th) != 0 {
		t.Errorf("/link alone left messages: %+v", th)
	}
	if n := len(h.wawp.Calls(fakewawp.RequestCode)); n != 0 {
		t.Errorf("%d codes requested by opening the form", n)
	}

	h.slack.CloseView("U1")
	h.command("U1", "field-ng")
	v = h.modal("U1", "Instance: field-ng")
	if !strings.Contains(v.Shown(), "NG") {
		t.Errorf("the phone's hint does not name field-ng's region:\n%s", v.Shown())
	}
	help := h.command("U1", "help")
	if got := shown(h.waitAck(help)); !strings.Contains(got, "/link") {
		t.Errorf("/link help = %q", got)
	}
}

// TestFormErrorsPerField: the command's checks, answered as errors on
// the field they are about, in the command's words; nothing is requested.
func TestFormErrorsPerField(t *testing.T) {
	for _, tc := range []struct {
		name, phone, deliver, block, want string
	}{
		{"bad number", "0111 222 33", "", "phone", "is not a valid number for EG. It was read as"},
		{"letters", "+20 CALL NOW", "", "phone", "contains letters"},
		{"instance stopped", "0111 222 3333", "", "instance", "support-eg is stopped. Start it in the Wawp dashboard"},
		{"hand-off to oneself", "0111 222 3333", "U1", "deliver", "The code is yours already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.block == "instance" {
				h.wawp.SetStatus(instanceEG, "STOPPED", "")
			}
			h.start()
			h.command("U1", "support-eg")
			h.modal("U1", "support-eg · ") // opened
			h.modal("U1", "Instance states as of now.")
			h.submitForm("U1", "", tc.phone, tc.deliver)
			v := h.modal("U1", "⚠ ")
			if got := v.Errors[tc.block]; !strings.Contains(got, tc.want) || strings.ContainsAny(got, "*`") {
				t.Errorf("errors %q; want on %s %q, without mrkdwn", v.Errors, tc.block, tc.want)
			}
			if len(v.Errors) != 1 || v.Title != "Link a WhatsApp number" {
				t.Errorf("errors %q in %q; want one, on the form", v.Errors, v.Title)
			}
			if n := len(h.wawp.Calls(fakewawp.RequestCode)); n != 0 {
				t.Errorf("%d codes requested for a refused form", n)
			}
		})
	}
}

// TestFormSubmitShowsLiveWindow: a good submission turns the form into
// the code window, the code large, the countdown kept by the tick, then
// ✅ Linked with the code gone; the requester's ephemeral messages get the
// code and the end as with the command.
func TestFormSubmitShowsLiveWindow(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	env := h.command("U1", "")
	h.modal("U1", "Instance states as of now.")
	h.submitForm("U1", instanceEG, "0111 222 3333", "")
	v := h.modal("U1", "Enter this code on the phone")
	code := h.wawp.Code(instanceEG)
	if !strings.Contains(v.Shown(), code[:4]+"-"+code[4:]) || !strings.Contains(v.Shown(), "Waiting for the phone") {
		t.Errorf("the window shows\n%s\nwant the code and the status line", v.Shown())
	}
	h.waitText(env.MessageID, "Show code window")
	if err := h.wawp.EnterCode(instanceEG, code); err != nil {
		t.Fatal(err)
	}
	h.tick()
	v = h.modal("U1", "✅ Linked")
	if strings.Contains(v.Shown(), code[:4]) {
		t.Errorf("the linked window still shows the code:\n%s", v.Shown())
	}
	h.waitText(env.MessageID, "✅ Linked — +20 11 12223333 is now connected to support-eg")
}

// TestSubmitRacingStatusRefresh: the person submits while the form's
// states are still being asked of Wawp; the refresh, passing the form's
// hash, is refused (hash_conflict) and never draws the form over the
// code window.
func TestSubmitRacingStatusRefresh(t *testing.T) {
	h := newHarness(t)
	arrived := make(chan struct{}, 1)
	h.wawp.FailNext(instanceEG, fakewawp.SessionInfo, fakewawp.Failure{Hang: true, Arrived: arrived}) // the refresh's call, until wawp_timeout
	h.start()
	h.command("U1", "")
	h.modal("U1", "Checking the instances' states")
	// The refresh's call must be the one hanging (not the submission's
	// later one): submit only once it reached Wawp.
	select {
	case <-arrived:
	case <-time.After(waitLong):
		t.Fatal("the form's status refresh never asked Wawp")
	}
	h.submitForm("U1", instanceEG, "0111 222 3333", "")
	h.modal("U1", "Enter this code on the phone")
	// The refresh has answered by the time its session call timed out.
	if !h.slack.WaitFor(waitLong, func() bool {
		return strings.Contains(h.logs.String(), "the form changed before its states were refreshed")
	}) {
		t.Fatalf("the refresh never gave up; logs:\n%s", h.logs.String())
	}
	v, _ := h.slack.Modal("U1")
	window := false
	for _, ver := range v.Versions {
		window = window || ver.Title == "WhatsApp pairing"
		if window && ver.Title == "Link a WhatsApp number" {
			t.Errorf("the form was drawn over the code window (%s)", ver.Via)
		}
	}
}

// TestClosedWindowPairingEndsRight: closing the window cancels nothing:
// the pairing goes on, links, and the requester's message says so; the
// closed window is not updated any more.
func TestClosedWindowPairingEndsRight(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	env := h.command("U1", "")
	form := h.modal("U1", "Instance states as of now.")
	// The response_url reaches the end below, yet the form's
	// private_metadata (readable in the Slack client) does not show it.
	if meta := form.PrivateMetadata; strings.Contains(meta, env.ResponseURL) || strings.Contains(meta, "http") {
		t.Errorf("the form's private_metadata shows the command's response_url: %s", meta)
	}
	h.submitForm("U1", instanceEG, "0111 222 3333", "")
	v := h.modal("U1", "Enter this code on the phone")
	if _, err := h.slack.CloseView("U1"); err != nil {
		t.Fatal(err)
	}
	if !h.slack.WaitFor(waitLong, func() bool { return strings.Contains(h.logs.String(), "code window closed; the pairing goes on") }) {
		t.Fatal("view_closed never handled")
	}
	if err := h.wawp.EnterCode(instanceEG, h.wawp.Code(instanceEG)); err != nil {
		t.Fatal(err)
	}
	h.tick()
	h.waitText(env.MessageID, "✅ Linked — +20 11 12223333 is now connected to support-eg")
	h.tick()
	if closed, _ := h.slack.ViewByID(v.ID); len(closed.Versions) != len(v.Versions) {
		t.Errorf("the closed window was updated %d more times", len(closed.Versions)-len(v.Versions))
	}
	h.stop()
	if kinds := strings.Join(h.auditKinds(), " "); !strings.Contains(kinds, "linked") || strings.Contains(kinds, "cancelled") {
		t.Errorf("audit %s; want linked, not cancelled", kinds)
	}
}

// TestShowCodeWindowButton: the code message's "Show code window" opens
// the window on the click's trigger; the tick keeps it current.
func TestShowCodeWindowButton(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Enter this code")
	h.click(env.MessageID, "U1", "show_window")
	h.modal("U1", "Enter this code on the phone")
	if err := h.wawp.EnterCode(instanceEG, h.wawp.Code(instanceEG)); err != nil {
		t.Fatal(err)
	}
	h.tick()
	h.modal("U1", "✅ Linked")
}

// TestShowWindowNotHeldBySlowWawp: "Show code window" opens the window
// within its trigger's 3 seconds whatever Wawp does. A New code click
// holds the code message's lock for its whole Wawp round trip (4 s here,
// Wawp hanging); the window must not wait for it before views.open, or
// the trigger has expired and nothing opens (found by the issue 10
// review). Once the click is done, the window shows what it left.
func TestShowWindowNotHeldBySlowWawp(t *testing.T) {
	h := newHarness(t)
	writeFile(t, h.configPath, strings.Replace(baseConfig, "wawp_timeout: 500ms", "wawp_timeout: 4s", 1))
	h.manualTicks()
	h.start()
	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Show code window")
	code := h.wawp.Code(instanceEG)
	arrived := make(chan struct{}, 1)
	h.wawp.FailNext(instanceEG, fakewawp.SessionInfo, fakewawp.Failure{Hang: true, Arrived: arrived})
	h.click(env.MessageID, "U1", "new_code")
	select {
	case <-arrived:
	case <-time.After(waitLong):
		t.Fatalf("New code never asked Wawp; logs:\n%s", h.logs.String())
	}
	h.click(env.MessageID, "U1", "show_window")
	v := h.modal("U1", "Enter this code on the phone")
	if !strings.Contains(v.Shown(), code[:4]+"-"+code[4:]) {
		t.Errorf("the window does not show the live code %s:\n%s", code, v.Shown())
	}
	// New code gives up on Wawp (its timeout), which leaves the code it
	// meant to replace working: the window, recorded as that pairing's
	// once the click let go of the message, follows it to the end.
	h.waitText(env.MessageID, "Wawp did not answer in time")
	if err := h.wawp.EnterCode(instanceEG, code); err != nil {
		t.Fatal(err)
	}
	h.tick()
	h.modal("U1", "✅ Linked")
}

// TestShowWindowNotOpened: when Slack refuses to open the code window
// (the click's trigger ran out), the person is told, privately, in a
// message of its own: the code message keeps its code.
func TestShowWindowNotOpened(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Show code window")
	code := h.wawp.Code(instanceEG)
	h.slack.FailNextCall("views.open", "expired_trigger_id")
	h.click(env.MessageID, "U1", "show_window")
	told := h.waitText(env.MessageID, "The code window could not be opened. The code is still in the message above")
	if strings.Contains(shown(told), code[:4]) {
		t.Errorf("the notice shows the code:\n%s", shown(told))
	}
	if got := h.editableCode("U1", code); len(got) != 1 {
		t.Errorf("%d editable messages show the code, want the code message only:\n%s", len(got), screenText(h.slack.Thread(env.MessageID)))
	}
	if _, open := h.slack.Modal("U1"); open {
		t.Error("a modal is open")
	}
}

// TestWindowButtons: New code and Cancel work inside the window, answered
// there with views.update.
func TestWindowButtons(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	env := h.command("U1", "")
	h.modal("U1", "Instance states as of now.")
	h.submitForm("U1", instanceEG, "0111 222 3333", "")
	h.modal("U1", "Enter this code on the phone")
	first := h.wawp.Code(instanceEG)
	if _, err := h.slack.ClickInView("U1", "new_code"); err != nil {
		t.Fatal(err)
	}
	var second string
	if !h.slack.WaitFor(waitLong, func() bool {
		second = h.wawp.Code(instanceEG)
		v, _ := h.slack.Modal("U1")
		return second != first && strings.Contains(v.Shown(), second[:4]+"-"+second[4:])
	}) {
		v, _ := h.slack.Modal("U1")
		t.Fatalf("the window never showed the new code; it shows\n%s\nlogs:\n%s", v.Shown(), h.logs.String())
	}
	if _, err := h.slack.ClickInView("U1", "cancel"); err != nil {
		t.Fatal(err)
	}
	v := h.modal("U1", "Cancelled")
	if strings.Contains(v.Shown(), second[:4]) {
		t.Errorf("the cancelled window still shows the code:\n%s", v.Shown())
	}
	h.tick()
	h.waitText(env.MessageID, "Cancelled")
}

// TestFormExternalSelect: past 100 instances the form's select is an
// external one, answered over the socket (block_suggestion) with the
// instances matching what was typed, each with its state.
func TestFormExternalSelect(t *testing.T) {
	h := newHarness(t)
	var cfg strings.Builder
	for i := range 100 {
		fmt.Fprintf(&cfg, "  - alias: field-%03d\n    id: F%011d\n    region: NG\n", i, i)
	}
	h.setConfig(cfg.String())
	h.start()
	h.command("U1", "")
	v := h.modal("U1", "Link a WhatsApp number")
	if !strings.Contains(string(v.Blocks), `"external_select"`) {
		t.Fatalf("101 instances in a form without an external select: %s", v.Blocks)
	}
	opts, err := h.slack.Suggest("U1", "instance", "support")
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 1 || opts[0].Value != instanceEG || !strings.HasPrefix(opts[0].Text, "support-eg · ") {
		t.Errorf("suggestions for %q: %+v", "support", opts)
	}
	if all, err := h.slack.Suggest("U1", "instance", ""); err != nil || len(all) != 100 {
		t.Errorf("suggestions for nothing typed: %d, %v; want the first 100", len(all), err)
	}
	h.slack.Suggest("U1", "instance", "support") // the person types again, then chooses
	h.submitForm("U1", instanceEG, "0111 222 3333", "")
	h.modal("U1", "Enter this code on the phone")
}

// TestFormFollowsAccessRules: the form offers only the instances the
// person may use; someone who may use none gets the command's refusal and
// no form.
func TestFormFollowsAccessRules(t *testing.T) {
	h := newHarness(t)
	h.setConfig("  - alias: field-ng\n    id: B1B2C3D4E5F6\n    region: NG\n    access:\n      users: [UFIELD]\naccess:\n  users: [UALLOWED]\n  ask: \"<@UADMIN>\"\n")
	h.start()
	h.command("UALLOWED", "")
	v := h.modal("UALLOWED", "Link a WhatsApp number")
	if blocks := string(v.Blocks); !strings.Contains(blocks, "support-eg") || strings.Contains(blocks, "field-ng") {
		t.Errorf("UALLOWED is offered %s; want support-eg only", blocks)
	}
	env := h.command("USTRANGER", "")
	if got := shown(h.waitAck(env)); !strings.Contains(got, "You are not on the list") {
		t.Errorf("/link by someone allowed nothing answered %q", got)
	}
	if _, open := h.slack.Modal("USTRANGER"); open {
		t.Error("a form opened for someone allowed nothing")
	}
}

// TestFormNotOpened: when Slack refuses the form (the trigger ran out),
// the person is told, privately, to type the command instead.
func TestFormNotOpened(t *testing.T) {
	h := newHarness(t)
	h.slack.FailNextCall("views.open", "expired_trigger_id")
	h.start()
	env := h.command("U1", "")
	h.waitText(env.MessageID, "The form could not be opened. Type the instance and the number instead")
	if _, open := h.slack.Modal("U1"); open {
		t.Error("a modal is open")
	}
}

// TestFormHintWithManyInstancesInTwoRegions: 95 instances in NG plus
// support-eg in EG fit a static select (≤ 100); the phone field's hint
// must stay within Slack's 2,000 characters whatever the instances are
// called, or views.open is refused and the form never opens (found by the
// issue 10 review).
func TestFormHintWithManyInstancesInTwoRegions(t *testing.T) {
	h := newHarness(t)
	var cfg strings.Builder
	for i := range 95 {
		fmt.Fprintf(&cfg, "  - alias: field-agents-lagos-%03d\n    id: F%011d\n    region: NG\n", i, i)
	}
	h.setConfig(cfg.String())
	h.start()
	h.command("U1", "")
	h.modal("U1", "Link a WhatsApp number")
}

// TestSuggestionsAckUnder20KB: past 100 instances the select is external
// and block_suggestion is answered in the ack. With instance names in
// Arabic (2 bytes a letter in UTF-8), 100 options of up to 75 characters
// are more than Slack's 20 KB for an ack: the answer must stop at what
// fits, or it is dropped and the person sees no instance to choose (found
// by the issue 10 review).
func TestSuggestionsAckUnder20KB(t *testing.T) {
	h := newHarness(t)
	var cfg strings.Builder
	name := strings.Repeat("دعم", 22) // 66 letters
	for i := range 120 {
		fmt.Fprintf(&cfg, "  - alias: %s-%03d\n    id: F%011d\n    region: EG\n", name, i, i)
		h.wawp.AddInstance(fmt.Sprintf("F%011d", i), "SCAN_QR_CODE")
	}
	h.setConfig(cfg.String())
	h.start()
	h.command("U1", "")
	h.modal("U1", "Link a WhatsApp number")
	opts, err := h.slack.Suggest("U1", "instance", "")
	if err != nil || len(opts) == 0 {
		t.Errorf("suggestions for nothing typed: %d options, %v; want some\nlogs:\n%s", len(opts), err, h.logs.String())
	}
}

// TestFormHandOffRefusedIsAudited: a hand-off the form refuses for its
// recipient (here a bot) is shown in the window and audited as the
// command's is, with the requester and the recipient, once for a
// submission delivered twice; no code is requested.
func TestFormHandOffRefusedIsAudited(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	h.slack.SetUser(fakeslack.User{ID: "U0ROBOT", Name: "robot", IsBot: true})
	h.command("U1", "")
	h.modal("U1", "Instance states as of now.")
	h.slack.DuplicateNext(1)
	h.submitForm("U1", instanceEG, "0111 222 3333", "U0ROBOT")
	h.modal("U1", "is a bot")
	h.stop()
	if n := len(h.wawp.Calls(fakewawp.RequestCode)); n != 0 {
		t.Errorf("Wawp was asked for %d codes", n)
	}
	var got []pairing.Event
	for _, e := range h.auditEvents() {
		if e.Kind == pairing.EventRefused {
			got = append(got, e)
		}
	}
	if len(got) != 1 || got[0].Outcome != pairing.OutcomeRecipientBot || got[0].User != "U1" || got[0].Recipient != "U0ROBOT" || got[0].Phone != maskedEG {
		t.Errorf("audited %+v; want one %s refusal of U1's hand-off to U0ROBOT", got, pairing.OutcomeRecipientBot)
	}
}

// TestFormHandOffRefusedRedeliveredStillShown: a submission whose ack was
// lost is delivered again; its refusal (here the recipient is a bot) was
// already shown by the first delivery's work, and the redelivery's ack
// turns the window back into "Requesting…". The window must end showing
// the refusal, not a request that never comes.
func TestFormHandOffRefusedRedeliveredStillShown(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	h.slack.SetUser(fakeslack.User{ID: "U0ROBOT", Name: "robot", IsBot: true})
	h.command("U1", "")
	h.modal("U1", "Instance states as of now.")
	h.slack.SetRedelivery(500*time.Millisecond, 1)
	h.slack.DropAckNext(1)
	h.submitForm("U1", instanceEG, "0111 222 3333", "U0ROBOT") // returns once the redelivery was acked
	h.stop()
	v, open := h.slack.Modal("U1")
	if !open || !strings.Contains(v.Shown(), "is a bot") {
		t.Errorf("after the redelivered submission the window (open: %v) shows:\n%s\nwant the refusal (\"is a bot\")", open, v.Shown())
	}
	if n := len(h.wawp.Calls(fakewawp.RequestCode)); n != 0 {
		t.Errorf("Wawp was asked for %d codes", n)
	}
}

// TestFormRedeliveredShowsCode: a submission whose ack was lost is
// delivered again after its work already put the code in the window; the
// redelivery's ack turns the window back into "Requesting…" and its work
// is a duplicate. After a tick the window must show the live code again.
func TestFormRedeliveredShowsCode(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	h.command("U1", "")
	h.modal("U1", "Instance states as of now.")
	h.slack.SetRedelivery(500*time.Millisecond, 1)
	h.slack.DropAckNext(1)
	h.submitForm("U1", instanceEG, "0111 222 3333", "") // returns once the redelivery was acked
	h.tickAndWait()
	h.stop()
	v, open := h.slack.Modal("U1")
	code := h.wawp.Code(instanceEG)
	if !open || code == "" || !strings.Contains(v.Shown(), code[:4]+"-"+code[4:]) {
		t.Errorf("after the redelivered submission and a tick the window (open: %v) shows:\n%s\nwant the live code", open, v.Shown())
	}
}
