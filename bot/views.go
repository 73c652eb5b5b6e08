package bot

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// Message is what the bot shows: Block Kit plus the fallback text that
// notifications and screen readers use. The fallback never holds a code.
type Message struct {
	Text   string
	Blocks []slack.Block
}

// ackPayload is m as a slash command's immediate answer: an ephemeral
// message (the ack payload becomes the reply; there is nothing to replace).
func (m Message) ackPayload() any {
	return struct {
		ResponseType string        `json:"response_type"`
		Text         string        `json:"text"`
		Blocks       []slack.Block `json:"blocks,omitempty"`
	}{slack.ResponseTypeEphemeral, m.Text, m.Blocks}
}

// webhook is m as a response_url post that replaces the message it belongs to.
func (m Message) webhook() *slack.WebhookMessage {
	return &slack.WebhookMessage{
		Text: m.Text, Blocks: &slack.Blocks{BlockSet: m.Blocks},
		ResponseType: slack.ResponseTypeEphemeral, ReplaceOriginal: true,
	}
}

// Action IDs of the buttons; the value of each is the pairing ID.
const (
	ActionRefresh  = "refresh"
	ActionNewCode  = "new_code"
	ActionCancel   = "cancel"
	ActionTryAgain = "try_again"
)

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}
func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

func section(id, text string) slack.Block {
	return slack.NewSectionBlock(mrkdwn(text), nil, nil, slack.SectionBlockOptionBlockID(id))
}

func contextBlock(id string, texts ...string) slack.Block {
	els := make([]slack.MixedElement, len(texts))
	for i, t := range texts {
		els[i] = mrkdwn(t)
	}
	return slack.NewContextBlock(id, els...)
}

func button(actionID, value, text, style string) *slack.ButtonBlockElement {
	b := slack.NewButtonBlockElement(actionID, value, plain(text))
	if style != "" {
		b.Style = slack.Style(style)
	}
	return b
}

func actions(buttons ...*slack.ButtonBlockElement) slack.Block {
	els := make([]slack.BlockElement, len(buttons))
	for i, b := range buttons {
		els[i] = b
	}
	return slack.NewActionBlock("actions", els...)
}

// notice is a one-section message: the common shape of every refusal.
func notice(fallback, text string, extra ...slack.Block) Message {
	return Message{Text: fallback, Blocks: append([]slack.Block{section("notice", text)}, extra...)}
}

// slackTime renders t in the reader's time zone with Slack's date token;
// the fallback (shown by old clients) is UTC.
func slackTime(t time.Time, token string) string {
	layout := "15:04 UTC"
	if token == "{time_secs}" {
		layout = "15:04:05 UTC"
	}
	return fmt.Sprintf("<!date^%d^%s|%s>", t.Unix(), token, t.UTC().Format(layout))
}

