package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// demoOptions run the demo faster than a newcomer sees it (9 s codes, 1 s
// ticks). The script enters the first code after the countdown's last
// step (a sixth of the lifetime before expiry): 3 s codes leave it 0.5 s
// for that, as much as 9 s codes with 1 s ticks do.
var demoOptions = serveOptions{codeLifetime: 3 * time.Second, tickInterval: harnessTick}

// TestDemo runs `linkbot demo` as a newcomer would and checks its transcript.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := runWith(context.Background(), demoOptions, []string{"linkbot", "demo"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"⏳ Requesting a pairing code for +20 11 12223333 on support-eg…",
		"Enter this code on the phone +20 11 12223333 to link it to support-eg (A1B2C3D4E5F6).",
		"2. Settings → Linked devices → Link a device",
		"requested by @agent · only you can see this",
		"sped up",
		"▓▓▓▓▓░░░░░", // first countdown edit: half the time left
		"▓▓░░░░░░░░", // second countdown edit: the last stretch
		"✅ Linked — +20 11 12223333 is now connected to support-eg",
		"Code 3 of 3 for this number in 15 min · next code allowed at",
		"🛑 Cancelled",
		"🚫 +20 10 01234567 already had 3 codes in the last 15 min.",
		// The hand-off, as each person sees it: the coordinator (never the
		// code), the field agent's DM, and #field-ops's card.
		"[linkbot → @coordinator, only they see it; answers at once]\n  ⏳ Requesting a pairing code for +20 12 23334444 on field-eg, to send to @field-agent privately…",
		"[linkbot → @field-agent, in their DM with the bot; a new message]\n  📨 @coordinator is getting you a WhatsApp pairing code for the phone +20 12 23334444",
		"[linkbot → #field-ops, everyone in the channel sees it; the status card, a new message]\n  📱 WhatsApp pairing · field-eg · +20 12 ••• 444\n  Requested by @coordinator for @field-agent, who gets the code privately\n  ⏳ Waiting for the phone",
		"[linkbot → @field-agent, in their DM with the bot; updates that message]\n  ┃ ",
		"Code 1 of 3 for this number in 15 min · sent to you by @coordinator in #field-ops · only you and the bot see this DM",
		"[linkbot → @coordinator, only they see it; a new message below]\n  📨 Code sent to @field-agent privately",
		"[linkbot → #field-ops, everyone in the channel sees it; updates the card]\n  📱 WhatsApp pairing · field-eg · +20 12 ••• 444\n  Requested by @coordinator for @field-agent, who gets the code privately\n  ✅ Linked at",
		"[linkbot → @coordinator, only they see it; a new message below]\n  ✅ Linked — +20 12 23334444 is now connected to field-eg",
		// The QR fallback, then the form and its code window (issue 10).
		"[ Link by QR instead ]",
		"Open the QR page",
		"✅ Linked by QR — +20 10 ••• 567 is now connected to support-eg",
		"[linkbot → @agent, a window only they see]\n  Link a WhatsApp number",
		"Instance: support-eg · 🟢 ready to pair",
		"[linkbot → @agent, a window only they see]\n  WhatsApp pairing\n  ",
		"⏳ Waiting for the phone… this window updates by itself.",
		"Wawp received 6 code requests and 1 QR link requests; WhatsApp's lock-out was never reached. Slack rules broken: 0.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	// Slack shows a date token once, in the reader's zone; mentions by name;
	// mrkdwn markers as formatting, not characters.
	if !regexp.MustCompile(`⏱ Expires at \d\d:\d\d:\d\d \(your time\)`).MatchString(got) {
		t.Errorf("transcript does not show the expiry as one local time")
	}
	for _, raw := range []string{"UTC (your time)", "<!date", "<@", "@UAGENT", "*", "`"} {
		if strings.Contains(got, raw) {
			t.Errorf("transcript shows %q as it is sent, not as Slack renders it", raw)
		}
	}
	// The first code and its two countdown edits, the second phone's three
	// codes (a countdown edit among them if the clicks lag), and the
	// hand-off's code in the field agent's DM (a countdown step too if the
	// phone is slow); the QR page's header; the form's code in the
	// requester's message (the window draws its header without the mark).
	if n := strings.Count(got, "┃ "); n < 9 || n > 11 {
		t.Errorf("transcript shows %d headers, want 9 to 11", n)
	}
	// What the coordinator and the channel see never holds the code.
	for _, block := range strings.Split(got, "\n\n") {
		if (strings.Contains(block, "→ @coordinator") || strings.Contains(block, "→ #field-ops")) && strings.Contains(block, "┃") {
			t.Errorf("the coordinator or the channel was shown a code:\n%s", block)
		}
	}
}

func TestDemoJSON(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := runWith(context.Background(), demoOptions, []string{"linkbot", "demo", "--json"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("demo --json: %v", err)
	}
	if !strings.Contains(out.String(), `"type": "header"`) || !strings.Contains(out.String(), `"action_id": "new_code"`) {
		t.Errorf("demo --json prints no Block Kit JSON:\n%.2000s", out.String())
	}
}
