package fakeslack

// Modals (issue 10), as strictly as Slack documents them:
//
//   - views.open takes a trigger_id (from a slash command, a click, a view
//     submission) once, within 3 seconds of Slack sending it:
//     expired_trigger_id, trigger_exchanged
//     (https://api.slack.com/methods/views.open, "Handling trigger_ids").
//   - views.update replaces a view by view_id; with a hash it fails with
//     hash_conflict unless the hash is the view's current one (each open,
//     update and submission answer gives the view a new hash), and
//     not_found for a view that is closed or unknown
//     (https://api.slack.com/methods/views.update). Input a person typed is
//     kept across an update when the block_id and action_id stay.
//   - views.push adds a view to the open modal's stack, at most 3 deep
//     (push_limit_reached; https://api.slack.com/methods/views.push).
//   - views.open, views.update and views.push are Tier 4; the fake makes them
//     share one per-workspace limit (ViewsLimit), 429 with Retry-After past it.
//   - A modal's title and its submit and close buttons have at most 24
//     characters, it has at most 100 blocks, private_metadata at most 3,000
//     characters and callback_id at most 255; a view with input blocks needs
//     a submit button; an input block has a plain_text label and one
//     element (https://api.slack.com/reference/surfaces/views,
//     /reference/block-kit/blocks#input).
//   - view_submission and block_suggestion are answered in the ack payload
//     over Socket Mode (response_action errors, update, push, clear; or
//     options), a payload under 20 KB; errors are keyed by input block_id
//     (https://api.slack.com/surfaces/modals#updating_response). A
//     block_actions ack carries nothing.
//   - Closing a view sends view_closed only when it was opened with
//     notify_on_close.
//
// The fake records each person's open modal (Modal, Modals) and every
// version each view showed (View.Versions), so tests assert the screen.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Modal rules the fake enforces.
const (
	TriggerLifetime    = 3 * time.Second
	MaxModalTitle      = 24
	MaxModalButton     = 24 // submit and close
	MaxModalBlocks     = 100
	MaxPrivateMetadata = 3000
	MaxCallbackID      = 255
	MaxViewStack       = 3
	MaxAckPayload      = 20 * 1024 // an ack payload this size or larger is dropped
	MaxOptions         = 100       // a static select's options, a block_suggestion's answer
	MaxOptionText      = 75
	MaxOptionValue     = 150
	MaxInputLabel      = 2000
	MaxInputHint       = 2000
	MaxPlaceholder     = 150
)

// ViewsLimit is the key of the per-workspace limit views.open, views.update
// and views.push share (SetMethodLimit, RateLimitNextCall, Calls); Slack's
// Tier 4 ("100+ per minute") taken at its floor.
const (
	ViewsLimit            = "views"
	DefaultViewsPerMinute = 100
)

type trigger struct {
	issued time.Time
	user   string
	used   bool
}

// newTriggerLocked hands out a trigger_id for user. s.mu must be held.
func (s *Server) newTriggerLocked(user string) string {
	id := newID("T")
	s.triggers[id] = &trigger{issued: time.Now(), user: user}
	return id
}

// NewTrigger hands out a trigger_id for user, as an interaction would,
// for tests that drive the bot without a socket.
func (s *Server) NewTrigger(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newTriggerLocked(user)
}

// ExpireTrigger ages trigger id past TriggerLifetime, as if the bot had
// taken longer than 3 s to use it.
func (s *Server) ExpireTrigger(id string) {
	s.mu.Lock()
	if t := s.triggers[id]; t != nil {
		t.issued = time.Now().Add(-TriggerLifetime - time.Second)
	}
	s.mu.Unlock()
}

// Option is one option of a select.
type Option struct {
	Text  string
	Value string
}

// Input is what a person enters in an input block (Fill): text typed in a
// plain_text_input, an option's value chosen in a static or external
// select, or a user picked in a users_select.
type Input struct {
	Text   string
	Option string
	User   string
}

// ViewVersion is one state of a modal view as its user saw it.
type ViewVersion struct {
	Title  string
	Blocks json.RawMessage
	Hash   string
	Via    string // views.open, views.update, views.push, response_action:update, response_action:push
	At     time.Time
	Seq    int // orders versions with messages' (Version.Seq)
}

