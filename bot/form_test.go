package bot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// TestFormStatesWithoutEditBudget: the form's state refresh spends the
// shared edit budget. With a use left, the form opens "checking" and the
// refresh follows; with none, it must not say "checking" for ever: it
// opens with the cached states, said as such, and Wawp is still asked
// (for the cache the submission reads).
func TestFormStatesWithoutEditBudget(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		drained  bool
		want     []string
		versions int
	}{
		{"a use left", false, []string{"Instance states as of now.", "support · 🟢 ready to pair"}, 2},
		{"no use left", true, []string{"Instance states as last seen", "support · ❔ not checked yet"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			r.wawp.SetStatus(rigInstance, "SCAN_QR_CODE", "")
			for tc.drained && r.bot.edits.take() {
			}
			cmd := slack.SlashCommand{UserID: "U1", ChannelID: "C0SUPPORT", TriggerID: r.slack.NewTrigger("U1")}
			m := FormModel{Options: []FormOption{{Instance: pairing.Instance{ID: rigInstance, Name: "support", Region: "EG"}}}, Checking: true, Region: "EG"}
			r.bot.openForm(context.Background(), cmd, m, t0, r.bot.log)
			v, open := r.slack.Modal("U1")
			if !open {
				t.Fatal("the form did not open")
			}
			got := v.Shown() + "\n" + string(v.Blocks) // the options are in the blocks
			for _, want := range tc.want {
				if !strings.Contains(got, want) {
					t.Errorf("the form shows\n%s\nwant %q", got, want)
				}
			}
			if strings.Contains(got, "Checking") || len(v.Versions) != tc.versions {
				t.Errorf("%d versions (want %d), the last:\n%s", len(v.Versions), tc.versions, got)
			}
			if st, ok := r.svc.CachedStatus(rigInstance); !ok || st.Status != pairing.StatusScanQR {
				t.Errorf("cached status %+v, %v; want Wawp asked", st, ok)
			}
		})
	}
}

// TestSealer: what the form's private_metadata carries for the bot alone
// (the command's response_url) comes back as it went, reads as nothing to
// a Slack client, and does not open under another bot token or altered.
func TestSealer(t *testing.T) {
	const url = "https://hooks.slack.com/commands/T0LINKBOT/123/abcdef"
	s := newSealer("xoxb-one")
	sealed := s.seal(url)
	if strings.Contains(sealed, "hooks") || sealed == s.seal(url) {
		t.Errorf("sealed %q: readable, or the same twice", sealed)
	}
	if got, err := s.open(sealed); err != nil || got != url {
		t.Errorf("open = %q, %v; want %q", got, err, url)
	}
	altered := []byte(sealed)
	altered[len(altered)/2] ^= 1
	for name, in := range map[string]struct {
		s      sealer
		sealed string
	}{
		"another token": {newSealer("xoxb-two"), sealed},
		"altered":       {s, string(altered)},
		"not base64":    {s, "%%%"},
		"too short":     {s, "AAAA"},
	} {
		if got, err := in.s.open(in.sealed); err == nil || got != "" {
			t.Errorf("%s: open = %q, %v; want errUnsealed", name, got, err)
		}
	}
	if got, err := s.open(s.seal("")); err != nil || got != "" {
		t.Errorf("empty: %q, %v", got, err)
	}
}
