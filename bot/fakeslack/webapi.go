package fakeslack

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// DefaultMethodLimit is how many calls a minute the fake allows each
// rate-limited Web API method (chat.update, chat.delete) per workspace:
// Slack's Tier 3 ("50+ per minute"), taken at its floor.
const DefaultMethodLimit = 50

// rateLimitedMethods are the Web API methods the fake rate-limits per
// workspace.
var rateLimitedMethods = []string{"chat.update", "chat.delete"}

// Channel is a conversation the fake knows: whether it is public and
// whether the bot is a member.
type Channel struct {
	ID     string
	Public bool
	Member bool // the bot is in it
}

// User is a member as users.info describes them.
type User struct {
	ID           string
	Name         string
	TeamID       string // TeamID when empty
	IsBot        bool
	Deleted      bool // deactivated
	IsRestricted bool // a guest
	// EnterpriseID and Teams are an Enterprise Grid member's organisation
	// and the workspaces of it they belong to (users.info's
	// enterprise_user); TeamID is then their home workspace.
	EnterpriseID string
	Teams        []string
}

// methodLimit is the sliding window (a minute, unless per says otherwise)
// of one method's calls, or of chat.postMessage's calls to one channel.
type methodLimit struct {
	perMinute  int           // calls allowed in one window
	per        time.Duration // the window; 0: a minute
	calls      []time.Time   // calls in the last window (refused ones too; not 429s)
	retryUntil time.Time     // the Retry-After of the last 429 runs out then
	limited    int           // 429s answered
	injected   []time.Duration
	fail       []string // error codes for the next calls
	drops      int      // the next calls are done, and their answers lost
}

// DefaultPostsPerSecond is how many messages a second chat.postMessage
// may post to one channel before the fake answers 429 with Retry-After:
// "chat.postMessage … will generally allow an app to post 1 message per
// second to a specific channel" (api.slack.com/methods/chat.postMessage,
// Rate limiting), taken without the burst Slack may grant.
const DefaultPostsPerSecond = 1

// SetPostsPerSecond sets how many messages a second chat.postMessage may
// post to one channel (0: no limit).
func (s *Server) SetPostsPerSecond(n int) {
	s.mu.Lock()
	s.postsPerSecond = n
	s.mu.Unlock()
}

// DropNextReply makes the next call of method (chat.postMessage,
// chat.update, chat.delete) do what it asks and then lose its answer: the
// connection closes before a byte of the reply is sent, as when a reply is
// lost or times out on the way back.
func (s *Server) DropNextReply(method string) {
	s.mu.Lock()
	if s.limits[method] == nil {
		s.limits[method] = &methodLimit{}
	}
	s.limits[method].drops++
	s.mu.Unlock()
}

// dropReplyLocked reports whether method's answer is to be lost, and if so
// closes the connection instead of answering. s.mu must be held.
func (s *Server) dropReplyLocked(w http.ResponseWriter, method string) bool {
	l := s.limits[method]
	if l == nil || l.drops == 0 {
		return false
	}
	l.drops--
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return true
		}
	}
	panic(http.ErrAbortHandler) // closes the connection without an answer
}

// SetMessagesTab turns the app's Messages tab on or off (manifest.yml's
// features.app_home.messages_tab_enabled). Off, chat.postMessage to a user
// ID fails with messages_tab_disabled. It starts off.
func (s *Server) SetMessagesTab(enabled bool) {
	s.mu.Lock()
	s.messagesTab = enabled
	s.mu.Unlock()
}

// SetScopes replaces the bot token's scopes (default: commands, chat:write,
// users:read, usergroups:read). A Web API method called without the scope
// it needs answers missing_scope (chat.* need chat:write, users.info
// users:read, usergroups.users.list usergroups:read); chat:write.public
// lets the bot post in public channels it is not a member of.
func (s *Server) SetScopes(scopes ...string) {
	s.mu.Lock()
	s.scopes = map[string]bool{}
	for _, sc := range scopes {
		s.scopes[sc] = true
	}
	s.mu.Unlock()
}

// authorised reports whether the call carries the bot token and the
// token has scope; if not, it answers invalid_auth or missing_scope, as
// Slack does.
func (s *Server) authorised(w http.ResponseWriter, r *http.Request, scope string) bool {
	if bearer(r) != BotToken {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return false
	}
	return s.hasScope(w, scope)
}

// hasScope reports whether the bot token has scope; if not, it answers the
// call missing_scope, as Slack does.
func (s *Server) hasScope(w http.ResponseWriter, scope string) bool {
	s.mu.Lock()
	ok := s.scopes[scope]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, map[string]any{"ok": false, "error": "missing_scope", "needed": scope})
	}
	return ok
}

