package fakeslack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
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

// post sends body to a response_url and returns the HTTP status.
func post(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ack acks env with an ephemeral reply, over a raw socket.
func ackWith(t *testing.T, s *Server, ws *websocket.Conn, env *Envelope, reply string) {
	t.Helper()
	if err := ws.WriteJSON(map[string]any{"envelope_id": env.ID, "payload": json.RawMessage(reply)}); err != nil {
		t.Fatal(err)
	}
	// The fake reads acks on the socket's goroutine: wait until it has.
	if !s.WaitFor(time.Second, func() bool { return !s.Envelope(env.ID).AckedAt.IsZero() }) {
		t.Fatal("the ack never arrived")
	}
}

const (
	hi         = `{"text":"hi","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"hi"}}]}`
	hiReplaces = `{"text":"hi","replace_original":true,"blocks":[{"type":"section","text":{"type":"mrkdwn","text":"hi"}}]}`
	withButton = `{"text":"code","replace_original":true,"blocks":[{"type":"actions","block_id":"a","elements":[{"type":"button","action_id":"refresh","value":"p1","text":{"type":"plain_text","text":"Refresh"}}]}]}`
)

// texts lists the latest fallback text of each message.
func texts(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Latest().Text)
	}
	return out
}

func TestResponseURLRules(t *testing.T) {
	s, env := withCommand(t)
	for i := range ResponseURLUses {
		if st := post(t, env.ResponseURL, hiReplaces); st != 200 {
			t.Fatalf("use %d: HTTP %d", i+1, st)
		}
	}
	if st := post(t, env.ResponseURL, hiReplaces); st != 404 {
		t.Errorf("6th use: HTTP %d, want 404", st)
	}
	if v := s.Violations(); len(v) != 1 || !strings.Contains(v[0], "used 6 times") {
		t.Errorf("violations = %q", v)
	}
	// A command's response_url adds a message each time, replace_original
	// or not.
	if th := s.Thread(env.MessageID); len(th) != ResponseURLUses {
		t.Errorf("thread has %d messages, want %d", len(th), ResponseURLUses)
	}
}

// The screen after a slash command: the ack can never change; every post
// to the command's response_url adds an ephemeral message whatever its
// flags; only the command's user sees them; none can be edited.
func TestCommandResponseURLAddsMessages(t *testing.T) {
	s, ws := connected(t)
	env, err := s.SendCommand(Command{User: "U1", Text: "help"})
	if err != nil {
		t.Fatal(err)
	}
	ackWith(t, s, ws, env, `{"response_type":"ephemeral","text":"requesting"}`)
	if !s.WaitFor(time.Second, func() bool { return len(s.Thread(env.MessageID)) == 1 }) {
		t.Fatal("the ack never showed")
	}
	post(t, env.ResponseURL, `{"text":"first","replace_original":true}`)
	post(t, env.ResponseURL, `{"text":"second","replace_original":true}`)
	post(t, env.ResponseURL, `{"delete_original":true}`)
	post(t, env.ResponseURL, `{"text":"third"}`)
	screen := s.Screen("U1", "C0SUPPORT")
	if diff := cmp.Diff([]string{"requesting", "first", "second", "third"}, texts(screen)); diff != "" {
		t.Errorf("U1's screen (-want +got):\n%s", diff)
	}
	for _, m := range screen {
		if !m.Ephemeral || m.Editable || len(m.Versions) != 1 {
			t.Errorf("message %q: ephemeral %v, editable %v, %d versions; want ephemeral, not editable, never changed", m.Latest().Text, m.Ephemeral, m.Editable, len(m.Versions))
		}
	}
	if want := []string{ViaAck, ViaCommandURL, ViaCommandURL, ViaCommandURL}; !cmp.Equal(want, vias(screen)) {
		t.Errorf("made via %v, want %v", vias(screen), want)
	}
	if other := s.Screen("U2", "C0SUPPORT"); len(other) != 0 {
		t.Errorf("U2 sees %d of U1's ephemeral messages", len(other))
	}
}

func vias(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Via)
	}
	return out
}

