package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot"
	"github.com/linkbot/linkbot/store"
)

// runAsync runs the program with h's environment and returns its result
// channel and a cancel that stands for SIGTERM.
func (h *harness) runAsync() (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"linkbot"}, func(k string) string { return h.env[k] }, io.Discard, h.logs)
	}()
	return done, cancel
}

func (h *harness) result(done <-chan error) error {
	h.t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitLong):
		h.t.Fatalf("run did not return; logs:\n%s", h.logs.String())
		return nil
	}
}

// TestRejectedTokens: Slack turning a token away names the variable that
// holds it, and exits 78 (a configuration error: restarting will not fix
// it), for the app token (apps.connections.open) as for the bot token
// (auth.test).
func TestRejectedTokens(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.env[name] = h.env[name] + "-revoked"
			done, cancel := h.runAsync()
			defer cancel()
			err := h.result(done)
			if !errors.Is(err, bot.ErrAuth) || !strings.HasPrefix(err.Error(), name+": ") {
				t.Errorf("err = %v, want bot.ErrAuth starting %q", err, name+": ")
			}
			if status := exitStatus(err, io.Discard); status != exitConfig {
				t.Errorf("exit status %d, want %d", status, exitConfig)
			}
		})
	}
}

// An org-wide install of an Enterprise Grid organisation (its token
// stands for the organisation, not a workspace) is refused at startup with
// the reason, and exits 78: linkbot serves one workspace
// (org_deploy_enabled: false in manifest.yml).
func TestOrgWideInstallRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.slack.SetEnterprise("E0LINKBOT", true)
	done, cancel := h.runAsync()
	defer cancel()
	err := h.result(done)
	if !errors.Is(err, bot.ErrAuth) || !strings.Contains(err.Error(), "org-wide install") || !strings.Contains(err.Error(), "org_deploy_enabled: false") {
		t.Errorf("err = %v, want bot.ErrAuth naming the org-wide install and the manifest setting", err)
	}
	if status := exitStatus(err, io.Discard); status != exitConfig {
		t.Errorf("exit status %d, want %d", status, exitConfig)
	}
}

// TestStopDuringStartup: SIGTERM while the bot is still starting (Slack's
// auth.test unanswered, or the socket not yet connected) stops it quietly:
// exit 0, no error in the log.
func TestStopDuringStartup(t *testing.T) {
	t.Parallel()
	t.Run("during auth.test", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		asked := make(chan string, 1)
		finished := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case asked <- r.URL.Path:
			default:
			}
			select { // Slack never answers
			case <-r.Context().Done():
			case <-finished:
			}
		}))
		defer slow.Close()
		defer close(finished)
		h.env["SLACK_API_URL"] = slow.URL + "/api/"
		done, cancel := h.runAsync()
		select {
		case path := <-asked:
			if path != "/api/auth.test" {
				t.Fatalf("first call %s, want auth.test", path)
			}
		case <-time.After(waitLong):
			t.Fatalf("auth.test never called; logs:\n%s", h.logs.String())
		}
		cancel()
		if err := h.result(done); err != nil {
			t.Errorf("run = %v, want nil (stopped on request)", err)
		}
		if strings.Contains(h.logs.String(), "level=ERROR") {
			t.Errorf("errors logged on a requested stop:\n%s", h.logs.String())
		}
	})
	t.Run("during the socket connect", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.slack.SetOutage(true)
		done, cancel := h.runAsync()
		if !eventually(waitLong, func() bool { return strings.Contains(h.logs.String(), "slack socket connection failed") }) {
			t.Fatalf("the bot never tried to connect; logs:\n%s", h.logs.String())
		}
		cancel()
		if err := h.result(done); err != nil {
			t.Errorf("run = %v, want nil (stopped on request)", err)
		}
		if strings.Contains(h.logs.String(), "level=ERROR") {
			t.Errorf("errors logged on a requested stop:\n%s", h.logs.String())
		}
	})
	// Another process holds the database file and the bot waits for its
	// lock: SIGTERM then is a quiet stop too, not "database file is in use"
	// (exit 1) after the wait.
	t.Run("waiting for the database lock", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		holder, err := store.Open(h.env["LINKBOT_DB"], store.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Close()
		done, cancel := h.runAsync()
		cancel()
		if err := h.result(done); err != nil {
			t.Errorf("run = %v, want nil (stopped on request)", err)
		}
	})
}