// SetChannel registers a channel. Channels a command is typed in are
// registered as public ones the bot is not a member of, unless set.
func (s *Server) SetChannel(c Channel) {
	s.mu.Lock()
	s.channels[c.ID] = c
	s.mu.Unlock()
}

// SetUser registers a member for users.info. Users who type a command are
// registered as plain members of the workspace, unless set.
func (s *Server) SetUser(u User) {
	if u.TeamID == "" {
		u.TeamID = TeamID
	}
	s.mu.Lock()
	s.users[u.ID] = u
	s.mu.Unlock()
}

// SetMethodLimit sets how many calls a minute method (chat.update,
// chat.delete) may make before the fake answers 429 with Retry-After.
func (s *Server) SetMethodLimit(method string, perMinute int) {
	s.mu.Lock()
	if s.limits[method] == nil {
		s.limits[method] = &methodLimit{}
	}
	s.limits[method].perMinute = perMinute
	s.mu.Unlock()
}

// RateLimitNextCall makes the next call of method answer 429 with
// Retry-After, as if other apps' calls had used up the workspace's limit.
func (s *Server) RateLimitNextCall(method string, retryAfter time.Duration) {
	s.mu.Lock()
	if s.limits[method] == nil {
		s.limits[method] = &methodLimit{}
	}
	l := s.limits[method]
	l.injected = append(l.injected, retryAfter)
	s.mu.Unlock()
}

// FailNextCall makes the next call of a Web API method answer ok:false
// with errCode (e.g. chat.update's edit_window_closed or message_not_found).
func (s *Server) FailNextCall(method, errCode string) {
	s.mu.Lock()
	if s.limits[method] == nil {
		s.limits[method] = &methodLimit{}
	}
	l := s.limits[method]
	l.fail = append(l.fail, errCode)
	s.mu.Unlock()
}

// Refuse makes every call of method (chat.postMessage, chat.update,
// chat.delete) on channel (its ID; a DM's D… ID) answer ok:false with
// errCode from now on, as Slack does for a channel archived
// (is_archived), gone (channel_not_found), or a message it will never
// take (msg_too_long). Refused counts those answers.
func (s *Server) Refuse(method, channel, errCode string) {
	s.mu.Lock()
	if s.refusals == nil {
		s.refusals = map[string]string{}
	}
	s.refusals[method+" "+channel] = errCode
	s.mu.Unlock()
}

// Refused counts the calls of method on channel answered by Refuse.
func (s *Server) Refused(method, channel string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusedCalls[method+" "+channel]
}

// refusalLocked returns the error code Refuse set for method on channel,
// counting the call. s.mu must be held.
func (s *Server) refusalLocked(method, channel string) string {
	code := s.refusals[method+" "+channel]
	if code != "" {
		if s.refusedCalls == nil {
			s.refusedCalls = map[string]int{}
		}
		s.refusedCalls[method+" "+channel]++
	}
	return code
}

// RateLimitedCalls counts the 429s the fake answered to method.
func (s *Server) RateLimitedCalls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.limits[method]; l != nil {
		return l.limited
	}
	return 0
}

// Calls counts the calls of method in the last minute that Slack took
// (refused ones included; not those answered 429).
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.limits[method]; l != nil {
		return len(l.window(s.now()))
	}
	return 0
}

// CloseEditWindow makes message ts in channel one the app can no longer
// edit: chat.update answers edit_window_closed.
func (s *Server) CloseEditWindow(channel, ts string) {
	s.mu.Lock()
	if m := s.byTSLocked(channel, ts); m != nil {
		m.windowClosed = true
	}
	s.mu.Unlock()
}

// RemoveMessage takes message ts in channel away (an admin deleted it):
// chat.update and chat.delete answer message_not_found.
func (s *Server) RemoveMessage(channel, ts string) {
	s.mu.Lock()
	if m := s.byTSLocked(channel, ts); m != nil {
		m.removed = true
		s.notifyLocked()
	}
	s.mu.Unlock()
}

func (s *Server) byTSLocked(channel, ts string) *Message {
	for _, id := range s.msgOrder {
		if m := s.messages[id]; m.Channel == channel && m.TS == ts {
			return m
		}
	}
	return nil
}

// window drops the calls older than a minute and returns the rest.
func (l *methodLimit) window(now time.Time) []time.Time {
	i := 0
	for i < len(l.calls) && now.Sub(l.calls[i]) >= l.span() {
		i++
	}
	l.calls = l.calls[i:]
	return l.calls
}

