package fakeslack

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// urlKind is what issued a response_url, which decides what a post to it does.
type urlKind int

const (
	commandURL urlKind = iota // a slash command's: every post adds a message
	clickURL                  // a click's: replace_original replaces the clicked message
)

type responseURL struct {
	id   string
	kind urlKind
	// messageID is the message the url belongs to: a command's ack, or the
	// message whose button was clicked.
	messageID string
	user      string // who gets the ephemeral messages it adds
	channel   string // where they appear
	issued    time.Time
	uses      int
	// retryUntil and retryUntilReal are when the Retry-After of the url's
	// last 429 runs out, on the fake's clock and on the real one.
	retryUntil, retryUntilReal time.Time
}

// newResponseURLLocked issues a response_url. s.mu must be held.
func (s *Server) newResponseURLLocked(kind urlKind, messageID, user, channel string) string {
	id := newID("R")
	s.urls[id] = &responseURL{id: id, kind: kind, messageID: messageID, user: user, channel: channel, issued: s.now()}
	return s.URL + "/response/" + id
}

// RateLimitNext makes the next response_url post answer 429 with
// Retry-After; a post to that url before it runs out (on the fake's clock
// and in real time) fails the test.
func (s *Server) RateLimitNext(retryAfter time.Duration) {
	s.mu.Lock()
	s.rateLimit = append(s.rateLimit, retryAfter)
	s.mu.Unlock()
}

// RateLimited counts the 429s the fake has answered to response_url posts.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rateLimited
}

// FailNextResponse makes the next response_url post answer status (e.g.
// 500) without changing any message. A 5xx still counts as a use: Slack
// may have counted the post before failing, and the fake takes the
// strictest reading.
func (s *Server) FailNextResponse(status int) {
	s.mu.Lock()
	s.failStatus = append(s.failStatus, status)
	s.mu.Unlock()
}

// SlowNextResponse makes the next response_url post take effect (the use is
// counted and the screen changed) but answer only after d, so a client
// with a shorter timeout never learns that Slack took it.
func (s *Server) SlowNextResponse(d time.Duration) {
	s.mu.Lock()
	s.slowNext = append(s.slowNext, d)
	s.mu.Unlock()
}

// HoldNextResponse keeps the next response_url post on its way, as a slow
// network would, until release is called; only then does Slack see it.
func (s *Server) HoldNextResponse() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.holds = append(s.holds, ch)
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// DropNextResponse makes the next response_url post lose its connection
// before Slack takes it: the client gets a network error, and the screen
// and the url's uses stay as they were.
func (s *Server) DropNextResponse() {
	s.mu.Lock()
	s.drops++
	s.mu.Unlock()
}

// HeldResponses is the number of response_url posts waiting on a hold.
func (s *Server) HeldResponses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// ResponseURLUses reports how often the response_url was posted to.
func (s *Server) ResponseURLUses(url string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.urls[strings.TrimPrefix(url, s.URL+"/response/")]; u != nil {
		return u.uses
	}
	return 0
}

