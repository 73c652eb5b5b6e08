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

// The QR fallback in Slack (issue 10), end to end.

// qrOffered runs a code for U1's phone and cancels it, then asks again:
// the phone's limit (1 a window) refuses it, and the refusal offers "Link
// by QR instead", which is pressed. It returns the thread and the link
// the message shows.
func qrOffered(t *testing.T, h *harness) (string, string) {
	t.Helper()
	first := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(first.MessageID, "Enter this code")
	h.click(first.MessageID, "U1", "cancel")
	h.waitText(first.MessageID, "Cancelled")
	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Link by QR instead")
	h.click(env.MessageID, "U1", "link_by_qr")
	v := h.waitText(env.MessageID, "Open the QR page")
	link := h.wawp.ActiveLink(instanceEG)
	if link == "" || !strings.Contains(string(v.Blocks), link) {
		t.Fatalf("the message shows\n%s\nwant Wawp's active link %q", shown(v), link)
	}
	if strings.Contains(v.Text, link) {
		t.Errorf("the fallback text holds the link: %q", v.Text)
	}
	return env.MessageID, link
}

// revoked reports whether Wawp was asked to revoke the instance's links.
func (h *harness) revoked() bool {
	for _, c := range h.wawp.Calls(fakewawp.TempLink) {
		if c.Method == "DELETE" {
			return true
		}
	}
	return false
}

// TestQRLinkRevokedInEveryEnding: whatever ends a QR link — the phone
// scanning it, the wrong phone scanning it, Cancel, its expiry — the link
// is revoked at Wawp and leaves the requester's message; a linked phone
// is confirmed with the masked number WhatsApp reports (me.id).
func TestQRLinkRevokedInEveryEnding(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(h *harness, thread, link string)
		want string
	}{
		{"linked", func(h *harness, _, link string) {
			if err := h.wawp.ScanLink(link, "201112223333"); err != nil {
				h.t.Fatal(err)
			}
		}, "✅ Linked by QR — " + pairing.MaskPhone("+20 11 12223333") + " is now connected to support-eg"},
		{"wrong phone", func(h *harness, _, link string) {
			if err := h.wawp.ScanLink(link, "201009998888"); err != nil {
				h.t.Fatal(err)
			}
		}, "Linked the WRONG phone"},
		{"cancelled", func(h *harness, thread, _ string) { h.click(thread, "U1", "cancel") }, "Cancelled"},
		// A tick within the minute before Wawp's 30 ends it, while the
		// click's response_url (30 minutes too) can still take the link off.
		{"expired", func(h *harness, _, _ string) { h.clock.advance(29*time.Minute + 30*time.Second) }, "Expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.setConfig("limits:\n  phone: {max: 1, window: 15m}\n")
			h.start()
			thread, link := qrOffered(t, h)
			tc.end(h, thread, link)
			v := h.waitText(thread, tc.want)
			if !h.slack.WaitFor(waitLong, h.revoked) {
				t.Errorf("the link was never revoked; Wawp calls %+v", h.wawp.Calls(fakewawp.TempLink))
			}
			for _, m := range h.slack.Screen("U1", "C0SUPPORT") {
				if m.Editable && (fakeslack.Version{Blocks: m.Latest().Blocks}).ShowsQRLink() {
					t.Errorf("message %s still shows the link after the end: %s", m.ID, shown(m.Latest()))
				}
			}
			if strings.Contains(string(v.Blocks), link) {
				t.Errorf("the final message shows the link")
			}
			if err := h.wawp.ScanLink(link, "201112223333"); err == nil && tc.name != "linked" && tc.name != "wrong phone" {
				t.Error("the link still works at Wawp")
			}
			h.stop()
			for _, e := range h.auditEvents() {
				if strings.Contains(fmt.Sprint(e), "temp-qr") {
					t.Errorf("audit event holds the link: %+v", e)
				}
			}
			if strings.Contains(h.logs.String(), link) {
				t.Error("the log holds the link")
			}
		})
	}
}

// TestQRRefusedByPlan: an account whose plan has no temporary links gets
// a friendly sentence, not an internal error.
func TestQRRefusedByPlan(t *testing.T) {
	h := newHarness(t)
	h.setConfig("limits:\n  phone: {max: 1, window: 15m}\n")
	h.wawp.DisableTempLinks(instanceEG)
	h.start()
	first := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(first.MessageID, "Enter this code")
	h.click(first.MessageID, "U1", "cancel")
	h.waitText(first.MessageID, "Cancelled")
	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Link by QR instead")
	h.click(env.MessageID, "U1", "link_by_qr")
	h.waitText(env.MessageID, "has no QR links")
}