// View is a modal view as its user sees it.
type View struct {
	ID              string
	User            string
	Title           string
	Submit, Close   string
	Blocks          json.RawMessage
	Hash            string
	CallbackID      string
	PrivateMetadata string
	NotifyOnClose   bool
	// Errors are the response_action errors shown under input blocks, by
	// block_id, until the next submission or update.
	Errors map[string]string
	// Values is what the user entered, by block_id and action_id, in the
	// shape of a view's state.values.
	Values   map[string]map[string]json.RawMessage
	Versions []ViewVersion
	Closed   bool
	RootID   string
}

func (v *View) copy() View {
	c := *v
	c.Versions = append([]ViewVersion(nil), v.Versions...)
	c.Errors = map[string]string{}
	for k, e := range v.Errors {
		c.Errors[k] = e
	}
	c.Values = map[string]map[string]json.RawMessage{}
	for b, m := range v.Values {
		c.Values[b] = map[string]json.RawMessage{}
		for a, raw := range m {
			c.Values[b][a] = raw
		}
	}
	return c
}

// Shown is everything the view shows, markup kept: its title, the text of
// every block (inputs as "label: value", with their error as "⚠ …"), and
// its buttons in brackets.
func (v View) Shown() string {
	lines := []string{v.Title}
	var list []map[string]any
	json.Unmarshal(v.Blocks, &list)
	for _, b := range list {
		raw, _ := json.Marshal([]any{b})
		if b["type"] == "input" {
			id, _ := b["block_id"].(string)
			label := textOf(b["label"])
			el, _ := b["element"].(map[string]any)
			action, _ := el["action_id"].(string)
			lines = append(lines, label+": "+v.valueText(id, action))
			if h := textOf(b["hint"]); h != "" {
				lines = append(lines, h)
			}
			if e := v.Errors[id]; e != "" {
				lines = append(lines, "⚠ "+e)
			}
			continue
		}
		lines = append(lines, blockTexts(raw)...)
		if acc, ok := b["accessory"].(map[string]any); ok && acc["type"] == "button" {
			lines = append(lines, "[ "+textOf(acc["text"])+" ]")
		}
	}
	if v.Submit != "" {
		lines = append(lines, "[ "+v.Submit+" ]")
	}
	if v.Close != "" {
		lines = append(lines, "[ "+v.Close+" ]")
	}
	return strings.Join(lines, "\n")
}

// valueText is what an input shows: text typed, an option chosen, a user.
func (v View) valueText(blockID, actionID string) string {
	var st struct {
		Value          string `json:"value"`
		SelectedUser   string `json:"selected_user"`
		SelectedOption *struct {
			Text struct {
				Text string `json:"text"`
			} `json:"text"`
		} `json:"selected_option"`
	}
	json.Unmarshal(v.Values[blockID][actionID], &st)
	switch {
	case st.SelectedOption != nil:
		return st.SelectedOption.Text.Text
	case st.SelectedUser != "":
		return "<@" + st.SelectedUser + ">"
	}
	return st.Value
}

func textOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["text"].(string)
	return s
}

// Modal is the view user's open modal shows now (the top of its stack),
// and whether they have one open.
func (s *Server) Modal(user string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stacks[user]
	if len(st) == 0 {
		return View{}, false
	}
	return s.views[st[len(st)-1]].copy(), true
}

// Modals is user's open modal's stack of views, root first.
func (s *Server) Modals(user string) []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []View
	for _, id := range s.stacks[user] {
		out = append(out, s.views[id].copy())
	}
	return out
}

// ViewByID returns view id as it stands (closed ones too).
func (s *Server) ViewByID(id string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.views[id]
	if v == nil {
		return View{}, false
	}
	return v.copy(), true
}

// AllViews lists every view ever opened, in order.
func (s *Server) AllViews() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]View, 0, len(s.viewOrder))
	for _, id := range s.viewOrder {
		out = append(out, s.views[id].copy())
	}
	return out
}

// viewRequest is a view as the bot sends it.
type viewRequest struct {
	Type            string          `json:"type"`
	Title           *textObj        `json:"title"`
	Submit          *textObj        `json:"submit"`
	Close           *textObj        `json:"close"`
	Blocks          json.RawMessage `json:"blocks"`
	PrivateMetadata string          `json:"private_metadata"`
	CallbackID      string          `json:"callback_id"`
	ExternalID      string          `json:"external_id"`
	NotifyOnClose   bool            `json:"notify_on_close"`
	ClearOnClose    bool            `json:"clear_on_close"`
}

// ValidateModal checks a modal view the way views.open, views.update,
// views.push and response_action update/push do.
func ValidateModal(raw json.RawMessage) error {
	_, err := validateModal(raw)
	return err
}

