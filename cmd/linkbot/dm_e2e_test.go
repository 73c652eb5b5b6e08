package main

import (
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
)

// dmHarness runs the bot with delivery: dm and 5 s codes, ticking when the
// test says, and sends one /link from U1; it returns the command and the
// code.
func dmHarness(t *testing.T, extra string) (*harness, *fakeslack.Envelope, string) {
	t.Helper()
	h := newHarness(t)
	h.setConfig("code_lifetime: 5s\ndelivery: dm\n" + extra)
	h.manualTicks()
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Sent to you in a DM")
	return h, env, h.wawp.Code(instanceEG)
}

// dmMessage is U1's one DM message, waited for until it shows want.
func (h *harness) dmMessage(want string) fakeslack.Message {
	h.t.Helper()
	var m fakeslack.Message
	ok := h.slack.WaitFor(waitLong, func() bool {
		dm := h.slack.DMScreen("U1")
		if len(dm) == 0 {
			return false
		}
		m = dm[len(dm)-1]
		return strings.Contains(shown(m.Latest()), want)
	})
	if !ok {
		h.t.Fatalf("U1's DM never showed %q; it shows:\n%s\nlogs:\n%s", want, screenText(h.slack.DMScreen("U1")), h.logs.String())
	}
	return m
}

// TestDMDelivery: with delivery: dm the code goes to the requester's DM
// with the app, where chat.update keeps it live: every countdown step, the
// link or the final state replace it in place, and the code is gone from
// the DM when the pairing ends. The channel gets one ephemeral line, and
// nothing more unless the requester clicks it.
func TestDMDelivery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		act     func(h *harness, env *fakeslack.Envelope, code string)
		want    string // what the DM shows at the end
		channel string // what the channel's line shows at the end
	}{
		{"expires", func(h *harness, _ *fakeslack.Envelope, _ string) {
			h.clock.advance(time.Second)
			h.tickAndWait()
		}, "Expired —", "Sent to you in a DM"},
		{"links", func(h *harness, _ *fakeslack.Envelope, code string) {
			h.wawp.EnterCode(instanceEG, code)
			h.tickAndWait()
		}, "Linked —", "Sent to you in a DM"},
		{"Cancel in the DM", func(h *harness, _ *fakeslack.Envelope, _ string) {
			dm := h.slack.DMScreen("U1")[0]
			if _, err := h.slack.Click(dm.ID, "U1", "cancel"); err != nil {
				h.t.Fatal(err)
			}
			h.dmMessage("Cancelled")
		}, "Cancelled —", "Sent to you in a DM"},
		{"Cancel in the channel", func(h *harness, env *fakeslack.Envelope, _ string) {
			h.click(env.MessageID, "U1", "cancel")
			h.dmMessage("Cancelled")
			h.waitText(env.MessageID, "Cancelled —")
		}, "Cancelled —", "Cancelled —"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, env, code := dmHarness(t, "")
			channel := h.describe("U1", "Requesting", "Sent to you in a DM")
			if len(channel) != 2 || channel[1] != (seen{shows: "Sent to you in a DM"}) {
				t.Errorf("the channel: %+v\n%s\nwant the ack and one line saying where the code is, without it", channel, screenText(h.slack.Screen("U1", "C0SUPPORT")))
			}
			dm := h.dmMessage("Enter this code")
			if !dm.Editable || dm.Ephemeral || !strings.Contains(shown(dm.Latest()), code[:4]+"-"+code[4:]) || !strings.ContainsAny(shown(dm.Latest()), "▓") {
				t.Errorf("the DM: %s; want the live code, editable", screenText([]fakeslack.Message{dm}))
			}
			// Every fifth of the lifetime is a countdown step, made in place.
			for step := 1; step <= 4; step++ {
				h.clock.advance(time.Second)
				h.tickAndWait()
				h.checkCodes("U1", code, false, "countdown")
			}
			if got := h.dmMessage("Enter this code"); len(got.Versions) != 6 || got.ID != dm.ID {
				t.Errorf("after 4 countdown steps the DM message has %d versions, want 6 (opened without the code, the code, and 4 steps in place)", len(got.Versions))
			}
			tt.act(h, env, code)
			end := h.dmMessage(tt.want)
			h.stop()
			if dms := h.slack.DMScreen("U1"); len(dms) != 1 || dms[0].ID != dm.ID {
				t.Errorf("U1's DM:\n%s\nwant the one message, changed in place", screenText(dms))
			}
			if end.Latest().ShowsCode() {
				t.Errorf("the DM still shows a code after the end: %s", shown(end.Latest()))
			}
			h.checkCodes("U1", code, true, "after the end")
			screen := h.slack.Screen("U1", "C0SUPPORT")
			if len(screen) != 2 || !strings.Contains(shown(screen[1].Latest()), tt.channel) {
				t.Errorf("the channel at the end:\n%s\nwant the ack and the line showing %q", screenText(screen), tt.channel)
			}
		})
	}
}

