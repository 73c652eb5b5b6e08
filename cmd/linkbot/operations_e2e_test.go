package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/bot/fakeslack"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mask replaces what changes from run to run (times) with placeholders.
func mask(s string) string {
	s = regexp.MustCompile(`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z`).ReplaceAllString(s, "TIME")
	s = regexp.MustCompile(`<!date\^\d+\^`).ReplaceAllString(s, "<!date^UNIX^")
	return regexp.MustCompile(`\|\d\d:\d\d UTC>`).ReplaceAllString(s, "|HH:MM UTC>")
}

// golden compares got with testdata/name, after masking what changes from
// run to run (times).
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = mask(got)
	path := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// TestOperations runs a realistic session with JSON logs and the HTTP
// listener on, then checks health, metrics, the audit trail (through the
// bot's socket while running, from the file after), /link history, and
// that the logs hold no code, token or full phone number.
func TestOperations(t *testing.T) {
	h := newHarness(t)
	addr := freeAddr(t)
	h.env["LINKBOT_HTTP_ADDR"] = addr
	h.env["LINKBOT_LOG_FORMAT"] = "json"
	h.setConfig("access:\n  users: [U1, U2]\n")
	h.start()
	base := "http://" + addr
	if st, _ := get(t, base+"/healthz"); st != 200 {
		t.Errorf("/healthz = %d", st)
	}
	if !eventually(waitLong, func() bool { st, _ := get(t, base+"/readyz"); return st == 200 }) {
		t.Errorf("/readyz never became ready")
	}

	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Enter this code")
	code := h.wawp.Code(instanceEG)
	h.wawp.EnterCode(instanceEG, code)
	h.waitText(env.MessageID, "✅ Linked")
	h.wawp.SetStatus(instanceEG, "SCAN_QR_CODE", "")
	for range 2 { // two more codes, cancelled, then the 4th is refused
		env = h.command("U1", "support-eg 0111 222 3333")
		h.waitText(env.MessageID, "Enter this code")
		h.tryClick(env.MessageID, "U1", "cancel")
		h.waitText(env.MessageID, "Cancelled")
	}
	env = h.command("U2", "support-eg +20 111 222 3333")
	h.waitText(env.MessageID, "already had 3 codes")

	hist := h.command("U2", "history +20 111 222 3333")
	h.waitText(hist.MessageID, "Last 10 events for")
	golden(t, "history.txt", shown(h.latest(hist.MessageID)))
	env = h.command("UINTRUDER", "support-eg +20 111 222 3333")
	h.waitText(env.MessageID, "You are not on the list")

	wants := []string{
		`linkbot_commands_total{outcome="code_issued"} 3`,
		`linkbot_commands_total{outcome="limit_phone"} 1`,
		`linkbot_limit_refusals_total{limit="phone"} 1`,
		`linkbot_commands_total{outcome="access_denied"} 1`,
		`linkbot_wawp_calls_total{endpoint="/v2/auth/request-code",status="200"} 3`,
		`linkbot_wawp_call_seconds_count{endpoint="/v2/session/info"}`,
		`linkbot_ack_seconds_count 6`,
		`linkbot_response_url_uses_total 8`, // 3 codes, linked, 2 cancels, the limit refusal, history
		`linkbot_live_pairings 0`,
		`linkbot_socket_connected 1`,
		`linkbot_socket_reconnects_total 0`,
	}
	var metricsText string
	// Counters move just after the message lands (the post's answer is
	// still on its way back): scrape until they settle.
	eventually(waitLong, func() bool {
		_, metricsText = get(t, base+"/metrics")
		for _, want := range wants {
			if !strings.Contains(metricsText, want) {
				return false
			}
		}
		return true
	})
	for _, want := range wants {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// While the bot holds the file, `linkbot audit` reads through its socket.
	var out bytes.Buffer
	getenv := func(k string) string { return h.env[k] }
	// The access refusal is audited just after its ack: wait for it.
	ok := eventually(waitLong, func() bool {
		out.Reset()
		if err := runWith(context.Background(), h.opts, []string{"linkbot", "audit", "--phone", "+201112223333"}, getenv, &out, io.Discard); err != nil {
			t.Fatalf("audit while running: %v", err)
		}
		return strings.Contains(out.String(), "UINTRUDER")
	})
	if !ok {
		t.Errorf("access refusal never audited:\n%s", out.String())
	}
	golden(t, "audit.txt", out.String())
	h.stop()
	var after bytes.Buffer
	if err := run(context.Background(), []string{"linkbot", "audit", "--phone", "+201112223333"}, getenv, &after, io.Discard); err != nil {
		t.Fatalf("audit from the file: %v", err)
	}
	if mask(after.String()) != mask(out.String()) {
		t.Errorf("audit from the file differs from the socket's:\n%s\n---\n%s", after.String(), out.String())
	}
	out.Reset()
	run(context.Background(), []string{"linkbot", "audit", "--json", "--instance", "support-eg"}, getenv, &out, io.Discard)
	if n := strings.Count(out.String(), "\n"); n != 11 {
		t.Errorf("audit --json --instance: %d lines, want 11 (the phone's 10 and the access refusal):\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), `"kind":"refused","user":"UINTRUDER","team":"T0LINKBOT","channel":"C0SUPPORT","instance":"support-eg","phone":"+20 11 ••• 333"`) {
		t.Errorf("access refusal not audited with user, channel, instance and masked phone:\n%s", out.String())
	}

	logs := h.logs.String()
	for _, secret := range []string{code, code[:4] + "-" + code[4:], wawpToken, fakeslack.AppToken, fakeslack.BotToken, "201112223333", "+20 11 12223333", "/response/"} {
		if strings.Contains(logs, secret) || strings.Contains(out.String(), secret) {
			t.Errorf("logs or audit contain %q", secret)
		}
	}
	if !strings.Contains(logs, `"request":"E`) {
		t.Errorf("log lines carry no request ID")
	}
}

// TestReadinessFollowsTheSocket: /readyz fails while Slack is unreachable
// and recovers, counted as a reconnect, when it comes back.
func TestReadinessFollowsTheSocket(t *testing.T) {
	h := newHarness(t)
	addr := freeAddr(t)
	h.env["LINKBOT_HTTP_ADDR"] = addr
	h.start()
	base := "http://" + addr
	ready := func() bool { st, _ := get(t, base+"/readyz"); return st == 200 }
	if !eventually(waitLong, ready) {
		t.Fatal("never ready")
	}
	h.slack.SetOutage(true)
	h.slack.DropConnections()
	if !eventually(waitLong, func() bool { return !ready() }) {
		t.Fatal("/readyz still ok while Slack is unreachable")
	}
	if st, _ := get(t, base+"/healthz"); st != 200 {
		t.Errorf("/healthz = %d during a Slack outage; the process is up", st)
	}
	h.slack.SetOutage(false)
	if !eventually(30*time.Second, ready) {
		t.Fatal("/readyz did not recover after the outage")
	}
	if _, m := get(t, base+"/metrics"); !strings.Contains(m, "linkbot_socket_reconnects_total 1") {
		t.Errorf("reconnect not counted")
	}
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
}
