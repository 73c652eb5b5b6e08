package main

import (
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// What the requester sees in the channel, message by message, against
// Slack's rules as documented (issue 9): the ack can never change; a slash
// command's response_url only adds messages; a click's response_url
// replaces the message that held the button.

// seen is one message of a screen as a test describes it: what it shows
// and whether the bot can still change it.
type seen struct {
	shows    string
	editable bool
	code     bool // shows a pairing code
}

// describe is user's screen in C0SUPPORT as seen values, shows being the
// first of wants each message contains ("?" when none).
func (h *harness) describe(user string, wants ...string) []seen {
	var out []seen
	for _, m := range h.slack.Screen(user, "C0SUPPORT") {
		s := seen{shows: "?", editable: m.Editable, code: m.Latest().ShowsCode()}
		for _, w := range wants {
			if strings.Contains(shown(m.Latest()), w) {
				s.shows = w
				break
			}
		}
		out = append(out, s)
	}
	return out
}

// checkCodes fails the test when more than one message the bot could still
// edit shows code, or (ended) when any does.
func (h *harness) checkCodes(user, code string, ended bool, when string) {
	h.t.Helper()
	editable := h.editableCode(user, code)
	if len(editable) > 1 || ended && len(editable) > 0 {
		h.t.Errorf("%s: %d messages the bot could still edit show the code:\n%s", when, len(editable), screenText(editable))
	}
}

func TestEphemeralScreens(t *testing.T) {
	t.Parallel()
	words := []string{"Requesting", "Expires at", "Expired", "Linked —", "Cancelled"}
	tests := []struct {
		name   string
		clicks []string // on the code message, right after it arrived
		end    string   // expires, links, or the last click ended it
		want   []seen
	}{
		{
			// At most three messages per /link: requesting, the code, the
			// final state below it (the code message cannot be edited).
			name: "no clicks, the code expires", end: "expires",
			want: []seen{{shows: "Requesting"}, {shows: "Expires at", code: true}, {shows: "Expired"}},
		},
		{
			name: "no clicks, the phone links", end: "links",
			want: []seen{{shows: "Requesting"}, {shows: "Expires at", code: true}, {shows: "Linked —"}},
		},
		{
			// Once clicked, the code message is edited in place: the final
			// state takes the code off it.
			name: "Refresh, then the code expires", clicks: []string{"refresh"}, end: "expires",
			want: []seen{{shows: "Requesting"}, {shows: "Expired", editable: true}},
		},
		{
			name: "Refresh, then the phone links", clicks: []string{"refresh"}, end: "links",
			want: []seen{{shows: "Requesting"}, {shows: "Linked —", editable: true}},
		},
		{
			name: "Cancel", clicks: []string{"cancel"},
			want: []seen{{shows: "Requesting"}, {shows: "Cancelled", editable: true}},
		},
		{
			name: "New code, then it expires", clicks: []string{"new_code"}, end: "expires",
			want: []seen{{shows: "Requesting"}, {shows: "Expired", editable: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.setConfig("code_lifetime: 5s\n")
			h.manualTicks()
			h.start()
			env := h.command("U1", "support-eg +201112223333")
			h.waitText(env.MessageID, "Enter this code")
			code := h.wawp.Code(instanceEG)
			h.checkCodes("U1", code, false, "the code shown")
			if screen := h.describe("U1", words...); len(screen) != 2 || screen[1].editable || strings.ContainsAny(shown(h.latest(env.MessageID)), "▓░") {
				t.Errorf("the code message: %+v\n%s\nwant the ack and the code, which cannot be edited and so shows no time left", screen, screenText(h.slack.Screen("U1", "C0SUPPORT")))
			}
			for _, action := range tt.clicks {
				before := h.slack.Thread(env.MessageID)
				h.click(env.MessageID, "U1", action)
				if !h.slack.WaitFor(waitLong, func() bool { return changed(before, h.slack.Thread(env.MessageID)) }) {
					t.Fatalf("%s changed nothing", action)
				}
				code = h.wawp.Code(instanceEG)
				h.checkCodes("U1", code, false, "after "+action)
			}
			// A countdown step is due (4.5 s of 5): only an editable message
			// takes it.
			h.clock.advance(4500 * time.Millisecond)
			h.tickAndWait()
			h.checkCodes("U1", code, false, "a countdown step later")
			switch tt.end {
			case "expires":
				h.clock.advance(500 * time.Millisecond)
				h.tick()
				h.waitText(env.MessageID, "Expired")
			case "links":
				h.wawp.EnterCode(instanceEG, code)
				h.tick()
				h.waitText(env.MessageID, "Linked —")
			}
			h.stop() // every post made
			got := h.describe("U1", words...)
			if len(got) != len(tt.want) {
				t.Fatalf("U1 sees %d messages, want %d:\n%s", len(got), len(tt.want), screenText(h.slack.Screen("U1", "C0SUPPORT")))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("message %d: %+v, want %+v\n%s", i, got[i], tt.want[i], screenText(h.slack.Screen("U1", "C0SUPPORT")))
				}
			}
			h.checkCodes("U1", code, true, "after the end")
			if others := h.slack.Screen("U2", "C0SUPPORT"); len(others) != 0 {
				t.Errorf("U2 sees %d of U1's messages", len(others))
			}
		})
	}
}

// changed reports whether a thread's messages changed between two looks.
func changed(before, after []fakeslack.Message) bool {
	if len(before) != len(after) {
		return true
	}
	for i := range before {
		if len(before[i].Versions) != len(after[i].Versions) {
			return true
		}
	}
	return false
}

// A click on an older copy of the code message: the first code, posted
// through the command's response_url and never editable, stays on the
// screen above its final state; when New code was asked from the final
// state and that copy's New code is clicked too, nothing is requested, and
// the click's response_url takes the old code off that copy instead of
// showing the new code twice.
func TestNewCodeOnAnOlderCopy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setConfig("code_lifetime: 5s\n")
	h.manualTicks()
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	first := h.wawp.Code(instanceEG)
	old, _ := h.waitMessage(env.MessageID, "Enter this code")
	h.clock.advance(5 * time.Second)
	h.tickAndWait()
	h.waitText(env.MessageID, "Expired")
	h.click(env.MessageID, "U1", "new_code") // on the final state, the newest message
	h.waitText(env.MessageID, "Code 2 of 3")
	second := h.wawp.Code(instanceEG)
	calls := len(h.wawp.Calls(fakewawp.RequestCode))
	if _, err := h.slack.Click(old.ID, "U1", "new_code"); err != nil {
		t.Fatal(err)
	}
	if !h.slack.WaitFor(waitLong, func() bool { return !h.slack.Message(old.ID).Latest().ShowsCode() }) {
		t.Errorf("the older copy still shows the first code:\n%s", screenText(h.slack.Screen("U1", "C0SUPPORT")))
	}
	h.stop()
	if n := len(h.wawp.Calls(fakewawp.RequestCode)) - calls; n != 0 {
		t.Errorf("the click on the older copy asked Wawp for %d codes", n)
	}
	h.checkCodes("U1", first, true, "the first code, after the click on its copy")
	h.checkCodes("U1", second, false, "the second code")
	if got := shown(h.slack.Message(old.ID).Latest()); !strings.Contains(got, "replaced by a newer one") {
		t.Errorf("the older copy shows:\n%s", got)
	}
}
