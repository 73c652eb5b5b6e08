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
		"Wawp received 4 code requests; WhatsApp's lock-out was never reached. Slack rules broken: 0.",
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
	// The first code and its two countdown edits, and the second phone's
	// three codes (a countdown edit among them if the clicks lag).
	if n := strings.Count(got, "┃ "); n < 6 || n > 7 {
		t.Errorf("transcript shows %d code headers, want 6 or 7", n)
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
