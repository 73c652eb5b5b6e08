package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func baseEnv(cfgPath string) map[string]string {
	return map[string]string{
		"SLACK_APP_TOKEN": "xapp-1", "SLACK_BOT_TOKEN": "xoxb-1", "WAWP_ACCESS_TOKEN": "w", "LINKBOT_CONFIG": cfgPath,
	}
}

func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yml")
	writeFile(t, path, `default_region: eg
code_lifetime: 120s
tick_interval: 2s
limits:
  phone: {max: 2, window: 30m}
access:
  users: [U1]
instances:
  - alias: support-eg
    id: A1B2C3D4E5F6
  - alias: field-ng
    id: B1B2C3D4E5F6
    region: NG
    token_env: TOKEN_NG
`)
	env := baseEnv(path)
	env["TOKEN_NG"] = "ng-token"
	env["LINKBOT_DEFAULT_REGION"] = "GB" // the environment wins over the file
	c, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.DefaultRegion, c.CodeLifetime, c.TickInterval, c.PhoneLimit.Max, c.PhoneLimit.Period, c.UserLimit.Max, len(c.Instances), c.Instances[1].Region, c.Tokens["B1B2C3D4E5F6"], c.Access[""].Users}
	want := []any{"GB", 120 * time.Second, 2 * time.Second, 2, 30 * time.Minute, 20, 2, "NG", "ng-token", []string{"U1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestConfigFileProblems(t *testing.T) {
	tests := []struct{ name, file, want string }{
		{"not YAML", "instances: [", "did not find expected node content"},
		{"unknown key", "instancs: []\n", "line 1: field instancs not found"},
		{"bad type", "limits:\n  phone: {max: lots}\n", "line 2: cannot unmarshal"},
		{"bad id", "instances:\n  - alias: a\n    id: short\n", `instances[0] (a): id "short" must be the 12-character Wawp instance ID`},
		{"duplicate alias", "instances:\n  - {alias: a, id: A1B2C3D4E5F6}\n  - {alias: a, id: B1B2C3D4E5F6}\n", `alias "a" is used twice`},
		{"bad region", "instances:\n  - {alias: a, id: A1B2C3D4E5F6, region: XX}\n", `region "XX" is not an ISO region code`},
		{"bad duration", "code_lifetime: forever\n", `code_lifetime "forever" must be a duration between 5s and 10m`},
		{"bad tick", "tick_interval: 500ms\n", "tick_interval \"500ms\" must be whole seconds"},
		{"bad window", "limits:\n  user: {window: 5s}\n", `limits.user.window "5s" must be a duration between 1m and 168h`},
		{"name for an ID", "access:\n  users: [alice]\n", `access.users: "alice" is not a Slack ID`},
		{"missing token env", "instances:\n  - {alias: a, id: A1B2C3D4E5F6, token_env: NOPE}\n", "token_env NOPE is not set"},
		{"short retention", "audit_retention: 1h\n", `audit_retention "1h" must be a duration of at least 24h, or forever`},
		{"missing file", "", "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yml")
			if tt.file != "" {
				writeFile(t, path, tt.file)
			}
			env := baseEnv(path)
			_, err := loadConfig(func(k string) string { return env[k] })
			var cerr *configError
			if !errors.As(err, &cerr) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a configError containing %q", err, tt.want)
			}
			// run exits 78 (configError) before connecting anywhere.
			err = run(context.Background(), []string{"linkbot"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
			if !errors.As(err, &cerr) {
				t.Errorf("run: %v, want a configError", err)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yml")
	writeFile(t, path, "default_region: EG\ninstances:\n  - {alias: support-eg, id: A1B2C3D4E5F6, access: {users: [U1], ask: \"@leads\"}}\n")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"linkbot", "check-config", path}, func(string) string { return "" }, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	want := path + ` is valid.
default region: EG
limits: 3 codes per phone per 15m0s, 20 per user per 1h0m0s
code lifetime 2m30s, tick every 5s, Wawp timeout 10s
audit events kept: 8760h0m0s
access: every member of the workspace
instance support-eg = A1B2C3D4E5F6, region EG, WAWP_ACCESS_TOKEN, access: 1 users, 0 user groups, 0 channels
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("check-config output (-want +got):\n%s", diff)
	}
	writeFile(t, path, "instances:\n  - {alias: a, id: nope}\n")
	err := run(context.Background(), []string{"linkbot", "check-config", path}, func(string) string { return "" }, &out, &bytes.Buffer{})
	var cerr *configError
	if !errors.As(err, &cerr) {
		t.Errorf("invalid file: err = %v, want configError (exit 78)", err)
	}
}

// TestHTTPAddrChecked: a bad LINKBOT_HTTP_ADDR is a configuration problem
// listed with the others before anything starts, not a listen error after
// the database is open.
func TestHTTPAddrChecked(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{":8080", true},
		{"[::1]:9090", true},
		{"localhost:0", true},
		{"8080", false},
		{"127.0.0.1", false},
		{"localhost:http-alt", false},
		{":99999", false},
		{"127.0.0.1:-1", false},
		{"[::1:8080", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			env := baseEnv("")
			env["LINKBOT_HTTP_ADDR"] = tt.addr
			env["LINKBOT_LOG_FORMAT"] = "xml" // a second problem: both are listed
			_, err := loadConfig(func(k string) string { return env[k] })
			var cerr *configError
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want configError", err)
			}
			var got []string
			for _, p := range cerr.problems {
				got = append(got, strings.SplitN(p, " ", 2)[0])
			}
			want := []string{"LINKBOT_LOG_FORMAT"}
			if !tt.ok {
				want = []string{"LINKBOT_HTTP_ADDR", "LINKBOT_LOG_FORMAT"}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s\n%v", diff, cerr.problems)
			}
		})
	}
}