func validateModal(raw json.RawMessage) (viewRequest, error) {
	var v viewRequest
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("view: %v", err)
	}
	if v.Type != "modal" {
		return v, fmt.Errorf("view type %q (want modal)", v.Type)
	}
	if v.Title == nil || v.Title.Type != "plain_text" {
		return v, fmt.Errorf("title must be plain_text")
	}
	if n := utf8.RuneCountInString(v.Title.Text); n == 0 || n > MaxModalTitle {
		return v, fmt.Errorf("title has %d characters (1..%d)", n, MaxModalTitle)
	}
	for name, b := range map[string]*textObj{"submit": v.Submit, "close": v.Close} {
		if b == nil {
			continue
		}
		if b.Type != "plain_text" {
			return v, fmt.Errorf("%s must be plain_text", name)
		}
		if n := utf8.RuneCountInString(b.Text); n == 0 || n > MaxModalButton {
			return v, fmt.Errorf("%s has %d characters (1..%d)", name, n, MaxModalButton)
		}
	}
	if n := utf8.RuneCountInString(v.PrivateMetadata); n > MaxPrivateMetadata {
		return v, fmt.Errorf("private_metadata has %d characters (max %d)", n, MaxPrivateMetadata)
	}
	if len(v.CallbackID) > MaxCallbackID || len(v.ExternalID) > MaxCallbackID {
		return v, fmt.Errorf("callback_id or external_id longer than %d", MaxCallbackID)
	}
	inputs, err := validateBlocks(v.Blocks, MaxModalBlocks, true)
	if err != nil {
		return v, err
	}
	if inputs > 0 && v.Submit == nil {
		return v, fmt.Errorf("a view with input blocks needs a submit button")
	}
	return v, nil
}

// validateInput checks an input block; it returns its element's action_id.
func validateInput(raw json.RawMessage) (string, error) {
	var in struct {
		Label    *textObj        `json:"label"`
		Hint     *textObj        `json:"hint"`
		Element  json.RawMessage `json:"element"`
		Optional bool            `json:"optional"`
	}
	json.Unmarshal(raw, &in)
	if in.Label == nil || in.Label.Type != "plain_text" {
		return "", fmt.Errorf("input label must be plain_text")
	}
	if n := utf8.RuneCountInString(in.Label.Text); n == 0 || n > MaxInputLabel {
		return "", fmt.Errorf("input label has %d characters (1..%d)", n, MaxInputLabel)
	}
	if in.Hint != nil {
		if in.Hint.Type != "plain_text" {
			return "", fmt.Errorf("input hint must be plain_text")
		}
		if n := utf8.RuneCountInString(in.Hint.Text); n == 0 || n > MaxInputHint {
			return "", fmt.Errorf("input hint has %d characters (1..%d)", n, MaxInputHint)
		}
	}
	if len(in.Element) == 0 {
		return "", fmt.Errorf("input block without an element")
	}
	var el struct {
		Type          string          `json:"type"`
		ActionID      string          `json:"action_id"`
		Placeholder   *textObj        `json:"placeholder"`
		Options       []optionObj     `json:"options"`
		OptionGroups  json.RawMessage `json:"option_groups"`
		InitialOption *optionObj      `json:"initial_option"`
	}
	if err := json.Unmarshal(in.Element, &el); err != nil {
		return "", fmt.Errorf("input element: %v", err)
	}
	if el.ActionID == "" || len(el.ActionID) > MaxActionID {
		return "", fmt.Errorf("input element needs an action_id of at most %d characters", MaxActionID)
	}
	if el.Placeholder != nil && (el.Placeholder.Type != "plain_text" || utf8.RuneCountInString(el.Placeholder.Text) > MaxPlaceholder) {
		return "", fmt.Errorf("placeholder must be plain_text of at most %d characters", MaxPlaceholder)
	}
	switch el.Type {
	case "plain_text_input", "users_select", "external_select":
	case "static_select":
		if len(el.Options) == 0 || len(el.Options) > MaxOptions {
			return "", fmt.Errorf("static_select has %d options (1..%d)", len(el.Options), MaxOptions)
		}
		found := el.InitialOption == nil
		for _, o := range el.Options {
			if err := o.check(); err != nil {
				return "", err
			}
			found = found || el.InitialOption.Value == o.Value
		}
		if !found {
			return "", fmt.Errorf("initial_option %q is not one of the options", el.InitialOption.Value)
		}
	default:
		return "", fmt.Errorf("unsupported input element %q", el.Type)
	}
	return el.ActionID, nil
}

