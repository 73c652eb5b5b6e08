// Package fakeslack is an in-process Slack for tests and the demo. It speaks
// real Socket Mode over a WebSocket (hello, envelopes, acks, pings,
// disconnect), serves the Web API methods linkbot uses (chat.postMessage,
// chat.postEphemeral, chat.update, chat.delete, users.info, …) and
// response_url endpoints, and records what each person sees: a screen per
// user and conversation (Screen, DMScreen), in order, each message with
// how it was made and whether the app can still change it.
//
// It takes the strictest documented reading of Slack's rules (issue 9):
// the ack of a slash command is an ephemeral message that can never be
// changed; every post to a command's response_url adds a new ephemeral
// message (replace_original and delete_original do nothing there); a
// click's response_url replaces or deletes the message that held the
// button; chat.update and chat.delete work only on the bot's own
// non-ephemeral messages, by channel ID and ts, within a per-workspace
// rate limit (429 with Retry-After); chat.postMessage to a user ID needs
// the Messages tab, to a channel the bot's membership or
// chat:write.public, and posts at most one message a second to a channel
// (429 with Retry-After: SetPostsPerSecond); a reply can be lost after the
// call was done (DropNextReply), and a method refused on a channel for
// good (Refuse); auth.test and users.info can describe an Enterprise Grid
// organisation (SetEnterprise, User.EnterpriseID); a method called without its scope answers
// missing_scope (SetScopes: the end-to-end tests give it manifest.yml's).
// Acks within 3 s, at most 5 uses of a response_url within 30 minutes,
// Block Kit limits, and no pairing code, nor a whole phone number,
// anywhere a channel can see (a status card shows the masked number only).
// Modals (modal.go, issue 10): views.open and views.push take a trigger_id
// once within 3 s, views.update checks the view's hash, views.* share a
// per-workspace rate limit, modal limits are checked, and view_submission,
// block_actions from views, block_suggestion and view_closed are sent and
// answered through the ack payload; Modal is what each person's open modal
// shows.
// Every broken rule is recorded as a violation.
package fakeslack

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Slack's rules the fake enforces.
const (
	AckDeadline     = 3 * time.Second
	ResponseURLUses = 5
	// MaxSockets is how many Socket Mode connections an app may hold at
	// once; one more is told too_many_websockets and closed
	// (https://api.slack.com/apis/socket-mode "up to 10 open connections";
	// slackapi/node-slack-sdk issue 1654 for the disconnect reason).
	MaxSockets          = 10
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

// Envelope is one Socket Mode request the fake sent.
type Envelope struct {
	ID          string
	Type        string
	Payload     json.RawMessage
	ResponseURL string
	// MessageID is, for a slash command, the ID its ack's message gets
	// (and the ID of its Thread); for a click, the clicked message's.
	MessageID string
	// TriggerID is the trigger_id the envelope carries (commands, clicks,
	// view submissions): views.open and views.push take it once, within
	// TriggerLifetime.
	TriggerID  string
	SentAt     time.Time
	AckedAt    time.Time
	AckPayload json.RawMessage
	// Deliveries is how many times it was sent over a socket: more than
	// one when it was delivered twice (SetDuplicates, DuplicateNext) or
	// redelivered for want of an ack (SetRedelivery).
	Deliveries int

	user, channel string // who sent it, and where
	acks          int    // acks received, one per delivery at most
	lostAcks      int    // acks of it still to be lost (DropAckNext)
	frame         map[string]any
	interaction   string // an interactive envelope's payload type (block_actions, view_submission, …)
	viewID        string // the view a view_submission or block_suggestion came from
	accepts       bool   // accepts_response_payload: the ack payload answers it
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
	seq          int // orders messages and versions (Message.ID, Version.Seq)
	tsSeq        int // the last message ts handed out
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
	userGroups   map[string][]string
	rateLimited  int
	outage       bool
	closed       bool
	refusedWS    int // sockets turned away with too_many_websockets

	dupRate      float64       // chance that an envelope is delivered twice
	dupNext      int           // the next envelopes delivered twice for sure
	redeliver    time.Duration // resend an envelope not acked after this (0: never)
	maxRedeliver int           // redeliveries of one envelope at most
	redeliverNew bool          // a redelivery comes in a new envelope_id
	dropAckNext  int           // the next envelopes whose first ack is lost

	messagesTab bool                    // the app's Messages tab is on (manifest: features.app_home.messages_tab_enabled)
	scopes      map[string]bool         // the bot token's scopes
	channels    map[string]Channel      // conversations by ID
	dms         map[string]string       // the app's DM channels → their user
	users       map[string]User         // members, for users.info
	limits      map[string]*methodLimit // per-workspace limits of Web API methods

	postsPerSecond int                     // chat.postMessage's limit per channel (0: none)
	postLimits     map[string]*methodLimit // chat.postMessage's calls by channel
	refusals       map[string]string       // "method channel" → the error code every call gets (Refuse)
	enterpriseID   string                  // the Enterprise Grid organisation (SetEnterprise)
	orgInstall     bool                    // installed org-wide
	refusedCalls   map[string]int          // "method channel" → calls answered so
	triggers       map[string]*trigger     // trigger_ids handed out, by ID
	views          map[string]*View        // every modal view ever opened, by ID
	viewOrder      []string                // view IDs in the order they opened
	stacks         map[string][]string     // each user's open modal: its stack of view IDs, root first
	suggestions    map[string][]Option     // the options the last block_suggestion answered, by view ID + action_id
}

// New starts a fake Slack. onViolation, if set, is called for every rule the
// bot breaks (tests pass t.Errorf).
func New(onViolation func(string)) *Server {
	s := &Server{
		PingInterval: 2 * time.Second,
		now:          time.Now, conns: map[*conn]bool{}, envelopes: map[string]*Envelope{},
		urls: map[string]*responseURL{}, messages: map[string]*Message{},
		changed: make(chan struct{}), onViolation: onViolation,
		scopes:   map[string]bool{"commands": true, "chat:write": true, "users:read": true, "usergroups:read": true},
		channels: map[string]Channel{}, dms: map[string]string{}, users: map[string]User{}, limits: map[string]*methodLimit{},
		postsPerSecond: DefaultPostsPerSecond, postLimits: map[string]*methodLimit{},
		triggers: map[string]*trigger{}, views: map[string]*View{}, stacks: map[string][]string{}, suggestions: map[string][]Option{},
		// slack-go sends Origin: https://api.slack.com; accept it like Slack does.
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/apps.connections.open", s.connectionsOpen)
	mux.HandleFunc("/api/auth.test", s.authTest)
	mux.HandleFunc("/api/chat.postEphemeral", s.chatPost)
	mux.HandleFunc("/api/chat.postMessage", s.chatPost)
	mux.HandleFunc("/api/chat.update", s.chatChange)
	mux.HandleFunc("/api/chat.delete", s.chatChange)
	mux.HandleFunc("/api/users.info", s.usersInfo)
	mux.HandleFunc("/api/usergroups.users.list", s.userGroupMembers)
	mux.HandleFunc("/api/views.open", s.viewsOpen)
	mux.HandleFunc("/api/views.update", s.viewsUpdate)
	mux.HandleFunc("/api/views.push", s.viewsPush)
	mux.HandleFunc("/socket", s.socket)
	mux.HandleFunc("/response/", s.response)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	for _, m := range rateLimitedMethods {
		s.limits[m] = &methodLimit{perMinute: DefaultMethodLimit}
	}
	s.limits[ViewsLimit] = &methodLimit{perMinute: DefaultViewsPerMinute}
	return s
}

// APIURL is the value for slack.OptionAPIURL (trailing slash included).
func (s *Server) APIURL() string { return s.URL + "/api/" }

// Close drops every socket and stops the server. Rules broken after it
// (an envelope whose ack deadline runs out later) are not reported: the
// test that owned the fake is over.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.DropConnections()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetClock makes the fake's rules use now: response_url lifetimes, the
// Web API's per-minute limits and their Retry-After, and what can still
// be edited.
func (s *Server) SetClock(now func() time.Time) { s.mu.Lock(); s.now = now; s.mu.Unlock() }

func (s *Server) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violateLocked(format, args...)
}

// violateLocked records a broken rule and reports it. s.mu must be held
// (onViolation, a test's Errorf, never calls back into the fake).
func (s *Server) violateLocked(format string, args ...any) {
	if s.closed {
		return
	}
	msg := fmt.Sprintf(format, args...)
	s.violations = append(s.violations, msg)
	if s.onViolation != nil {
		s.onViolation("fakeslack: " + msg)
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
	s.mu.Lock()
	enterprise, org := s.enterpriseID, s.orgInstall
	s.mu.Unlock()
	resp := map[string]any{"ok": true, "url": "https://linkbot-test.slack.com/", "team": "Linkbot Test", "user": "linkbot", "team_id": TeamID, "user_id": BotUser, "bot_id": "B0LINKBOT"}
	if enterprise != "" {
		resp["enterprise_id"] = enterprise
	}
	if org {
		// An org-wide install's token stands for the organisation, not
		// one workspace (api.slack.com/enterprise/apps/reference).
		resp["team_id"], resp["team"], resp["is_enterprise_install"] = enterprise, "Linkbot Org", true
	}
	writeJSON(w, resp)
}

// SetEnterprise puts the workspace in an Enterprise Grid organisation:
// auth.test answers its enterprise_id; if org, the app is installed
// org-wide (manifest org_deploy_enabled), and auth.test answers for the
// organisation (team_id is the enterprise's, is_enterprise_install true).
func (s *Server) SetEnterprise(id string, org bool) {
	s.mu.Lock()
	s.enterpriseID, s.orgInstall = id, org
	s.mu.Unlock()
}

// socket serves the Socket Mode WebSocket.
func (s *Server) socket(w http.ResponseWriter, r *http.Request) {
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &conn{ws: ws, done: make(chan struct{})}
	s.mu.Lock()
	if len(s.conns) >= MaxSockets {
		// Slack keeps the open ones and turns the newcomer away.
		s.refusedWS++
		s.notifyLocked()
		s.mu.Unlock()
		c.write(map[string]any{"type": "disconnect", "reason": "too_many_websockets", "debug_info": map[string]string{"host": "fakeslack"}})
		ws.Close()
		return
	}
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
	env.acks++
	if env.lostAcks > 0 {
		env.lostAcks--
		s.mu.Unlock()
		return
	}
	if env.acks > env.Deliveries {
		s.mu.Unlock()
		s.violate("second ack for envelope %s", id)
		return
	}
	if !env.AckedAt.IsZero() {
		// The ack of another delivery of it: Slack goes by the first.
		s.notifyLocked()
		s.mu.Unlock()
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
	if len(payload) >= MaxAckPayload {
		// Slack drops an ack payload of 20 KB or more without a word
		// (DESIGN.md "Slack facts"): nothing of it happens.
		s.violateLocked("ack payload for %s (%s) is %d bytes; Slack drops payloads of %d bytes or more", id, env.Type, len(payload), MaxAckPayload)
		payload = nil
	}
	if env.Type == "interactive" {
		s.answerInteractionLocked(env, payload)
	}
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
			// The ack becomes an ephemeral message nothing can change.
			s.addMessageLocked(&Message{ID: env.MessageID, User: env.user, Channel: env.channel, Ephemeral: true, Via: ViaAck},
				Version{Text: m.Text, Blocks: m.Blocks, ResponseType: m.ResponseType, At: now, Via: ViaAck})
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

// randomConn is one open socket chosen at random (nil: none): Slack
// delivers each envelope to one of the app's connections. s.mu must be
// held.
func (s *Server) randomConnLocked() *conn {
	if len(s.conns) == 0 {
		return nil
	}
	i := mathrand.IntN(len(s.conns))
	for c := range s.conns {
		if i == 0 {
			return c
		}
		i--
	}
	return nil
}

// SetDuplicates makes every envelope sent from now on be delivered a
// second time with probability p (0 ≤ p ≤ 1), on a connection chosen at
// random again: Slack has been seen to deliver one envelope twice, and
// several replicas must handle it once.
func (s *Server) SetDuplicates(p float64) { s.mu.Lock(); s.dupRate = p; s.mu.Unlock() }

// DuplicateNext makes the next n envelopes be delivered twice.
func (s *Server) DuplicateNext(n int) { s.mu.Lock(); s.dupNext += n; s.mu.Unlock() }

// SetRedelivery makes the fake send an envelope again, with retry_attempt
// counting up and retry_reason "timeout", when no ack came after d, at
// most max times, as Slack does. With it, an envelope that is never acked
// is redelivered rather than reported late (the replica it went to may
// have died); d ≤ 0 turns it off.
func (s *Server) SetRedelivery(d time.Duration, max int) {
	s.mu.Lock()
	s.redeliver, s.maxRedeliver = d, max
	s.mu.Unlock()
}

// SetRedeliveryNewEnvelopes makes each redelivery (SetRedelivery) come in
// an envelope with a new envelope_id, the payload unchanged: Slack does
// not document that a retry keeps its envelope_id, and a retried Socket
// Mode delivery has been reported in a new envelope (gugu91/pinet#226).
// The ack of either ID acks the envelope.
func (s *Server) SetRedeliveryNewEnvelopes(on bool) {
	s.mu.Lock()
	s.redeliverNew = on
	s.mu.Unlock()
}

// DropAckNext makes the first ack of each of the next n envelopes be lost
// on its way (the socket carrying it closed): Slack, having no ack, sends
// the envelope again (SetRedelivery) while the app may be handling it.
func (s *Server) DropAckNext(n int) { s.mu.Lock(); s.dropAckNext += n; s.mu.Unlock() }

// RefusedSockets counts the sockets turned away with too_many_websockets.
func (s *Server) RefusedSockets() int { s.mu.Lock(); defer s.mu.Unlock(); return s.refusedWS }

func (s *Server) send(env *Envelope, payload any) (*Envelope, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	env.Payload = raw
	env.frame = map[string]any{"envelope_id": env.ID, "type": env.Type, "payload": json.RawMessage(raw), "accepts_response_payload": env.Type == "slash_commands" || env.accepts, "retry_attempt": 0, "retry_reason": ""}
	s.mu.Lock()
	c := s.randomConnLocked()
	if c == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("no socket connected")
	}
	env.SentAt = time.Now()
	env.Deliveries = 1
	if s.dropAckNext > 0 {
		s.dropAckNext--
		env.lostAcks = 1
	}
	s.envelopes[env.ID] = env
	s.envOrder = append(s.envOrder, env.ID)
	twice := s.dupNext > 0 || (s.dupRate > 0 && mathrand.Float64() < s.dupRate)
	if s.dupNext > 0 {
		s.dupNext--
	}
	var second *conn
	if twice {
		second = s.randomConnLocked()
		env.Deliveries++
	}
	redeliver, maxRedeliver := s.redeliver, s.maxRedeliver
	s.mu.Unlock()
	if err := c.write(env.frame); err != nil && second == nil && redeliver <= 0 {
		return nil, err
	}
	if second != nil {
		second.write(env.frame)
	}
	if redeliver > 0 {
		s.watchRedelivery(env, redeliver, maxRedeliver, 1)
		return env, nil
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

// watchRedelivery sends env again after d unless it was acked by then.
func (s *Server) watchRedelivery(env *Envelope, d time.Duration, max, attempt int) {
	if attempt > max {
		return
	}
	time.AfterFunc(d, func() {
		s.mu.Lock()
		if !env.AckedAt.IsZero() || s.closed {
			s.mu.Unlock()
			return
		}
		c := s.randomConnLocked()
		if c == nil {
			s.mu.Unlock()
			s.watchRedelivery(env, d, max, attempt) // no socket now: wait for one
			return
		}
		env.Deliveries++
		frame := map[string]any{}
		for k, v := range env.frame {
			frame[k] = v
		}
		frame["retry_attempt"], frame["retry_reason"] = attempt, "timeout"
		if s.redeliverNew {
			id := newID("E")
			s.envelopes[id] = env // its ack acks env
			frame["envelope_id"] = id
		}
		s.mu.Unlock()
		c.write(frame)
		s.watchRedelivery(env, d, max, attempt+1)
	})
}

// Command is a slash command as a user types it.
type Command struct {
	User    string
	Team    string // TeamID when empty
	Channel string
	Text    string
}

// SendCommand delivers "/link text" from user over the socket and returns
// the envelope: its ack becomes message env.MessageID, and Thread
// (env.MessageID) lists what the command brought to the user's screen.
func (s *Server) SendCommand(cmd Command) (*Envelope, error) {
	if cmd.Team == "" {
		cmd.Team = TeamID
	}
	if cmd.Channel == "" {
		cmd.Channel = "C0SUPPORT"
	}
	s.mu.Lock()
	s.seq++
	msgID := fmt.Sprintf("M%05d", s.seq) // the ack's message, once acked
	if _, ok := s.channels[cmd.Channel]; !ok && !strings.HasPrefix(cmd.Channel, "D") {
		s.channels[cmd.Channel] = Channel{ID: cmd.Channel, Public: true}
	}
	if _, ok := s.users[cmd.User]; !ok {
		s.users[cmd.User] = User{ID: cmd.User, Name: strings.ToLower(cmd.User), TeamID: cmd.Team}
	}
	url := s.newResponseURLLocked(commandURL, msgID, cmd.User, cmd.Channel)
	trig := s.newTriggerLocked(cmd.User)
	s.mu.Unlock()
	env := &Envelope{ID: newID("E"), Type: "slash_commands", ResponseURL: url, MessageID: msgID, TriggerID: trig, user: cmd.User, channel: cmd.Channel}
	return s.send(env, map[string]any{
		"token": "deprecated", "team_id": cmd.Team, "team_domain": "linkbot-test", "channel_id": cmd.Channel, "channel_name": "support",
		"user_id": cmd.User, "user_name": strings.ToLower(cmd.User), "command": "/link", "text": cmd.Text,
		"api_app_id": AppID, "is_enterprise_install": "false", "response_url": url, "trigger_id": trig,
	})
}

// Click presses the button with actionID in message msgID's latest version,
// as user, and returns the envelope (its ResponseURL replaces msgID). It
// fails if user cannot see the message or it shows no such button.
func (s *Server) Click(msgID, user, actionID string) (*Envelope, error) {
	s.mu.Lock()
	m := s.messages[msgID]
	switch {
	case m == nil || m.Deleted || m.removed:
		s.mu.Unlock()
		return nil, fmt.Errorf("no message %s", msgID)
	case m.Ephemeral && m.User != user, s.dmUser(m.Channel) != "" && s.dmUser(m.Channel) != user:
		s.mu.Unlock()
		return nil, fmt.Errorf("%s cannot see message %s", user, msgID)
	}
	latest := m.Latest()
	btn, blockID, ok := findButton(latest.Blocks, actionID)
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("message %s shows no %q button", msgID, actionID)
	}
	url := s.newResponseURLLocked(clickURL, msgID, user, m.Channel)
	trig := s.newTriggerLocked(user)
	channel, ts, ephemeral := m.Channel, m.TS, m.Ephemeral
	// Every click has an action_ts of its own (a redelivery of its
	// envelope keeps it).
	s.seq++
	actionTS := fmt.Sprintf("%d.%06d", s.now().Unix(), s.seq)
	team := TeamID
	if u, ok := s.users[user]; ok && u.TeamID != "" {
		team = u.TeamID
	}
	s.mu.Unlock()
	env := &Envelope{ID: newID("E"), Type: "interactive", ResponseURL: url, MessageID: msgID, TriggerID: trig, user: user, channel: channel, interaction: "block_actions"}
	payload := map[string]any{
		"type": "block_actions", "team": map[string]string{"id": TeamID, "domain": "linkbot-test"},
		"user":       map[string]string{"id": user, "team_id": team, "username": strings.ToLower(user)},
		"api_app_id": AppID, "token": "deprecated", "trigger_id": trig,
		"container":    map[string]any{"type": "message", "is_ephemeral": ephemeral, "channel_id": channel, "message_ts": ts},
		"channel":      map[string]string{"id": channel, "name": "support"},
		"response_url": url,
		"actions": []map[string]any{{
			"type": "button", "action_id": actionID, "block_id": blockID, "value": btn["value"],
			"text": btn["text"], "action_ts": actionTS,
		}},
	}
	if !ephemeral {
		// Slack sends a non-ephemeral message along with a click on it.
		payload["message"] = map[string]any{"type": "message", "ts": ts, "text": latest.Text, "blocks": latest.Blocks}
	}
	return s.send(env, payload)
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

// Envelope returns the envelope with id.
func (s *Server) Envelope(id string) Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.envelopes[id]; e != nil {
		return *e
	}
	return Envelope{}
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
	if !s.authorised(w, r, "usergroups:read") {
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