// span is the limit's window.
func (l *methodLimit) span() time.Duration {
	if l.per > 0 {
		return l.per
	}
	return time.Minute
}

// admitLocked decides whether a call of a rate-limited method may go on
// at now: it answers 429 (writing it) past the method's limit, and fails
// the test for a call made before the Retry-After of an earlier 429 ran
// out. s.mu must be held.
func (s *Server) admitLocked(w http.ResponseWriter, method string, now time.Time) bool {
	return s.admitOnLocked(w, method, s.limits[method], now)
}

// admitOnLocked is admitLocked for the limit l (nil: none).
func (s *Server) admitOnLocked(w http.ResponseWriter, method string, l *methodLimit, now time.Time) bool {
	if l == nil {
		return true
	}
	if now.Before(l.retryUntil) {
		s.violateLocked("%s called %s before the Retry-After of its 429 ran out", method, l.retryUntil.Sub(now).Round(time.Millisecond))
	}
	var retry time.Duration
	switch calls := l.window(now); {
	case len(l.injected) > 0:
		retry, l.injected = l.injected[0], l.injected[1:]
	case l.perMinute > 0 && len(calls) >= l.perMinute:
		retry = calls[len(calls)-l.perMinute].Add(l.span()).Sub(now)
	default:
		return true
	}
	secs := max(1, int(math.Ceil(retry.Seconds())))
	l.retryUntil = now.Add(time.Duration(secs) * time.Second)
	l.limited++
	s.notifyLocked()
	w.Header().Set("Retry-After", fmt.Sprint(secs))
	w.WriteHeader(http.StatusTooManyRequests)
	writeJSON(w, map[string]any{"ok": false, "error": "ratelimited"})
	return false
}

// injectedFailureLocked returns the error code injected for method's next
// call, if any. s.mu must be held.
func (s *Server) injectedFailureLocked(method string) string {
	l := s.limits[method]
	if l == nil || len(l.fail) == 0 {
		return ""
	}
	code := l.fail[0]
	l.fail = l.fail[1:]
	return code
}

// countLocked records a successful call of method at now.
func (s *Server) countLocked(method string, now time.Time) {
	if l := s.limits[method]; l != nil {
		l.calls = append(l.calls, now)
	}
}

// conversationLocked resolves a chat.postMessage/postEphemeral channel
// argument: a user ID means the app's DM with them. It returns the
// channel's ID or a Slack error code.
func (s *Server) conversationLocked(channel string, ephemeral bool) (string, string) {
	switch {
	case channel == "":
		return "", "channel_not_found"
	case strings.HasPrefix(channel, "U") || strings.HasPrefix(channel, "W"):
		if ephemeral {
			return "", "channel_not_found"
		}
		if !s.messagesTab {
			return "", "messages_tab_disabled"
		}
		d := DMChannel(channel)
		s.dms[d] = channel
		return d, ""
	case strings.HasPrefix(channel, "D"):
		if s.dms[channel] == "" {
			return "", "channel_not_found"
		}
		if !s.messagesTab {
			return "", "messages_tab_disabled"
		}
		return channel, ""
	}
	c, ok := s.channels[channel]
	switch {
	case c.Member:
		return channel, ""
	case !ok || !c.Public:
		return "", "channel_not_found"
	case ephemeral || !s.scopes["chat:write.public"]:
		return "", "not_in_channel"
	}
	return channel, ""
}

func (s *Server) chatPost(w http.ResponseWriter, r *http.Request) {
	if !s.authorised(w, r, "chat:write") {
		return
	}
	r.ParseForm()
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	ephemeral := method == "chat.postEphemeral"
	v := formVersion(r, method)
	if err := ValidateMessage(v.Text, v.Blocks); err != nil {
		s.violate("%s: %v", method, err)
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_blocks"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.injectedFailureLocked(method); code != "" {
		writeJSON(w, map[string]any{"ok": false, "error": code})
		return
	}
	channel, errCode := s.conversationLocked(r.Form.Get("channel"), ephemeral)
	if errCode != "" {
		writeJSON(w, map[string]any{"ok": false, "error": errCode})
		return
	}
	if code := s.refusalLocked(method, channel); code != "" {
		writeJSON(w, map[string]any{"ok": false, "error": code})
		return
	}
	now := s.now()
	var perChannel *methodLimit
	if !ephemeral && s.postsPerSecond > 0 {
		perChannel = s.postLimits[channel]
		if perChannel == nil {
			perChannel = &methodLimit{per: time.Second}
			s.postLimits[channel] = perChannel
		}
		perChannel.perMinute = s.postsPerSecond
		if !s.admitOnLocked(w, method+" to "+channel, perChannel, now) {
			return
		}
		perChannel.calls = append(perChannel.calls, now)
	}
	m := &Message{Channel: channel, Via: method}
	if ephemeral {
		m.Ephemeral, m.User = true, r.Form.Get("user")
		v.ResponseType = "ephemeral"
	} else {
		m.User = s.dmUser(channel)
	}
	m = s.addMessageLocked(m, v)
	if s.dropReplyLocked(w, method) {
		return
	}
	if ephemeral {
		writeJSON(w, map[string]any{"ok": true, "message_ts": m.TS})
		return
	}
	writeJSON(w, map[string]any{"ok": true, "channel": channel, "ts": m.TS, "message": map[string]any{"text": v.Text, "ts": m.TS}})
}

