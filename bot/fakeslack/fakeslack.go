// Package fakeslack is an in-process Slack for tests and the demo. It speaks
// real Socket Mode over a WebSocket (hello, envelopes, acks, pings,
// disconnect), serves the Web API methods linkbot uses and response_url
// endpoints, records everything, and enforces Slack's rules: acks within 3 s,
// at most 5 uses of a response_url within 30 minutes, Block Kit limits, and
// 429 with Retry-After on demand. Broken rules are recorded as violations.
package fakeslack

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Slack's rules the fake enforces.
const (
	AckDeadline         = 3 * time.Second
	ResponseURLUses     = 5
	ResponseURLLifetime = 30 * time.Minute
)

// Identity of the fake workspace and app.
const (
	TeamID   = "T0LINKBOT"
	BotUser  = "U0LINKBOT"
	AppID    = "A0LINKBOT"
	AppToken = "xapp-1-fake"
	BotToken = "xoxb-fake"
)

// Version is one state of a message as the user sees it.
type Version struct {
	Text         string
	Blocks       json.RawMessage
	ResponseType string
	At           time.Time
	Via          string // "ack" or "response_url"
}

// Message is an ephemeral message shown to one user: a command's reply or a
// message posted through a response_url without replace_original.
type Message struct {
	ID       string
	User     string
	Channel  string
	Versions []Version
}

// Latest is the message's current state.
func (m Message) Latest() Version {
	if len(m.Versions) == 0 {
		return Version{}
	}
	return m.Versions[len(m.Versions)-1]
}

// Envelope is one Socket Mode request the fake sent.
type Envelope struct {
	ID          string
	Type        string
	Payload     json.RawMessage
	ResponseURL string
	MessageID   string
	SentAt      time.Time
	AckedAt     time.Time
	AckPayload  json.RawMessage
}

type responseURL struct {
	id        string
	messageID string
	issued    time.Time
	uses      int
}

type conn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	done chan struct{}
}

func (c *conn) write(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteJSON(v)
}

// Server is a fake Slack.
type Server struct {
	URL string // base; the Web API is URL + "/api/"

	srv      *httptest.Server
	upgrader websocket.Upgrader

	// PingInterval is how often the fake pings each socket; it must be
	// shorter than the client's ping timeout (30 s by default).
	PingInterval time.Duration

	mu           sync.Mutex
	now          func() time.Time
	conns        map[*conn]bool
	connects     int
	envelopes    map[string]*Envelope
	envOrder     []string
	urls         map[string]*responseURL
	messages     map[string]*Message
	msgOrder     []string
	posted       []Version // chat.postMessage / chat.postEphemeral
	violations   []string
	rateLimit    []time.Duration // Retry-After for the next response_url posts
	failStatus   []int           // statuses for the next response_url posts
	slowNext     []time.Duration // answer delays for the next response_url posts
	holds        []chan struct{} // the next response_url posts wait for these before arriving
	drops        int             // the next response_url posts lose their connection before arriving
	held         int             // posts waiting on a hold now
	changed      chan struct{}
	onViolation  func(string)
	ackLatencies []time.Duration
	seq          int
	userGroups   map[string][]string
	rateLimited  int
	outage       bool
}

// New starts a fake Slack. onViolation, if set, is called for every rule the
// bot breaks (tests pass t.Errorf).
func New(onViolation func(string)) *Server {
	s := &Server{
		PingInterval: 2 * time.Second,
		now:          time.Now, conns: map[*conn]bool{}, envelopes: map[string]*Envelope{},
		urls: map[string]*responseURL{}, messages: map[string]*Message{},
		changed: make(chan struct{}), onViolation: onViolation,
		// slack-go sends Origin: https://api.slack.com; accept it like Slack does.
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/apps.connections.open", s.connectionsOpen)
	mux.HandleFunc("/api/auth.test", s.authTest)
	mux.HandleFunc("/api/chat.postEphemeral", s.chatPost)
	mux.HandleFunc("/api/chat.postMessage", s.chatPost)
	mux.HandleFunc("/api/usergroups.users.list", s.userGroupMembers)
	mux.HandleFunc("/socket", s.socket)
	mux.HandleFunc("/response/", s.response)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// APIURL is the value for slack.OptionAPIURL (trailing slash included).
func (s *Server) APIURL() string { return s.URL + "/api/" }

// Close drops every socket and stops the server.
func (s *Server) Close() {
	s.DropConnections()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetClock makes response_url lifetimes use now.
func (s *Server) SetClock(now func() time.Time) { s.mu.Lock(); s.now = now; s.mu.Unlock() }

func (s *Server) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.violations = append(s.violations, msg)
	f := s.onViolation
	s.mu.Unlock()
	if f != nil {
		f("fakeslack: " + msg)
	}
}

// Violations lists the Slack rules the bot broke.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// notifyLocked wakes everyone waiting in Changed. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change (a message, an ack,
// a connection).
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitFor waits until cond holds or timeout passes, and reports which.
func (s *Server) WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := s.Changed()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return cond()
		}
	}
}

