package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReaderRendersMrkdwn: the demo transcript shows messages as Slack
// renders them: markers and tokens become formatting, names and local
// times; plain_text is left exactly as sent.
func TestReaderRendersMrkdwn(t *testing.T) {
	cairo := time.FixedZone("EET", 2*3600)
	r := reader{names: map[string]string{"UAGENT": "agent"}, loc: cairo}
	at := time.Date(2026, 11, 25, 12, 32, 10, 0, time.UTC).Unix()
	tests := []struct{ name, in, want string }{
		{"bold", "Enter it on *+20 11 12223333* now", "Enter it on +20 11 12223333 now"},
		{"two bold", "*a* and *b*", "a and b"},
		{"italic and strike", "_soon_ ~never~", "soon never"},
		{"nested", "*bold _and italic_*", "bold and italic"},
		{"code keeps its insides", "id `A1_B2*C3*` here", "id A1_B2*C3* here"},
		{"not markers inside words", "snake_case_name and 2*3*4", "snake_case_name and 2*3*4"},
		{"lone marker", "5 * 3 and a_", "5 * 3 and a_"},
		{"unpaired backtick", "a ` b", "a ` b"},
		{"marker across lines", "*a\nb*", "*a\nb*"},
		{"mention by name", "requested by <@UAGENT>", "requested by @agent"},
		{"mention with label", "ask <@U0ADMIN|admin>", "ask @admin"},
		{"unknown mention", "ask <@U0ADMIN>", "ask @U0ADMIN"},
		{"channel", "in <#C123|support>", "in #support"},
		{"special", "<!here> look", "@here look"},
		{"link", "see <https://example.com/x|the docs> or <https://example.com>", "see the docs or https://example.com"},
		{"time in the reader's zone", "at <!date^" + itoa(at) + "^{time_secs}|12:32:10 UTC> (your time)", "at 14:32:10 (your time)"},
		{"time and date", "<!date^" + itoa(at) + "^{date_num} {time}|fallback>", "2026-11-25 14:32"},
		{"unknown format falls back", "<!date^" + itoa(at) + "^{ago}|12:32 UTC>", "12:32 UTC"},
		{"entities last", "&lt;not a token&gt; &amp; *b*", "<not a token> & b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks, _ := json.Marshal([]any{map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": tt.in}}})
			if diff := cmp.Diff(tt.want, r.render(blocks)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// plain_text (headers, buttons, plain context) is shown as sent.
	blocks := `[{"type":"header","text":{"type":"plain_text","text":"*AB_CD*"}},
		{"type":"context","elements":[{"type":"plain_text","text":"*x*"},{"type":"mrkdwn","text":"*y*"}]},
		{"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"_New_"}}]}]`
	if diff := cmp.Diff("┃ *AB_CD*\n*x*  y\n[ _New_ ]", r.render(json.RawMessage(blocks))); diff != "" {
		t.Errorf("plain_text (-want +got):\n%s", diff)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
