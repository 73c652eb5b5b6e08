package main

import (
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
	"strings"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

const demoInstance = "A1B2C3D4E5F6"

// demo runs the real bot against in-process fake Slack and fake Wawp and
// plays a scripted session, printing every message the agent would see.
// It needs no account and no network.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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

	dir, err := os.MkdirTemp("", "linkbot-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "linkbot.yml")
	cfgText := "default_region: EG\ncode_lifetime: 9s\ntick_interval: 1s\ninstances:\n  - alias: support-eg\n    id: " + demoInstance + "\n    region: EG\n"
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
	go func() { done <- serve(botCtx, cfg, log) }()
	defer func() {
		stop()
		<-done
	}()

	p := &transcript{out: stdout, slack: slack, json: *asJSON}
	fmt.Fprintln(stdout, "linkbot demo: the real bot, with an in-process Slack and Wawp (no account, no network).")
	if !slack.WaitConnected(10 * time.Second) {
		return errors.New("demo: the bot did not connect to the fake Slack")
	}
	step := func(format string, a ...any) { fmt.Fprintf(stdout, "\n▶ "+format+"\n", a...) }
	wait := func(id, want string) error {
		if !slack.WaitFor(15*time.Second, func() bool { return strings.Contains(string(slack.Message(id).Latest().Blocks), want) }) {
			return fmt.Errorf("demo: message never showed %q", want)
		}
		p.flush()
		return nil
	}

	step("An agent in #support types: /link support-eg 0111 222 3333")
	env1, err := slack.SendCommand(fakeslack.Command{User: "UAGENT", Text: "support-eg 0111 222 3333"})
	if err != nil {
		return err
	}
	if err := wait(env1.MessageID, "Enter this code"); err != nil {
		return err
	}
	step("The countdown moves on by itself (a cron tick edits the message in coarse steps):")
	if !slack.WaitFor(15*time.Second, func() bool { return len(slack.Message(env1.MessageID).Versions) >= 4 }) {
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
	env2, err := slack.SendCommand(fakeslack.Command{User: "UAGENT", Text: "support-eg 0100 123 4567"})
	if err != nil {
		return err
	}
	if err := wait(env2.MessageID, "Code 1 of 3"); err != nil {
		return err
	}
	for n, action := range []string{"new_code", "new_code", "cancel"} {
		if _, err := slack.Click(env2.MessageID, "UAGENT", action); err != nil {
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
	env3, err := slack.SendCommand(fakeslack.Command{User: "UAGENT", Text: "support-eg 0100 123 4567"})
	if err != nil {
		return err
	}
	if err := wait(env3.MessageID, "already had 3 codes"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nWawp received %d code requests; WhatsApp's lock-out was never reached. Slack rules broken: %d.\n",
		len(wawp.Calls(fakewawp.RequestCode)), len(violations))
	if len(violations) > 0 {
		return fmt.Errorf("demo: the bot broke Slack's rules: %s", strings.Join(violations, "; "))
	}
	return nil
}

// transcript prints each new state of each message once, in order.
type transcript struct {
	out     io.Writer
	slack   *fakeslack.Server
	json    bool
	printed map[string]int
}

func (t *transcript) flush() {
	if t.printed == nil {
		t.printed = map[string]int{}
	}
	for _, m := range t.slack.Messages() {
		for _, v := range m.Versions[t.printed[m.ID]:] {
			how := "replaces the message"
			if v.Via == "ack" {
				how = "answers at once"
			}
			fmt.Fprintf(t.out, "\n  [linkbot → @%s, only they see it; %s]\n", strings.ToLower(strings.TrimPrefix(m.User, "U")), how)
			if t.json {
				var pretty any
				json.Unmarshal(v.Blocks, &pretty)
				b, _ := json.MarshalIndent(map[string]any{"text": v.Text, "blocks": pretty}, "  ", "  ")
				fmt.Fprintf(t.out, "  %s\n", b)
				continue
			}
			for _, line := range strings.Split(renderText(v.Blocks), "\n") {
				fmt.Fprintf(t.out, "  %s\n", line)
			}
		}
		t.printed[m.ID] = len(m.Versions)
	}
}

var (
	dateToken = regexp.MustCompile(`<!date\^\d+\^[^|>]*\|([^>]*)>`)
	mention   = regexp.MustCompile(`<@([A-Z0-9]+)>`)
)

// blockLines lists a message's blocks as text lines, roughly as Slack lays
// them out: the header marked "┃", buttons in brackets, markup untouched.
func blockLines(blocks json.RawMessage) []string {
	var list []struct {
		Type string `json:"type"`
		Text *struct {
			Text string `json:"text"`
		} `json:"text"`
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
			lines = append(lines, "┃ "+b.Text.Text)
		case "section":
			lines = append(lines, b.Text.Text)
		case "context", "actions":
			var parts []string
			for _, e := range b.Elements {
				var s string
				if json.Unmarshal(e.Text, &s) != nil { // a text object, not a string
					var obj struct{ Text string }
					json.Unmarshal(e.Text, &obj)
					s = obj.Text
				}
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

// renderText draws Block Kit as plain text as a reader sees it: dates in
// their fallback form, mentions as @ID, entities decoded.
func renderText(blocks json.RawMessage) string {
	text := strings.Join(blockLines(blocks), "\n")
	text = dateToken.ReplaceAllString(text, "$1")
	text = mention.ReplaceAllString(text, "@$1")
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(text)
}
