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
	"github.com/slack-go/slack/socketmode"

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
		"form_cached":       FormView(FormModel{Options: options, Cached: true, Meta: `{"c":"C0SUPPORT"}`, Region: "EG"}),
		"form_states":       FormView(FormModel{Options: options, Meta: `{"c":"C0SUPPORT"}`, Region: "EG"}),
		"form_selected":     FormView(FormModel{Options: options, Selected: eg.ID, Recipient: "U456", Region: "EG"}),
		"form_external":     FormView(FormModel{Options: many, Region: "EG"}),
		"window_requesting": WindowRequestingView("+20 11 12223333", "support-eg", ""),
		"window_handoff":    WindowRequestingView("+20 11 12223333", "support-eg", "U456"),
		"window_code":       windowOf(CodeView(code), "p4x7k2m9q3w8z5y6"),
		"window_linked":     windowOf(LinkedView("+20 11 12223333", "support-eg", now), "p4x7k2m9q3w8z5y6"),
		"window_replaced":   windowOf(WindowReplacedView(), ""),
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

// TestFormViewLimits: however many instances there are, in however many
// regions, with whatever names, the form is one Slack accepts (a hint
// listing every instance once went past Slack's 2,000 characters and the
// form never opened), and the phone hint names regions, never instances.
func TestFormViewLimits(t *testing.T) {
	regions := []string{"EG", "NG", "GH", "KE", "ZA", "US", "GB", "FR", "DE", "IN", "BR", "MX", "ES", "IT", "TZ", "UG", "SN", "CI", "MA", "DZ"}
	instances := func(n, nregions int, name string) []FormOption {
		out := make([]FormOption, n)
		for i := range out {
			out[i] = FormOption{Instance: pairing.Instance{ID: fmt.Sprintf("F%011d", i), Name: fmt.Sprintf("%s-%03d", name, i), Region: regions[i%nregions]}}
		}
		return out
	}
	long := strings.Repeat("field-agents-lagos-", 3)
	for _, tc := range []struct {
		name      string
		options   []FormOption
		selected  string
		wantHint  string // a line the hint has
		wantLines int
	}{
		{"95 in two regions", instances(96, 2, "field-agents-lagos"), "", "NG: e.g. +234 802 123 4567", 3},
		{"100 long names in 20 regions", instances(100, 20, long), "", "…", 5},
		{"400 in 20 regions", instances(400, 20, long), "", "…", 5},
		{"400 in 20 regions, one chosen", instances(400, 20, long), "F00000000001", "Without a +, the number is read as one from NG, e.g. +234 802 123 4567.", 1},
		{"400 in 3 regions", instances(400, 3, long), "", "GH: e.g. +233 23 123 4567", 4},
		{"400 in 4 regions", instances(400, 4, long), "", "…", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := FormModel{Options: tc.options, Selected: tc.selected, Checking: true, Region: "EG",
				Meta: `{"c":"C0SUPPORT","t":"T0LINKBOT","u":"https://hooks.slack.com/commands/T0/1/abc","i":1795000000}`}
			got, err := json.Marshal(FormView(m))
			if err != nil {
				t.Fatal(err)
			}
			if err := fakeslack.ValidateModal(got); err != nil {
				t.Fatalf("Slack would refuse the form: %v", err)
			}
			hint := regionHint(m)
			lines := strings.Split(hint, "\n")
			if len(lines) != tc.wantLines || !strings.Contains(hint, tc.wantHint) {
				t.Errorf("hint %q: %d lines, want %d with %q", hint, len(lines), tc.wantLines, tc.wantHint)
			}
			if strings.Contains(hint, "field-agents") {
				t.Errorf("hint %q names instances", hint)
			}
		})
	}
}

// TestSuggestionsFitTheAck: a block_suggestion answer goes in the ack,
// which Slack drops at 20 KB or more; 100 options of 75 characters of 3
// or 4 bytes each (or 6, for what json escapes) are far past it. The
// answer stops at what fits, as many as fit, in the order asked for.
func TestSuggestionsFitTheAck(t *testing.T) {
	options := func(n int, letter string) []FormOption {
		out := make([]FormOption, n)
		for i := range out {
			name := fmt.Sprintf("%03d-%s", i, strings.Repeat(letter, 80))
			out[i] = FormOption{Instance: pairing.Instance{ID: fmt.Sprintf("F%011d", i), Name: name, Region: "EG"}}
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		options  []FormOption
		query    string
		wantAll  bool // all that match fit
		matching int
	}{
		{"ASCII", options(120, "a"), "", true, 120},
		{"2 bytes (Arabic)", options(120, "د"), "", false, 120},
		{"3 bytes (CJK)", options(100, "中"), "", false, 100},
		{"4 bytes (emoji)", options(100, "😀"), "", false, 100},
		{"escaped by json (&)", options(100, "&"), "", false, 100},
		{"a query matching few", options(100, "😀"), "f0000000001", true, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, matching := suggestionsFor(tc.options, tc.query)
			if matching != tc.matching {
				t.Errorf("%d matching, want %d", matching, tc.matching)
			}
			got := len(resp.Options)
			if tc.wantAll && got != min(matching, maxStaticOptions) || got == 0 {
				t.Errorf("%d options of %d matching", got, matching)
			}
			for i, o := range resp.Options {
				if want := fmt.Sprintf("%03d-", i); tc.query == "" && !strings.HasPrefix(o.Text.Text, want) {
					t.Fatalf("option %d is %q: not in the order asked for", i, o.Text.Text)
				}
			}
			// The ack as slack-go sends it: Slack drops it at 20 KB.
			ack, err := json.Marshal(socketmode.Response{EnvelopeID: "dbdd0ef3-1543-4f92-9f4c-3e2c7b1b4c4e", Payload: resp})
			if err != nil {
				t.Fatal(err)
			}
			if len(ack) >= fakeslack.MaxAckPayload {
				t.Errorf("the ack is %d bytes; Slack drops %d or more", len(ack), fakeslack.MaxAckPayload)
			}
			if got < min(matching, maxStaticOptions) {
				// Cut for size: one more would not have fitted.
				payload, _ := json.Marshal(resp)
				next, _ := json.Marshal(option(tc.options[got]))
				if len(payload)+1+len(next) <= maxSuggestionBytes {
					t.Errorf("%d options (%d bytes): option %d (%d bytes) would have fitted", got, len(payload), got, len(next))
				}
			}
			t.Logf("%d options, ack %d bytes", got, len(ack))
		})
	}
}
