package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

const (
	demoInstance = "A1B2C3D4E5F6"
	demoAgent    = "UAGENT"
	// The hand-off: a coordinator in #field-ops sends a code for an
	// instance with status cards (announce) to the field agent holding
	// the phone.
	demoField       = "B1B2C3D4E5F6"
	demoCoordinator = "UCOORD"
	demoFieldAgent  = "UFIELDAGENT"
	demoFieldOps    = "C0FIELDOPS"
	// demoLifetime is short so the demo ends in seconds; the transcript
	// says so, since a real code lasts pairing.DefaultCodeLifetime.
	demoLifetime = 9 * time.Second
)

// demo runs the real bot against in-process fake Slack and fake Wawp and
// plays a scripted session, printing every message the agent would see.
// It needs no account and no network. opts are the tests' (see
// serveOptions): they run it with shorter codes and faster ticks.
func demo(ctx context.Context, opts serveOptions, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print each message as Block Kit JSON")
	verbose := fs.Bool("verbose", false, "also print the bot's log")
	if help, err := parseFlags(fs, args, "linkbot demo [--json] [--verbose]", stdout); help || err != nil {
		return err
	}
	var violations []string
	slack := fakeslack.New(func(v string) { violations = append(violations, v) })
	defer slack.Close()
	wawp := fakewawp.New("demo-wawp-token")
	defer wawp.Close()
	wawp.AddInstance(demoInstance, "")
	wawp.AddInstance(demoField, "")
	// Slack as the app made from manifest.yml has it (the Messages tab on,
	// for DMs), the field agent a member of the workspace, and the bot
	// invited to #field-ops (for its status cards).
	slack.SetMessagesTab(true)
	slack.SetUser(fakeslack.User{ID: demoFieldAgent, Name: "field-agent"})
	slack.SetChannel(fakeslack.Channel{ID: demoFieldOps, Public: true, Member: true})

	dir, err := os.MkdirTemp("", "linkbot-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "linkbot.yml")
	cfgText := "default_region: EG\ncode_lifetime: " + demoLifetime.String() + "\ntick_interval: 1s\ninstances:\n  - alias: support-eg\n    id: " + demoInstance + "\n    region: EG\n" +
		"  - alias: field-eg\n    id: " + demoField + "\n    region: EG\n    announce: true\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	env := map[string]string{
		"SLACK_APP_TOKEN": fakeslack.AppToken, "SLACK_BOT_TOKEN": fakeslack.BotToken, "WAWP_ACCESS_TOKEN": "demo-wawp-token",
		"SLACK_API_URL": slack.APIURL(), "WAWP_BASE_URL": wawp.URL, "LINKBOT_DB": filepath.Join(dir, "linkbot.db"),
		"LINKBOT_CONFIG": cfgPath,
	}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = newLogger("text", stderr)
	}
	botCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serve(botCtx, cfg, log, opts) }()
	defer func() {
		stop()
		<-done
	}()

	p := &transcript{out: stdout, slack: slack, json: *asJSON, reader: reader{
		names:    map[string]string{demoAgent: "agent", demoCoordinator: "coordinator", demoFieldAgent: "field-agent"},
		channels: map[string]string{"C0SUPPORT": "support", demoFieldOps: "field-ops"},
		loc:      time.Local,
	}}
	zone, _ := time.Now().Zone()
	fmt.Fprintln(stdout, "linkbot demo: the real bot, with an in-process Slack and Wawp (no account, no network).")
	fmt.Fprintf(stdout, "Messages are shown as Slack renders them for whoever sees them; times are in your time zone (%s).\n", zone)
	fmt.Fprintf(stdout, "Time is sped up: codes here last %.0f s instead of %.0f s, so the countdown reads \"under a minute left\" throughout.\n",
		cmp.Or(opts.codeLifetime, demoLifetime).Seconds(), pairing.DefaultCodeLifetime.Seconds())
	if !slack.WaitConnected(10 * time.Second) {
		return errors.New("demo: the bot did not connect to the fake Slack")
	}
	step := func(format string, a ...any) { fmt.Fprintf(stdout, "\n▶ "+format+"\n", a...) }
	// newest is the newest message of a command's thread showing want.
	newest := func(thread, want string) (fakeslack.Message, bool) {
		th := slack.Thread(thread)
		for i := len(th) - 1; i >= 0; i-- {
			if strings.Contains(string(th[i].Latest().Blocks), want) {
				return th[i], true
			}
		}
		return fakeslack.Message{}, false
	}
	wait := func(thread, want string) error {
		if !slack.WaitFor(15*time.Second, func() bool { _, ok := newest(thread, want); return ok }) {
			return fmt.Errorf("demo: message never showed %q", want)
		}
		p.flush()
		return nil
	}
	click := func(thread, action string) error {
		m, ok := newest(thread, `"action_id":"`+action+`"`)
		if !ok {
			return fmt.Errorf("demo: no %s button to click", action)
		}
		_, err := slack.Click(m.ID, demoAgent, action)
		return err
	}

	step("An agent in #support types: /link support-eg 0111 222 3333")
	env1, err := slack.SendCommand(fakeslack.Command{User: demoAgent, Text: "support-eg 0111 222 3333"})
	if err != nil {
		return err
	}
	if err := wait(env1.MessageID, "Enter this code"); err != nil {
		return err
	}
	step("Slack lets no one edit a message posted through a slash command's response_url, so the code shows its expiry\n  as a time. The agent clicks Refresh: a click's response_url can replace the message, and from then on the\n  countdown moves in place (sped up: a cron tick edits it in coarse steps).")
	if err := click(env1.MessageID, "refresh"); err != nil {
		return err
	}
	if !slack.WaitFor(15*time.Second, func() bool { m, _ := newest(env1.MessageID, "Enter this code"); return len(m.Versions) >= 4 }) {
		return errors.New("demo: the countdown did not move")
	}
	p.flush()
	step("The customer types the code into WhatsApp on their phone.")
	if err := wawp.EnterCode(demoInstance, wawp.Code(demoInstance)); err != nil {
		return err
	}
	if err := wait(env1.MessageID, "✅ Linked"); err != nil {
		return err
	}

	step("Later, codes for another phone: /link support-eg 0100 123 4567, then New code twice, then Cancel.")
	wawp.SetStatus(demoInstance, "SCAN_QR_CODE", "")
	env2, err := slack.SendCommand(fakeslack.Command{User: demoAgent, Text: "support-eg 0100 123 4567"})
	if err != nil {
		return err
	}
	if err := wait(env2.MessageID, "Code 1 of 3"); err != nil {
		return err
	}
	for n, action := range []string{"new_code", "new_code", "cancel"} {
		if err := click(env2.MessageID, action); err != nil {
			return err
		}
		want := fmt.Sprintf("Code %d of 3", n+2)
		if action == "cancel" {
			want = "Cancelled"
		}
		if err := wait(env2.MessageID, want); err != nil {
			return err
		}
	}
	step("A 4th request for that phone within 15 minutes is refused before it reaches Wawp:")
	env3, err := slack.SendCommand(fakeslack.Command{User: demoAgent, Text: "support-eg 0100 123 4567"})
	if err != nil {
		return err
	}
	if err := wait(env3.MessageID, "already had 3 codes"); err != nil {
		return err
	}
	step("A code cannot do it now, so the refusal offers a QR code instead. The agent clicks Link by QR instead: Wawp\n  makes a hosted QR page (valid 30 minutes), shown only to the agent, who opens it on a laptop for the customer.")
	if err := click(env3.MessageID, "link_by_qr"); err != nil {
		return err
	}
	if err := wait(env3.MessageID, "Open the QR page"); err != nil {
		return err
	}
	step("The customer scans the QR code with WhatsApp; the page is revoked at once.")
	if err := wawp.ScanLink(wawp.ActiveLink(demoInstance), "201001234567"); err != nil {
		return err
	}
	if err := wait(env3.MessageID, "Linked by QR"); err != nil {
		return err
	}

	step("A hand-off: a coordinator in #field-ops, where the bot was invited, sends a code to the field agent holding\n  the phone: /link field-eg 0122 333 4444 @field-agent. The code goes to the agent's DM, never to the coordinator;\n  field-eg has announce: true, so the channel gets a status card (masked number, never the code).")
	if _, err := slack.SendCommand(fakeslack.Command{User: demoCoordinator, Channel: demoFieldOps, Text: "field-eg 0122 333 4444 <@" + demoFieldAgent + "|field-agent>"}); err != nil {
		return err
	}
	// shows reports whether one of msgs shows want now.
	shows := func(msgs []fakeslack.Message, want string) bool {
		return slices.ContainsFunc(msgs, func(m fakeslack.Message) bool { return strings.Contains(string(m.Latest().Blocks), want) })
	}
	waitUntil := func(what string, cond func() bool) error {
		if !slack.WaitFor(15*time.Second, cond) {
			return fmt.Errorf("demo: %s never happened", what)
		}
		p.flush()
		return nil
	}
	if err := waitUntil("the hand-off", func() bool {
		return shows(slack.DMScreen(demoFieldAgent), "Enter this code") && shows(slack.Screen(demoCoordinator, demoFieldOps), "Code sent to")
	}); err != nil {
		return err
	}
	step("The field agent types the code into WhatsApp on the phone.")
	if err := wawp.EnterCode(demoField, wawp.Code(demoField)); err != nil {
		return err
	}
	if err := waitUntil("the hand-off's link", func() bool {
		return shows(slack.DMScreen(demoFieldAgent), "✅ Linked") && shows(slack.Screen("UANYONE", demoFieldOps), "✅ Linked at") &&
			shows(slack.Screen(demoCoordinator, demoFieldOps), "✅ Linked —")
	}); err != nil {
		return err
	}
	step("On a phone, the agent types /link alone: a form opens at once, \"Link a WhatsApp number\", with each instance's\n  state (checked with Wawp right after it opened). The agent picks support-eg and types the number.")
	wawp.SetStatus(demoInstance, "SCAN_QR_CODE", "")
	if _, err := slack.SendCommand(fakeslack.Command{User: demoAgent, Text: ""}); err != nil {
		return err
	}
	if !slack.WaitFor(15*time.Second, func() bool {
		v, _ := slack.Modal(demoAgent)
		return strings.Contains(v.Shown(), "Instance states as of now.")
	}) {
		return errors.New("demo: the form's states were never refreshed")
	}
	if err := slack.Fill(demoAgent, "instance", fakeslack.Input{Option: demoInstance}); err != nil {
		return err
	}
	if err := slack.Fill(demoAgent, "phone", fakeslack.Input{Text: "0112 345 6789"}); err != nil {
		return err
	}
	if err := p.waitModal(demoAgent, "Phone: 0112 345 6789"); err != nil {
		return err
	}
	step("Get code: the form turns into the live code window, kept current by the tick.")
	if _, err := slack.Submit(demoAgent); err != nil {
		return err
	}
	if err := p.waitModal(demoAgent, "Waiting for the phone"); err != nil {
		return err
	}
	step("The customer types the code; the window says so and the code leaves it.")
	if err := wawp.EnterCode(demoInstance, wawp.Code(demoInstance)); err != nil {
		return err
	}
	if err := p.waitModal(demoAgent, "✅ Linked"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nWawp received %d code requests and %d QR link requests; WhatsApp's lock-out was never reached. Slack rules broken: %d.\n",
		len(wawp.Calls(fakewawp.RequestCode)), countMethod(wawp.Calls(fakewawp.TempLink), "POST"), len(violations))
	if len(violations) > 0 {
		return fmt.Errorf("demo: the bot broke Slack's rules: %s", strings.Join(violations, "; "))
	}
	return nil
}