func inAbout(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(math.Ceil(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(math.Ceil(d.Minutes())))
	default:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
}

func windowText(d time.Duration) string {
	if d%time.Hour == 0 {
		if d == time.Hour {
			return "hour"
		}
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d min", int(d.Minutes()))
}

// formatCode shows a code as XXXX-XXXX, the way WhatsApp's input groups it.
func formatCode(code string) string {
	if len(code) == 8 {
		return code[:4] + "-" + code[4:]
	}
	return code
}

// HelpView answers /link help and an empty /link.
func HelpView(aliases []string, region string) Message {
	sort.Strings(aliases)
	text := "*Link a WhatsApp number to a Wawp instance with a pairing code*\n" +
		"`/link <instance> <phone>`, for example `/link A1B2C3D4E5F6 +20 111 222 3333`\n" +
		"• *instance*: a 12-character Wawp instance ID"
	if len(aliases) > 0 {
		text += " or one of: " + escape(strings.Join(aliases, ", "))
	}
	// Not "0020…": a region reads numbers with its own international
	// prefix (009 in Nigeria, 011 in the US), where 00 is not "+".
	text += "\n• *phone*: with country code (`+20…`), or as dialled in the instance's region"
	if region != "" {
		text += fmt.Sprintf(" (%s unless set otherwise)", escape(region))
	}
	text += ": national, or after that region's international prefix"
	text += "\n`/link <instance> <phone> @person` sends the code to that person (the one holding the phone) in their DM with the bot, instead of to you."
	text += "\n`/link history <phone|instance>` shows the last 10 events for it."
	text += "\nThe code is shown only to you. Read it to the person holding the phone; never paste it in a channel."
	return Message{Text: "How to use /link", Blocks: []slack.Block{section("help", text)}}
}

// RequestingView is the instant acknowledgement of a /link.
// An extension typed after the number is said to be left out (issue 7):
// WhatsApp links a number, and the agent should know what was asked for.
func RequestingView(phone pairing.Phone, instance string) Message {
	t := fmt.Sprintf("⏳ Requesting a pairing code for %s on %s…", escape(phone.International), escape(instance))
	if phone.Extension != "" {
		t += fmt.Sprintf(" The extension %s is left out: WhatsApp links the number itself.", escape(phone.Extension))
	}
	return notice(t, t)
}

// UsageView explains a /link text that could not be parsed.
func UsageView(err *UsageError) Message {
	var t string
	switch err.Problem {
	case UsageTooLong:
		t = fmt.Sprintf("❓ That is too long for a command (at most %d characters). Type `/link <instance> <phone>`.", maxCommandText)
	case UsageNoPhone:
		t = fmt.Sprintf("❓ Which phone? Type `/link %s <phone>`, for example `/link %s +20 111 222 3333`.", escape(err.Input), escape(err.Input))
	case UsageNoSubject:
		t = "❓ History of what? Type `/link history <phone>` or `/link history <instance>`."
	case UsageBadInstance:
		t = fmt.Sprintf("❓ %s is not an instance name. Type `/link <instance> <phone>`; `/link help` lists the instances.", quote(err.Input))
	case UsageMention:
		t = "❓ To hand the code to the person holding the phone, mention them once, last: `/link <instance> <phone> @person`."
	case UsageNotAPerson:
		t = fmt.Sprintf("❓ %s is not a person. A code can be handed to one person only: `/link <instance> <phone> @person`.", quote(err.Input))
	case UsageMentionUnescaped:
		t = fmt.Sprintf("❓ Slack sent %s as plain text, so the bot cannot tell who it is. Ask the admin to turn on *Escape channels, users, and links* for /link (should_escape in manifest.yml); meanwhile run `/link <instance> <phone>` and read the code to them.", quote(err.Input))
	default:
		t = "❓ The command contains characters that cannot be part of an instance or a phone number. Type `/link <instance> <phone>`."
	}
	return notice("That /link command could not be understood", t)
}

// UnknownInstanceView says the instance name matches nothing.
func UnknownInstanceView(name string, aliases []string) Message {
	sort.Strings(aliases)
	t := fmt.Sprintf("❓ There is no instance called %s. Use a 12-character Wawp instance ID", quote(name))
	if len(aliases) > 0 {
		t += " or one of: " + escape(strings.Join(aliases, ", "))
	}
	return notice("Unknown instance", t+".")
}

var phoneProblems = map[pairing.PhoneProblem]string{
	pairing.PhoneEmpty:          "has no digits",
	pairing.PhoneLetters:        "contains letters",
	pairing.PhoneBadCharacters:  "contains characters other than digits, spaces, dashes, dots, slashes and parentheses",
	pairing.PhoneNoCountryCode:  "has no country code",
	pairing.PhoneBadCountryCode: "starts with a country code that does not exist",
	pairing.PhoneTooShort:       "is too short",
	pairing.PhoneTooLong:        "is too long",
	pairing.PhoneInvalid:        "is not a valid number",
}

// PhoneView explains a phone number that could not be used.
func PhoneView(err *pairing.PhoneError) Message {
	where := ""
	example := "+20 111 222 3333"
	if err.Region != "" && err.Problem != pairing.PhoneNoCountryCode {
		where = " for " + escape(err.Region)
		example = pairing.RegionExample(err.Region)
	}
	t := fmt.Sprintf("❓ %s %s%s.", quote(err.Input), phoneProblems[err.Problem], where)
	if err.Understood != "" && err.Understood != err.Input {
		t += fmt.Sprintf(" It was read as %s.", quote(err.Understood))
	}
	t += fmt.Sprintf(" Include the country code, e.g. `%s`.", example)
	return notice("That phone number cannot be used", t)
}

// ForeignTeamView refuses commands from other organisations' users in
// Slack Connect channels: codes are for the workspace that installed the bot.
func ForeignTeamView() Message {
	t := "🚫 This bot serves only the workspace that installed it. Ask someone from that workspace to request the code."
	return notice("Not available to your workspace", t)
}

// CodeModel is what the code message shows.
type CodeModel struct {
	PairingID   string
	Code        string // 8 characters, no dash
	Phone       string // international format
	Instance    string
	InstanceID  string
	RequestedBy string
	Now         time.Time
	ExpiresAt   time.Time
	Lifetime    time.Duration
	Attempt     int
	PhoneLimit  pairing.Window
	// NewCodeAt is when the phone's limit next allows a code; zero means now.
	NewCodeAt time.Time
	// Static: the message will never be edited (posted through a slash
	// command's response_url, which only adds messages), so it shows
	// nothing that goes stale: the absolute expiry, no time left.
	Static bool
	// DM: the message is in the recipient's DM with the app; Channel is
	// where the code was asked for.
	DM      bool
	Channel string
	// Window: the code is in the live code window (a modal, kept current
	// by the tick): a status line, no Refresh.
	Window bool
	// HandedBy is the requester who handed the code to the DM's recipient
	// (a hand-off); "" when the requester reads their own DM.
	HandedBy string
	// Note, when set, comes first: why the code is here and not where it
	// was meant to go (a DM Slack refused).
	Note string
}

// progress draws the time left as a ten-step bar.
func progress(left, total time.Duration) string {
	n := 0
	if total > 0 && left > 0 {
		n = int(math.Ceil(10 * float64(left) / float64(total)))
	}
	n = min(n, 10)
	return strings.Repeat("▓", n) + strings.Repeat("░", 10-n)
}

func timeLeft(left time.Duration) string {
	switch {
	case left <= 0:
		return "expiring now"
	case left < time.Minute:
		return "under a minute left"
	}
	return fmt.Sprintf("about %d min left", int(left.Minutes()))
}

// CodeView shows a live pairing code: the code in a header (the largest
// text Slack has), the steps, the absolute expiry and the buttons.
func CodeView(m CodeModel) Message {
	left := m.ExpiresAt.Sub(m.Now)
	where := fmt.Sprintf("*%s*", escape(m.Instance))
	if m.InstanceID != "" && m.InstanceID != m.Instance {
		where += fmt.Sprintf(" (`%s`)", escape(m.InstanceID))
	}
	var buttons []*slack.ButtonBlockElement
	if !m.Window {
		buttons = append(buttons, button(ActionRefresh, m.PairingID, "Refresh", ""))
	}
	limitNote := fmt.Sprintf("Code %d of %d for this number in %s", m.Attempt, m.PhoneLimit.Max, windowText(m.PhoneLimit.Period))
	if m.NewCodeAt.IsZero() {
		buttons = append(buttons, button(ActionNewCode, m.PairingID, "New code", ""))
	} else {
		limitNote += " · next code allowed at " + slackTime(m.NewCodeAt, "{time}")
	}
	buttons = append(buttons, button(ActionCancel, m.PairingID, "Cancel", "danger"))
	if !m.DM && !m.Window {
		// The code large in a modal, kept current there (issue 10).
		buttons = append(buttons, button(ActionShowWindow, m.PairingID, "Show code window", ""))
	}
	// A message nothing will edit shows only what stays true: the expiry
	// as an absolute time (in the reader's zone), no time left, no bar.
	countdown := fmt.Sprintf("⏱ Expires at %s (your time) · %s  %s", slackTime(m.ExpiresAt, "{time_secs}"), timeLeft(left), progress(left, m.Lifetime))
	if m.Static {
		countdown = fmt.Sprintf("⏱ Expires at %s (your time) · Refresh shows the time left", slackTime(m.ExpiresAt, "{time_secs}"))
	}
	meta := fmt.Sprintf("%s · requested by <@%s> · only you can see this", limitNote, escape(m.RequestedBy))
	if m.DM {
		meta = fmt.Sprintf("%s · requested by <@%s>", limitNote, escape(m.RequestedBy))
		if m.HandedBy != "" {
			meta = fmt.Sprintf("%s · sent to you by <@%s>", limitNote, escape(m.HandedBy))
		}
		if m.Channel != "" {
			meta += fmt.Sprintf(" in <#%s>", escape(m.Channel))
		}
		meta += " · only you and the bot see this DM"
	}
	if m.Window {
		meta = fmt.Sprintf("%s · requested by <@%s> · only you see this window; closing it cancels nothing", limitNote, escape(m.RequestedBy))
	}
	var blocks []slack.Block
	if m.Note != "" {
		blocks = append(blocks, contextBlock("note", m.Note))
	}
	blocks = append(blocks,
		slack.NewHeaderBlock(plain(formatCode(m.Code)), slack.HeaderBlockOptionBlockID("code")),
		section("intro", fmt.Sprintf("Enter this code on the phone *%s* to link it to %s.", escape(m.Phone), where)),
		section("steps", "1. Open WhatsApp on that phone\n2. *Settings → Linked devices → Link a device*\n3. Tap *Link with phone number instead*\n4. Type the code"),
		contextBlock("countdown", countdown),
	)
	if m.Window {
		blocks = append(blocks, contextBlock("status", "⏳ Waiting for the phone… this window updates by itself."))
	}
	blocks = append(blocks,
		actions(buttons...),
		contextBlock("meta", meta),
	)
	return Message{
		Text:   fmt.Sprintf("Pairing code ready for %s on %s (shown only to you in Slack)", escape(m.Phone), escape(m.Instance)),
		Blocks: blocks,
	}
}

// DMSentView is the channel's one ephemeral line when the code went to the
// requester's DM: where it is, until when (an absolute time: the line is
// never edited), and Cancel.
func DMSentView(pairingID, phone, instance string, expiresAt time.Time) Message {
	t := fmt.Sprintf("📨 Sent to you in a DM · the code for %s on %s expires at %s (your time)", escape(phone), escape(instance), slackTime(expiresAt, "{time_secs}"))
	return notice("Pairing code sent to you in a DM", t, actions(button(ActionCancel, pairingID, "Cancel", "danger")))
}

// dmFailedNote says why a code meant for a DM is shown ephemerally: Slack
// refused the DM (errCode is Slack's error).
func dmFailedNote(errCode string) string {
	switch errCode {
	case "messages_tab_disabled":
		return "📨 The bot cannot send you DMs (its Messages tab is off: ask the admin to turn on App Home → Messages Tab), so the code is here, where only you can see it."
	case dmBusy:
		return "📨 Many codes are being sent at once, and Slack's rate limit would hold up your DM: the code is here instead, where only you can see it."
	}
	return fmt.Sprintf("📨 Slack did not let the bot send you a DM (%s), so the code is here, where only you can see it.", escape(errCode))
}

// LimitView explains a refusal by one of the limits; Wawp was not called.
func LimitView(err *pairing.LimitError, instance string, now time.Time) Message {
	phone := err.Phone.International
	when := fmt.Sprintf("%s (in %s)", slackTime(err.RetryAt, "{time}"), inAbout(err.RetryAt.Sub(now)))
	var t string
	switch err.Limit {
	case pairing.LimitPhone:
		t = fmt.Sprintf("🚫 %s already had %d codes in the last %s. WhatsApp blocks pairing for hours after a few more, so the next code is allowed at %s.",
			escape(phone), err.Count, windowText(err.Window.Period), when)
	case pairing.LimitUser:
		t = fmt.Sprintf("🚫 You requested %d codes in the last %s, the most one person may. The next one is allowed at %s. If you need more, ask the bot's admin.",
			err.Count, windowText(err.Window.Period), when)
	default:
		holder := "someone"
		if err.Holder.RequestedBy != "" {
			holder = "<@" + escape(err.Holder.RequestedBy) + ">"
		}
		t = fmt.Sprintf("⏳ %s already has a live code, requested by %s for %s, valid until %s. A new code would cancel it on that phone: wait for it to be used or to expire, or ask them to cancel it.",
			escape(instance), holder, escape(pairing.MaskPhone(pairing.PhoneFromDigits(err.Holder.Phone).International)), when)
	}
	return notice("No code requested: a limit was reached", t)
}

// StatusView explains why the instance cannot pair right now.
func StatusView(err *pairing.StatusError, instance, pairingID string, now time.Time) Message {
	in := escape(instance)
	switch err.Status {
	case pairing.StatusStarting:
		t := fmt.Sprintf("⏳ %s is still starting up. Try again in %s.", in, inAbout(err.RetryAt.Sub(now)))
		return notice("The instance is starting up", t, actions(button(ActionTryAgain, pairingID, "Try again", "primary")))
	case pairing.StatusWorking:
		t := fmt.Sprintf("✋ %s is already linked and working", in)
		if err.Me != "" {
			t += " (to " + escape(pairing.PhoneFromDigits(err.Me).International) + ")"
		}
		return notice("The instance is already linked", t+"; requesting a code would take it over. Log it out in Wawp first, then run /link again.")
	case pairing.StatusStopped:
		return notice("The instance is stopped", fmt.Sprintf("⏹ %s is stopped. Start it in the Wawp dashboard, wait until it shows a QR code, then run /link again.", in))
	case pairing.StatusFailed:
		return notice("The instance has failed", fmt.Sprintf("⚠️ %s is in a failed state. Restart it in the Wawp dashboard, then run /link again.", in))
	}
	// A status Wawp does not document: no code is asked of a session the bot
	// does not understand; like STARTING, it is most likely passing.
	t := fmt.Sprintf("⏳ %s reports status %s, which the bot does not know, and is not waiting for a phone yet. Try again in a moment; if it persists, check it in the Wawp dashboard.", in, quote(string(err.Status)))
	return notice("The instance is not ready", t, actions(button(ActionTryAgain, pairingID, "Try again", "primary")))
}

// WawpErrorView explains a failed Wawp call without internals.
func WawpErrorView(err error, instance string) Message {
	return notice("No code: Wawp reported a problem", wawpErrorText(err, instance))
}

// wawpErrorText is WawpErrorView's sentence for err.
func wawpErrorText(err error, instance string) string {
	in := escape(instance)
	var t string
	switch {
	case errors.Is(err, pairing.ErrUnauthorized):
		t = "🔑 Wawp rejected the bot's access token. Ask the bot's admin to check `WAWP_ACCESS_TOKEN`."
	case errors.Is(err, pairing.ErrNoInstance):
		t = fmt.Sprintf("❓ Wawp has no instance %s. Check the ID in the Wawp dashboard (or ask the admin to fix the alias).", in)
	case errors.Is(err, pairing.ErrBadRequest):
		t = "⚠️ Wawp did not accept the request. Check the number and try again; if it happens again, tell the bot's admin."
	case errors.Is(err, pairing.ErrRateLimited):
		t = "⏳ Wawp is rate-limiting the bot. Wait a minute, then try again."
	case errors.Is(err, pairing.ErrUpstream):
		t = fmt.Sprintf("⚠️ Wawp could not reach WhatsApp for %s. Wait a minute, then try again.", in)
	case errors.Is(err, pairing.ErrServer):
		t = "⚠️ Wawp had an internal error. Wait a minute, then try again; if it keeps failing, check Wawp's status."
	case errors.Is(err, pairing.ErrTimeout):
		t = "⌛ Wawp did not answer in time. Wait a minute before trying again: the request may still have reached WhatsApp."
	case errors.Is(err, pairing.ErrLockedOut):
		t = "🔒 WhatsApp is refusing codes for this number for now: it asked for too many. Codes will not work for hours; link it by QR code instead, or try again much later."
	case errors.Is(err, pairing.ErrQRUnavailable), errors.Is(err, pairing.ErrForbidden):
		t = fmt.Sprintf("🚫 The Wawp plan of %s has no QR links (temporary links). Link with a pairing code instead, or ask the bot's admin about the plan.", in)
	case errors.Is(err, pairing.ErrUnreachable):
		t = "📡 The bot cannot reach Wawp right now. Try again in a minute; if it persists, tell the bot's admin."
	default:
		t = "⚠️ Wawp answered with something the bot could not read. Wait a minute, then try again; if it keeps happening, tell the bot's admin."
	}
	return t
}

// InternalErrorView is for failures of the bot itself.
func InternalErrorView(requestID string) Message {
	return notice("Something went wrong", fmt.Sprintf("⚠️ Something went wrong inside the bot. Try again; if it keeps failing, give the admin this reference: `%s`.", escape(requestID)))
}

// UnavailableView answers a command or click while linkbot's database
// cannot be reached (pairing.ErrUnavailable, issue 11): nothing was
// done — no code requested, nothing counted — and the same command works
// once the database is back.
func UnavailableView() Message {
	return notice("linkbot cannot reach its database", "⏳ linkbot cannot reach its database right now; nothing was done — try again in a minute.")
}

// CodeUnrecordedView answers a request whose code Wawp issued while
// linkbot's database could not record it (pairing.ErrCodeUnrecorded): the
// code is not shown, and unlike UnavailableView's case the request counts
// against the phone's limit.
func CodeUnrecordedView(instance string) Message {
	return notice("No code: linkbot could not record it", fmt.Sprintf("⚠️ WhatsApp issued a code for %s, but linkbot could not reach its database to record it, so it is not shown. This request counts against the phone's limit; try again in a minute.", escape(instance)))
}

// LinkedView is the final state after the phone entered the code.
func LinkedView(phone, instance string, at time.Time) Message {
	t := fmt.Sprintf("✅ Linked — %s is now connected to %s (%s).", escape(phone), escape(instance), slackTime(at, "{time_secs}"))
	return notice("Linked", t)
}

// WrongPhoneView says loudly that another number was linked.
func WrongPhoneView(linked, wanted, instance string) Message {
	t := fmt.Sprintf("⚠️ *Linked the WRONG phone* — %s is now %s, not %s. Log it out in Wawp.", escape(instance), escape(linked), escape(wanted))
	return notice("Linked the wrong phone", t)
}

// ExpiredView replaces an unused code; New code obeys the phone's limit.
func ExpiredView(phone, pairingID string, now, newCodeAt time.Time) Message {
	t := fmt.Sprintf("⌛ Expired — the code for %s was not entered in time.", escape(phone))
	if newCodeAt.After(now) {
		return notice("Pairing code expired", t+fmt.Sprintf(" A new code is allowed at %s.", slackTime(newCodeAt, "{time}")))
	}
	return notice("Pairing code expired", t+" Request a new one when the phone is ready.", actions(button(ActionNewCode, pairingID, "New code", "primary")))
}

// UndeliveredModel is what UndeliveredView shows.
type UndeliveredModel struct {
	PairingID, Phone, Instance string
	Recipient                  string // a hand-off's; "" for the requester's own DM
	QR                         bool   // a QR link, not a code
	Now, NewCodeAt             time.Time
}

// UndeliveredView ends a code (or QR link) that expired before Slack let
// the bot put it into its DM: Slack's rate limit held it up. It says so,
// rather than that the code was not entered in time, and offers a new one.
func UndeliveredView(m UndeliveredModel) Message {
	what := "code"
	if m.QR {
		what = "QR link"
	}
	where := "your DM"
	if m.Recipient != "" {
		where = mention(m.Recipient) + "'s DM"
	}
	t := fmt.Sprintf("⌛ Expired before it could be shown — Slack's rate limit held up the bot's messages, so the %s for %s on %s never reached %s. Nobody could enter it.",
		what, escape(m.Phone), escape(m.Instance), where)
	if m.NewCodeAt.After(m.Now) {
		return notice("Pairing code expired undelivered", t+fmt.Sprintf(" A new code is allowed at %s.", slackTime(m.NewCodeAt, "{time}")))
	}
	return notice("Pairing code expired undelivered", t+" Ask for a new one.", actions(button(ActionNewCode, m.PairingID, "New code", "primary")))
}

// CancelledView replaces a cancelled code.
func CancelledView(phone string) Message {
	return notice("Pairing cancelled", fmt.Sprintf("🛑 Cancelled — the code for %s was withdrawn. Run /link again when the phone is ready.", escape(phone)))
}

// InterruptedModel is what the message of an interrupted request shows.
type InterruptedModel struct {
	Phone      string // international format
	Instance   string
	Attempt    int // n-th code for this phone in the window, this one included
	PhoneLimit pairing.Window
	Now        time.Time
	NewCodeAt  time.Time // when the phone's limit next allows a code
}

// InterruptedView ends a request that never settled: the bot stopped while
// Wawp had it. It says what happened, that it counted (request-code may
// have reached WhatsApp), and the command to run again.
func InterruptedView(m InterruptedModel) Message {
	again := fmt.Sprintf("`/link %s %s`", escape(m.Instance), escape(m.Phone))
	t := fmt.Sprintf("⚠️ *Interrupted* — the bot stopped (a restart or a crash) while it was asking Wawp for a code for %s on %s, so no code can be shown. "+
		"The request may have reached WhatsApp, so it counts toward this number's limit: code %d of %d in %s.",
		escape(m.Phone), escape(m.Instance), m.Attempt, m.PhoneLimit.Max, windowText(m.PhoneLimit.Period))
	if m.NewCodeAt.After(m.Now) {
		t += fmt.Sprintf(" The next code is allowed at %s (in %s); then run %s again.", slackTime(m.NewCodeAt, "{time}"), inAbout(m.NewCodeAt.Sub(m.Now)), again)
	} else {
		t += fmt.Sprintf(" Run %s again when the phone is ready.", again)
	}
	return notice("Code request interrupted", t)
}

// TooSoonView refuses a "Try again" during the warm-up wait.
func TooSoonView(instance, pairingID string, retryAt, now time.Time) Message {
	t := fmt.Sprintf("⏳ %s needs a little longer to start. Try again in %s.", escape(instance), inAbout(retryAt.Sub(now)))
	return notice("Still starting up", t, actions(button(ActionTryAgain, pairingID, "Try again", "primary")))
}

// ReplacedView answers a click on an older copy of a code message whose
// code a newer one replaced: the old code goes, and it says where the new
// one is.
func ReplacedView(inDM bool) Message {
	where := "in your newer message below"
	if inDM {
		where = "in your DM with the bot"
	}
	return notice("This code was replaced", "↪️ This code was replaced by a newer one, shown "+where+".")
}

// EndedView answers a click on a message whose pairing is over.
func EndedView() Message {
	return notice("This pairing is over", "This pairing has already ended. Run `/link <instance> <phone>` for a new one.")
}

// FailedView ends a pairing whose instance failed or vanished mid-way.
func FailedView(phone, instance, reason string) Message {
	what := "failed"
	if reason == string(pairing.OutcomeInstanceGone) {
		what = "no longer exists in Wawp"
	}
	t := fmt.Sprintf("⚠️ %s %s while waiting for %s, so the code no longer works. Check the instance in the Wawp dashboard, then run /link again.", escape(instance), what, escape(phone))
	return notice("Pairing failed", t)
}

// AccessDeniedView refuses a user the rules do not allow.
func AccessDeniedView(instance, ask string) Message {
	t := fmt.Sprintf("🔒 You are not on the list of people who may request pairing codes for %s.", escape(instance))
	if ask != "" {
		t += " Ask " + ask + " for access." // from the config file: mrkdwn on purpose
	} else {
		t += " Ask the bot's admin for access."
	}
	return notice("Not allowed", t)
}

// HistoryView lists audit events, newest first. Events never hold codes,
// and phones in them are masked.
func HistoryView(subject string, events []pairing.Event) Message {
	if len(events) == 0 {
		return notice("No history", fmt.Sprintf("📜 No events for %s.", quote(subject)))
	}
	lines := []string{fmt.Sprintf("📜 *Last %d events for %s*", len(events), quote(subject))}
	for _, e := range events {
		line := fmt.Sprintf("%s · *%s* · <@%s> · %s · %s", slackTime(e.Time, "{date_short} {time}"), escape(string(e.Kind)), escape(e.User), escape(e.Instance), escape(e.Phone))
		if e.Outcome != "" {
			line += " · " + escape(string(e.Outcome))
		}
		lines = append(lines, line)
	}
	return notice("History for "+subject, strings.Join(lines, "\n"))
}