// New code in the DM: the new code replaces the old one in the same DM
// message, and the old pairing is over. Cancel on the channel's line (which
// still names the first pairing) then cancels the new code.
func TestDMNewCode(t *testing.T) {
	t.Parallel()
	h, env, first := dmHarness(t, "")
	dm := h.dmMessage("Code 1 of 3")
	if _, err := h.slack.Click(dm.ID, "U1", "new_code"); err != nil {
		t.Fatal(err)
	}
	h.dmMessage("Code 2 of 3")
	second := h.wawp.Code(instanceEG)
	if second == first {
		t.Fatal("no new code")
	}
	if dms := h.slack.DMScreen("U1"); len(dms) != 1 || !strings.Contains(shown(dms[0].Latest()), second[:4]+"-"+second[4:]) {
		t.Errorf("U1's DM:\n%s\nwant one message showing the new code", screenText(dms))
	}
	h.checkCodes("U1", second, false, "after New code")
	h.checkCodes("U1", first, true, "after New code (the first code)")
	h.click(env.MessageID, "U1", "cancel")
	h.dmMessage("Cancelled")
	h.waitText(env.MessageID, "Cancelled —")
	h.stop()
	h.checkCodes("U1", second, true, "after the new code was cancelled")
	if dms := h.slack.DMScreen("U1"); len(dms) != 1 {
		t.Errorf("U1's DM:\n%s\nwant the one message", screenText(dms))
	}
}

// A DM Slack refuses (the Messages tab is off) falls back to the
// ephemeral flow, still private; the message says why, and the log names
// the manifest setting.
func TestDMRefusedFallsBackToEphemeral(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.slack.SetMessagesTab(false)
	h.setConfig("delivery: dm\n")
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	v := h.waitText(env.MessageID, "Enter this code")
	if !strings.Contains(shown(v), "Messages tab is off") || strings.ContainsAny(shown(v), "▓") {
		t.Errorf("the fallback code message:\n%s\nwant the code, why it is not in a DM, and no time left (it is never edited)", shown(v))
	}
	if dm := h.slack.DMScreen("U1"); len(dm) != 0 {
		t.Errorf("U1's DM: %s", screenText(dm))
	}
	if !strings.Contains(h.logs.String(), "messages_tab_enabled") {
		t.Errorf("the log does not name the manifest setting:\n%s", h.logs.String())
	}
}

// A restart mid-countdown resumes the DM's edits: the DM message's channel
// and ts are stored with the pairing.
func TestRestartResumesDMEdits(t *testing.T) {
	t.Parallel()
	h, _, code := dmHarness(t, "")
	dm := h.dmMessage("Enter this code")
	h.stop()
	h.start()
	h.clock.advance(2 * time.Second)
	h.tickAndWait()
	if got := h.slack.Message(dm.ID); len(got.Versions) != 3 || !strings.Contains(shown(got.Latest()), "▓▓▓▓▓▓░░░░") {
		t.Errorf("after the restart the DM message has %d versions, showing:\n%s\nwant the countdown step made in place", len(got.Versions), shown(got.Latest()))
	}
	h.clock.advance(3 * time.Second)
	h.tickAndWait()
	h.dmMessage("Expired")
	h.checkCodes("U1", code, true, "after the end")
	if dms := h.slack.DMScreen("U1"); len(dms) != 1 {
		t.Errorf("U1's DM:\n%s\nwant the one message", screenText(dms))
	}
}