// TestFormLimitInWindowThenQR: a limit is checked in the store, after the
// submission's ack, so its refusal (with when) is shown in the window;
// the phone's limit offers a QR link there, and the link appears in the
// window, then leaves it when the phone links.
func TestFormLimitInWindowThenQR(t *testing.T) {
	h := newHarness(t)
	h.setConfig("limits:\n  phone: {max: 1, window: 15m}\n")
	h.start()
	first := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(first.MessageID, "Enter this code")
	h.click(first.MessageID, "U1", "cancel")
	h.waitText(first.MessageID, "Cancelled")
	h.command("U1", "")
	h.modal("U1", "Instance states as of now.")
	h.submitForm("U1", instanceEG, "0111 222 3333", "")
	h.modal("U1", "already had 1 codes in the last 15 min")
	if _, err := h.slack.ClickInView("U1", "link_by_qr"); err != nil {
		t.Fatal(err)
	}
	v := h.modal("U1", "Open the QR page")
	link := h.wawp.ActiveLink(instanceEG)
	if link == "" || !strings.Contains(string(v.Blocks), link) {
		t.Fatalf("the window shows %s; want Wawp's link", v.Blocks)
	}
	if err := h.wawp.ScanLink(link, "201112223333"); err != nil {
		t.Fatal(err)
	}
	v = h.modal("U1", "✅ Linked by QR")
	if strings.Contains(string(v.Blocks), link) {
		t.Error("the window still shows the link")
	}
	if !h.slack.WaitFor(waitLong, h.revoked) {
		t.Error("the link was never revoked")
	}
}

// TestQROfferedWhenCodesCannotWork: each case issue 10 names besides the
// phone's limit (TestQRLinkRevokedInEveryEnding) offers "Link by QR
// instead" on the requester's own message, and the offer works from
// there: the link is shown to the requester only (never in a message the
// channel sees, never in any fallback text), the phone scans it, and the
// link is revoked.
func TestQROfferedWhenCodesCannotWork(t *testing.T) {
	for _, tc := range []struct {
		name string
		// reach brings U1's /link (thread) to the message that offers QR.
		reach func(h *harness, thread string)
		want  string // what that message says
	}{
		{"locked out", func(h *harness, _ string) {}, "WhatsApp is refusing codes for this number"},
		{"wrong phone", func(h *harness, thread string) {
			h.waitText(thread, "Enter this code")
			if err := h.wawp.EnterCode(instanceEG, h.wawp.Code(instanceEG)); err != nil {
				h.t.Fatal(err)
			}
			h.wawp.SetStatus(instanceEG, "WORKING", "201009998888")
			h.tick()
			h.waitText(thread, "Linked the WRONG phone")
			// Whoever sees it logs the wrong phone out in Wawp.
			h.wawp.SetStatus(instanceEG, "SCAN_QR_CODE", "")
		}, "Linked the WRONG phone"},
		{"two codes expired", func(h *harness, thread string) {
			for i := range 2 {
				h.waitText(thread, fmt.Sprintf("Code %d of 3", i+1))
				h.clock.advance(5 * time.Second)
				h.tick()
				h.waitText(thread, "Expired")
				if i == 0 {
					h.click(thread, "U1", "new_code")
				}
			}
		}, "Expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.setConfig("code_lifetime: 5s\nannounce: true\n")
			h.manualTicks()
			h.slack.SetChannel(fakeslack.Channel{ID: "C0SUPPORT", Public: true, Member: true})
			if tc.name == "locked out" {
				h.wawp.SetLockout(0, time.Hour) // WhatsApp locks the number at its first request
			}
			h.start()
			env := h.command("U1", "support-eg 0111 222 3333")
			tc.reach(h, env.MessageID)
			v := h.waitText(env.MessageID, "Link by QR instead")
			if !strings.Contains(shown(v), tc.want) {
				t.Errorf("the offer is on\n%s\nwant it on the message saying %q", shown(v), tc.want)
			}
			if tc.name == "locked out" && !h.wawp.LockedOut("201112223333") {
				t.Error("the fake did not lock the number out")
			}
			h.click(env.MessageID, "U1", "link_by_qr")
			v = h.waitText(env.MessageID, "Open the QR page")
			link := h.wawp.ActiveLink(instanceEG)
			if link == "" || !strings.Contains(string(v.Blocks), link) {
				t.Fatalf("the message shows\n%s\nwant Wawp's active link %q", shown(v), link)
			}
			// Someone else in the channel sees the status card, and no link.
			channel := h.slack.Screen("U2", "C0SUPPORT")
			if len(channel) == 0 {
				t.Error("U2 sees no status card in the channel")
			}
			for _, m := range channel {
				if strings.Contains(fmt.Sprint(m.Versions), link) {
					t.Errorf("U2 sees the link in the channel: %s", shown(m.Latest()))
				}
			}
			if err := h.wawp.ScanLink(link, "201112223333"); err != nil {
				t.Fatal(err)
			}
			h.tick()
			v = h.waitText(env.MessageID, "✅ Linked by QR")
			if strings.Contains(string(v.Blocks), link) {
				t.Error("the linked message still shows the link")
			}
			if !h.slack.WaitFor(waitLong, h.revoked) {
				t.Errorf("the link was never revoked; Wawp calls %+v", h.wawp.Calls(fakewawp.TempLink))
			}
			h.stop()
			for _, m := range h.slack.Messages() {
				for _, ver := range m.Versions {
					if strings.Contains(ver.Text, link) {
						t.Errorf("message %s's fallback text holds the link: %q", m.ID, ver.Text)
					}
					if (!m.Ephemeral && !strings.HasPrefix(m.Channel, "D")) && strings.Contains(string(ver.Blocks), link) {
						t.Errorf("channel message %s showed the link: %s", m.ID, ver.Blocks)
					}
				}
			}
			if h.wawp.ActiveLink(instanceEG) != "" {
				t.Error("Wawp still has an active link")
			}
		})
	}
}
