package fakeslack

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// frame is what a socket received.
type frame struct {
	Type         string          `json:"type"`
	Reason       string          `json:"reason"`
	EnvelopeID   string          `json:"envelope_id"`
	RetryAttempt int             `json:"retry_attempt"`
	RetryReason  string          `json:"retry_reason"`
	Payload      json.RawMessage `json:"payload"`
}

// reader opens a raw socket and sends what it receives after hello to
// frames (acking nothing unless ack is set).
func reader(t *testing.T, s *Server, ack bool) (*websocket.Conn, <-chan frame) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/socket", http.Header{"Origin": {"https://api.slack.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	frames := make(chan frame, 100)
	go func() {
		defer close(frames)
		for {
			_, raw, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f frame
			json.Unmarshal(raw, &f)
			if ack && f.EnvelopeID != "" {
				ws.WriteJSON(map[string]any{"envelope_id": f.EnvelopeID})
			}
			frames <- f
		}
	}()
	return ws, frames
}

// next is the next frame that is not hello, or fails after timeout.
func next(t *testing.T, frames <-chan frame, timeout time.Duration) (frame, bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return frame{}, false
			}
			if f.Type == "hello" {
				continue
			}
			return f, true
		case <-deadline:
			return frame{}, false
		}
	}
}

// TestTooManyWebsockets: ten sockets are served, the eleventh is told
// too_many_websockets and closed.
func TestTooManyWebsockets(t *testing.T) {
	s := New(func(v string) { t.Error(v) })
	defer s.Close()
	for range MaxSockets {
		reader(t, s, true)
	}
	if !s.WaitFor(2*time.Second, func() bool { n, _ := s.Connections(); return n == MaxSockets }) {
		t.Fatal("ten sockets not connected")
	}
	_, frames := reader(t, s, true)
	f, ok := next(t, frames, 2*time.Second)
	if !ok || f.Type != "disconnect" || f.Reason != "too_many_websockets" {
		t.Fatalf("11th socket got %+v (ok %v), want disconnect too_many_websockets", f, ok)
	}
	if _, open := next(t, frames, 2*time.Second); open {
		t.Error("11th socket still open")
	}
	if n, _ := s.Connections(); n != MaxSockets || s.RefusedSockets() != 1 {
		t.Errorf("open %d, refused %d; want %d, 1", n, s.RefusedSockets(), MaxSockets)
	}
}

// TestEnvelopesSpreadAndDuplicate: each envelope goes to one socket at
// random; DuplicateNext delivers one twice, both acks accepted, no
// violation.
func TestEnvelopesSpreadAndDuplicate(t *testing.T) {
	s := New(func(v string) { t.Error(v) })
	defer s.Close()
	_, a := reader(t, s, true)
	_, b := reader(t, s, true)
	if !s.WaitFor(2*time.Second, func() bool { n, _ := s.Connections(); return n == 2 }) {
		t.Fatal("not connected")
	}
	got := map[string]int{}
	for range 40 {
		if _, err := s.SendCommand(Command{User: "U1", Text: "help"}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(frames <-chan frame, name string) {
		for {
			if _, ok := next(t, frames, 200*time.Millisecond); !ok {
				return
			}
			got[name]++
		}
	}
	count(a, "a")
	count(b, "b")
	if got["a"]+got["b"] != 40 || got["a"] == 0 || got["b"] == 0 {
		t.Errorf("deliveries %v: want 40 spread over both sockets", got)
	}
	s.DuplicateNext(1)
	env, err := s.SendCommand(Command{User: "U1", Text: "help"})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, frames := range []<-chan frame{a, b} {
		for {
			f, ok := next(t, frames, 200*time.Millisecond)
			if !ok {
				break
			}
			if f.EnvelopeID == env.ID {
				seen++
			}
		}
	}
	if seen != 2 {
		t.Errorf("duplicated envelope delivered %d times, want 2", seen)
	}
	if !s.WaitFor(time.Second, func() bool { e := s.Envelope(env.ID); return e.acks == 2 }) {
		t.Error("both acks not received")
	}
	if e := s.Envelope(env.ID); e.Deliveries != 2 || e.AckedAt.IsZero() {
		t.Errorf("envelope deliveries %d acked %v", e.Deliveries, e.AckedAt)
	}
}

// TestRedelivery: an envelope nobody acks is sent again, with
// retry_attempt counting up and retry_reason timeout, until acked.
func TestRedelivery(t *testing.T) {
	s := New(func(v string) { t.Error(v) })
	defer s.Close()
	s.SetRedelivery(50*time.Millisecond, 3)
	ws, frames := reader(t, s, false)
	if !s.WaitConnected(time.Second) {
		t.Fatal("not connected")
	}
	env, err := s.SendCommand(Command{User: "U1", Text: "help"})
	if err != nil {
		t.Fatal(err)
	}
	var attempts []int
	for len(attempts) < 3 {
		f, ok := next(t, frames, 2*time.Second)
		if !ok {
			t.Fatalf("attempts %v: no more deliveries", attempts)
		}
		if f.EnvelopeID != env.ID {
			continue
		}
		if f.RetryAttempt > 0 && f.RetryReason != "timeout" {
			t.Errorf("retry_reason %q", f.RetryReason)
		}
		attempts = append(attempts, f.RetryAttempt)
	}
	if attempts[0] != 0 || attempts[1] != 1 || attempts[2] != 2 {
		t.Errorf("retry_attempts %v, want 0 1 2", attempts)
	}
	ws.WriteJSON(map[string]any{"envelope_id": env.ID})
	if !s.WaitFor(time.Second, func() bool { return !s.Envelope(env.ID).AckedAt.IsZero() }) {
		t.Fatal("ack not seen")
	}
}

// TestRedeliveryInNewEnvelope: with SetRedeliveryNewEnvelopes, an envelope
// whose ack was lost (DropAckNext) comes again with a new envelope_id and
// the same payload; acking the new ID acks it.
func TestRedeliveryInNewEnvelope(t *testing.T) {
	s := New(func(v string) { t.Error(v) })
	defer s.Close()
	s.SetRedelivery(50*time.Millisecond, 3)
	s.SetRedeliveryNewEnvelopes(true)
	s.DropAckNext(1)
	ws, frames := reader(t, s, false)
	if !s.WaitConnected(time.Second) {
		t.Fatal("not connected")
	}
	env, err := s.SendCommand(Command{User: "U1", Text: "help"})
	if err != nil {
		t.Fatal(err)
	}
	first, ok := next(t, frames, 2*time.Second)
	if !ok || first.EnvelopeID != env.ID {
		t.Fatalf("first delivery %+v", first)
	}
	ws.WriteJSON(map[string]any{"envelope_id": env.ID}) // lost
	again, ok := next(t, frames, 2*time.Second)
	if !ok {
		t.Fatal("not redelivered")
	}
	if again.EnvelopeID == env.ID || again.RetryAttempt != 1 || string(again.Payload) != string(first.Payload) {
		t.Errorf("redelivery: envelope %s (first %s), retry_attempt %d, same payload %v; want a new ID, 1, true",
			again.EnvelopeID, env.ID, again.RetryAttempt, string(again.Payload) == string(first.Payload))
	}
	if !s.Envelope(env.ID).AckedAt.IsZero() {
		t.Error("the lost ack counted")
	}
	ws.WriteJSON(map[string]any{"envelope_id": again.EnvelopeID})
	if !s.WaitFor(time.Second, func() bool { return !s.Envelope(env.ID).AckedAt.IsZero() }) {
		t.Fatal("the redelivery's ack did not ack the envelope")
	}
}