func newID(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func bearer(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return t
	}
	r.ParseForm()
	return r.Form.Get("token")
}

func (s *Server) connectionsOpen(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, map[string]any{"ok": false, "error": "method_not_allowed"})
		return
	}
	if bearer(r) != AppToken {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	s.mu.Lock()
	outage := s.outage
	s.mu.Unlock()
	if outage {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, map[string]any{"ok": true, "url": "ws" + strings.TrimPrefix(s.URL, "http") + "/socket?ticket=" + newID("")})
}

func (s *Server) authTest(w http.ResponseWriter, r *http.Request) {
	if bearer(r) != BotToken {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	writeJSON(w, map[string]any{"ok": true, "url": "https://linkbot-test.slack.com/", "team": "Linkbot Test", "user": "linkbot", "team_id": TeamID, "user_id": BotUser, "bot_id": "B0LINKBOT"})
}

func (s *Server) chatPost(w http.ResponseWriter, r *http.Request) {
	if bearer(r) != BotToken {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	r.ParseForm()
	v := Version{Text: r.Form.Get("text"), Blocks: json.RawMessage(r.Form.Get("blocks")), At: time.Now(), Via: r.URL.Path}
	if err := ValidateMessage(v.Text, v.Blocks); err != nil {
		s.violate("%s: %v", r.URL.Path, err)
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_blocks"})
		return
	}
	s.mu.Lock()
	s.posted = append(s.posted, v)
	s.notifyLocked()
	s.mu.Unlock()
	writeJSON(w, map[string]any{"ok": true, "channel": r.Form.Get("channel"), "ts": "1700000000.000100", "message_ts": "1700000000.000100"})
}

// socket serves the Socket Mode WebSocket.
func (s *Server) socket(w http.ResponseWriter, r *http.Request) {
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &conn{ws: ws, done: make(chan struct{})}
	s.mu.Lock()
	s.conns[c] = true
	s.connects++
	n := len(s.conns)
	s.mu.Unlock()
	c.write(map[string]any{"type": "hello", "num_connections": n, "debug_info": map[string]any{"host": "fakeslack", "approximate_connection_time": 3600}, "connection_info": map[string]string{"app_id": AppID}})
	go s.pinger(c)
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.notifyLocked()
		s.mu.Unlock()
		close(c.done)
		ws.Close()
	}()
	for {
		_, raw, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(raw, &ack); err != nil || ack.EnvelopeID == "" {
			s.violate("unreadable socket message %q", raw)
			continue
		}
		s.ack(ack.EnvelopeID, ack.Payload)
	}
}

func (s *Server) pinger(c *conn) {
	t := time.NewTicker(s.PingInterval)
	defer t.Stop()
	ping := func() {
		c.wmu.Lock()
		c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second))
		c.wmu.Unlock()
	}
	ping()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			ping()
		}
	}
}

