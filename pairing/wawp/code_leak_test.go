package wawp

import (
	"strings"
	"testing"
)

// TestCodeNeverInErrors: a 2xx answer to request-code that carries a
// pairing code in a shape decodeCode does not read must not put the code
// into the error, which pairing.Service logs ("no code", "err", cause).
// The code is a credential: WhatsApp issued it and it works for minutes
// (DESIGN/BRIEF: never logged). Wawp's own page types the success answer
// as "application/json string" (seed-wawp-request-code.txt), so a bare
// JSON string is a documented shape, not a far-fetched one.
func TestCodeNeverInErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"bare JSON string (the page's type: string)", `"ABCD-1234"`},
		{"code with a space", `{"code":"ABCD 1234"}`},
		{"code in the message", `{"success":true,"message":"Linking code ABCD-1234 generated"}`},
		{"byte order mark", "\ufeff{\"code\":\"ABCD-1234\"}"},
		{"trailing junk", `{"code":"ABCD-1234"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeCode(200, []byte(tt.body), token)
			if err == nil {
				if got != "ABCD1234" {
					t.Fatalf("decodeCode = %q, nil; want ABCD1234 or an error", got)
				}
				return
			}
			msg := strings.ToUpper(err.Error())
			for _, code := range []string{"ABCD-1234", "ABCD1234", "ABCD 1234"} {
				if strings.Contains(msg, code) {
					t.Errorf("decodeCode error %q holds the pairing code %s", err, code)
				}
			}
		})
	}
}