// countMethod counts the calls made with method.
func countMethod(calls []fakewawp.Call, method string) int {
	n := 0
	for _, c := range calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

// waitModal flushes the messages, then waits until user's open modal
// shows want and prints it as the user sees it.
func (t *transcript) waitModal(user, want string) error {
	var v fakeslack.View
	if !t.slack.WaitFor(15*time.Second, func() bool {
		var open bool
		v, open = t.slack.Modal(user)
		return open && strings.Contains(v.Shown(), want)
	}) {
		return fmt.Errorf("demo: the modal never showed %q", want)
	}
	t.flush()
	var lines []string
	for _, l := range strings.Split(v.Shown(), "\n") {
		lines = append(lines, "  "+t.reader.mrkdwn(l))
	}
	fmt.Fprintf(t.out, "\n[linkbot → @%s, a window only they see]\n%s\n", t.reader.name(user), strings.Join(lines, "\n"))
	return nil
}

// transcript prints each new state of each message once, in order, as
// its reader sees it.
type transcript struct {
	out     io.Writer
	slack   *fakeslack.Server
	json    bool
	reader  reader
	printed map[string]int
}

func (t *transcript) flush() {
	if t.printed == nil {
		t.printed = map[string]int{}
	}
	// Every change not printed yet, in the order it happened.
	type change struct {
		m fakeslack.Message
		v fakeslack.Version
	}
	var changes []change
	for _, m := range t.slack.Messages() {
		for _, v := range m.Versions[t.printed[m.ID]:] {
			changes = append(changes, change{m, v})
		}
		t.printed[m.ID] = len(m.Versions)
	}
	slices.SortFunc(changes, func(a, b change) int { return a.v.Seq - b.v.Seq })
	for _, c := range changes {
		if c.v.Via == fakeslack.ViaDelete {
			continue
		}
		switch {
		case c.m.Ephemeral:
			fmt.Fprintf(t.out, "\n  [linkbot → @%s, only they see it; %s]\n", t.reader.name(c.m.User), howShown(c.m, c.v))
		case c.m.Channel == fakeslack.DMChannel(c.m.User):
			fmt.Fprintf(t.out, "\n  [linkbot → @%s, in their DM with the bot; %s]\n", t.reader.name(c.m.User), howShown(c.m, c.v))
		default:
			fmt.Fprintf(t.out, "\n  [linkbot → #%s, everyone in the channel sees it; %s]\n", t.reader.channel(c.m.Channel), howShown(c.m, c.v))
		}
		if t.json {
			var pretty any
			json.Unmarshal(c.v.Blocks, &pretty)
			b, _ := json.MarshalIndent(map[string]any{"text": c.v.Text, "blocks": pretty}, "  ", "  ")
			fmt.Fprintf(t.out, "  %s\n", b)
			continue
		}
		for _, line := range strings.Split(t.reader.render(c.v.Blocks), "\n") {
			fmt.Fprintf(t.out, "  %s\n", line)
		}
	}
}

// howShown says how a version of a message reached the screen.
func howShown(m fakeslack.Message, v fakeslack.Version) string {
	switch v.Via {
	case fakeslack.ViaAck:
		return "answers at once"
	case fakeslack.ViaCommandURL:
		return "a new message below"
	case fakeslack.ViaClickURL:
		if len(m.Versions) > 0 && m.Versions[0].Seq == v.Seq {
			return "a new message below"
		}
		return "replaces the message"
	case fakeslack.ViaPostMessage:
		if m.Channel == fakeslack.DMChannel(m.User) {
			return "a new message"
		}
		return "the status card, a new message"
	case fakeslack.ViaUpdate:
		if m.Channel == fakeslack.DMChannel(m.User) {
			return "updates that message"
		}
		return "updates the card"
	}
	return v.Via
}

// blockLines lists a message's blocks as text lines, roughly as Slack lays
// them out: the header marked "┃", buttons in brackets, markup untouched.
func blockLines(blocks json.RawMessage) []string {
	return blockTexts(blocks, func(text string, _ bool) string { return text })
}

// blockTexts lists a message's blocks as text lines, each text passed
// through show with whether Slack reads it as mrkdwn.
func blockTexts(blocks json.RawMessage, show func(text string, mrkdwn bool) string) []string {
	type textObject struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	var list []struct {
		Type     string      `json:"type"`
		Text     *textObject `json:"text"`
		Elements []struct {
			Type string          `json:"type"`
			Text json.RawMessage `json:"text"`
		} `json:"elements"`
	}
	json.Unmarshal(blocks, &list)
	var lines []string
	for _, b := range list {
		switch b.Type {
		case "header":
			lines = append(lines, "┃ "+show(b.Text.Text, false))
		case "section":
			lines = append(lines, show(b.Text.Text, b.Text.Type == "mrkdwn"))
		case "context", "actions":
			var parts []string
			for _, e := range b.Elements {
				var s string
				mrkdwn := e.Type == "mrkdwn"
				if json.Unmarshal(e.Text, &s) != nil { // a text object, not a string
					var obj textObject
					json.Unmarshal(e.Text, &obj)
					s, mrkdwn = obj.Text, obj.Type == "mrkdwn"
				}
				s = show(s, mrkdwn)
				if e.Type == "button" {
					s = "[ " + s + " ]"
				}
				parts = append(parts, s)
			}
			lines = append(lines, strings.Join(parts, "  "))
		}
	}
	return lines
}

// reader renders messages as one Slack user sees them: date tokens in
// their time zone, mentions by name, mrkdwn as formatting rather than
// marker characters (a terminal has no bold, so the markers just go).
type reader struct {
	names    map[string]string // Slack user ID → display name
	channels map[string]string // channel ID → name
	loc      *time.Location
}

// render draws Block Kit as plain text.
func (r reader) render(blocks json.RawMessage) string {
	return strings.Join(blockTexts(blocks, func(text string, mrkdwn bool) string {
		if !mrkdwn {
			return text
		}
		return r.mrkdwn(text)
	}), "\n")
}

// name is how Slack shows user id to this reader.
func (r reader) name(id string) string {
	return or(r.names[id], id)
}

// channel is how Slack shows channel id to this reader.
func (r reader) channel(id string) string {
	return or(r.channels[id], id)
}

var (
	// <!date^1700000000^{time}|fallback> or <!date^…^…^link|fallback>
	dateToken = regexp.MustCompile(`<!date\^(\d+)\^([^|^>]*)(?:\^[^|>]*)?\|([^>]*)>`)
	// <@U…>, <#C…|name>, <!here>, <https://…|label>
	angleToken = regexp.MustCompile(`<([^<>]*)>`)
)

// dateFormats are the parts of a date token's format Slack fills in.
var dateFormats = map[string]string{
	"{time}": "15:04", "{time_secs}": "15:04:05", "{date_num}": "2006-01-02",
	"{date_short}": "Jan 2, 2006", "{date}": "January 2, 2006", "{date_long}": "Monday, January 2, 2006",
	"{date_short_pretty}": "Jan 2, 2006", "{date_pretty}": "January 2, 2006", "{date_long_pretty}": "Monday, January 2, 2006",
}

// mrkdwn renders one mrkdwn text: tokens in angle brackets first, then
// *bold*, _italic_, ~strike~ and `code` markers, then HTML entities (the
// sender escapes &, < and > so they cannot be read as markup).
func (r reader) mrkdwn(text string) string {
	text = dateToken.ReplaceAllStringFunc(text, func(tok string) string {
		m := dateToken.FindStringSubmatch(tok)
		unix, _ := strconv.ParseInt(m[1], 10, 64)
		t := time.Unix(unix, 0).In(r.loc)
		out, ok := m[2], false
		for token, layout := range dateFormats {
			if strings.Contains(out, token) {
				out, ok = strings.ReplaceAll(out, token, t.Format(layout)), true
			}
		}
		if !ok {
			return m[3]
		}
		return out
	})
	text = angleToken.ReplaceAllStringFunc(text, func(tok string) string {
		inner := tok[1 : len(tok)-1]
		target, label, hasLabel := strings.Cut(inner, "|")
		switch {
		case strings.HasPrefix(target, "@"):
			if hasLabel && r.names[target[1:]] == "" {
				return "@" + label
			}
			return "@" + r.name(target[1:])
		case strings.HasPrefix(target, "#"):
			return "#" + or(label, r.channel(target[1:]))
		case strings.HasPrefix(target, "!"):
			return "@" + strings.TrimPrefix(or(label, target[1:]), "@")
		case hasLabel:
			return label
		}
		return target
	})
	// Inside `code` nothing else is formatting.
	parts := strings.Split(text, "`")
	if len(parts)%2 == 0 { // an unpaired backtick is just a character
		parts[len(parts)-2] += "`" + parts[len(parts)-1]
		parts = parts[:len(parts)-1]
	}
	for i := 0; i < len(parts); i += 2 {
		for _, marker := range "*_~" {
			parts[i] = stripMarkers(parts[i], byte(marker))
		}
	}
	text = strings.Join(parts, "")
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(text)
}

// stripMarkers removes pairs of marker (as in *bold*) that Slack reads as
// formatting: the opening one not after a letter or digit and followed by
// a non-space, the closing one after a non-space and not followed by a
// letter or digit, both on one line.
func stripMarkers(s string, marker byte) string {
	word := func(i int) bool {
		if i < 0 || i >= len(s) {
			return false
		}
		c := s[i]
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	space := func(i int) bool { return i < 0 || i >= len(s) || s[i] == ' ' || s[i] == '\n' }
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == marker && !word(i-1) && !space(i+1) {
			end := -1
			for j := i + 1; j < len(s) && s[j] != '\n'; j++ {
				if s[j] == marker && !space(j-1) && !word(j+1) {
					end = j
					break
				}
			}
			if end > 0 {
				b.WriteString(s[i+1 : end])
				i = end
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