// A DM message chat.update can no longer edit (edit_window_closed,
// message_not_found) gets no more countdown steps; once the pairing ends it
// is deleted (chat.delete: its code leaves the DM) and the final state is
// posted anew, and the DM follows the new message.
func TestDMEditFallback(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		breakIt func(h *harness, dm fakeslack.Message)
		steps   bool // a countdown step is due after the break
	}{
		{"edit window closed, mid countdown", func(h *harness, dm fakeslack.Message) { h.slack.CloseEditWindow(dm.Channel, dm.TS) }, true},
		{"message removed, at the end", func(h *harness, dm fakeslack.Message) { h.slack.RemoveMessage(dm.Channel, dm.TS) }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _, code := dmHarness(t, "")
			dm := h.dmMessage("Enter this code")
			tt.breakIt(h, dm)
			if tt.steps {
				h.clock.advance(2 * time.Second)
				h.tickAndWait()
				h.clock.advance(time.Second)
				h.tickAndWait()
				if got := h.slack.Message(dm.ID); len(got.Versions) != len(dm.Versions) {
					t.Errorf("a message Slack will not edit got %d edits", len(got.Versions)-len(dm.Versions))
				}
				h.clock.advance(2 * time.Second)
			} else {
				h.clock.advance(5 * time.Second)
			}
			h.tickAndWait()
			end := h.dmMessage("Expired")
			if end.ID == dm.ID || end.Via != fakeslack.ViaPostMessage {
				t.Errorf("the final state: %s; want it posted anew", screenText([]fakeslack.Message{end}))
			}
			h.tickAndWait() // nothing more to do
			h.stop()
			h.checkCodes("U1", code, true, "after the end")
			if n := len(h.slack.Message(end.ID).Versions); n != 1 {
				t.Errorf("the final state was posted %d times", n)
			}
			if old := h.slack.Message(dm.ID); tt.steps && !old.Deleted {
				t.Errorf("the message that could not be edited still shows the code after the end: %s", screenText([]fakeslack.Message{old}))
			}
		})
	}
}

// A DM whose chat.postMessage answer is lost (Slack posted it, the reply
// never came back) is posted again by a later tick, but no two messages
// the bot can edit ever show the code: the DM is opened without the code,
// and the code is added with chat.update once its channel and ts are
// stored. The lost message never shows the code.
func TestDMLostPostAnswerShowsOneCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setConfig("code_lifetime: 10s\ndelivery: dm\n")
	h.manualTicks()
	h.slack.DropNextReply("chat.postMessage")
	h.start()
	h.command("U1", "support-eg +201112223333")
	var code string
	if !eventually(waitLong, func() bool { code = h.wawp.Code(instanceEG); return code != "" }) {
		t.Fatal("no code requested")
	}
	for range 3 {
		h.clock.advance(time.Second)
		h.tickAndWait()
		h.checkCodes("U1", code, false, "after a lost answer")
	}
	h.dmMessage(code[:4] + "-" + code[4:])
	h.clock.advance(10 * time.Second)
	h.tickAndWait()
	h.tickAndWait()
	h.stop()
	h.checkCodes("U1", code, true, "after the end")
	for _, m := range h.slack.DMScreen("U1") {
		for _, v := range m.Versions {
			if strings.Contains(shown(v), code[:4]+"-"+code[4:]) && m.ID != h.slack.DMScreen("U1")[len(h.slack.DMScreen("U1"))-1].ID {
				t.Errorf("a DM message other than the one kept showed the code: %s", screenText([]fakeslack.Message{m}))
			}
		}
	}
}

// New code clicked in a DM message Slack no longer lets the bot edit: the
// new code is shown where the requester sees it, in a fresh DM message,
// and the stuck one (showing the old code) is deleted.
func TestDMNewCodeOnAStuckMessage(t *testing.T) {
	t.Parallel()
	h, _, first := dmHarness(t, "")
	dm := h.dmMessage("Code 1 of 3")
	h.slack.CloseEditWindow(dm.Channel, dm.TS)
	h.clock.advance(2 * time.Second)
	h.tickAndWait() // a countdown step Slack refuses: the message is stuck
	if _, err := h.slack.Click(dm.ID, "U1", "new_code"); err != nil {
		t.Fatal(err)
	}
	h.dmMessage("Code 2 of 3")
	second := h.wawp.Code(instanceEG)
	if second == first {
		t.Fatal("no new code")
	}
	dms := h.slack.DMScreen("U1")
	if len(dms) != 1 || dms[0].ID == dm.ID || !strings.Contains(shown(dms[0].Latest()), second[:4]+"-"+second[4:]) {
		t.Errorf("U1's DM:\n%s\nwant one fresh message showing the new code", screenText(dms))
	}
	if old := h.slack.Message(dm.ID); !old.Deleted {
		t.Errorf("the stuck message: %s; want it deleted", screenText([]fakeslack.Message{old}))
	}
	h.clock.advance(10 * time.Second)
	h.tickAndWait()
	h.dmMessage("Expired")
	h.stop()
	h.checkCodes("U1", second, true, "after the end")
}