type optionObj struct {
	Text  textObj `json:"text"`
	Value string  `json:"value"`
}

func (o optionObj) check() error {
	if o.Text.Type != "plain_text" {
		return fmt.Errorf("option text must be plain_text")
	}
	if n := utf8.RuneCountInString(o.Text.Text); n == 0 || n > MaxOptionText {
		return fmt.Errorf("option text has %d characters (1..%d)", n, MaxOptionText)
	}
	if n := len(o.Value); n == 0 || n > MaxOptionValue {
		return fmt.Errorf("option value has %d characters (1..%d)", n, MaxOptionValue)
	}
	return nil
}

// decodeJSON reads a JSON-bodied Web API call (slack-go posts views.*
// as application/json).
func decodeJSON(r *http.Request, v any) error {
	defer r.Body.Close()
	return json.NewDecoder(r.Body).Decode(v)
}

// viewsCall authenticates a views.* call and admits it against the shared
// views limit; s.mu is held when it returns true, and released when false.
func (s *Server) viewsCall(w http.ResponseWriter, r *http.Request, body any) bool {
	if bearer(r) != BotToken {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return false
	}
	if err := decodeJSON(r, body); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_json"})
		return false
	}
	s.mu.Lock()
	if !s.admitLocked(w, ViewsLimit, s.now()) {
		s.mu.Unlock()
		return false
	}
	if code := s.injectedFailureLocked(strings.TrimPrefix(r.URL.Path, "/api/")); code != "" {
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": code})
		return false
	}
	return true
}

// takeTriggerLocked uses trigger id once, for method; it returns Slack's
// error code when it may not be used. s.mu must be held.
func (s *Server) takeTriggerLocked(method, id string) string {
	t := s.triggers[id]
	switch {
	case t == nil:
		return "invalid_trigger_id"
	case t.used:
		s.violateLocked("%s: trigger_id %s used a second time (trigger_exchanged)", method, id)
		return "trigger_exchanged"
	case time.Since(t.issued) > TriggerLifetime:
		s.violateLocked("%s: trigger_id %s used %s after Slack sent it (expired_trigger_id after %s)", method, id, time.Since(t.issued).Round(time.Millisecond), TriggerLifetime)
		return "expired_trigger_id"
	}
	t.used = true
	return ""
}

func (s *Server) viewsOpen(w http.ResponseWriter, r *http.Request) {
	var body struct {
		TriggerID string          `json:"trigger_id"`
		View      json.RawMessage `json:"view"`
	}
	if !s.viewsCall(w, r, &body) {
		return
	}
	defer s.mu.Unlock()
	now := s.now()
	vr, err := validateModal(body.View)
	if err != nil {
		s.violateLocked("views.open: %v", err)
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_arguments", "response_metadata": map[string]any{"messages": []string{err.Error()}}})
		return
	}
	if code := s.takeTriggerLocked("views.open", body.TriggerID); code != "" {
		writeJSON(w, map[string]any{"ok": false, "error": code})
		return
	}
	s.countLocked(ViewsLimit, now)
	user := s.triggers[body.TriggerID].user
	// A new modal replaces whatever modal the user had open.
	s.closeStackLocked(user, 0)
	v := s.newViewLocked(user, vr, "views.open")
	v.RootID = v.ID
	s.stacks[user] = []string{v.ID}
	writeJSON(w, map[string]any{"ok": true, "view": s.viewJSONLocked(v)})
}

func (s *Server) viewsPush(w http.ResponseWriter, r *http.Request) {
	var body struct {
		TriggerID string          `json:"trigger_id"`
		View      json.RawMessage `json:"view"`
	}
	if !s.viewsCall(w, r, &body) {
		return
	}
	defer s.mu.Unlock()
	vr, err := validateModal(body.View)
	if err != nil {
		s.violateLocked("views.push: %v", err)
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_arguments"})
		return
	}
	t := s.triggers[body.TriggerID]
	if t != nil && len(s.stacks[t.user]) == 0 {
		writeJSON(w, map[string]any{"ok": false, "error": "not_found"}) // nothing open to push onto
		return
	}
	if t != nil && len(s.stacks[t.user]) >= MaxViewStack {
		writeJSON(w, map[string]any{"ok": false, "error": "push_limit_reached"})
		return
	}
	if code := s.takeTriggerLocked("views.push", body.TriggerID); code != "" {
		writeJSON(w, map[string]any{"ok": false, "error": code})
		return
	}
	s.countLocked(ViewsLimit, s.now())
	v := s.pushLocked(t.user, vr, "views.push")
	writeJSON(w, map[string]any{"ok": true, "view": s.viewJSONLocked(v)})
}

