package pairing

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestPairingLogValueHidesCredentials: a whole pairing written to the log
// shows its ID and state, never its code, QR link, response_url or number.
func TestPairingLogValueHidesCredentials(t *testing.T) {
	p := Pairing{
		ID: "p1", InstanceName: "support-eg", State: StateLive, RequestedBy: "U1",
		Code: "ABCD1234", Link: "https://wawp.example/qr/SECRETLINK", Phone: "201112223333",
		ResponseURL: "https://hooks.slack.test/commands/SECRETURL",
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("x", "pairing", p)
		got := buf.String()
		for _, secret := range []string{"ABCD1234", "SECRETLINK", "SECRETURL", "201112223333"} {
			if strings.Contains(got, secret) {
				t.Errorf("log line %q shows %s", got, secret)
			}
		}
		if !strings.Contains(got, "p1") {
			t.Errorf("log line %q does not name the pairing", got)
		}
	}
}
