package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/bot/fakeslack"

	"github.com/linkbot/linkbot/pairing/fakewawp"
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLinkHappyPath(t *testing.T) {
	tests := []struct {
		name, text, phone, digits string
	}{
		{"instance ID and international number", "A1B2C3D4E5F6 +20 111 222 3333", "+20 11 12223333", "201112223333"},
		{"alias and national number", "support-eg 0111-222-3333", "+20 11 12223333", "201112223333"},
		{"tel link from Slack", "support-eg <tel:+201112223333|+20 111 222 3333>", "+20 11 12223333", "201112223333"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start()
			env := h.command("U1", tt.text)
			ack := h.waitAck(env)
			if want := "Requesting a pairing code for " + tt.phone + " on "; !strings.Contains(ack.Text, want) {
				t.Errorf("ack text = %q, want it to contain %q", ack.Text, want)
			}
			if ack.ResponseType != "ephemeral" {
				t.Errorf("ack response_type = %q, want ephemeral", ack.ResponseType)
			}
			v := h.waitText(env.MessageID, "Enter this code")
			code := h.wawp.Code(instanceEG)
			if len(code) != 8 {
				t.Fatalf("fake Wawp has no live code (%q)", code)
			}
			if want := code[:4] + "-" + code[4:]; !strings.Contains(string(v.Blocks), `"type":"header","text":{"type":"plain_text","text":"`+want+`"`) {
				t.Errorf("code header %s missing from blocks %s", want, v.Blocks)
			}
			if strings.Contains(v.Text, code[:4]) {
				t.Errorf("fallback text %q contains the code", v.Text)
			}
			for _, want := range []string{tt.phone, "Link with phone number instead", "<!date^", "Refresh", "New code", "Cancel", "Code 1 of 3"} {
				if !strings.Contains(shown(v), want) {
					t.Errorf("code message lacks %q: %s", want, v.Blocks)
				}
			}
			calls := h.wawp.Calls(fakewawp.RequestCode)
			if len(calls) != 1 || calls[0].Phone != tt.digits {
				t.Errorf("request-code calls = %+v, want one for %s", calls, tt.digits)
			}
			if strings.Contains(h.logs.String(), code) || strings.Contains(h.logs.String(), wawpToken) {
				t.Errorf("logs contain the code or the token:\n%s", h.logs.String())
			}
		})
	}
}

