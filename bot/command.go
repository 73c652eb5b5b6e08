// Package bot is linkbot's Slack side: the Socket Mode loop, the /link
// command, button clicks and the Block Kit views. It is the only package
// that imports slack-go, and the only place errors become sentences.
package bot

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CommandKind says what /link was asked to do.
type CommandKind int

const (
	CommandHelp CommandKind = iota
	CommandLink
	CommandHistory // /link history <phone|instance>
	// CommandForm opens the form (issue 10): /link alone, or
	// /link <instance> [@person] without a phone.
	CommandForm
)

// Command is a parsed /link.
type Command struct {
	Kind     CommandKind
	Instance string
	Phone    string
	Subject  string // for history: a phone or an instance
	// Recipient is the user ID of the person the code is handed to
	// (/link <instance> <phone> @agent), "" when the requester keeps it.
	Recipient string
}

// UsageProblem says what is wrong with a /link text.
type UsageProblem string

const (
	UsageTooLong     UsageProblem = "too_long"
	UsageNoPhone     UsageProblem = "no_phone"
	UsageBadInstance UsageProblem = "bad_instance"
	UsageControl     UsageProblem = "control_characters"
	UsageNoSubject   UsageProblem = "no_subject"
	// A hand-off's mention that is not one person, last: a mention
	// elsewhere, two of them, or one in history.
	UsageMention UsageProblem = "mention"
	// The last word mentions a channel, a user group or @here, not a person.
	UsageNotAPerson UsageProblem = "not_a_person"
	// The last word is @name as typed: Slack sent the mention unescaped,
	// so its user ID is unknown (the command lacks should_escape).
	UsageMentionUnescaped UsageProblem = "mention_unescaped"
)

// UsageError is a /link text that cannot be parsed.
type UsageError struct {
	Problem UsageProblem
	Input   string
}

func (e *UsageError) Error() string { return fmt.Sprintf("usage: %s in %q", e.Problem, e.Input) }

// maxCommandText bounds the text; real commands are under 60 characters.
const maxCommandText = 200

// slackLink matches Slack's link markup, e.g. <tel:+201112223333|+20 111 222 3333>.
var slackLink = regexp.MustCompile(`<([^<>|]*)(?:\|([^<>]*))?>`)

var instanceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$`)

// Mentions as Slack sends them in a command with should_escape (manifest.yml):
// a person <@U…|name> (W… in Enterprise Grid), and anything else a mention
// can name: <#C…|channel>, <!subteam^S…|@group>, <!here>.
var (
	userMention    = regexp.MustCompile(`^<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>$`)
	anyMention     = regexp.MustCompile(`<[@#!][^<>]*>`)
	trailingAtName = regexp.MustCompile(`(?:^|\s)@[^\s@<>]+$`)
)

// entities undoes Slack's escaping of &, < and > in what was typed (it
// always sends them as &amp; &lt; &gt;; real < and > are its markup).
var entities = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// ParseCommand parses /link's text: the first word is the instance (alias
// or 12-character ID), the rest is the phone, which may contain spaces,
// and a last word that mentions a person hands the code to them
// (/link <instance> <phone> @agent). The text is read as Slack sends it
// with should_escape on: a mention as <@U…|name>, a number it recognised as
// <tel:…|…> (unwrapped), and &, <, > typed by the user as entities.
func ParseCommand(text string) (Command, error) {
	if !utf8.ValidString(text) {
		return Command{}, &UsageError{Problem: UsageControl, Input: text}
	}
	if utf8.RuneCountInString(text) > maxCommandText {
		return Command{}, &UsageError{Problem: UsageTooLong, Input: text}
	}
	text = strings.TrimSpace(text)
	var recipient string
	if i := strings.LastIndexAny(text, " \t\n"); strings.HasSuffix(text, ">") {
		last := text[i+1:]
		switch m := userMention.FindStringSubmatch(last); {
		case m != nil:
			recipient, text = m[1], text[:i+1]
		case anyMention.FindString(last) == last:
			return Command{}, &UsageError{Problem: UsageNotAPerson, Input: entities.Replace(last)}
		}
	}
	switch {
	case strings.Contains(text, "<@"):
		// A person mentioned anywhere but last, or twice.
		return Command{}, &UsageError{Problem: UsageMention, Input: text}
	case trailingAtName.MatchString(text):
		return Command{}, &UsageError{Problem: UsageMentionUnescaped, Input: strings.TrimSpace(trailingAtName.FindString(text))}
	}
	text = slackLink.ReplaceAllStringFunc(text, func(m string) string {
		sub := slackLink.FindStringSubmatch(m)
		if sub[2] != "" {
			return sub[2]
		}
		return strings.TrimPrefix(sub[1], "tel:")
	})
	text = entities.Replace(text)
	for _, r := range text {
		if unicode.IsControl(r) && r != '\t' && r != '\n' {
			return Command{}, &UsageError{Problem: UsageControl, Input: text}
		}
	}
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return Command{Kind: CommandForm, Recipient: recipient}, nil
	}
	if len(fields) == 1 && strings.EqualFold(fields[0], "help") {
		if recipient != "" {
			return Command{}, &UsageError{Problem: UsageMention, Input: text}
		}
		return Command{Kind: CommandHelp}, nil
	}
	if strings.EqualFold(fields[0], "history") {
		if recipient != "" {
			return Command{}, &UsageError{Problem: UsageMention, Input: text}
		}
		if len(fields) == 1 {
			return Command{}, &UsageError{Problem: UsageNoSubject, Input: fields[0]}
		}
		return Command{Kind: CommandHistory, Subject: strings.Join(fields[1:], " ")}, nil
	}
	if !instanceName.MatchString(fields[0]) {
		return Command{}, &UsageError{Problem: UsageBadInstance, Input: fields[0]}
	}
	if len(fields) == 1 {
		// No phone: the form asks for it, on a phone's keyboard.
		return Command{Kind: CommandForm, Instance: fields[0], Recipient: recipient}, nil
	}
	return Command{Kind: CommandLink, Instance: fields[0], Phone: strings.Join(fields[1:], " "), Recipient: recipient}, nil
}

// escape makes user text safe inside mrkdwn: no <!channel>, no links, no
// mentions (Slack's three control characters).
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// quote shows user input verbatim in mrkdwn: escaped, and in code style so
// formatting characters stay literal.
func quote(s string) string {
	s = strings.ReplaceAll(s, "`", "'")
	return "`" + escape(s) + "`"
}