func (s *Server) ack(id string, payload json.RawMessage) {
	now := time.Now()
	s.mu.Lock()
	env := s.envelopes[id]
	if env == nil {
		s.mu.Unlock()
		s.violate("ack for unknown envelope %s", id)
		return
	}
	if !env.AckedAt.IsZero() {
		s.mu.Unlock()
		s.violate("second ack for envelope %s", id)
		return
	}
	env.AckedAt, env.AckPayload = now, payload
	latency := now.Sub(env.SentAt)
	s.ackLatencies = append(s.ackLatencies, latency)
	var late bool
	if latency > AckDeadline {
		late = true
	}
	var msgErr error
	if env.Type == "slash_commands" && len(payload) > 0 && string(payload) != "null" {
		var m struct {
			Text         string          `json:"text"`
			Blocks       json.RawMessage `json:"blocks"`
			ResponseType string          `json:"response_type"`
		}
		json.Unmarshal(payload, &m)
		if msgErr = ValidateMessage(m.Text, m.Blocks); msgErr == nil && m.ResponseType == "in_channel" {
			msgErr = fmt.Errorf("reply is in_channel (visible to everyone)")
		}
		if msgErr == nil {
			s.messages[env.MessageID].Versions = append(s.messages[env.MessageID].Versions, Version{Text: m.Text, Blocks: m.Blocks, ResponseType: m.ResponseType, At: now, Via: "ack"})
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	if late {
		s.violate("envelope %s acked after %s (Slack shows the user dispatch_failed after %s)", id, latency, AckDeadline)
	}
	if msgErr != nil {
		s.violate("ack payload for %s: %v", id, msgErr)
	}
}

// AckLatencies returns how long each ack took, envelope sent → ack received.
func (s *Server) AckLatencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.ackLatencies...)
}

// Connections is the number of open sockets; Connects counts every socket
// ever opened.
func (s *Server) Connections() (open, connects int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), s.connects
}

// WaitConnected waits for at least one open socket.
func (s *Server) WaitConnected(timeout time.Duration) bool {
	return s.WaitFor(timeout, func() bool { n, _ := s.Connections(); return n > 0 })
}

func (s *Server) anyConn() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Slack spreads envelopes over the app's connections at random; map
	// iteration order is random enough.
	for c := range s.conns {
		return c
	}
	return nil
}

func (s *Server) newResponseURL(messageID string) string {
	id := newID("R")
	s.urls[id] = &responseURL{id: id, messageID: messageID, issued: s.now()}
	return s.URL + "/response/" + id
}

func (s *Server) send(env *Envelope, payload any) (*Envelope, error) {
	c := s.anyConn()
	if c == nil {
		return nil, fmt.Errorf("no socket connected")
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	env.Payload = raw
	s.mu.Lock()
	env.SentAt = time.Now()
	s.envelopes[env.ID] = env
	s.envOrder = append(s.envOrder, env.ID)
	s.mu.Unlock()
	if err := c.write(map[string]any{"envelope_id": env.ID, "type": env.Type, "payload": json.RawMessage(raw), "accepts_response_payload": env.Type == "slash_commands", "retry_attempt": 0, "retry_reason": ""}); err != nil {
		return nil, err
	}
	time.AfterFunc(AckDeadline, func() {
		s.mu.Lock()
		acked := !env.AckedAt.IsZero()
		s.mu.Unlock()
		if !acked {
			s.violate("envelope %s (%s) not acked within %s", env.ID, env.Type, AckDeadline)
		}
	})
	return env, nil
}

// Command is a slash command as a user types it.
type Command struct {
	User    string
	Team    string // TeamID when empty
	Channel string
	Text    string
}

// SendCommand delivers "/link text" from user over the socket and returns
// the envelope; its reply message has ID env.MessageID.
func (s *Server) SendCommand(cmd Command) (*Envelope, error) {
	if cmd.Team == "" {
		cmd.Team = TeamID
	}
	if cmd.Channel == "" {
		cmd.Channel = "C0SUPPORT"
	}
	s.mu.Lock()
	s.seq++
	msgID := fmt.Sprintf("M%05d", s.seq)
	s.messages[msgID] = &Message{ID: msgID, User: cmd.User, Channel: cmd.Channel}
	s.msgOrder = append(s.msgOrder, msgID)
	url := s.newResponseURL(msgID)
	s.mu.Unlock()
	env := &Envelope{ID: newID("E"), Type: "slash_commands", ResponseURL: url, MessageID: msgID}
	return s.send(env, map[string]any{
		"token": "deprecated", "team_id": cmd.Team, "team_domain": "linkbot-test", "channel_id": cmd.Channel, "channel_name": "support",
		"user_id": cmd.User, "user_name": strings.ToLower(cmd.User), "command": "/link", "text": cmd.Text,
		"api_app_id": AppID, "is_enterprise_install": "false", "response_url": url, "trigger_id": newID("T"),
	})
}

// Click presses the button with actionID in message msgID's latest version,
// as user. It fails if the message shows no such button.
func (s *Server) Click(msgID, user, actionID string) (*Envelope, error) {
	s.mu.Lock()
	m := s.messages[msgID]
	if m == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("no message %s", msgID)
	}
	latest := m.Latest()
	btn, blockID, ok := findButton(latest.Blocks, actionID)
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("message %s shows no %q button", msgID, actionID)
	}
	url := s.newResponseURL(msgID)
	channel := m.Channel
	s.mu.Unlock()
	env := &Envelope{ID: newID("E"), Type: "interactive", ResponseURL: url, MessageID: msgID}
	return s.send(env, map[string]any{
		"type": "block_actions", "team": map[string]string{"id": TeamID, "domain": "linkbot-test"},
		"user":       map[string]string{"id": user, "team_id": TeamID, "username": strings.ToLower(user)},
		"api_app_id": AppID, "token": "deprecated", "trigger_id": newID("T"),
		"container":    map[string]any{"type": "message", "is_ephemeral": true, "channel_id": channel},
		"channel":      map[string]string{"id": channel, "name": "support"},
		"response_url": url,
		"actions": []map[string]any{{
			"type": "button", "action_id": actionID, "block_id": blockID, "value": btn["value"],
			"text": btn["text"], "action_ts": "1700000000.000200",
		}},
	})
}