func TestLinkRefusalsAndWawpErrors(t *testing.T) {
	t.Parallel() // it waits on Wawp's timeout: let other tests run meanwhile
	html := fakewawp.Failure{Status: 500, ContentType: "text/html", Body: "<html><body><h1>500 Internal Server Error</h1></body></html>"}
	tests := []struct {
		name     string
		status   string // instance status before the command
		endpoint string // where to inject failure
		failure  fakewawp.Failure
		want     string
		codeCall bool // request-code reached Wawp
		counted  bool // the attempt counts against the phone
	}{
		{name: "already working", status: "WORKING", want: "already linked and working"},
		{name: "starting", status: "STARTING", want: "still starting up"},
		{name: "stopped", status: "STOPPED", want: "is stopped. Start it in the Wawp dashboard"},
		{name: "failed", status: "FAILED", want: "failed state. Restart it"},
		{name: "unknown status", status: "OPENING", want: "reports status `OPENING`"},
		{name: "session info 401", endpoint: fakewawp.SessionInfo, failure: fakewawp.Failure{Status: 401, Body: `{"statusCode":401,"message":"Unauthorized"}`}, want: "rejected the bot's access token"},
		{name: "request-code 400", endpoint: fakewawp.RequestCode, failure: fakewawp.Failure{Status: 400, Body: `{"statusCode":400,"message":["phone_number must be a string"],"error":"Bad Request"}`}, want: "did not accept the request", codeCall: true},
		{name: "request-code 401", endpoint: fakewawp.RequestCode, failure: fakewawp.Failure{Status: 401, ContentType: "application/xml", Body: "<error>Unauthorized</error>"}, want: "rejected the bot's access token", codeCall: true},
		{name: "request-code 404", endpoint: fakewawp.RequestCode, failure: fakewawp.Failure{Status: 404, Body: `{"code":"invalid_session","message":"Session does not exist"}`}, want: "Wawp has no instance", codeCall: true},
		{name: "request-code 422", endpoint: fakewawp.RequestCode, failure: fakewawp.Failure{Status: 422, Body: `{"statusCode":422,"message":"Session status is not as expected"}`}, want: "still starting up", codeCall: true},
		{name: "request-code 500 html", endpoint: fakewawp.RequestCode, failure: html, want: "Wawp had an internal error", codeCall: true, counted: true},
		{name: "request-code 502", endpoint: fakewawp.RequestCode, failure: fakewawp.Failure{Status: 502, ContentType: "text/plain", Body: "Bad Gateway"}, want: "could not reach WhatsApp", codeCall: true, counted: true},
		{name: "request-code timeout", endpoint: fakewawp.RequestCode, failure: fakewawp.Failure{Hang: true}, want: "did not answer in time", codeCall: true, counted: true},
		{name: "request-code garbage 200", endpoint: fakewawp.RequestCode, failure: fakewawp.Failure{Status: 200, ContentType: "text/plain", Body: "ok!"}, want: "could not read", codeCall: true, counted: true},
		{name: "request-code error body 200", endpoint: fakewawp.RequestCode, failure: fakewawp.Failure{Status: 200, Body: `{"code":"invalid_session","message":"boom"}`}, want: "could not read", codeCall: true, counted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.status != "" {
				h.wawp.SetStatus(instanceEG, tt.status, "201009999999")
			}
			if tt.endpoint != "" {
				h.wawp.FailNext(instanceEG, tt.endpoint, tt.failure)
			}
			h.start()
			env := h.command("U1", "support-eg +201112223333")
			v := h.waitText(env.MessageID, tt.want)
			if got := len(h.wawp.Calls(fakewawp.RequestCode)); (got > 0) != tt.codeCall {
				t.Errorf("request-code calls = %d, want reached=%v", got, tt.codeCall)
			}
			for _, leak := range []string{wawpToken, "Internal Server Error", "<html", "statusCode", "invalid_session"} {
				if strings.Contains(shown(v), leak) || strings.Contains(h.logs.String(), wawpToken) {
					t.Errorf("agent sees or log holds %q:\n%s", leak, shown(v))
				}
			}
			// Every failure is audited as an error or a refusal, with its outcome.
			h.stop()
			kinds := h.auditKinds()
			if len(kinds) != 2 || kinds[0] != "requested" || kinds[1] != "error" {
				t.Errorf("audit kinds = %v, want [requested error]", kinds)
			}
			h.start()
			// Whether the attempt counted shows in the next code's "Code N of 3".
			h.wawp.SetStatus(instanceEG, "SCAN_QR_CODE", "")
			h.wawp.WarmUp(instanceEG, 0)
			want := "Code 1 of 3"
			if tt.counted {
				want = "Code 2 of 3"
			}
			env = h.command("U1", "support-eg +201112223333")
			h.waitText(env.MessageID, want)
		})
	}
}

func TestWarmUpRetryButton(t *testing.T) {
	h := newHarness(t)
	h.wawp.WarmUp(instanceEG, time.Hour)
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "still starting up. Try again in 10 s")
	// Pressed at once: refused by the bot, Wawp not asked again.
	before := len(h.wawp.Calls(""))
	if _, err := h.tryClick(env.MessageID, "U1", "try_again"); err != nil {
		t.Fatal(err)
	}
	h.waitText(env.MessageID, "needs a little longer to start")
	if got := len(h.wawp.Calls("")); got != before {
		t.Errorf("Wawp got %d calls after an early retry, want none", got-before)
	}
}

func TestPhoneLimit(t *testing.T) {
	h := newHarness(t)
	ids := []string{"INST00000001", "INST00000002", "INST00000003", "INST00000004"}
	for _, id := range ids {
		h.wawp.AddInstance(id, "")
	}
	h.start()
	for i, id := range ids {
		env := h.command("U1", id+" +44 7400 123456")
		if i < 3 {
			h.waitText(env.MessageID, fmt.Sprintf("Code %d of 3", i+1))
			continue
		}
		v := h.waitText(env.MessageID, "+44 7400 123456 already had 3 codes in the last 15 min")
		if !strings.Contains(shown(v), "<!date^") {
			t.Errorf("refusal does not say when the next code is allowed: %s", shown(v))
		}
	}
	if got := len(h.wawp.Calls(fakewawp.RequestCode)); got != 3 {
		t.Errorf("request-code calls = %d, want 3 (the 4th must not reach Wawp)", got)
	}
	if h.wawp.LockedOut("447400123456") {
		t.Error("WhatsApp locked the phone out")
	}
}