// response serves a post to a response_url, by the strictest documented
// reading of what each kind of url can do.
func (s *Server) response(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/response/")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	if s.drops > 0 {
		s.drops--
		s.mu.Unlock()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	if len(s.holds) > 0 {
		hold := s.holds[0]
		s.holds = s.holds[1:]
		s.held++
		s.notifyLocked()
		s.mu.Unlock()
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		s.mu.Lock()
		s.held--
		if r.Context().Err() != nil {
			s.mu.Unlock()
			return
		}
	}
	u := s.urls[id]
	if u == nil {
		s.mu.Unlock()
		http.Error(w, "no_such_url", http.StatusNotFound)
		return
	}
	// A post before the Retry-After of the url's 429 ran out fails the
	// test. A bot may wait it out in the call (real time) or across ticks
	// (the test's clock): either one having passed it will do.
	if s.now().Before(u.retryUntil) && time.Now().Before(u.retryUntilReal) {
		s.violateLocked("response_url posted %s before the Retry-After of its 429 ran out", u.retryUntil.Sub(s.now()).Round(time.Millisecond))
	}
	if len(s.rateLimit) > 0 {
		ra := s.rateLimit[0]
		s.rateLimit = s.rateLimit[1:]
		s.rateLimited++
		u.retryUntil, u.retryUntilReal = s.now().Add(ra), time.Now().Add(ra)
		s.notifyLocked()
		s.mu.Unlock()
		w.Header().Set("Retry-After", fmt.Sprint(int(ra.Seconds())))
		http.Error(w, "rate_limited", http.StatusTooManyRequests)
		return
	}
	if len(s.failStatus) > 0 {
		st := s.failStatus[0]
		s.failStatus = s.failStatus[1:]
		if st >= 500 {
			u.uses++
		}
		if u.uses > ResponseURLUses {
			s.violateLocked("response_url used %d times (limit %d)", u.uses, ResponseURLUses)
		}
		s.mu.Unlock()
		http.Error(w, "internal_error", st)
		return
	}
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(u.issued) > ResponseURLLifetime {
		s.violateLocked("response_url used %s after it was issued (limit %s)", now.Sub(u.issued), ResponseURLLifetime)
		http.Error(w, "expired_url", http.StatusNotFound)
		return
	}
	u.uses++
	if u.uses > ResponseURLUses {
		s.violateLocked("response_url used %d times (limit %d)", u.uses, ResponseURLUses)
		http.Error(w, "used_url", http.StatusNotFound)
		return
	}
	var m struct {
		Text            string          `json:"text"`
		Blocks          json.RawMessage `json:"blocks"`
		ResponseType    string          `json:"response_type"`
		ReplaceOriginal bool            `json:"replace_original"`
		DeleteOriginal  bool            `json:"delete_original"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		s.violateLocked("response_url body is not JSON: %v", err)
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	deletes := m.DeleteOriginal && u.kind == clickURL
	if err := ValidateMessage(m.Text, m.Blocks); err != nil && !m.DeleteOriginal {
		s.violateLocked("response_url message: %v", err)
		http.Error(w, "invalid_blocks", http.StatusBadRequest)
		return
	}
	if m.ResponseType == "in_channel" {
		// linkbot's messages carry credentials: only their requester may see them.
		s.violateLocked("response_url message posted in_channel (visible to everyone)")
	}
	v := Version{Text: m.Text, Blocks: m.Blocks, ResponseType: m.ResponseType, At: time.Now()}
	orig := s.messages[u.messageID]
	switch {
	case u.kind == commandURL || orig == nil:
		// A command's response_url adds a message, whatever the flags say.
		v.Via = ViaCommandURL
		if m.DeleteOriginal && m.Text == "" {
			break // nothing to add, and nothing it may delete
		}
		s.addMessageLocked(&Message{User: u.user, Channel: u.channel, Ephemeral: true, Via: ViaCommandURL, Origin: u.messageID}, v)
	case deletes:
		s.changeMessageLocked(orig, Version{At: v.At, Via: ViaDelete})
	case m.ReplaceOriginal && orig.Via == ViaAck:
		s.violateLocked("a click's response_url replaced the ack of a slash command (message %s), which can never be changed", orig.ID)
	case m.ReplaceOriginal:
		v.Via = ViaClickURL
		s.changeMessageLocked(orig, v)
	default:
		v.Via = ViaClickURL
		s.addMessageLocked(&Message{User: u.user, Channel: orig.Channel, Ephemeral: true, Via: ViaClickURL, Origin: orig.Origin}, v)
	}
	var slow time.Duration
	if len(s.slowNext) > 0 {
		slow, s.slowNext = s.slowNext[0], s.slowNext[1:]
	}
	if slow > 0 {
		s.mu.Unlock()
		select {
		case <-time.After(slow):
		case <-r.Context().Done():
		}
		s.mu.Lock()
		if r.Context().Err() != nil {
			return
		}
	}
	w.Write([]byte("ok"))
}
