package bot

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
)

// allModals renders every modal view (issue 10) from fixed models, keyed
// by golden file name (testdata/modals).
func allModals() map[string]slack.ModalViewRequest {
	now := time.Date(2026, 11, 25, 14, 30, 0, 0, time.UTC)
	eg := pairing.Instance{ID: "A1B2C3D4E5F6", Name: "support-eg", Region: "EG"}
	ng := pairing.Instance{ID: "B1B2C3D4E5F6", Name: "field-ng", Region: "NG"}
	options := []FormOption{
		{Instance: eg, Status: pairing.InstanceStatus{Status: pairing.StatusScanQR, At: now}},
		{Instance: ng},
		{Instance: pairing.Instance{ID: "C1B2C3D4E5F6", Name: "sales-eg", Region: "EG"}, Status: pairing.InstanceStatus{Status: pairing.StatusWorking, Me: "201009998888", At: now}},
		{Instance: pairing.Instance{ID: "D1B2C3D4E5F6", Name: "warmup-eg", Region: "EG"}, Status: pairing.InstanceStatus{Status: pairing.StatusStarting, At: now}},
		{Instance: pairing.Instance{ID: "E1B2C3D4E5F6", Name: "old-eg", Region: "EG"}, Status: pairing.InstanceStatus{Status: pairing.StatusStopped, At: now}},
		{Instance: pairing.Instance{ID: "F1B2C3D4E5F6", Name: "broken-eg", Region: "EG"}, Status: pairing.InstanceStatus{Status: pairing.StatusFailed, At: now}},
	}
	many := make([]FormOption, 101)
	for i := range many {
		many[i] = FormOption{Instance: pairing.Instance{ID: fmt.Sprintf("INST%08d", i), Name: fmt.Sprintf("inst-%03d", i), Region: "EG"}}
	}
	code := CodeModel{
		PairingID: "p4x7k2m9q3w8z5y6", Code: testCode, Phone: "+20 11 12223333", Instance: "support-eg",
		InstanceID: "A1B2C3D4E5F6", RequestedBy: "U123", Now: now.Add(30 * time.Second), ExpiresAt: now.Add(150 * time.Second),
		Lifetime: 150 * time.Second, Attempt: 1, PhoneLimit: pairing.Window{Max: 3, Period: 15 * time.Minute}, Window: true,
	}
	return map[string]slack.ModalViewRequest{
		"form_checking":     FormView(FormModel{Options: options, Checking: true, Meta: `{"c":"C0SUPPORT"}`, Region: "EG"}),
		"form_states":       FormView(FormModel{Options: options, Meta: `{"c":"C0SUPPORT"}`, Region: "EG"}),
		"form_selected":     FormView(FormModel{Options: options, Selected: eg.ID, Recipient: "U456", Region: "EG"}),
		"form_external":     FormView(FormModel{Options: many, Region: "EG"}),
		"window_requesting": WindowRequestingView("+20 11 12223333", "support-eg", ""),
		"window_handoff":    WindowRequestingView("+20 11 12223333", "support-eg", "U456"),
		"window_code":       windowOf(CodeView(code), "p4x7k2m9q3w8z5y6"),
		"window_linked":     windowOf(LinkedView("+20 11 12223333", "support-eg", now), "p4x7k2m9q3w8z5y6"),
		"window_expired":    windowOf(ExpiredView("+20 11 12223333", "p4x7k2m9q3w8z5y6", now, now), "p4x7k2m9q3w8z5y6"),
		"window_qr": windowOf(QRView(QRModel{PairingID: "p4x7k2m9q3w8z5y6", Link: "https://app.wawp.net/temp-qr/9f86d081884c7d659a2feaa0c55ad015", Phone: "+20 11 12223333",
			Instance: "support-eg", Now: now, ExpiresAt: now.Add(29 * time.Minute), Lifetime: 29 * time.Minute, Window: true}), "p4x7k2m9q3w8z5y6"),
		"window_refused": windowOf(LimitView(&pairing.LimitError{Limit: pairing.LimitPhone, Phone: pairing.PhoneFromDigits("201112223333"), Count: 3, Window: pairing.Window{Max: 3, Period: 15 * time.Minute}, RetryAt: now.Add(12 * time.Minute)}, "support-eg", now), ""),
	}
}

func TestModalsGolden(t *testing.T) {
	for name, v := range allModals() {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "modals", name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./bot -update to create it)", err)
			}
			if diff := cmp.Diff(strings.TrimSpace(string(want)), string(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
			if err := fakeslack.ValidateModal(got); err != nil {
				t.Errorf("Slack would refuse it: %v", err)
			}
			if strings.HasPrefix(name, "window_code") != strings.Contains(string(got), "7KQ2-M9XD") {
				t.Errorf("the code shown: %v; want only in the live window", strings.Contains(string(got), "7KQ2-M9XD"))
			}
		})
	}
}

// TestPlainWords: a refusal's sentence as a form field's error: no mrkdwn
// (a time's fallback instead of its token, quotes instead of backticks).
func TestPlainWords(t *testing.T) {
	now := time.Date(2026, 11, 25, 14, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		m    Message
		want string
	}{
		{PhoneView(&pairing.PhoneError{Input: "0111", Region: "EG", Understood: "+20 111", Problem: pairing.PhoneTooShort}),
			"❓ “0111” is too short for EG. It was read as “+20 111”. Include the country code, e.g. “+20 10 01234567”."},
		{StatusView(&pairing.StatusError{Status: pairing.StatusStopped}, "support-eg", "", now),
			"⏹ support-eg is stopped. Start it in the Wawp dashboard, wait until it shows a QR code, then run /link again."},
	} {
		if got := plainWords(tc.m); got != tc.want {
			t.Errorf("plainWords = %q\nwant %q", got, tc.want)
		}
	}
}
