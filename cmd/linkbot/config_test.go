package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
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
delivery: dm
announce: true
instances:
  - alias: support-eg
    id: A1B2C3D4E5F6
    delivery: ephemeral
    announce: false
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
	got := []any{c.DefaultRegion, c.CodeLifetime, c.TickInterval, c.PhoneLimit.Max, c.PhoneLimit.Period, c.UserLimit.Max, len(c.Instances), c.Instances[1].Region, c.Tokens["B1B2C3D4E5F6"], c.Access[""].Users, c.Delivery, c.Announce}
	want := []any{"GB", 120 * time.Second, 2 * time.Second, 2, 30 * time.Minute, 20, 2, "NG", "ng-token", []string{"U1"},
		map[string]pairing.Delivery{"": pairing.DeliveryDM, "A1B2C3D4E5F6": pairing.DeliveryEphemeral},
		map[string]bool{"": true, "A1B2C3D4E5F6": false}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

// TestConfigFileProblems: every problem in the file is listed at once, as
// FILE:LINE: what is wrong, in plain words (no Go type names), with the
// nearest known key for a misspelt one.
func TestConfigFileProblems(t *testing.T) {
	const two = "instances:\n  - {alias: a, id: A1B2C3D4E5F6}\n"
	tests := []struct {
		name, file string
		want       []string // FILE stands for the file's path
	}{
		{"not YAML", "instances: [", []string{"FILE:1: did not find expected node content"}},
		{"tab", "limits:\n\tphone: {max: 2}\n", []string{"FILE:2: a tab indents this line; YAML indents with spaces only"}},
		{"tab deeper", "limits:\n  phone:\n\t  max: 2\n", []string{"FILE:3: a tab indents this line; YAML indents with spaces only"}},
		{"unknown key", "instancs: []\n", []string{`FILE:1: unknown key "instancs" (did you mean "instances"?)`}},
		{"unknown nested key", "limits:\n  phone: {max: 2, windw: 30m}\n", []string{`FILE:2: unknown key "windw" in limits.phone (did you mean "window"?)`}},
		{"unknown key in an instance", "instances:\n  - alias: a\n    id: A1B2C3D4E5F6\n    regoin: EG\n", []string{`FILE:4: unknown key "regoin" in instances[0] (did you mean "region"?)`}},
		{"part of a key", "timeout: 5s\n", []string{`FILE:1: unknown key "timeout" (did you mean "wawp_timeout"?)`}},
		{"unrelated key", "colour: red\n", []string{`FILE:1: unknown key "colour" (known keys: default_region, code_lifetime, wawp_timeout, tick_interval, audit_retention, limits, access, delivery, announce, instances)`}},
		// A one-letter key: never `did you mean ""?`, and a near key is found.
		{"one-letter key", "u: 1\n", []string{`FILE:1: unknown key "u" (known keys: default_region, code_lifetime, wawp_timeout, tick_interval, audit_retention, limits, access, delivery, announce, instances)`}},
		{"one-letter key near a short one", "limits:\n  phone: {m: 2}\n", []string{`FILE:2: unknown key "m" in limits.phone (did you mean "max"?)`}},
		{"one-letter key in access", "access: {u: [U1]}\n", []string{`FILE:1: unknown key "u" in access (known keys: users, usergroups, channels, ask)`}},
		{"key twice", "code_lifetime: 100s\ncode_lifetime: 120s\n", []string{"FILE:2: code_lifetime is set twice (first on line 1)"}},
		{"not a mapping", "- a\n", []string{"FILE:1: want keys such as default_region: and instances:, not a list"}},
		{"bad type", "limits:\n  phone: {max: lots}\n", []string{`FILE:2: limits.phone.max: want a whole number, not "lots"`}},
		{"list expected", "access:\n  users: U1\n", []string{"FILE:2: access.users: want a list such as [A, B], not a single value"}},
		{"value expected", "code_lifetime: [1, 2]\n", []string{"FILE:1: code_lifetime: want a single value, not a list"}},
		{"every problem at once", "code_lifetim: 150s\ntick_interval: 500ms\nlimits:\n  phone: {max: lots}\ninstances:\n  - {alias: a, id: short}\n", []string{
			`FILE:1: unknown key "code_lifetim" (did you mean "code_lifetime"?)`,
			`FILE:2: tick_interval "500ms" must be whole seconds between 1s and 1m`,
			`FILE:4: limits.phone.max: want a whole number, not "lots"`,
			`FILE:6: instances[0] (a): id "short" must be the 12-character Wawp instance ID`,
		}},
		{"bad id", "instances:\n  - alias: a\n    id: short\n", []string{`FILE:3: instances[0] (a): id "short" must be the 12-character Wawp instance ID`}},
		{"duplicate alias", two + "  - {alias: a, id: B1B2C3D4E5F6}\n", []string{`FILE:3: instances[1]: alias "a" is already instances[0]'s`}},
		{"duplicate id", two + "  - {alias: b, id: A1B2C3D4E5F6}\n", []string{`FILE:3: instances[1] (b): id "A1B2C3D4E5F6" is already instances[0] (a); list each instance once`}},
		{"duplicate id, other case", two + "  - {alias: b, id: a1b2c3d4e5f6}\n", []string{`FILE:3: instances[1] (b): id "a1b2c3d4e5f6" is already instances[0] (a); list each instance once`}},
		{"alias is another's id", two + "  - {alias: A1B2C3D4E5F6, id: B1B2C3D4E5F6}\n", []string{`FILE:3: instances[1]: alias "A1B2C3D4E5F6" is the ID of instances[0] (a)`}},
		{"id is another's alias", "instances:\n  - {alias: B1B2C3D4E5F6, id: A1B2C3D4E5F6}\n  - {alias: b, id: B1B2C3D4E5F6}\n", []string{`FILE:2: instances[0]: alias "B1B2C3D4E5F6" is the ID of instances[1] (b)`}},
		{"bad region", "instances:\n  - {alias: a, id: A1B2C3D4E5F6, region: XX}\n", []string{`FILE:2: instances[0] (a): region "XX" is not an ISO region code`}},
		// The file's value, with LINKBOT_DEFAULT_REGION unset: the file is to blame.
		{"bad default region", "code_lifetime: 100s\ndefault_region: XX\n", []string{`FILE:2: default_region "XX" is not an ISO region code such as EG or GB`}},
		{"bad duration", "code_lifetime: forever\n", []string{`FILE:1: code_lifetime "forever" must be a duration between 5s and 10m`}},
		{"bad window", "limits:\n  user: {window: 5s}\n", []string{`FILE:2: limits.user.window "5s" must be a duration between 1m and 168h`}},
		{"negative max", "limits:\n  user: {max: -1}\n", []string{`FILE:2: limits.user.max must be positive`}},
		{"name for an ID", "access:\n  users: [alice]\n", []string{`FILE:2: access.users: "alice" is not a Slack ID (expected one starting with U or W)`}},
		{"missing token env", "instances:\n  - {alias: a, id: A1B2C3D4E5F6, token_env: NOPE}\n", []string{"FILE:2: instances[0] (a): token_env NOPE is not set in the environment"}},
		{"short retention", "audit_retention: 1h\n", []string{`FILE:1: audit_retention "1h" must be a duration of at least 24h, or forever`}},
		{"bad announce", "announce: yes please\ninstances:\n  - {alias: a, id: A1B2C3D4E5F6, announce: [C1]}\n", []string{
			`FILE:1: announce: want true or false, not "yes please"`,
			`FILE:3: instances[0].announce: want true or false, not a list`,
		}},
		{"bad delivery", "delivery: email\ninstances:\n  - {alias: a, id: A1B2C3D4E5F6, delivery: DMs}\n", []string{
			`FILE:1: delivery "email" must be ephemeral (the requester's ephemeral messages in the channel) or dm (their DM with the bot)`,
			`FILE:3: instances[0] (a): delivery "DMs" must be ephemeral (the requester's ephemeral messages in the channel) or dm (their DM with the bot)`,
		}},
		{"missing file", "", []string{"FILE: no such file or directory"}},
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
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want a configError", err)
			}
			got := strings.ReplaceAll(strings.Join(cerr.problems, "\n"), path, "FILE")
			if diff := cmp.Diff(strings.Join(tt.want, "\n"), got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			// run exits 78 (configError) before connecting anywhere.
			err = run(context.Background(), []string{"linkbot"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
			if !errors.As(err, &cerr) {
				t.Errorf("run: %v, want a configError", err)
			}
			// check-config finds the same problems (an unset token_env is
			// only a note there: it may run where the tokens are not).
			var out bytes.Buffer
			err = checkConfig(path, func(k string) string { return env[k] }, &out)
			if strings.Contains(tt.name, "token env") {
				if err != nil {
					t.Errorf("check-config: %v, want a note only", err)
				}
				return
			}
			if !errors.As(err, &cerr) {
				t.Fatalf("check-config: %v, want a configError; it printed:\n%s", err, out.String())
			}
			got = strings.ReplaceAll(strings.Join(cerr.problems, "\n"), path, "FILE")
			if diff := cmp.Diff(strings.Join(tt.want, "\n"), got); diff != "" {
				t.Errorf("check-config problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConfigAliasesCheckedOnce: the shape check visits what a YAML alias
// points at once, not once per reference (300 references to a node with
// 300 bad items were 90,000 problems, 11 MB of error text, from a 3 KB
// file; 10 KB took 685 MB), and a long problem list is cut short with a
// count of the rest.
func TestConfigAliasesCheckedOnce(t *testing.T) {
	const n = 300
	items := strings.TrimSuffix(strings.Repeat("{a: 1},", n), ",")
	refs := strings.TrimSuffix(strings.Repeat("*i,", n), ",")
	file := "u: &u [" + items + "]\ni: &i {alias: a, id: A1B2C3D4E5F6, access: {users: *u}}\ninstances: [" + refs + "]\n"
	path := filepath.Join(t.TempDir(), "c.yml")
	writeFile(t, path, file)
	err := checkConfig(path, func(string) string { return "" }, io.Discard)
	var cerr *configError
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v", err)
	}
	if len(cerr.problems) != maxConfigProblems+1 {
		t.Errorf("a %d-byte file gave %d problems (%d bytes of error text), want %d and a count of the rest",
			len(file), len(cerr.problems), len(err.Error()), maxConfigProblems)
	}
	if last := cerr.problems[len(cerr.problems)-1]; !strings.HasPrefix(last, "… and ") || !strings.HasSuffix(last, " more problems") {
		t.Errorf("last problem %q, want the count of those left out", last)
	}
	var walked int
	for _, p := range cerr.problems {
		if strings.Contains(p, "want a single value, not a mapping") {
			walked++
		}
	}
	if walked > n {
		t.Errorf("the %d bad items under the alias were reported %d times", n, walked)
	}
}

func TestCheckConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yml")
	writeFile(t, path, "default_region: EG\ninstances:\n  - {alias: support-eg, id: A1B2C3D4E5F6, access: {users: [U1], ask: \"@leads\"}}\n  - {alias: field-ng, id: B1B2C3D4E5F6, delivery: dm, announce: true}\n")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"linkbot", "check-config", path}, func(string) string { return "" }, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	want := path + ` is valid.
default region: EG
limits: 3 codes per phone per 15m0s, 20 per user per 1h0m0s, 3 QR links per instance per 1h0m0s
code lifetime 2m30s, tick every 5s, Wawp timeout 10s
audit events kept: 8760h0m0s
access: every member of the workspace
codes go to: the requester's ephemeral messages in the channel
status cards: off
instance support-eg = A1B2C3D4E5F6, region EG, WAWP_ACCESS_TOKEN, access: 1 users, 0 user groups, 0 channels
instance field-ng = B1B2C3D4E5F6, region EG, WAWP_ACCESS_TOKEN, codes go to: the requester's DM with the bot (needs the app's Messages tab), status cards: on (one public card per /link in its channel: masked phone and state, never the code; the bot must be in the channel)
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("check-config output (-want +got):\n%s", diff)
	}
	// LINKBOT_DEFAULT_REGION overrides the file's default_region: check-config
	// checks it too, and blames the variable.
	out.Reset()
	err := run(context.Background(), []string{"linkbot", "check-config", path}, func(k string) string { return map[string]string{"LINKBOT_DEFAULT_REGION": "XX"}[k] }, &out, &bytes.Buffer{})
	var cerr *configError
	if !errors.As(err, &cerr) || len(cerr.problems) != 1 || !strings.HasPrefix(cerr.problems[0], `LINKBOT_DEFAULT_REGION "XX"`) {
		t.Errorf("LINKBOT_DEFAULT_REGION=XX: err = %v, want one problem blaming the variable; it printed:\n%s", err, out.String())
	}
	writeFile(t, path, "instances:\n  - {alias: a, id: nope}\n")
	err = run(context.Background(), []string{"linkbot", "check-config", path}, func(string) string { return "" }, &out, &bytes.Buffer{})
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
		{"example.com:8080", true},
		{"linkbot_metrics:8080", true}, // a Compose service name
		{"[fe80::1%lo]:8080", true},
		// Hosts that can never be listened on: not an IP, not a host name.
		{"256.1.1.1:8080", false},
		{"1.2.3:8080", false},
		{"bad host:8080", false},
		{"-bad.example:8080", false},
		{"bad-.example:8080", false},
		{"a..b:8080", false},
		{strings.Repeat("a", 64) + ".example:8080", false},
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

// TestREADMEConfigExample: the config file README shows passes
// check-config as shown, on a machine without the tokens; the token_env it
// names is reported as a note, not a problem.
func TestREADMEConfigExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no ```yaml block")
	}
	path := filepath.Join(t.TempDir(), "linkbot.yml")
	writeFile(t, path, block)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"linkbot", "check-config", path}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("check-config on README's example: %v", err)
	}
	for _, want := range []string{"instance support-eg = A1B2C3D4E5F6, region EG", "instance field-ng = B1B2C3D4E5F6, region NG", "token_env WAWP_TOKEN_NG is not set"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestWawpClientFollowsWawpTimeout: wawp_timeout bounds each Wawp call (the
// service gives every call a context with it); the HTTP client under it
// must never cut a call shorter, whatever wawp_timeout is set to (a fixed
// 20 s client timeout made any wawp_timeout above 20 s a no-op).
func TestWawpClientFollowsWawpTimeout(t *testing.T) {
	for _, d := range []time.Duration{100 * time.Millisecond, 10 * time.Second, 30 * time.Second, time.Minute} {
		if c := wawpHTTPClient(d, nil); c.Timeout != 0 && c.Timeout <= d {
			t.Errorf("wawp_timeout %s: the Wawp HTTP client gives up after %s", d, c.Timeout)
		}
	}
}