// A click's response_url replaces the message that held the button (which
// stays editable while the url has uses), deletes it, or adds one.
func TestClickResponseURLReplacesTheClickedMessage(t *testing.T) {
	s, ws := connected(t)
	env, _ := s.SendCommand(Command{User: "U1", Text: "help"})
	ackWith(t, s, ws, env, `{"response_type":"ephemeral","text":"requesting"}`)
	post(t, env.ResponseURL, withButton)
	code := s.Thread(env.MessageID)[1]
	if _, err := s.Click(code.ID, "U2", "refresh"); err == nil {
		t.Error("U2 clicked a button in U1's ephemeral message")
	}
	click, err := s.Click(code.ID, "U1", "refresh")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Message(code.ID).Editable {
		t.Error("a clicked message is not editable through the click's response_url")
	}
	post(t, click.ResponseURL, strings.Replace(withButton, `"text":"code"`, `"text":"replaced"`, 1))
	post(t, click.ResponseURL, `{"text":"added"}`)
	if diff := cmp.Diff([]string{"requesting", "replaced", "added"}, texts(s.Screen("U1", "C0SUPPORT"))); diff != "" {
		t.Errorf("screen (-want +got):\n%s", diff)
	}
	for range ResponseURLUses - 2 {
		post(t, click.ResponseURL, withButton)
	}
	if s.Message(code.ID).Editable {
		t.Error("still editable with every use of its click's url spent")
	}
	click2, err := s.Click(code.ID, "U1", "refresh")
	if err != nil {
		t.Fatal(err)
	}
	if m := s.Message(code.ID); !m.Editable {
		t.Error("a second click did not make it editable again")
	}
	// A click on a message without the button fails.
	if _, err := s.Click(code.ID, "U1", "new_code"); err == nil {
		t.Error("clicked a button the message does not show")
	}
	post(t, click2.ResponseURL, `{"delete_original":true}`)
	if diff := cmp.Diff([]string{"requesting", "added"}, texts(s.Screen("U1", "C0SUPPORT"))); diff != "" {
		t.Errorf("after delete_original (-want +got):\n%s", diff)
	}
}

// The ack of a slash command can never be changed, not even through a
// click on a button it shows.
func TestAckCannotBeReplaced(t *testing.T) {
	s, ws := connected(t)
	var got []string
	s.onViolation = func(v string) { got = append(got, v) }
	env, _ := s.SendCommand(Command{User: "U1", Text: "help"})
	ackWith(t, s, ws, env, `{"response_type":"ephemeral","text":"ack","blocks":[{"type":"actions","block_id":"a","elements":[{"type":"button","action_id":"go","value":"x","text":{"type":"plain_text","text":"Go"}}]}]}`)
	if !s.WaitFor(time.Second, func() bool { return len(s.Thread(env.MessageID)) == 1 }) {
		t.Fatal("no ack")
	}
	click, err := s.Click(env.MessageID, "U1", "go")
	if err != nil {
		t.Fatal(err)
	}
	post(t, click.ResponseURL, `{"text":"changed","replace_original":true}`)
	if m := s.Message(env.MessageID); len(m.Versions) != 1 || m.Editable {
		t.Errorf("the ack has %d versions, editable %v", len(m.Versions), m.Editable)
	}
	if len(got) != 1 || !strings.Contains(got[0], "can never be changed") {
		t.Errorf("violations = %q", got)
	}
}

// connected starts a fake with a raw client connected.
func connected(t *testing.T) (*Server, *websocket.Conn) {
	t.Helper()
	s := New(func(v string) { t.Errorf("%s", v) })
	t.Cleanup(s.Close)
	ws := dial(t, s)
	if !s.WaitConnected(time.Second) {
		t.Fatal("not connected")
	}
	return s, ws
}

// client is a slack-go client pointed at s, as the bot makes it.
func client(s *Server) *slack.Client {
	return slack.New(BotToken, slack.OptionAPIURL(s.APIURL()))
}

func msg(text string) slack.MsgOption { return slack.MsgOptionText(text, false) }