func (s *Server) viewsUpdate(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ViewID     string          `json:"view_id"`
		ExternalID string          `json:"external_id"`
		Hash       string          `json:"hash"`
		View       json.RawMessage `json:"view"`
	}
	if !s.viewsCall(w, r, &body) {
		return
	}
	defer s.mu.Unlock()
	v := s.views[body.ViewID]
	if v == nil || v.Closed {
		// Closed views cannot be updated (Slack: not_found).
		writeJSON(w, map[string]any{"ok": false, "error": "not_found"})
		return
	}
	s.countLocked(ViewsLimit, s.now())
	if body.Hash != "" && body.Hash != v.Hash {
		writeJSON(w, map[string]any{"ok": false, "error": "hash_conflict"})
		return
	}
	vr, err := validateModal(body.View)
	if err != nil {
		s.violateLocked("views.update: %v", err)
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_arguments"})
		return
	}
	s.replaceViewLocked(v, vr, "views.update")
	writeJSON(w, map[string]any{"ok": true, "view": s.viewJSONLocked(v)})
}

// newViewLocked makes a view for user from vr.
func (s *Server) newViewLocked(user string, vr viewRequest, via string) *View {
	v := &View{ID: newID("V"), User: user, Values: map[string]map[string]json.RawMessage{}}
	s.views[v.ID] = v
	s.viewOrder = append(s.viewOrder, v.ID)
	s.replaceViewLocked(v, vr, via)
	return v
}

// pushLocked pushes a new view onto user's modal.
func (s *Server) pushLocked(user string, vr viewRequest, via string) *View {
	v := s.newViewLocked(user, vr, via)
	st := s.stacks[user]
	v.RootID = s.views[st[0]].RootID
	s.stacks[user] = append(st, v.ID)
	return v
}

// replaceViewLocked makes v show vr: a new hash, its errors cleared, and
// what the user typed kept where the block_id and action_id stay (Slack's
// "preserving input entry"), initial values filling the rest.
func (s *Server) replaceViewLocked(v *View, vr viewRequest, via string) {
	v.Title, v.Blocks = vr.Title.Text, vr.Blocks
	v.Submit, v.Close = "", ""
	if vr.Submit != nil {
		v.Submit = vr.Submit.Text
	}
	if vr.Close != nil {
		v.Close = vr.Close.Text
	}
	v.CallbackID, v.PrivateMetadata, v.NotifyOnClose = vr.CallbackID, vr.PrivateMetadata, vr.NotifyOnClose
	v.Errors = map[string]string{}
	values := map[string]map[string]json.RawMessage{}
	for _, in := range inputsOf(vr.Blocks) {
		if old, ok := v.Values[in.blockID][in.actionID]; ok {
			values[in.blockID] = map[string]json.RawMessage{in.actionID: old}
		} else if init := in.initial(); init != nil {
			values[in.blockID] = map[string]json.RawMessage{in.actionID: init}
		}
	}
	v.Values = values
	s.seq++
	v.Hash = fmt.Sprintf("%d.%s", s.seq, newID("")[:8])
	v.Versions = append(v.Versions, ViewVersion{Title: v.Title, Blocks: v.Blocks, Hash: v.Hash, Via: via, At: time.Now(), Seq: s.seq})
	s.notifyLocked()
}

// input is one input block of a view.
type input struct {
	blockID, actionID, kind string
	optional                bool
	element                 map[string]any
}

// initial is the state an input starts with, from its element's initial
// value, option or user (nil for none).
func (in input) initial() json.RawMessage {
	st := map[string]any{"type": in.kind}
	switch {
	case in.element["initial_value"] != nil:
		st["value"] = in.element["initial_value"]
	case in.element["initial_option"] != nil:
		st["selected_option"] = in.element["initial_option"]
	case in.element["initial_user"] != nil:
		st["selected_user"] = in.element["initial_user"]
	default:
		return nil
	}
	raw, _ := json.Marshal(st)
	return raw
}

func inputsOf(blocks json.RawMessage) []input {
	var list []struct {
		Type     string         `json:"type"`
		BlockID  string         `json:"block_id"`
		Optional bool           `json:"optional"`
		Element  map[string]any `json:"element"`
	}
	json.Unmarshal(blocks, &list)
	var out []input
	for _, b := range list {
		if b.Type != "input" {
			continue
		}
		a, _ := b.Element["action_id"].(string)
		k, _ := b.Element["type"].(string)
		out = append(out, input{blockID: b.BlockID, actionID: a, kind: k, optional: b.Optional, element: b.Element})
	}
	return out
}