// formVersion is the message version a chat.* call's form carries (its
// text and blocks), made by via.
func formVersion(r *http.Request, via string) Version {
	v := Version{Text: r.Form.Get("text"), Blocks: json.RawMessage(r.Form.Get("blocks")), At: time.Now(), Via: via}
	if len(v.Blocks) == 0 {
		v.Blocks = nil
	}
	return v
}

// chatChange serves chat.update and chat.delete: the bot's own
// non-ephemeral messages only, by channel ID and ts, rate-limited.
func (s *Server) chatChange(w http.ResponseWriter, r *http.Request) {
	if !s.authorised(w, r, "chat:write") {
		return
	}
	r.ParseForm()
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	channel, ts := r.Form.Get("channel"), r.Form.Get("ts")
	v := formVersion(r, ViaUpdate)
	if method == "chat.update" {
		if err := ValidateMessage(v.Text, v.Blocks); err != nil {
			s.violate("%s: %v", method, err)
			writeJSON(w, map[string]any{"ok": false, "error": "invalid_blocks"})
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !s.admitLocked(w, method, now) {
		return
	}
	// Slack counts calls, not successes: a call it refuses (message_not_found,
	// msg_too_long, …) spends the workspace's limit too.
	s.countLocked(method, now)
	fail := func(code string) { writeJSON(w, map[string]any{"ok": false, "error": code}) }
	if code := s.injectedFailureLocked(method); code != "" {
		fail(code)
		return
	}
	if code := s.refusalLocked(method, channel); code != "" {
		fail(code)
		return
	}
	m := s.byTSLocked(channel, ts)
	switch {
	case m == nil && strings.HasPrefix(channel, "D") && s.dms[channel] == "", m == nil && !strings.HasPrefix(channel, "D") && !s.knownChannelLocked(channel):
		fail("channel_not_found")
		return
	case m == nil || m.Deleted || m.removed:
		fail("message_not_found")
		return
	case m.Ephemeral || (m.Via != ViaPostMessage):
		// Ephemeral messages, however made, are not the app's to update
		// or delete through the Web API.
		fail("cant_update_message")
		return
	case method == "chat.update" && m.windowClosed:
		fail("edit_window_closed")
		return
	}
	if method == "chat.delete" {
		s.changeMessageLocked(m, Version{At: v.At, Via: ViaDelete})
		if s.dropReplyLocked(w, method) {
			return
		}
		writeJSON(w, map[string]any{"ok": true, "channel": channel, "ts": ts})
		return
	}
	s.changeMessageLocked(m, v)
	if s.dropReplyLocked(w, method) {
		return
	}
	writeJSON(w, map[string]any{"ok": true, "channel": channel, "ts": ts, "text": v.Text})
}

func (s *Server) knownChannelLocked(id string) bool {
	_, ok := s.channels[id]
	return ok
}

// usersInfo serves users.info: who a member is (bot, deactivated, guest,
// which organisation).
func (s *Server) usersInfo(w http.ResponseWriter, r *http.Request) {
	if !s.authorised(w, r, "users:read") {
		return
	}
	r.ParseForm()
	s.mu.Lock()
	u, ok := s.users[r.Form.Get("user")]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, map[string]any{"ok": false, "error": "user_not_found"})
		return
	}
	user := map[string]any{
		"id": u.ID, "team_id": u.TeamID, "name": strings.ToLower(u.Name), "real_name": u.Name,
		"deleted": u.Deleted, "is_bot": u.IsBot, "is_restricted": u.IsRestricted,
		"profile": map[string]any{"display_name": u.Name, "real_name": u.Name},
	}
	if u.EnterpriseID != "" {
		user["enterprise_user"] = map[string]any{"id": u.ID, "enterprise_id": u.EnterpriseID, "teams": u.Teams}
	}
	writeJSON(w, map[string]any{"ok": true, "user": user})
}