func findButton(blocks json.RawMessage, actionID string) (map[string]any, string, bool) {
	var list []map[string]any
	json.Unmarshal(blocks, &list)
	for _, b := range list {
		els, _ := b["elements"].([]any)
		for _, e := range els {
			el, _ := e.(map[string]any)
			if el["type"] == "button" && el["action_id"] == actionID {
				id, _ := b["block_id"].(string)
				return el, id, true
			}
		}
	}
	return nil, "", false
}

// Disconnect sends Slack's disconnect message (reason e.g.
// "refresh_requested", "warning") on every socket, then closes them as Slack does.
func (s *Server) Disconnect(reason string) {
	s.mu.Lock()
	var cs []*conn
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.write(map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]string{"host": "fakeslack"}})
		go func() {
			select {
			case <-c.done:
			case <-time.After(2 * time.Second):
				c.ws.Close()
			}
		}()
	}
}

// SetOutage makes new Socket Mode connections fail (HTTP 503) while on.
func (s *Server) SetOutage(on bool) {
	s.mu.Lock()
	s.outage = on
	s.mu.Unlock()
}

// DropConnections closes every socket without a word, like a network fault.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.ws.Close()
	}
}

// RateLimitNext makes the next response_url post answer 429 with Retry-After.
func (s *Server) RateLimitNext(retryAfter time.Duration) {
	s.mu.Lock()
	s.rateLimit = append(s.rateLimit, retryAfter)
	s.mu.Unlock()
}

// RateLimited counts the 429s the fake has answered.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rateLimited
}

// FailNextResponse makes the next response_url post answer status (e.g.
// 500) without changing the message. A 5xx still counts as a use: Slack
// may have counted the post before failing, and the fake takes the
// strictest reading.
func (s *Server) FailNextResponse(status int) {
	s.mu.Lock()
	s.failStatus = append(s.failStatus, status)
	s.mu.Unlock()
}

