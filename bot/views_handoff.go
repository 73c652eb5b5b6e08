package bot

import (
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// Views of a hand-off (/link <instance> <phone> @agent: the code goes to
// the agent's DM, never to the requester) and of the status card
// (announce: one public message in the channel, kept current). Issue 9.

// mention is a user mention in mrkdwn.
func mention(user string) string { return "<@" + escape(user) + ">" }

// HandoffRequestingView is the instant answer to a hand-off: the code will
// go to recipient, never here.
func HandoffRequestingView(phone pairing.Phone, instance, recipient string) Message {
	t := fmt.Sprintf("⏳ Requesting a pairing code for %s on %s, to send to %s privately…", escape(phone.International), escape(instance), mention(recipient))
	if phone.Extension != "" {
		t += fmt.Sprintf(" The extension %s is left out: WhatsApp links the number itself.", escape(phone.Extension))
	}
	return notice("Requesting a pairing code to send privately", t)
}

// RecipientRefusedView says why a hand-off was turned away because of whom
// it named; nothing was requested. again is the command that gets the code
// for the requester themself.
func RecipientRefusedView(why pairing.Outcome, recipient, again, detail string) Message {
	who := mention(recipient)
	var t string
	switch why {
	case pairing.OutcomeRecipientSelf:
		t = fmt.Sprintf("❓ That is you: just use %s, and the code is shown to you privately.", again)
	case pairing.OutcomeRecipientBot:
		t = fmt.Sprintf("🤖 %s is a bot. A pairing code goes to the person holding the phone: mention them instead, or run %s and read the code to them.", who, again)
	case pairing.OutcomeRecipientDeactivated:
		t = fmt.Sprintf("🚫 %s's account is deactivated, so they cannot get the code. Mention someone else, or run %s and read the code to them.", who, again)
	case pairing.OutcomeRecipientForeign:
		t = fmt.Sprintf("🚫 %s is in another organisation (a Slack Connect channel). Codes stay inside the workspace that installed the bot: mention someone from it, or run %s and read the code to them.", who, again)
	default:
		t = fmt.Sprintf("❓ Slack could not say who %s is (%s), so no code was requested. Try again in a minute.", who, escape(detail))
	}
	return notice("No code requested: it cannot be handed to that person", t+" Nothing was requested.")
}

// HandoffSentView is the requester's one ephemeral line for a hand-off:
// the code went to recipient's DM (it is never shown here), until when (an
// absolute time: the line is never edited), and Cancel. note, when set,
// comes first (no status card: how to add the bot).
func HandoffSentView(pairingID, phone, instance, recipient string, expiresAt time.Time, note string) Message {
	t := fmt.Sprintf("📨 Code sent to %s privately · the code for %s on %s expires at %s (your time). How it ends shows here.",
		mention(recipient), escape(phone), escape(instance), slackTime(expiresAt, "{time_secs}"))
	m := notice("Pairing code sent privately to the person holding the phone", t, actions(button(ActionCancel, pairingID, "Cancel", "danger")))
	return withNote(m, note)
}

// withNote puts a context note above m's blocks.
func withNote(m Message, note string) Message {
	if note != "" {
		m.Blocks = append([]slack.Block{contextBlock("note", note)}, m.Blocks...)
	}
	return m
}

// HandoffWaitingView opens the recipient's DM, before the code is asked
// for: who is sending it, and for which phone.
func HandoffWaitingView(requester, phone, instance string) Message {
	t := fmt.Sprintf("📨 %s is getting you a WhatsApp pairing code for the phone *%s*, to link it to *%s*. It appears here in a moment.",
		mention(requester), escape(phone), escape(instance))
	return notice("A pairing code is on its way", t)
}

// DMOpeningView opens the requester's DM (delivery: dm) without the code,
// which chat.update then adds once the message's channel and ts are
// stored: a post whose answer is lost leaves a message without a code.
func DMOpeningView(phone, instance string) Message {
	t := fmt.Sprintf("🔐 Your WhatsApp pairing code for the phone *%s*, to link it to *%s*, appears here in a moment.", escape(phone), escape(instance))
	return notice("A pairing code is on its way", t)
}

// HandoffNoCodeView replaces the recipient's DM when the request ended
// without a code they could use (Wawp failed, the bot was interrupted): the
// requester has been told why.
func HandoffNoCodeView(requester, phone, instance string) Message {
	t := fmt.Sprintf("⚠️ No code came: %s's request for the phone %s on %s did not get one. %s has been told why.",
		mention(requester), escape(phone), escape(instance), mention(requester))
	return notice("No pairing code came", t)
}

// HandoffDMRefusedView tells the requester that the recipient's DM could
// not be posted (errCode is Slack's error), so no code was requested: no
// one would have seen it.
func HandoffDMRefusedView(recipient, errCode string) Message {
	why := fmt.Sprintf("Slack said %s", quote(errCode))
	if errCode == "messages_tab_disabled" {
		why = "its Messages tab is off: ask the admin to turn on App Home → Messages Tab"
	}
	t := fmt.Sprintf("📨 The bot could not send %s a DM (%s), so no code was requested: nobody would have seen it. Run `/link <instance> <phone>` to get the code yourself.", mention(recipient), why)
	return notice("No code: the DM could not be sent", t)
}

// HandoffCodeRefusedView tells a hand-off's requester that Slack would not
// let the bot put the code into recipient's DM (errCode is Slack's error),
// so it was withdrawn: nobody saw it. Unlike HandoffDMRefusedView the code
// was requested, so it counted against the phone.
func HandoffCodeRefusedView(recipient, errCode, phone, instance string) Message {
	t := fmt.Sprintf("📨 Slack would not let the bot put the code into %s's DM (Slack said %s), so the code for %s on %s was withdrawn: nobody saw it. It still counts as one code for this number. Run `/link %s %s` to get the code yourself.",
		mention(recipient), quote(errCode), escape(phone), escape(instance), escape(instance), escape(phone))
	return notice("No code: it could not be put in the DM", t)
}

// DMCodeElsewhereView replaces the opening of a requester's DM (delivery:
// dm) when Slack would not take the code into it: the code is shown in
// channel instead, where only the requester sees it.
func DMCodeElsewhereView(phone, instance, channel string) Message {
	t := fmt.Sprintf("📨 Slack would not let the bot put the pairing code for the phone *%s* on *%s* here, so it is shown in <#%s> instead, where only you can see it.",
		escape(phone), escape(instance), escape(channel))
	return notice("The pairing code is shown in the channel instead", t)
}

// cardNote tells the requester, once (in their first answer), that the
// status card could not be posted (errCode is Slack's error) and how to
// add the bot to the channel. The pairing goes on without a card.
func cardNote(botName, errCode string) string {
	if botName == "" {
		botName = "linkbot"
	}
	return fmt.Sprintf("📋 No status card in this channel: the bot is not in it (%s). To get cards here, add it with `/invite @%s`.", escape(errCode), escape(botName))
}

// CardModel is what a status card shows: who asked, for whom, which
// instance, the masked phone, and how the pairing stands. Never the code,
// never the full number.
type CardModel struct {
	Requester string
	Recipient string // who the code was handed to; "" when the requester has it
	Instance  string
	Masked    string // the masked phone, e.g. +20 11 ••• 333
	State     pairing.State
	ExpiresAt time.Time // for a live code
	EndedAt   time.Time // for a linked one
	// LinkedMasked is the other number a wrong-phone link came up with, masked.
	LinkedMasked string
	Reason       pairing.Reason // a failed pairing's
}

// CardView is the status card in the channel where /link was typed.
func CardView(m CardModel) Message {
	who := fmt.Sprintf("Requested by %s, who sees the code privately", mention(m.Requester))
	if m.Recipient != "" {
		who = fmt.Sprintf("Requested by %s for %s, who gets the code privately", mention(m.Requester), mention(m.Recipient))
	}
	head := fmt.Sprintf("📱 *WhatsApp pairing* · %s · %s\n%s", escape(m.Instance), escape(m.Masked), who)
	var state, short string
	switch m.State {
	case pairing.StateLive:
		state, short = fmt.Sprintf("⏳ Waiting for the phone · the code expires at %s (your time)", slackTime(m.ExpiresAt, "{time_secs}")), "waiting for the phone"
	case pairing.StateLinked:
		state, short = fmt.Sprintf("✅ Linked at %s", slackTime(m.EndedAt, "{time_secs}")), "linked"
	case pairing.StateExpired:
		state, short = "⌛ Expired — the code was not entered in time", "expired"
	case pairing.StateCancelled:
		state, short = "🛑 Cancelled", "cancelled"
	case pairing.StateWrongPhone:
		state, short = fmt.Sprintf("⚠️ Failed — %s linked another number (%s), not this one", escape(m.Instance), escape(m.LinkedMasked)), "failed"
	default:
		what := "no code could be used"
		switch m.Reason.Outcome() {
		case pairing.OutcomeInstanceFailed:
			what = escape(m.Instance) + " failed"
		case pairing.OutcomeInstanceGone:
			what = escape(m.Instance) + " no longer exists in Wawp"
		}
		state, short = "⚠️ Failed — "+what, "failed"
	}
	return Message{
		Text:   fmt.Sprintf("WhatsApp pairing for %s on %s: %s", escape(m.Masked), escape(m.Instance), short),
		Blocks: []slack.Block{section("card", head), contextBlock("state", state)},
	}
}
