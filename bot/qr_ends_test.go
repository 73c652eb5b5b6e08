package bot

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// TestQREndsSpeakOfTheLink: a QR pairing that failed or was interrupted
// says so in the link's words, not the code's, and says its link was
// revoked, on every surface that shows it.
func TestQREndsSpeakOfTheLink(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	qr := pairing.Pairing{
		ID: "p4x7k2m9q3w8z5y6", Method: pairing.MethodQR, Instance: rigInstance, InstanceName: "support-eg",
		RequestedBy: "U1", IssuedAt: t0, ExpiresAt: t0.Add(30 * time.Minute), Attempt: 1,
	}
	failed := qr
	failed.State, failed.Reason = pairing.StateFailed, pairing.Reason(pairing.OutcomeInstanceFailed)
	gone := qr
	gone.State, gone.Reason = pairing.StateFailed, pairing.Reason(pairing.OutcomeInstanceGone)
	wawpFailed := qr
	wawpFailed.IssuedAt = time.Time{}
	wawpFailed.State, wawpFailed.Reason = pairing.StateFailed, pairing.Reason(string(pairing.OutcomeWawpError)+":server")
	interrupted := qr
	interrupted.IssuedAt = time.Time{}
	interrupted.State = pairing.StateInterrupted
	for _, tc := range []struct {
		name string
		p    pairing.Pairing
		want []string
	}{
		{"instance failed", failed, []string{"support-eg failed", "QR link was revoked"}},
		{"instance gone", gone, []string{"no longer exists in Wawp", "QR link was revoked"}},
		{"Wawp failed", wawpFailed, []string{"No QR link", "internal error"}},
		{"interrupted", interrupted, []string{"QR link", "revoked"}},
	} {
		for _, s := range []surface{onEphemeral, onModal} {
			m := r.bot.renderView(context.Background(), tc.p, t0.Add(time.Minute), s)
			blocks, err := json.Marshal(m.Blocks)
			if err != nil {
				t.Fatal(err)
			}
			all := m.Text + " " + string(blocks)
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("%s (surface %d): %q not in %s", tc.name, s, w, all)
				}
			}
			if strings.Contains(strings.ToLower(all), "code") {
				t.Errorf("%s (surface %d) speaks of a code: %s", tc.name, s, all)
			}
		}
	}
}