// SlowNextResponse makes the next response_url post take effect (the use is
// counted and the message changed) but answer only after d, so a client
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
// before Slack takes it: the client gets a network error, and the message
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
	if len(s.rateLimit) > 0 {
		ra := s.rateLimit[0]
		s.rateLimit = s.rateLimit[1:]
		s.rateLimited++
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
		over := u.uses > ResponseURLUses
		s.mu.Unlock()
		if over {
			s.violate("response_url used %d times (limit %d)", u.uses, ResponseURLUses)
		}
		http.Error(w, "internal_error", st)
		return
	}
	now := s.now()
	if now.Sub(u.issued) > ResponseURLLifetime {
		s.mu.Unlock()
		s.violate("response_url used %s after it was issued (limit %s)", now.Sub(u.issued), ResponseURLLifetime)
		http.Error(w, "expired_url", http.StatusNotFound)
		return
	}
	u.uses++
	if u.uses > ResponseURLUses {
		s.mu.Unlock()
		s.violate("response_url used %d times (limit %d)", u.uses, ResponseURLUses)
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
		s.mu.Unlock()
		s.violate("response_url body is not JSON: %v", err)
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	if err := ValidateMessage(m.Text, m.Blocks); err != nil && !m.DeleteOriginal {
		s.mu.Unlock()
		s.violate("response_url message: %v", err)
		http.Error(w, "invalid_blocks", http.StatusBadRequest)
		return
	}
	if m.ResponseType == "in_channel" {
		// linkbot's messages carry credentials: only their requester may see them.
		s.mu.Unlock()
		s.violate("response_url message posted in_channel (visible to everyone)")
		s.mu.Lock()
	}
	v := Version{Text: m.Text, Blocks: m.Blocks, ResponseType: m.ResponseType, At: time.Now(), Via: "response_url"}
	orig := s.messages[u.messageID]
	switch {
	case m.ReplaceOriginal || m.DeleteOriginal:
		if m.DeleteOriginal {
			v = Version{At: v.At, Via: "deleted"}
		}
		orig.Versions = append(orig.Versions, v)
	default:
		s.seq++
		nm := &Message{ID: fmt.Sprintf("M%05d", s.seq), User: orig.User, Channel: orig.Channel, Versions: []Version{v}}
		s.messages[nm.ID] = nm
		s.msgOrder = append(s.msgOrder, nm.ID)
	}
	var slow time.Duration
	if len(s.slowNext) > 0 {
		slow, s.slowNext = s.slowNext[0], s.slowNext[1:]
	}
	s.notifyLocked()
	s.mu.Unlock()
	if slow > 0 {
		select {
		case <-time.After(slow):
		case <-r.Context().Done():
			return
		}
	}
	w.Write([]byte("ok"))
}

// Message returns a copy of message id.
func (s *Server) Message(id string) Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messages[id]
	if m == nil {
		return Message{}
	}
	c := *m
	c.Versions = append([]Version(nil), m.Versions...)
	return c
}

// Messages returns every message in the order they appeared.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	ids := append([]string(nil), s.msgOrder...)
	s.mu.Unlock()
	out := make([]Message, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.Message(id))
	}
	return out
}

// Envelope returns the envelope with id.
func (s *Server) Envelope(id string) Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.envelopes[id]; e != nil {
		return *e
	}
	return Envelope{}
}

// Posted returns what arrived through chat.postMessage/chat.postEphemeral.
func (s *Server) Posted() []Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Version(nil), s.posted...)
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

// OpenMessage creates an ephemeral message for user and a response_url for
// it, as if a command had been delivered and acked with text; for tests
// that drive the bot's edits without a socket.
func (s *Server) OpenMessage(user, text string) (msgID, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	msgID = fmt.Sprintf("M%05d", s.seq)
	s.messages[msgID] = &Message{ID: msgID, User: user, Channel: "C0SUPPORT", Versions: []Version{{Text: text, At: time.Now(), Via: "ack"}}}
	s.msgOrder = append(s.msgOrder, msgID)
	return msgID, s.newResponseURL(msgID)
}

// SetUserGroup makes usergroups.users.list answer users for group.
func (s *Server) SetUserGroup(group string, users ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userGroups == nil {
		s.userGroups = map[string][]string{}
	}
	s.userGroups[group] = users
}

func (s *Server) userGroupMembers(w http.ResponseWriter, r *http.Request) {
	if bearer(r) != BotToken {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	r.ParseForm()
	s.mu.Lock()
	users, ok := s.userGroups[r.Form.Get("usergroup")]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, map[string]any{"ok": false, "error": "no_such_subteam"})
		return
	}
	writeJSON(w, map[string]any{"ok": true, "users": users})
}

// NewResponseURL issues another response_url for message msgID, as a click
// on one of its buttons would.
func (s *Server) NewResponseURL(msgID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newResponseURL(msgID)
}
