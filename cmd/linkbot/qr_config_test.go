package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// TestConfigQRLimit: limits.qr sets how many QR links one instance may
// get per window (issue 10), three an hour when absent, checked as the
// other limits are.
func TestConfigQRLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yml")
	writeFile(t, path, "limits:\n  phone: {max: 2}\n")
	c, err := loadConfig(func(k string) string { return baseEnv(path)[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.QRLimit != pairing.DefaultQRLimit {
		t.Errorf("QR limit without limits.qr = %+v, want %+v", c.QRLimit, pairing.DefaultQRLimit)
	}
	writeFile(t, path, "limits:\n  qr: {max: 5, window: 30m}\n")
	if c, err = loadConfig(func(k string) string { return baseEnv(path)[k] }); err != nil {
		t.Fatal(err)
	}
	if want := (pairing.Window{Max: 5, Period: 30 * time.Minute}); c.QRLimit != want {
		t.Errorf("QR limit = %+v, want %+v", c.QRLimit, want)
	}
	writeFile(t, path, "limits:\n  qr: {max: -1, window: 5s}\n")
	_, err = loadConfig(func(k string) string { return baseEnv(path)[k] })
	want := "configuration is invalid:\n  - " + path + ":2: limits.qr.max must be positive\n  - " + path + `:2: limits.qr.window "5s" must be a duration between 1m and 168h`
	if err == nil || err.Error() != want {
		t.Errorf("bad limits.qr: %v\nwant %s", err, want)
	}
}