func TestConcurrentRequestsForOnePhone(t *testing.T) {
	h := newHarness(t)
	ids := []string{"INST00000001", "INST00000002", "INST00000003", "INST00000004", "INST00000005", "INST00000006"}
	for _, id := range ids {
		h.wawp.AddInstance(id, "")
	}
	h.start()
	var envs []*fakeslack.Envelope
	for i, id := range ids {
		envs = append(envs, h.command(fmt.Sprintf("U%d", i), id+" +44 7400 123456"))
	}
	var codes, refused int
	for _, env := range envs {
		v := h.waitText(env.MessageID, "")
		ok := h.slack.WaitFor(waitLong, func() bool {
			v = h.latest(env.MessageID)
			s := shown(v)
			return strings.Contains(s, "Enter this code") || strings.Contains(s, "already had 3 codes")
		})
		if !ok {
			t.Fatalf("no final answer: %s", shown(v))
		}
		if strings.Contains(shown(v), "Enter this code") {
			codes++
		} else {
			refused++
		}
	}
	if codes != 3 || refused != 3 {
		t.Errorf("codes=%d refused=%d, want 3 and 3", codes, refused)
	}
	if got := len(h.wawp.Calls(fakewawp.RequestCode)); got != 3 {
		t.Errorf("request-code calls = %d, want 3", got)
	}
}

func TestOneLivePairingPerInstance(t *testing.T) {
	h := newHarness(t)
	h.start()
	first := h.command("U1", "support-eg +201112223333")
	h.waitText(first.MessageID, "Enter this code")
	second := h.command("U2", "support-eg +201009998888")
	h.waitText(second.MessageID, "already has a live code, requested by <@U1>")
	// Cancel frees the instance and withdraws the code.
	if _, err := h.tryClick(first.MessageID, "U1", "cancel"); err != nil {
		t.Fatal(err)
	}
	v := h.waitText(first.MessageID, "Cancelled")
	if strings.Contains(string(v.Blocks), `"header"`) {
		t.Errorf("cancelled message still shows the code: %s", v.Blocks)
	}
	third := h.command("U2", "support-eg +201009998888")
	h.waitText(third.MessageID, "Enter this code")
}

// TestButtons: every button answers in place, on the message that held it
// (a click's response_url replaces that message): Refresh shows the live
// countdown, New code the next code, and at the phone's limit no New code.
func TestButtons(t *testing.T) {
	h := newHarness(t)
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Code 1 of 3")
	first := h.wawp.Code(instanceEG)
	code, _ := h.waitMessage(env.MessageID, "Code 1 of 3")
	h.click(env.MessageID, "U1", "refresh")
	v := h.waitText(env.MessageID, "min left")
	if !strings.Contains(shown(v), first[:4]+"-"+first[4:]) {
		t.Errorf("refresh lost the code: %s", shown(v))
	}
	h.click(env.MessageID, "U1", "new_code")
	h.waitText(env.MessageID, "Code 2 of 3")
	if second := h.wawp.Code(instanceEG); second == first || !strings.Contains(shown(h.slack.Message(code.ID).Latest()), second[:4]+"-"+second[4:]) {
		t.Errorf("new code not shown in place of the first")
	}
	// Third code: the limit leaves no New code button, and says when.
	h.click(env.MessageID, "U1", "new_code")
	v = h.waitText(env.MessageID, "Code 3 of 3")
	if !strings.Contains(shown(v), "next code allowed at") {
		t.Errorf("no next-code time: %s", shown(v))
	}
	if _, err := h.tryClick(env.MessageID, "U1", "new_code"); err == nil {
		t.Error("New code button shown although the phone's limit is reached")
	}
	// All of it happened in one message, below the ack.
	if screen := h.slack.Screen("U1", "C0SUPPORT"); len(screen) != 2 || screen[1].ID != code.ID {
		t.Errorf("U1's screen:\n%s\nwant the ack and the code message, changed in place", screenText(screen))
	}
}

func TestInputProblemsAnsweredInAck(t *testing.T) {
	tests := []struct{ text, want string }{
		{"help", "Link a WhatsApp number"},
		{"<!channel> +201112223333", "is not an instance name"},
		{"nosuch +201112223333", "There is no instance called `nosuch`"},
		{"support-eg 0111 222 33", "is not a valid number for EG. It was read as"},
		{"support-eg +20 CALL NOW", "contains letters"},
		{"B1B2C3D4E5F6 01112223333", "has no country code"},
		{"support-eg +999 1234 5678", "country code that does not exist"},
		{"support-eg " + strings.Repeat("1", 300), "too long for a command"},
		{"support-eg <!here> 0111", "characters other than digits"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			h := newHarness(t)
			h.start()
			env := h.command("U1", tt.text)
			v := h.waitAck(env)
			if !strings.Contains(shown(v), tt.want) {
				t.Errorf("reply = %q, want it to contain %q", shown(v), tt.want)
			}
			if strings.Contains(string(v.Blocks), "<!") {
				t.Errorf("reply echoes a mention unescaped: %s", v.Blocks)
			}
			if got := len(h.wawp.Calls("")); got != 0 {
				t.Errorf("Wawp called %d times for bad input", got)
			}
		})
	}
}

func TestForeignTeamRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	env, err := h.slack.SendCommand(fakeslack.Command{User: "UX", Team: "TOTHER", Text: "support-eg +201112223333"})
	if err != nil {
		t.Fatal(err)
	}
	h.waitText(env.MessageID, "serves only the workspace that installed it")
	if got := len(h.wawp.Calls("")); got != 0 {
		t.Errorf("Wawp called %d times for a foreign team", got)
	}
}

func TestReconnectAfterDisconnect(t *testing.T) {
	for _, reason := range []string{"refresh_requested", "warning", "drop"} {
		t.Run(reason, func(t *testing.T) {
			h := newHarness(t)
			h.start()
			env := h.command("U1", "support-eg +201112223333")
			h.waitText(env.MessageID, "Enter this code")
			_, connects := h.slack.Connections()
			if reason == "drop" {
				h.slack.DropConnections()
			} else {
				h.slack.Disconnect(reason)
			}
			if !h.slack.WaitFor(waitLong, func() bool { n, c := h.slack.Connections(); return n == 1 && c > connects }) {
				t.Fatal("bot did not reconnect")
			}
			env = h.command("U2", "A1B2C3D4E5F6 +201009998888")
			h.waitText(env.MessageID, "already has a live code")
		})
	}
}

func TestSecondProcessOnSameDB(t *testing.T) {
	h := newHarness(t)
	h.start()
	done := make(chan error, 1)
	go func() {
		// It gives up on the lock after lockWait (2 s); the test's 100 ms
		// is enough to tell giving up from hanging.
		done <- runWith(context.Background(), serveOptions{lockWait: 100 * time.Millisecond}, []string{"linkbot"}, func(k string) string { return h.env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "in use by another process") {
			t.Errorf("second process: err = %v, want a clear lock error", err)
		}
	case <-time.After(waitLong):
		t.Fatal("second process hangs on the locked DB file")
	}
}

func TestConfigErrorsListedTogether(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"linkbot"}, func(k string) string {
		return map[string]string{"SLACK_APP_TOKEN": "xoxb-wrong", "LINKBOT_LOG_FORMAT": "xml", "LINKBOT_DEFAULT_REGION": "XX"}[k]
	}, &bytes.Buffer{}, &stderr)
	var cerr *configError
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v, want a configError", err)
	}
	want := []string{
		"SLACK_APP_TOKEN must be an app-level token starting with xapp-",
		"SLACK_BOT_TOKEN is not set (the bot token xoxb-…)",
		"WAWP_ACCESS_TOKEN is not set",
		`LINKBOT_LOG_FORMAT must be json or text, not "xml"`,
		`LINKBOT_DEFAULT_REGION "XX" is not an ISO region code such as EG or GB`,
	}
	if diff := cmp.Diff(want, cerr.problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestSlack429OnResponseURLIsRetried(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.slack.RateLimitNext(time.Second)
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	if got := h.slack.ResponseURLUses(env.ResponseURL); got != 1 {
		t.Errorf("response_url uses = %d, want 1 (the 429 is not a use)", got)
	}
	if got := len(h.wawp.Calls(fakewawp.RequestCode)); got != 1 {
		t.Errorf("request-code calls = %d, want 1: a Slack retry must not ask Wawp again", got)
	}
}

func TestBadSlackTokensFailClearly(t *testing.T) {
	h := newHarness(t)
	h.env["SLACK_BOT_TOKEN"] = "xoxb-revoked"
	err := run(context.Background(), []string{"linkbot"}, func(k string) string { return h.env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "SLACK_BOT_TOKEN: slack rejected the token (invalid_auth)") {
		t.Errorf("bad bot token: err = %v", err)
	}
	h.env["SLACK_BOT_TOKEN"] = fakeslack.BotToken
	h.env["SLACK_APP_TOKEN"] = "xapp-revoked"
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	err = run(ctx, []string{"linkbot"}, func(k string) string { return h.env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "invalid_auth") {
		t.Errorf("bad app token: err = %v", err)
	}
}