// viewJSONLocked is v as Slack sends it: in API answers and in payloads.
func (s *Server) viewJSONLocked(v *View) map[string]any {
	var blocks any
	json.Unmarshal(v.Blocks, &blocks)
	values := map[string]any{}
	for b, m := range v.Values {
		vm := map[string]any{}
		for a, raw := range m {
			vm[a] = raw
		}
		values[b] = vm
	}
	out := map[string]any{
		"id": v.ID, "team_id": TeamID, "type": "modal", "title": map[string]any{"type": "plain_text", "text": v.Title},
		"blocks": blocks, "private_metadata": v.PrivateMetadata, "callback_id": v.CallbackID, "hash": v.Hash,
		"state": map[string]any{"values": values}, "notify_on_close": v.NotifyOnClose, "root_view_id": v.RootID,
		"app_id": AppID, "bot_id": "B0LINKBOT",
	}
	if v.Submit != "" {
		out["submit"] = map[string]any{"type": "plain_text", "text": v.Submit}
	}
	if v.Close != "" {
		out["close"] = map[string]any{"type": "plain_text", "text": v.Close}
	}
	return out
}

// closeStackLocked closes user's open views down to keep of them (0: all).
func (s *Server) closeStackLocked(user string, keep int) {
	st := s.stacks[user]
	for i := len(st) - 1; i >= keep; i-- {
		s.views[st[i]].Closed = true
	}
	if keep == 0 {
		delete(s.stacks, user)
	} else {
		s.stacks[user] = st[:keep]
	}
	s.notifyLocked()
}

// topLocked is user's open modal's top view.
func (s *Server) topLocked(user string) (*View, error) {
	st := s.stacks[user]
	if len(st) == 0 {
		return nil, fmt.Errorf("%s has no modal open", user)
	}
	return s.views[st[len(st)-1]], nil
}

// Fill enters in into the input block blockID of user's open modal, as
// the person would: typing, choosing an option (a static select's own; an
// external select's from its last block_suggestion answer, or its initial
// option), or picking a user.
func (s *Server) Fill(user, blockID string, in Input) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.topLocked(user)
	if err != nil {
		return err
	}
	for _, i := range inputsOf(v.Blocks) {
		if i.blockID != blockID {
			continue
		}
		st := map[string]any{"type": i.kind}
		switch i.kind {
		case "plain_text_input":
			st["value"] = in.Text
		case "users_select":
			st["selected_user"] = in.User
		case "static_select", "external_select":
			var opts []Option
			if i.kind == "static_select" {
				opts = optionsOf(i.element["options"])
			} else {
				opts = s.suggestions[v.ID+"/"+i.actionID]
				opts = append(opts, optionsOf([]any{i.element["initial_option"]})...)
			}
			var found *Option
			for _, o := range opts {
				if o.Value == in.Option {
					found = &o
					break
				}
			}
			if found == nil {
				return fmt.Errorf("%s offers no option %q (offered: %v)", blockID, in.Option, opts)
			}
			st["selected_option"] = map[string]any{"text": map[string]any{"type": "plain_text", "text": found.Text}, "value": found.Value}
		}
		raw, _ := json.Marshal(st)
		v.Values[blockID] = map[string]json.RawMessage{i.actionID: raw}
		s.notifyLocked()
		return nil
	}
	return fmt.Errorf("the modal shows no input block %q", blockID)
}

func optionsOf(v any) []Option {
	list, _ := v.([]any)
	var out []Option
	for _, o := range list {
		m, _ := o.(map[string]any)
		if m == nil {
			continue
		}
		val, _ := m["value"].(string)
		out = append(out, Option{Text: textOf(m["text"]), Value: val})
	}
	return out
}

// viewPayloadLocked is the common part of an interactive payload from
// user's view v.
func (s *Server) viewPayloadLocked(kind, user string, v *View) map[string]any {
	team := TeamID
	if u, ok := s.users[user]; ok && u.TeamID != "" {
		team = u.TeamID
	}
	return map[string]any{
		"type": kind, "team": map[string]string{"id": TeamID, "domain": "linkbot-test"},
		"user":       map[string]string{"id": user, "team_id": team, "username": strings.ToLower(user)},
		"api_app_id": AppID, "token": "deprecated", "view": s.viewJSONLocked(v),
	}
}