func TestDirectMessages(t *testing.T) {
	s := New(func(v string) { t.Errorf("%s", v) })
	defer s.Close()
	s.SetPostsPerSecond(0) // several posts to one channel at one instant (TestPostLimit tests the limit)
	api := client(s)
	ctx := t.Context()
	if _, _, err := api.PostMessageContext(ctx, "U1", msg("code")); err == nil || err.Error() != "messages_tab_disabled" {
		t.Errorf("DM with the Messages tab off: err = %v, want messages_tab_disabled", err)
	}
	s.SetMessagesTab(true)
	channel, ts, err := api.PostMessageContext(ctx, "U1", msg("code"))
	if err != nil || channel != DMChannel("U1") || ts == "" {
		t.Fatalf("DM: channel %q ts %q err %v; want %s and a ts", channel, ts, err, DMChannel("U1"))
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "U1", ts, msg("x")); err == nil {
		t.Error("chat.update by user ID worked; Slack wants the D… channel")
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, channel, ts, msg("countdown")); err != nil {
		t.Fatalf("chat.update: %v", err)
	}
	dm := s.DMScreen("U1")
	if len(dm) != 1 || dm[0].Latest().Text != "countdown" || !dm[0].Editable || dm[0].Ephemeral || dm[0].Latest().Via != ViaUpdate {
		t.Errorf("U1's DM: %+v", dm)
	}
	if len(s.DMScreen("U2")) != 0 || len(s.Screen("U2", channel)) != 0 {
		t.Error("U2 sees U1's DM")
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, channel, "1.2", msg("x")); err == nil || err.Error() != "message_not_found" {
		t.Errorf("update of an unknown ts: %v, want message_not_found", err)
	}
	s.FailNextCall("chat.update", "message_not_found")
	if _, _, _, err := api.UpdateMessageContext(ctx, channel, ts, msg("x")); err == nil || err.Error() != "message_not_found" {
		t.Errorf("injected failure: %v", err)
	}
	s.CloseEditWindow(channel, ts)
	if _, _, _, err := api.UpdateMessageContext(ctx, channel, ts, msg("x")); err == nil || err.Error() != "edit_window_closed" {
		t.Errorf("update after the edit window closed: %v, want edit_window_closed", err)
	}
	if s.DMScreen("U1")[0].Editable {
		t.Error("editable after its edit window closed")
	}
	_, ts2, _ := api.PostMessageContext(ctx, channel, msg("second"))
	if _, _, err := api.DeleteMessageContext(ctx, channel, ts2); err != nil {
		t.Fatalf("chat.delete: %v", err)
	}
	if n := len(s.DMScreen("U1")); n != 1 {
		t.Errorf("%d messages in the DM after deleting one of two", n)
	}
	s.RemoveMessage(channel, ts)
	if _, _, _, err := api.UpdateMessageContext(ctx, channel, ts, msg("x")); err == nil || err.Error() != "message_not_found" {
		t.Errorf("update of a removed message: %v, want message_not_found", err)
	}
}

