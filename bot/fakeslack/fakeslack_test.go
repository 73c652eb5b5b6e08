package fakeslack

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// dial opens a raw Socket Mode connection the way slack-go does.
func dial(t *testing.T, s *Server) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/socket", http.Header{"Origin": {"https://api.slack.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	var hello map[string]any
	if err := ws.ReadJSON(&hello); err != nil || hello["type"] != "hello" {
		t.Fatalf("first message %v, %v; want hello", hello, err)
	}
	go func() { // keep reading so pings are answered
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	return ws
}

func TestUnackedEnvelopeIsAViolation(t *testing.T) {
	var got []string
	s := New(nil)
	defer s.Close()
	dial(t, s)
	if !s.WaitConnected(time.Second) {
		t.Fatal("not connected")
	}
	if _, err := s.SendCommand(Command{User: "U1", Text: "help"}); err != nil {
		t.Fatal(err)
	}
	if !s.WaitFor(AckDeadline+2*time.Second, func() bool { got = s.Violations(); return len(got) > 0 }) {
		t.Fatal("no violation for an envelope never acked")
	}
	if !strings.Contains(got[0], "not acked within 3s") {
		t.Errorf("violation = %q", got[0])
	}
}

// withCommand starts a fake with a connected client and one delivered command.
func withCommand(t *testing.T) (*Server, *Envelope) {
	t.Helper()
	s := New(nil)
	t.Cleanup(s.Close)
	dial(t, s)
	if !s.WaitConnected(time.Second) {
		t.Fatal("not connected")
	}
	env, err := s.SendCommand(Command{User: "U1", Text: "help"})
	if err != nil {
		t.Fatal(err)
	}
	return s, env
}

func TestResponseURLRules(t *testing.T) {
	s, env := withCommand(t)
	post := func(body string) int {
		resp, err := http.Post(env.ResponseURL, "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ok := `{"text":"hi","replace_original":true,"blocks":[{"type":"section","text":{"type":"mrkdwn","text":"hi"}}]}`
	for i := range ResponseURLUses {
		if st := post(ok); st != 200 {
			t.Fatalf("use %d: HTTP %d", i+1, st)
		}
	}
	if st := post(ok); st != 404 {
		t.Errorf("6th use: HTTP %d, want 404", st)
	}
	if v := s.Violations(); len(v) != 1 || !strings.Contains(v[0], "used 6 times") {
		t.Errorf("violations = %q", v)
	}
	if m := s.Message(env.MessageID); len(m.Versions) != ResponseURLUses {
		t.Errorf("message has %d versions, want %d", len(m.Versions), ResponseURLUses)
	}
}

func TestValidateMessage(t *testing.T) {
	long := strings.Repeat("x", MaxHeaderText+1)
	tests := map[string]struct {
		text, blocks string
	}{
		"no fallback":      {"", `[]`},
		"long header":      {"t", `[{"type":"header","text":{"type":"plain_text","text":"` + long + `"}}]`},
		"mrkdwn header":    {"t", `[{"type":"header","text":{"type":"mrkdwn","text":"x"}}]`},
		"duplicate action": {"t", `[{"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"a"},"action_id":"x"},{"type":"button","text":{"type":"plain_text","text":"b"},"action_id":"x"}]}]`},
		"long button":      {"t", `[{"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"` + long + `"},"action_id":"x"}]}]`},
		"empty section":    {"t", `[{"type":"section"}]`},
		"51 blocks":        {"t", "[" + strings.Repeat(`{"type":"divider"},`, 50) + `{"type":"divider"}]`},
	}
	for name, tt := range tests {
		if err := ValidateMessage(tt.text, []byte(tt.blocks)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRateLimitNext(t *testing.T) {
	s, env := withCommand(t)
	s.RateLimitNext(2 * time.Second)
	resp, err := http.Post(env.ResponseURL, "application/json", strings.NewReader(`{"text":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("got HTTP %d Retry-After %q, want 429 and 2", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if s.ResponseURLUses(env.ResponseURL) != 0 {
		t.Error("a 429 counted as a use")
	}
}

func TestInChannelIsAViolation(t *testing.T) {
	s, env := withCommand(t)
	resp, err := http.Post(env.ResponseURL, "application/json", strings.NewReader(`{"text":"x","response_type":"in_channel"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := s.Violations(); len(v) != 1 || !strings.Contains(v[0], "in_channel") {
		t.Errorf("violations = %q, want one for in_channel", v)
	}
}

// A 5xx may have been counted by Slack: the fake counts it (the strictest
// reading) but leaves the message as it was.
func TestServerErrorCountsAUse(t *testing.T) {
	s, env := withCommand(t)
	s.FailNextResponse(http.StatusInternalServerError)
	resp, err := http.Post(env.ResponseURL, "application/json", strings.NewReader(`{"text":"x","replace_original":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || s.ResponseURLUses(env.ResponseURL) != 1 {
		t.Errorf("got HTTP %d and %d uses, want 500 and 1", resp.StatusCode, s.ResponseURLUses(env.ResponseURL))
	}
	if n := len(s.Message(env.MessageID).Versions); n != 0 {
		t.Errorf("message has %d versions after a 500, want none", n)
	}
}

// A slow answer: the post takes effect at once, the answer comes later.
func TestSlowNextResponse(t *testing.T) {
	s, env := withCommand(t)
	s.SlowNextResponse(5 * time.Second)
	client := &http.Client{Timeout: 100 * time.Millisecond}
	_, err := client.Post(env.ResponseURL, "application/json", strings.NewReader(`{"text":"x","replace_original":true}`))
	if err == nil {
		t.Fatal("answered within 100 ms, want a timeout")
	}
	if s.ResponseURLUses(env.ResponseURL) != 1 || s.Message(env.MessageID).Latest().Text != "x" {
		t.Errorf("the slow post did not take effect: %d uses, latest %+v", s.ResponseURLUses(env.ResponseURL), s.Message(env.MessageID).Latest())
	}
}

// A held post reaches Slack only when released.
func TestHoldNextResponse(t *testing.T) {
	s, env := withCommand(t)
	release := s.HoldNextResponse()
	done := make(chan int)
	go func() {
		resp, err := http.Post(env.ResponseURL, "application/json", strings.NewReader(`{"text":"x","replace_original":true}`))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if !s.WaitFor(time.Second, func() bool { return s.HeldResponses() == 1 }) {
		t.Fatal("the post never arrived")
	}
	if s.ResponseURLUses(env.ResponseURL) != 0 || len(s.Message(env.MessageID).Versions) != 0 {
		t.Error("a held post took effect")
	}
	release()
	if st := <-done; st != 200 || s.Message(env.MessageID).Latest().Text != "x" {
		t.Errorf("after release: HTTP %d, latest %+v", st, s.Message(env.MessageID).Latest())
	}
}

// A dropped post never reaches Slack: a network error, nothing changed.
func TestDropNextResponse(t *testing.T) {
	s, env := withCommand(t)
	s.DropNextResponse()
	if _, err := http.Post(env.ResponseURL, "application/json", strings.NewReader(`{"text":"x","replace_original":true}`)); err == nil {
		t.Error("a dropped post got an answer")
	}
	if s.ResponseURLUses(env.ResponseURL) != 0 || len(s.Message(env.MessageID).Versions) != 0 {
		t.Error("a dropped post took effect")
	}
}