// Submit presses the submit button of user's open modal. Like Slack's
// client it refuses to send a view whose required inputs are empty.
func (s *Server) Submit(user string) (*Envelope, error) {
	s.mu.Lock()
	v, err := s.topLocked(user)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if v.Submit == "" {
		s.mu.Unlock()
		return nil, fmt.Errorf("view %s has no submit button", v.ID)
	}
	for _, in := range inputsOf(v.Blocks) {
		if _, ok := v.Values[in.blockID][in.actionID]; !ok && !in.optional {
			s.mu.Unlock()
			return nil, fmt.Errorf("required input %q is empty", in.blockID)
		}
	}
	trig := s.newTriggerLocked(user)
	payload := s.viewPayloadLocked("view_submission", user, v)
	payload["trigger_id"] = trig
	payload["response_urls"] = []any{}
	s.mu.Unlock()
	env := &Envelope{ID: newID("E"), Type: "interactive", TriggerID: trig, user: user, interaction: "view_submission", viewID: v.ID, accepts: true}
	return s.send(env, payload)
}

// ClickInView presses the button actionID in user's open modal (an
// actions block's, or a section's accessory): a block_actions envelope
// with the view, a trigger_id, and no response_url.
func (s *Server) ClickInView(user, actionID string) (*Envelope, error) {
	s.mu.Lock()
	v, err := s.topLocked(user)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	btn, blockID, ok := findButton(v.Blocks, actionID)
	if !ok {
		btn, blockID, ok = findAccessory(v.Blocks, actionID)
	}
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("view %s shows no %q button", v.ID, actionID)
	}
	trig := s.newTriggerLocked(user)
	payload := s.viewPayloadLocked("block_actions", user, v)
	payload["trigger_id"] = trig
	payload["container"] = map[string]any{"type": "view", "view_id": v.ID}
	payload["actions"] = []map[string]any{{
		"type": "button", "action_id": actionID, "block_id": blockID, "value": btn["value"],
		"text": btn["text"], "action_ts": "1700000000.000300",
	}}
	s.mu.Unlock()
	env := &Envelope{ID: newID("E"), Type: "interactive", TriggerID: trig, user: user, interaction: "block_actions", viewID: v.ID}
	return s.send(env, payload)
}

func findAccessory(blocks json.RawMessage, actionID string) (map[string]any, string, bool) {
	var list []map[string]any
	json.Unmarshal(blocks, &list)
	for _, b := range list {
		if acc, ok := b["accessory"].(map[string]any); ok && acc["type"] == "button" && acc["action_id"] == actionID {
			id, _ := b["block_id"].(string)
			return acc, id, true
		}
	}
	return nil, "", false
}

// CloseView closes user's open modal, as the person pressing its close
// button or ×: every view of it closes, and view_closed is sent (returned)
// for the top view when it asked for it (notify_on_close); nil otherwise.
func (s *Server) CloseView(user string) (*Envelope, error) {
	s.mu.Lock()
	v, err := s.topLocked(user)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	notify := v.NotifyOnClose
	payload := s.viewPayloadLocked("view_closed", user, v)
	payload["is_cleared"] = true
	s.closeStackLocked(user, 0)
	s.mu.Unlock()
	if !notify {
		return nil, nil
	}
	env := &Envelope{ID: newID("E"), Type: "interactive", user: user, interaction: "view_closed", viewID: v.ID}
	return s.send(env, payload)
}

