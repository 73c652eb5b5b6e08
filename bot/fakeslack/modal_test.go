package fakeslack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
)

// app is a bare Socket Mode app for the modal tests: it acks every
// envelope with what answer returns for it, and keeps the payloads.
type app struct {
	mu       sync.Mutex
	payloads map[string]map[string]any // by envelope ID
	answer   func(payload map[string]any) any
}

func newApp(t *testing.T, s *Server, answer func(map[string]any) any) *app {
	t.Helper()
	a := &app{payloads: map[string]map[string]any{}, answer: answer}
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/socket", http.Header{"Origin": {"https://api.slack.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	var hello map[string]any
	if err := ws.ReadJSON(&hello); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			var env struct {
				ID      string         `json:"envelope_id"`
				Payload map[string]any `json:"payload"`
			}
			if err := ws.ReadJSON(&env); err != nil {
				return
			}
			a.mu.Lock()
			a.payloads[env.ID] = env.Payload
			answer := a.answer
			a.mu.Unlock()
			var ack any
			if answer != nil {
				ack = answer(env.Payload)
			}
			msg := map[string]any{"envelope_id": env.ID}
			if ack != nil {
				msg["payload"] = ack
			}
			ws.WriteJSON(msg)
		}
	}()
	if !s.WaitConnected(time.Second) {
		t.Fatal("not connected")
	}
	return a
}

func (a *app) setAnswer(f func(map[string]any) any) {
	a.mu.Lock()
	a.answer = f
	a.mu.Unlock()
}

func (a *app) payload(id string) map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.payloads[id]
}

// waitAck waits for envelope id's ack to land.
func waitAck(t *testing.T, s *Server, id string) {
	t.Helper()
	if !s.WaitFor(2*time.Second, func() bool { return !s.Envelope(id).AckedAt.IsZero() }) {
		t.Fatalf("envelope %s not acked", id)
	}
}

// form is a valid modal: a phone input, an instance select, a user picker.
func form(title string) slack.ModalViewRequest {
	phone := slack.NewInputBlock("phone", slack.NewTextBlockObject("plain_text", "Phone", false, false), nil,
		slack.NewPlainTextInputBlockElement(nil, "phone_input"))
	opts := []*slack.OptionBlockObject{
		slack.NewOptionBlockObject("support-eg", slack.NewTextBlockObject("plain_text", "support-eg", false, false), nil),
		slack.NewOptionBlockObject("field-eg", slack.NewTextBlockObject("plain_text", "field-eg", false, false), nil),
	}
	inst := slack.NewInputBlock("instance", slack.NewTextBlockObject("plain_text", "Instance", false, false), nil,
		slack.NewOptionsSelectBlockElement("static_select", nil, "instance_select", opts...))
	who := slack.NewInputBlock("deliver", slack.NewTextBlockObject("plain_text", "Deliver to", false, false), nil,
		slack.NewOptionsSelectBlockElement("users_select", nil, "deliver_user"))
	who.Optional = true
	return slack.ModalViewRequest{
		Type: slack.VTModal, Title: slack.NewTextBlockObject("plain_text", title, false, false),
		Submit: slack.NewTextBlockObject("plain_text", "Get code", false, false),
		Close:  slack.NewTextBlockObject("plain_text", "Cancel", false, false),
		Blocks: slack.Blocks{BlockSet: []slack.Block{inst, phone, who}}, NotifyOnClose: true, CallbackID: "link_form",
	}
}

func apiFor(s *Server) *slack.Client { return slack.New(BotToken, slack.OptionAPIURL(s.APIURL())) }

// command delivers a /link and returns its trigger_id, acked.
func command(t *testing.T, s *Server, user string) string {
	t.Helper()
	env, err := s.SendCommand(Command{User: user, Text: ""})
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, s, env.ID)
	return env.TriggerID
}

