package main

import (
	"strings"
	"testing"

	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// TestPastedPhonesEndToEnd: numbers pasted from phones and web pages (other
// scripts' digits, Unicode dashes and spaces, invisible marks, tel: links,
// extensions) reach Wawp as the number meant; an extension is left out and
// the agent is told so (issue 7).
func TestPastedPhonesEndToEnd(t *testing.T) {
	tests := []struct {
		name, text, phone, digits, note string
	}{
		{"extension in a Slack tel link", "support-eg <tel:+14155552671;ext=89|+1 (415) 555‑2671 ext. 89>", "+1 415-555-2671", "14155552671", "The extension 89 is left out"},
		{"Arabic-Indic digits, en dashes and marks", "support-eg \u200e٠١١١–٢٢٢–٣٣٣٣\u200e", "+20 11 12223333", "201112223333", ""},
		{"full-width with ideographic spaces", "support-eg ＋２０　１１１　２２２　３３３３", "+20 11 12223333", "201112223333", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start()
			env := h.command("U1", tt.text)
			ack := h.waitAck(env)
			if want := "Requesting a pairing code for " + tt.phone + " on support-eg…"; !strings.Contains(ack.Text, want) {
				t.Errorf("ack text = %q, want it to contain %q", ack.Text, want)
			}
			if tt.note != "" && !strings.Contains(shown(ack), tt.note) {
				t.Errorf("ack = %q, want it to say %q", shown(ack), tt.note)
			}
			if tt.note == "" && strings.Contains(shown(ack), "extension") {
				t.Errorf("ack = %q mentions an extension", shown(ack))
			}
			h.waitText(env.MessageID, "Enter this code")
			calls := h.wawp.Calls(fakewawp.RequestCode)
			if len(calls) != 1 || calls[0].Phone != tt.digits {
				t.Errorf("request-code calls = %+v, want one for %s", calls, tt.digits)
			}
		})
	}
}