// Suggest types query into the external select actionID of user's open
// modal: it sends block_suggestion and returns the options the bot's ack
// answered with (an error when it did not answer in time, or broke a rule).
func (s *Server) Suggest(user, actionID, query string) ([]Option, error) {
	s.mu.Lock()
	v, err := s.topLocked(user)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	blockID := ""
	for _, in := range inputsOf(v.Blocks) {
		if in.actionID == actionID && in.kind == "external_select" {
			blockID = in.blockID
		}
	}
	if blockID == "" {
		s.mu.Unlock()
		return nil, fmt.Errorf("view %s shows no external select %q", v.ID, actionID)
	}
	payload := s.viewPayloadLocked("block_suggestion", user, v)
	payload["action_id"], payload["block_id"], payload["value"] = actionID, blockID, query
	payload["container"] = map[string]any{"type": "view", "view_id": v.ID}
	s.mu.Unlock()
	env := &Envelope{ID: newID("E"), Type: "interactive", user: user, interaction: "block_suggestion", viewID: v.ID, accepts: true}
	if _, err := s.send(env, payload); err != nil {
		return nil, err
	}
	var acked Envelope
	if !s.WaitFor(AckDeadline, func() bool { acked = s.Envelope(env.ID); return !acked.AckedAt.IsZero() }) {
		return nil, fmt.Errorf("block_suggestion not answered within %s", AckDeadline)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	opts, ok := s.suggestions[v.ID+"/"+actionID]
	if !ok {
		return nil, fmt.Errorf("block_suggestion answered with no options")
	}
	return opts, nil
}

// answerInteractionLocked applies the ack payload of an interactive
// envelope: a view_submission's response_action, a block_suggestion's
// options. s.mu must be held.
func (s *Server) answerInteractionLocked(env *Envelope, payload json.RawMessage) {
	empty := len(payload) == 0 || string(payload) == "null" || string(payload) == "{}"
	switch env.interaction {
	case "block_actions", "view_closed":
		if !empty {
			s.violateLocked("ack payload for %s (%s) carries %s: Slack ignores it", env.ID, env.interaction, payload)
		}
	case "block_suggestion":
		var ans struct {
			Options      []optionObj `json:"options"`
			OptionGroups []struct {
				Label   textObj     `json:"label"`
				Options []optionObj `json:"options"`
			} `json:"option_groups"`
		}
		if err := json.Unmarshal(payload, &ans); err != nil || empty {
			s.violateLocked("block_suggestion %s answered without options", env.ID)
			return
		}
		all := ans.Options
		for _, g := range ans.OptionGroups {
			all = append(all, g.Options...)
		}
		if len(all) > MaxOptions {
			s.violateLocked("block_suggestion %s answered %d options (max %d)", env.ID, len(all), MaxOptions)
			return
		}
		var opts []Option
		for _, o := range all {
			if err := o.check(); err != nil {
				s.violateLocked("block_suggestion %s: %v", env.ID, err)
				return
			}
			opts = append(opts, Option{Text: o.Text.Text, Value: o.Value})
		}
		if opts == nil {
			opts = []Option{}
		}
		var p struct {
			ActionID string `json:"action_id"`
		}
		json.Unmarshal(env.Payload, &p)
		s.suggestions[env.viewID+"/"+p.ActionID] = opts
	case "view_submission":
		s.submittedLocked(env, payload, empty)
	}
}

// submittedLocked applies a view_submission's answer. s.mu must be held.
func (s *Server) submittedLocked(env *Envelope, payload json.RawMessage, empty bool) {
	v := s.views[env.viewID]
	if v == nil || v.Closed {
		return
	}
	st := s.stacks[env.user]
	depth := len(st)
	for i, id := range st {
		if id == v.ID {
			depth = i
		}
	}
	if empty {
		// No response_action: the submitted view closes (a pushed one goes
		// back to the view below it).
		s.closeStackLocked(env.user, depth)
		return
	}
	var ans struct {
		ResponseAction string            `json:"response_action"`
		Errors         map[string]string `json:"errors"`
		View           json.RawMessage   `json:"view"`
	}
	if err := json.Unmarshal(payload, &ans); err != nil {
		s.violateLocked("view_submission %s: unreadable answer %q", env.ID, payload)
		return
	}
	switch ans.ResponseAction {
	case "errors":
		inputs := map[string]bool{}
		for _, in := range inputsOf(v.Blocks) {
			inputs[in.blockID] = true
		}
		for id, msg := range ans.Errors {
			if !inputs[id] {
				s.violateLocked("view_submission %s: error for %q, which is no input block of the view (Slack shows nothing)", env.ID, id)
				return
			}
			if msg == "" {
				s.violateLocked("view_submission %s: empty error for %q", env.ID, id)
				return
			}
		}
		v.Errors = ans.Errors
		s.notifyLocked()
	case "update", "push":
		vr, err := validateModal(ans.View)
		if err != nil {
			s.violateLocked("view_submission %s: response_action %s: %v", env.ID, ans.ResponseAction, err)
			return
		}
		if ans.ResponseAction == "update" {
			s.replaceViewLocked(v, vr, "response_action:update")
			return
		}
		if len(st) >= MaxViewStack {
			s.violateLocked("view_submission %s: response_action push past %d views", env.ID, MaxViewStack)
			return
		}
		s.pushLocked(env.user, vr, "response_action:push")
	case "clear":
		s.closeStackLocked(env.user, 0)
	default:
		s.violateLocked("view_submission %s: unknown response_action %q", env.ID, ans.ResponseAction)
	}
}