// chat.update and chat.delete work only on the bot's own non-ephemeral
// messages: not on ephemeral ones, however they were made.
func TestEphemeralMessagesCannotBeUpdated(t *testing.T) {
	s, ws := connected(t)
	s.SetChannel(Channel{ID: "C0SUPPORT", Public: true, Member: true})
	env, _ := s.SendCommand(Command{User: "U1", Text: "help"})
	ackWith(t, s, ws, env, `{"response_type":"ephemeral","text":"ack"}`)
	post(t, env.ResponseURL, hi)
	api := client(s)
	ts, err := api.PostEphemeralContext(t.Context(), "C0SUPPORT", "U1", msg("eph"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.WaitFor(time.Second, func() bool { return len(s.Screen("U1", "C0SUPPORT")) == 3 }) {
		t.Fatalf("screen %v", texts(s.Screen("U1", "C0SUPPORT")))
	}
	for _, m := range s.Screen("U1", "C0SUPPORT") {
		if _, _, _, err := api.UpdateMessageContext(t.Context(), "C0SUPPORT", m.TS, msg("x")); err == nil || err.Error() != "cant_update_message" {
			t.Errorf("chat.update of %s message: %v, want cant_update_message", m.Via, err)
		}
		if _, _, err := api.DeleteMessageContext(t.Context(), "C0SUPPORT", m.TS); err == nil || err.Error() != "cant_update_message" {
			t.Errorf("chat.delete of %s message: %v, want cant_update_message", m.Via, err)
		}
	}
	_ = ts
}

func TestPostingInChannels(t *testing.T) {
	s := New(func(v string) { t.Errorf("%s", v) })
	defer s.Close()
	s.SetChannel(Channel{ID: "CPUBLIC", Public: true})
	s.SetChannel(Channel{ID: "GPRIVATE"})
	s.SetChannel(Channel{ID: "CJOINED", Public: true, Member: true})
	api := client(s)
	try := func(channel string) string {
		_, _, err := api.PostMessageContext(t.Context(), channel, msg("card"))
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	got := []string{try("CPUBLIC"), try("GPRIVATE"), try("CJOINED"), try("CNOSUCH")}
	if diff := cmp.Diff([]string{"not_in_channel", "channel_not_found", "ok", "channel_not_found"}, got); diff != "" {
		t.Errorf("without chat:write.public (-want +got):\n%s", diff)
	}
	s.SetScopes("commands", "chat:write", "chat:write.public")
	got = []string{try("CPUBLIC"), try("GPRIVATE")}
	if diff := cmp.Diff([]string{"ok", "channel_not_found"}, got); diff != "" {
		t.Errorf("with chat:write.public (-want +got):\n%s", diff)
	}
	// Everyone in the channel sees a channel message.
	if n := len(s.Screen("U7", "CPUBLIC")); n != 1 {
		t.Errorf("U7 sees %d messages in CPUBLIC, want 1", n)
	}
}

// A pairing code anywhere a channel can see it, or in any fallback text,
// fails the test.
func TestCodeInPublicFails(t *testing.T) {
	var got []string
	s := New(func(v string) { got = append(got, v) })
	defer s.Close()
	s.SetPostsPerSecond(0) // several posts to one channel at one instant (TestPostLimit tests the limit)
	s.SetChannel(Channel{ID: "CJOINED", Public: true, Member: true})
	s.SetMessagesTab(true)
	api := client(s)
	card := slack.MsgOptionBlocks(slack.NewHeaderBlock(slack.NewTextBlockObject("plain_text", "7KQ2-M9XD", false, false)))
	api.PostMessageContext(t.Context(), "U1", msg("your code"), card) // a DM: fine
	if len(got) != 0 {
		t.Errorf("a code in a DM: %q", got)
	}
	api.PostMessageContext(t.Context(), "CJOINED", msg("card"), card)
	api.PostMessageContext(t.Context(), "U1", msg("code 7KQ2-M9XD"))
	if len(got) != 2 || !strings.Contains(got[0], "to everyone in it") || !strings.Contains(got[1], "fallback text") {
		t.Errorf("violations = %q", got)
	}
}

// A status card (a channel message) may show the masked phone and Slack's
// markup (a date token's Unix time, user IDs), never the code or the whole
// number: neither in its first post nor in an edit.
func TestCardChecks(t *testing.T) {
	var got []string
	s := New(func(v string) { got = append(got, v) })
	defer s.Close()
	s.SetPostsPerSecond(0) // several posts to one channel at one instant (TestPostLimit tests the limit)
	s.SetChannel(Channel{ID: "CJOINED", Public: true, Member: true})
	s.SetMessagesTab(true)
	api := client(s)
	section := func(text string) slack.MsgOption {
		return slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", text, false, false), nil, nil))
	}
	fine := "📱 support-eg (INST00000001) · +20 11 ••• 333 · <@U0123456789> · expires at <!date^1764080000^{time_secs}|14:13:20 UTC> · code 1 of 3"
	channel, ts, err := api.PostMessageContext(t.Context(), "CJOINED", msg("card"), section(fine))
	if err != nil || len(got) != 0 {
		t.Fatalf("a masked card: %v, violations %q", err, got)
	}
	for _, bad := range []string{
		"+20 11 12223333 on support-eg", "201112223333", "(0111) 222-3333", "+1 415.555.2671", "tel:+201112223333", "code 7KQ2-M9XD",
	} {
		got = nil
		api.UpdateMessageContext(t.Context(), channel, ts, msg("card"), section(bad))
		api.PostMessageContext(t.Context(), "CJOINED", msg("card"), section(bad))
		if len(got) != 2 {
			t.Errorf("a card showing %q: violations %q, want one for the edit and one for the post", bad, got)
		}
	}
	got = nil
	api.PostMessageContext(t.Context(), "U1", msg("code"), section("7KQ2-M9XD for +20 11 12223333")) // a DM: fine
	if len(got) != 0 {
		t.Errorf("a DM: %q", got)
	}
}

// chat.update is rate-limited per workspace: past the limit Slack answers
// 429 with Retry-After, and a call before it runs out breaks the rules.
func TestChatUpdateRateLimit(t *testing.T) {
	var got []string
	s := New(func(v string) { got = append(got, v) })
	defer s.Close()
	now := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	s.SetMessagesTab(true)
	s.SetMethodLimit("chat.update", 3)
	api := client(s)
	channel, ts, _ := api.PostMessageContext(t.Context(), "U1", msg("code"))
	update := func() error {
		_, _, _, err := api.UpdateMessageContext(t.Context(), channel, ts, msg("x"))
		return err
	}
	for i := range 3 {
		if err := update(); err != nil {
			t.Fatalf("update %d: %v", i+1, err)
		}
		now = now.Add(10 * time.Second)
	}
	var rl *slack.RateLimitedError
	if err := update(); !errors.As(err, &rl) || rl.RetryAfter != 30*time.Second {
		t.Fatalf("4th update in a minute: %v, want 429 with Retry-After 30s (the first leaves the minute then)", err)
	}
	if s.RateLimitedCalls("chat.update") != 1 || len(got) != 0 {
		t.Errorf("429s %d, violations %q", s.RateLimitedCalls("chat.update"), got)
	}
	now = now.Add(29 * time.Second)
	update() // too early: a broken rule
	if len(got) != 1 || !strings.Contains(got[0], "before the Retry-After") {
		t.Errorf("violations = %q", got)
	}
	now = now.Add(2 * time.Second)
	got = nil
	if err := update(); err != nil || len(got) != 0 {
		t.Errorf("update after Retry-After: %v, violations %q", err, got)
	}
	s.RateLimitNextCall("chat.update", 5*time.Second)
	if err := update(); !errors.As(err, &rl) || rl.RetryAfter != 5*time.Second {
		t.Errorf("injected 429: %v", err)
	}
}

// Slack counts calls, not successes: chat.update calls it refuses spend
// the workspace's limit as well.
func TestRefusedChatUpdatesCountTowardTheLimit(t *testing.T) {
	s := New(func(v string) { t.Errorf("%s", v) })
	defer s.Close()
	now := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	s.SetMessagesTab(true)
	s.SetMethodLimit("chat.update", 2)
	api := client(s)
	channel, ts, _ := api.PostMessageContext(t.Context(), "U1", msg("code"))
	s.Refuse("chat.update", channel, "msg_too_long")
	for range 2 {
		if _, _, _, err := api.UpdateMessageContext(t.Context(), channel, ts, msg("x")); err == nil || !strings.Contains(err.Error(), "msg_too_long") {
			t.Fatalf("a refused update: %v", err)
		}
	}
	var rl *slack.RateLimitedError
	if _, _, _, err := api.UpdateMessageContext(t.Context(), channel, ts, msg("x")); !errors.As(err, &rl) {
		t.Errorf("a 3rd update in a minute after two refused: %v, want 429", err)
	}
}

func TestUsersInfo(t *testing.T) {
	s := New(nil)
	defer s.Close()
	s.SetUser(User{ID: "UBOT", Name: "helper", IsBot: true})
	s.SetUser(User{ID: "UGONE", Name: "gone", Deleted: true})
	s.SetUser(User{ID: "UEXT", Name: "partner", TeamID: "TOTHER"})
	api := client(s)
	for id, check := range map[string]func(*slack.User) bool{
		"UBOT":  func(u *slack.User) bool { return u.IsBot && u.TeamID == TeamID },
		"UGONE": func(u *slack.User) bool { return u.Deleted },
		"UEXT":  func(u *slack.User) bool { return u.TeamID == "TOTHER" },
	} {
		u, err := api.GetUserInfoContext(t.Context(), id)
		if err != nil || !check(u) {
			t.Errorf("users.info %s = %+v, %v", id, u, err)
		}
	}
	if _, err := api.GetUserInfoContext(t.Context(), "UNOBODY"); err == nil || err.Error() != "user_not_found" {
		t.Errorf("unknown user: %v", err)
	}
}

// A Web API method called without the scope it needs answers
// missing_scope: the scopes are manifest.yml's (the end-to-end harness
// gives the fake those), so a scope the bot uses but the manifest lacks
// fails a test.
func TestMissingScope(t *testing.T) {
	s := New(func(v string) { t.Errorf("%s", v) })
	defer s.Close()
	s.SetUser(User{ID: "U2", Name: "agent"})
	s.SetUserGroup("S1", "U1")
	s.SetChannel(Channel{ID: "CJOINED", Public: true, Member: true})
	api := client(s)
	calls := func() []string {
		var out []string
		_, err := api.GetUserInfoContext(t.Context(), "U2")
		out = append(out, fmt.Sprint(err))
		_, err = api.GetUserGroupMembersContext(t.Context(), "S1")
		out = append(out, fmt.Sprint(err))
		_, _, err = api.PostMessageContext(t.Context(), "CJOINED", msg("card"))
		out = append(out, fmt.Sprint(err))
		return out
	}
	if diff := cmp.Diff([]string{"<nil>", "<nil>", "<nil>"}, calls()); diff != "" {
		t.Errorf("with the default scopes (-want +got):\n%s", diff)
	}
	s.SetScopes("commands")
	if diff := cmp.Diff([]string{"missing_scope", "missing_scope", "missing_scope"}, calls()); diff != "" {
		t.Errorf("with commands only (-want +got):\n%s", diff)
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
	if n := len(s.Thread(env.MessageID)); n != 0 {
		t.Errorf("%d messages after a 500, want none", n)
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
	if th := s.Thread(env.MessageID); s.ResponseURLUses(env.ResponseURL) != 1 || len(th) != 1 || th[0].Latest().Text != "x" {
		t.Errorf("the slow post did not take effect: %d uses, screen %v", s.ResponseURLUses(env.ResponseURL), texts(th))
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
	if s.ResponseURLUses(env.ResponseURL) != 0 || len(s.Thread(env.MessageID)) != 0 {
		t.Error("a held post took effect")
	}
	release()
	if st, th := <-done, s.Thread(env.MessageID); st != 200 || len(th) != 1 || th[0].Latest().Text != "x" {
		t.Errorf("after release: HTTP %d, screen %v", st, texts(th))
	}
}

// A dropped post never reaches Slack: a network error, nothing changed.
func TestDropNextResponse(t *testing.T) {
	s, env := withCommand(t)
	s.DropNextResponse()
	if _, err := http.Post(env.ResponseURL, "application/json", strings.NewReader(`{"text":"x","replace_original":true}`)); err == nil {
		t.Error("a dropped post got an answer")
	}
	if s.ResponseURLUses(env.ResponseURL) != 0 || len(s.Thread(env.MessageID)) != 0 {
		t.Error("a dropped post took effect")
	}
}

// chat.postMessage posts about one message a second to a channel: past
// that the fake answers 429 with Retry-After, other channels unaffected,
// and a post before the Retry-After ran out is a violation.
func TestPostLimit(t *testing.T) {
	var got []string
	s := New(func(v string) { got = append(got, v) })
	defer s.Close()
	now := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	s.SetMessagesTab(true)
	s.SetChannel(Channel{ID: "CJOINED", Public: true, Member: true})
	api := client(s)
	if _, _, err := api.PostMessageContext(t.Context(), "CJOINED", msg("one")); err != nil {
		t.Fatal(err)
	}
	_, _, err := api.PostMessageContext(t.Context(), "CJOINED", msg("two"))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != time.Second {
		t.Errorf("a second post in the same second: %v, want 429 with Retry-After 1 s", err)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "U1", msg("dm")); err != nil {
		t.Errorf("a post to another channel: %v", err)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "CJOINED", msg("too soon")); err == nil || len(got) != 1 {
		t.Errorf("a post before Retry-After ran out: %v, violations %q", err, got)
	}
	now = now.Add(time.Second)
	if _, _, err := api.PostMessageContext(t.Context(), "CJOINED", msg("three")); err != nil {
		t.Errorf("a post a second later: %v", err)
	}
	if n := len(s.Screen("U9", "CJOINED")); n != 2 {
		t.Errorf("%d messages in the channel, want 2", n)
	}
}

// DropNextReply: the call is done, its answer lost.
func TestDropNextReply(t *testing.T) {
	s := New(func(v string) { t.Errorf("%s", v) })
	defer s.Close()
	s.SetMessagesTab(true)
	api := client(s)
	s.DropNextReply("chat.postMessage")
	if _, _, err := api.PostMessageContext(t.Context(), "U1", msg("lost")); err == nil {
		t.Error("a dropped reply answered")
	}
	if dm := s.DMScreen("U1"); len(dm) != 1 || dm[0].Latest().Text != "lost" {
		t.Errorf("U1's DM: %+v, want the message posted", dm)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "U2", msg("kept")); err != nil {
		t.Errorf("the next post: %v", err)
	}
}
