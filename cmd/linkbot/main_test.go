package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/store"
)

// TestMain lets a test run the real main (os.Exit and all) in a child
// process: the test binary re-executes itself with LINKBOT_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("LINKBOT_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs the real program as a process with exactly env and returns
// its exit status and stderr.
func runMain(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = []string{"LINKBOT_TEST_MAIN=1"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestExitStatus runs the real binary: a configuration error exits 78
// (EX_CONFIG) — never 2, which Go itself uses for panics and fatal runtime
// errors, so systemd's RestartPreventExitStatus would keep a crashed bot
// down; a mistyped command exits 64 (EX_USAGE); a damaged database exits 1
// with a sentence, not a bbolt panic.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	damaged := filepath.Join(dir, "damaged.db")
	db, err := store.Open(damaged, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Truncate(damaged, 8192); err != nil {
		t.Fatal(err)
	}
	// An address that passes the configuration check but cannot be
	// listened on: one in use (another process may free it: exit 1, so
	// systemd tries again), one this machine does not have (TEST-NET-1:
	// restarting will not fix it, exit 78).
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests
	tokens := map[string]string{"SLACK_APP_TOKEN": "xapp-1", "SLACK_BOT_TOKEN": "xoxb-1", "WAWP_ACCESS_TOKEN": "w"}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range tokens {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		status   int
		want     []string // in stderr
		notWant  []string
		maxLines int
	}{
		{"missing tokens", nil, nil, 78, []string{"linkbot: configuration is invalid", "SLACK_APP_TOKEN is not set"}, nil, 0},
		{"bad config file", with(map[string]string{"LINKBOT_CONFIG": filepath.Join(dir, "missing.yml")}), nil, 78, []string{"missing.yml: no such file or directory"}, nil, 0},
		{"invalid file for check-config", nil, []string{"check-config", filepath.Join(dir, "missing.yml")}, 78, []string{"missing.yml: no such file or directory"}, nil, 0},
		{"bad setting", with(map[string]string{"LINKBOT_LOG_FORMAT": "xml"}), nil, 78, []string{"LINKBOT_LOG_FORMAT"}, nil, 0},
		{"check-config without a file", nil, []string{"check-config"}, 64, []string{"name the file"}, []string{"configuration"}, 1},
		{"check-config with two files", nil, []string{"check-config", "a.yml", "b.yml"}, 64, []string{"one file"}, []string{"configuration"}, 1},
		{"damaged database", with(map[string]string{"LINKBOT_DB": damaged}), nil, 1, []string{damaged, "backup"}, []string{"panic", "goroutine"}, 0},
		{"listen address in use", with(map[string]string{"LINKBOT_DB": filepath.Join(dir, "busy.db"), "LINKBOT_HTTP_ADDR": busy.Addr().String()}), nil, 1,
			[]string{"LINKBOT_HTTP_ADDR", "address already in use"}, []string{"configuration"}, 0},
		{"listen address not on this machine", with(map[string]string{"LINKBOT_DB": filepath.Join(dir, "elsewhere.db"), "LINKBOT_HTTP_ADDR": "192.0.2.1:8080"}), nil, 78,
			[]string{"configuration is invalid", "LINKBOT_HTTP_ADDR 192.0.2.1:8080"}, nil, 0},
		{"unknown command", nil, []string{"frob"}, 64, []string{`unknown command "frob"`}, []string{"configuration"}, 1},
		{"bad flag", nil, []string{"demo", "--bogus"}, 64, []string{"-bogus"}, []string{"configuration"}, 1},
		{"bad flag for run", nil, []string{"run", "--bogus"}, 64, []string{"-bogus"}, []string{"configuration"}, 1},
		{"bad flag for run, tokens set", with(map[string]string{"LINKBOT_DB": filepath.Join(dir, "unused.db")}), []string{"run", "--bogus"}, 64, []string{"-bogus"}, []string{"configuration", "starting"}, 1},
		{"argument to run", nil, []string{"run", "now"}, 64, []string{`unexpected argument "now"`}, []string{"configuration"}, 1},
		{"argument to version", nil, []string{"version", "--bogus"}, 64, []string{"-bogus"}, nil, 1},
		{"argument to help", nil, []string{"help", "me"}, 64, []string{`unexpected argument "me"`}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, stderr := runMain(t, tt.env, tt.args...)
			if status != tt.status {
				t.Errorf("exit status %d, want %d; stderr:\n%s", status, tt.status, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr has %q:\n%s", w, stderr)
				}
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n") + 1; tt.maxLines > 0 && n > tt.maxLines {
				t.Errorf("stderr has %d lines, want at most %d (say it once):\n%s", n, tt.maxLines, stderr)
			}
		})
	}
}

// TestUnitDoesNotRestartConfigErrors: the systemd unit must not restart a
// configuration error (restarting will not fix it) but must restart
// everything else, a crash (Go's status 2) included.
func TestUnitDoesNotRestartConfigErrors(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/linkbot.service")
	if err != nil {
		t.Fatal(err)
	}
	var prevent []string
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "RestartPreventExitStatus="); ok {
			prevent = append(prevent, strings.Fields(v)...)
		}
	}
	if diff := cmp.Diff([]string{strconv.Itoa(exitConfig)}, prevent); diff != "" {
		t.Errorf("RestartPreventExitStatus (-want +got):\n%s", diff)
	}
}