func slackErr(err error) string {
	var resp slack.SlackErrorResponse
	if errors.As(err, &resp) {
		return resp.Err
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestViewsOpenTrigger(t *testing.T) {
	for _, tc := range []struct {
		name      string
		prepare   func(s *Server, trigger string) string // returns the trigger_id to use
		wantErr   string
		violation string
	}{
		{"fresh", func(_ *Server, tr string) string { return tr }, "", ""},
		{"unknown", func(*Server, string) string { return "T123" }, "invalid_trigger_id", ""},
		{"used twice", func(s *Server, tr string) string {
			if _, err := apiFor(s).OpenView(tr, form("Link a WhatsApp number")); err != nil {
				panic(err)
			}
			return tr
		}, "trigger_exchanged", "used a second time"},
		{"older than 3 s", func(s *Server, tr string) string { s.ExpireTrigger(tr); return tr }, "expired_trigger_id", "expired_trigger_id after 3s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(nil)
			defer s.Close()
			newApp(t, s, nil)
			tr := tc.prepare(s, command(t, s, "U1"))
			resp, err := apiFor(s).OpenView(tr, form("Link a WhatsApp number"))
			if got := slackErr(err); got != tc.wantErr {
				t.Fatalf("views.open error %q, want %q", got, tc.wantErr)
			}
			v, open := s.Modal("U1")
			if tc.wantErr == "" {
				if !open || v.ID != resp.ID || v.Hash != resp.Hash || v.Title != "Link a WhatsApp number" {
					t.Errorf("modal %+v open=%v; want the view views.open returned (%s)", v, open, resp.ID)
				}
			}
			vs := s.Violations()
			if tc.violation == "" && len(vs) > 0 || tc.violation != "" && (len(vs) != 1 || !strings.Contains(vs[0], tc.violation)) {
				t.Errorf("violations %q, want one with %q", vs, tc.violation)
			}
		})
	}
}

func TestModalLimits(t *testing.T) {
	many := func(n int) []slack.Block {
		var out []slack.Block
		for i := range n {
			out = append(out, slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", "x", false, false), nil, nil, slack.SectionBlockOptionBlockID(fmt.Sprint("b", i))))
		}
		return out
	}
	manyOptions := func(n int) []*slack.OptionBlockObject {
		var out []*slack.OptionBlockObject
		for i := range n {
			out = append(out, slack.NewOptionBlockObject(fmt.Sprint("v", i), slack.NewTextBlockObject("plain_text", fmt.Sprint("o", i), false, false), nil))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		change func(*slack.ModalViewRequest)
		want   string // "" for ok
	}{
		{"ok", func(*slack.ModalViewRequest) {}, ""},
		{"title of 24", func(v *slack.ModalViewRequest) { v.Title.Text = strings.Repeat("t", 24) }, ""},
		{"title of 25", func(v *slack.ModalViewRequest) { v.Title.Text = strings.Repeat("t", 25) }, "title has 25 characters"},
		{"submit of 25", func(v *slack.ModalViewRequest) { v.Submit.Text = strings.Repeat("s", 25) }, "submit has 25"},
		{"100 blocks", func(v *slack.ModalViewRequest) { v.Blocks.BlockSet = append(many(97), v.Blocks.BlockSet...) }, ""},
		{"101 blocks", func(v *slack.ModalViewRequest) { v.Blocks.BlockSet = append(many(98), v.Blocks.BlockSet...) }, "101 blocks (max 100)"},
		{"private_metadata of 3000", func(v *slack.ModalViewRequest) { v.PrivateMetadata = strings.Repeat("m", 3000) }, ""},
		{"private_metadata of 3001", func(v *slack.ModalViewRequest) { v.PrivateMetadata = strings.Repeat("m", 3001) }, "private_metadata has 3001"},
		{"inputs without submit", func(v *slack.ModalViewRequest) { v.Submit = nil }, "needs a submit button"},
		{"label in mrkdwn", func(v *slack.ModalViewRequest) {
			v.Blocks.BlockSet[1].(*slack.InputBlock).Label = slack.NewTextBlockObject("mrkdwn", "Phone", false, false)
		}, "input label must be plain_text"},
		{"101 options", func(v *slack.ModalViewRequest) {
			v.Blocks.BlockSet[0].(*slack.InputBlock).Element.(*slack.SelectBlockElement).Options = manyOptions(101)
		}, "101 options"},
		{"initial option not offered", func(v *slack.ModalViewRequest) {
			v.Blocks.BlockSet[0].(*slack.InputBlock).Element.(*slack.SelectBlockElement).InitialOption = slack.NewOptionBlockObject("gone", slack.NewTextBlockObject("plain_text", "gone", false, false), nil)
		}, "initial_option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(nil)
			defer s.Close()
			newApp(t, s, nil)
			v := form("Link a WhatsApp number")
			tc.change(&v)
			_, err := apiFor(s).OpenView(command(t, s, "U1"), v)
			vs := s.Violations()
			if tc.want == "" {
				if err != nil || len(vs) > 0 {
					t.Fatalf("views.open: %v, violations %q; want ok", err, vs)
				}
				return
			}
			if slackErr(err) != "invalid_arguments" || len(vs) != 1 || !strings.Contains(vs[0], tc.want) {
				t.Errorf("views.open: %v, violations %q; want invalid_arguments and %q", err, vs, tc.want)
			}
			if _, open := s.Modal("U1"); open {
				t.Error("an invalid view was opened")
			}
		})
	}
}

func TestViewsUpdateHash(t *testing.T) {
	s := New(nil)
	defer s.Close()
	newApp(t, s, nil)
	api := apiFor(s)
	opened, err := api.OpenView(command(t, s, "U1"), form("Link a WhatsApp number"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Fill("U1", "phone", Input{Text: "0111 222 3333"}); err != nil {
		t.Fatal(err)
	}
	updated, err := api.UpdateView(form("Link a number"), "", opened.Hash, opened.ID)
	if err != nil {
		t.Fatalf("update with the current hash: %v", err)
	}
	if updated.Hash == opened.Hash {
		t.Error("an update kept the view's hash")
	}
	if _, err := api.UpdateView(form("Stale"), "", opened.Hash, opened.ID); slackErr(err) != "hash_conflict" {
		t.Errorf("update with the old hash: %v, want hash_conflict", err)
	}
	if _, err := api.UpdateView(form("No hash"), "", "", opened.ID); err != nil {
		t.Errorf("update without a hash: %v", err)
	}
	v, _ := s.Modal("U1")
	if want := "Phone: 0111 222 3333"; !strings.Contains(v.Shown(), want) {
		t.Errorf("after updates the modal shows\n%s\nwant the typed %q kept (same block_id and action_id)", v.Shown(), want)
	}
	if got := []string{v.Versions[0].Via, v.Versions[1].Via, v.Versions[2].Via}; !cmp.Equal(got, []string{"views.open", "views.update", "views.update"}) {
		t.Errorf("versions via %v", got)
	}
	if _, err := api.UpdateView(form("Gone"), "", "", "V0NONE"); slackErr(err) != "not_found" {
		t.Errorf("update of an unknown view: %v, want not_found", err)
	}
	if _, err := s.CloseView("U1"); err != nil {
		t.Fatal(err)
	}
	if _, err := api.UpdateView(form("Closed"), "", "", opened.ID); slackErr(err) != "not_found" {
		t.Errorf("update of a closed view: %v, want not_found", err)
	}
}

func TestViewsPushStack(t *testing.T) {
	s := New(nil)
	defer s.Close()
	newApp(t, s, nil)
	api := apiFor(s)
	if _, err := api.OpenView(command(t, s, "U1"), form("Root")); err != nil {
		t.Fatal(err)
	}
	// Triggers come from interactions in the modal (here: submissions
	// answered with nothing would close it, so use clicks on a command).
	for i, want := range []string{"", "", "push_limit_reached"} {
		env, err := s.SendCommand(Command{User: "U1"})
		if err != nil {
			t.Fatal(err)
		}
		waitAck(t, s, env.ID)
		_, err = api.PushView(env.TriggerID, form(fmt.Sprint("Pushed ", i)))
		if got := slackErr(err); got != want {
			t.Errorf("push %d: %q, want %q", i, got, want)
		}
	}
	if got := len(s.Modals("U1")); got != MaxViewStack {
		t.Errorf("stack of %d views, want %d", got, MaxViewStack)
	}
}

func TestViewSubmission(t *testing.T) {
	big := strings.Repeat("x", MaxAckPayload)
	for _, tc := range []struct {
		name      string
		answer    any
		wantOpen  bool
		wantShown string // in the modal's Shown
		violation string
	}{
		{"no answer closes it", nil, false, "", ""},
		{"errors on a field", map[string]any{"response_action": "errors", "errors": map[string]string{"phone": "“0111” is not a valid number"}}, true, "Phone: 0111\n⚠ “0111” is not a valid number", ""},
		{"errors on no input", map[string]any{"response_action": "errors", "errors": map[string]string{"nothing": "x"}}, true, "", "no input block"},
		{"update", map[string]any{"response_action": "update", "view": form("Code window")}, true, "Code window", ""},
		{"update too long a title", map[string]any{"response_action": "update", "view": form("A title far too long for it")}, true, "Link a WhatsApp number", "title has"},
		{"push", map[string]any{"response_action": "push", "view": form("Pushed")}, true, "Pushed", ""},
		{"clear", map[string]any{"response_action": "clear"}, false, "", ""},
		// Dropped: Slack sees a bare ack, which closes the view.
		{"payload of 20 KB", map[string]any{"response_action": "errors", "errors": map[string]string{"phone": big}}, false, "", "Slack drops payloads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(nil)
			defer s.Close()
			a := newApp(t, s, nil)
			if _, err := apiFor(s).OpenView(command(t, s, "U1"), form("Link a WhatsApp number")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Submit("U1"); err == nil || !strings.Contains(err.Error(), "required input") {
				t.Errorf("submitting empty required inputs: %v; want the client to refuse", err)
			}
			s.Fill("U1", "instance", Input{Option: "support-eg"})
			s.Fill("U1", "phone", Input{Text: "0111"})
			a.setAnswer(func(p map[string]any) any {
				if p["type"] == "view_submission" {
					return tc.answer
				}
				return nil
			})
			env, err := s.Submit("U1")
			if err != nil {
				t.Fatal(err)
			}
			waitAck(t, s, env.ID)
			p := a.payload(env.ID)
			view, _ := p["view"].(map[string]any)
			state, _ := json.Marshal(view["state"])
			if !strings.Contains(string(state), `"phone_input":{"type":"plain_text_input","value":"0111"}`) || p["trigger_id"] == "" {
				t.Errorf("view_submission payload state %s, trigger %v", state, p["trigger_id"])
			}
			v, open := s.Modal("U1")
			if open != tc.wantOpen || !strings.Contains(v.Shown(), tc.wantShown) {
				t.Errorf("modal open=%v shows\n%s\nwant open=%v with %q", open, v.Shown(), tc.wantOpen, tc.wantShown)
			}
			vs := s.Violations()
			if tc.violation == "" && len(vs) > 0 || tc.violation != "" && (len(vs) != 1 || !strings.Contains(vs[0], tc.violation)) {
				t.Errorf("violations %q, want %q", vs, tc.violation)
			}
		})
	}
}

func TestBlockSuggestion(t *testing.T) {
	external := func() slack.ModalViewRequest {
		v := form("Link a WhatsApp number")
		sel := slack.NewOptionsSelectBlockElement("external_select", nil, "instance_select")
		v.Blocks.BlockSet[0] = slack.NewInputBlock("instance", slack.NewTextBlockObject("plain_text", "Instance", false, false), nil, sel)
		return v
	}
	options := func(n int) any {
		var out []map[string]any
		for i := range n {
			out = append(out, map[string]any{"text": map[string]any{"type": "plain_text", "text": fmt.Sprint("inst-", i)}, "value": fmt.Sprint("I", i)})
		}
		return map[string]any{"options": out}
	}
	for _, tc := range []struct {
		name      string
		n         int
		violation string
	}{{"100 options", 100, ""}, {"101 options", 101, "101 options"}} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(nil)
			defer s.Close()
			var query any
			newApp(t, s, func(p map[string]any) any {
				if p["type"] == "block_suggestion" {
					query = p["value"]
					return options(tc.n)
				}
				return nil
			})
			if _, err := apiFor(s).OpenView(command(t, s, "U1"), external()); err != nil {
				t.Fatal(err)
			}
			if err := s.Fill("U1", "instance", Input{Option: "I7"}); err == nil {
				t.Error("chose an option no suggestion offered")
			}
			opts, err := s.Suggest("U1", "instance_select", "inst")
			if query != "inst" {
				t.Errorf("block_suggestion value %v, want what was typed", query)
			}
			if tc.violation != "" {
				if vs := s.Violations(); err == nil || len(vs) != 1 || !strings.Contains(vs[0], tc.violation) {
					t.Errorf("Suggest: %v, violations %q; want %q", err, vs, tc.violation)
				}
				return
			}
			if err != nil || len(opts) != tc.n {
				t.Fatalf("Suggest: %d options, %v", len(opts), err)
			}
			if err := s.Fill("U1", "instance", Input{Option: "I7"}); err != nil {
				t.Fatal(err)
			}
			if v, _ := s.Modal("U1"); !strings.Contains(v.Shown(), "Instance: inst-7") {
				t.Errorf("modal shows\n%s", v.Shown())
			}
		})
	}
}

func TestViewClosed(t *testing.T) {
	for _, notify := range []bool{true, false} {
		t.Run(fmt.Sprint("notify_on_close=", notify), func(t *testing.T) {
			s := New(nil)
			defer s.Close()
			a := newApp(t, s, nil)
			v := form("Link a WhatsApp number")
			v.NotifyOnClose = notify
			if _, err := apiFor(s).OpenView(command(t, s, "U1"), v); err != nil {
				t.Fatal(err)
			}
			env, err := s.CloseView("U1")
			if err != nil {
				t.Fatal(err)
			}
			if _, open := s.Modal("U1"); open {
				t.Error("the modal is still open")
			}
			if (env != nil) != notify {
				t.Fatalf("view_closed sent: %v, want %v", env != nil, notify)
			}
			if env != nil {
				waitAck(t, s, env.ID)
				if p := a.payload(env.ID); p["type"] != "view_closed" {
					t.Errorf("payload type %v", p["type"])
				}
			}
		})
	}
}

func TestClickInView(t *testing.T) {
	s := New(nil)
	defer s.Close()
	a := newApp(t, s, func(p map[string]any) any {
		if p["type"] == "block_actions" {
			return map[string]any{"response_action": "clear"} // Slack ignores it
		}
		return nil
	})
	v := form("Code window")
	v.Blocks.BlockSet = append(v.Blocks.BlockSet, slack.NewActionBlock("actions",
		slack.NewButtonBlockElement("cancel", "p1", slack.NewTextBlockObject("plain_text", "Cancel", false, false))))
	opened, err := apiFor(s).OpenView(command(t, s, "U1"), v)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.ClickInView("U1", "cancel")
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, s, env.ID)
	p := a.payload(env.ID)
	container, _ := p["container"].(map[string]any)
	if container["type"] != "view" || container["view_id"] != opened.ID || p["response_url"] != nil || p["trigger_id"] == "" {
		t.Errorf("block_actions payload %v", p)
	}
	if _, open := s.Modal("U1"); !open {
		t.Error("a block_actions ack closed the modal")
	}
	if vs := s.Violations(); len(vs) != 1 || !strings.Contains(vs[0], "Slack ignores it") {
		t.Errorf("violations %q", vs)
	}
}

func TestViewsRateLimit(t *testing.T) {
	s := New(nil)
	defer s.Close()
	newApp(t, s, nil)
	s.SetMethodLimit(ViewsLimit, 2)
	api := apiFor(s)
	opened, err := api.OpenView(command(t, s, "U1"), form("Link a WhatsApp number"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.UpdateView(form("Second"), "", "", opened.ID); err != nil {
		t.Fatal(err)
	}
	// The third views call in the minute, another method: 429.
	_, err = api.OpenView(command(t, s, "U2"), form("Third"))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter <= 0 {
		t.Fatalf("third views call: %v, want 429 with Retry-After", err)
	}
	if got := s.RateLimitedCalls(ViewsLimit); got != 1 {
		t.Errorf("RateLimitedCalls = %d", got)
	}
}
