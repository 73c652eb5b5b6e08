package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// Hand-off (/link <instance> <phone> @agent) and the status card
// (announce), end to end against the strict fake (issue 9): what the
// requester, the agent and the channel see.

const (
	agent = "U2AGENT"
	// handoffText is /link's text as Slack sends it with should_escape
	// (manifest.yml): the number it recognised wrapped as <tel:…|…>, the
	// mention as <@U…|name>.
	handoffText = "support-eg <tel:+201112223333|+20 111 222 3333> <@" + agent + "|agent>"
	maskedEG    = "+20 11 ••• 333"
)

// cardHarness runs the bot with 5 s codes and status cards (announce),
// ticking when the test says, with the agent a member of the workspace
// and, if joined, the bot a member of C0SUPPORT.
func cardHarness(t *testing.T, extra string, joined bool) *harness {
	t.Helper()
	h := newHarness(t)
	h.setConfig("code_lifetime: 5s\nannounce: true\n" + extra)
	h.manualTicks()
	h.slack.SetUser(fakeslack.User{ID: agent, Name: "agent"})
	if joined {
		h.slack.SetChannel(fakeslack.Channel{ID: "C0SUPPORT", Public: true, Member: true})
	}
	h.start()
	return h
}

// agentDM is the agent's one DM message, waited for until it shows want.
func (h *harness) agentDM(want string) fakeslack.Message {
	h.t.Helper()
	var m fakeslack.Message
	ok := h.slack.WaitFor(waitLong, func() bool {
		dm := h.slack.DMScreen(agent)
		if len(dm) == 0 {
			return false
		}
		m = dm[len(dm)-1]
		return strings.Contains(shown(m.Latest()), want)
	})
	if !ok {
		h.t.Fatalf("the agent's DM never showed %q; it shows:\n%s\nlogs:\n%s", want, screenText(h.slack.DMScreen(agent)), h.logs.String())
	}
	return m
}

// cards lists the channel's public messages (what anyone in C0SUPPORT sees).
func (h *harness) cards() []fakeslack.Message {
	var out []fakeslack.Message
	for _, m := range h.slack.Screen("U9NOBODY", "C0SUPPORT") {
		if !m.Ephemeral {
			out = append(out, m)
		}
	}
	return out
}

// card waits until the channel's one card shows want and returns it.
func (h *harness) card(want string) fakeslack.Message {
	h.t.Helper()
	var m fakeslack.Message
	if !h.slack.WaitFor(waitLong, func() bool {
		cs := h.cards()
		if len(cs) != 1 {
			return false
		}
		m = cs[0]
		return strings.Contains(shown(m.Latest()), want)
	}) {
		h.t.Fatalf("the channel never showed one card with %q; it shows:\n%s\nlogs:\n%s", want, screenText(h.cards()), h.logs.String())
	}
	return m
}

// everSawCode lists the messages user could see (their ephemeral messages
// and the channel's in C0SUPPORT, their DM) any version of which showed a
// pairing code.
func (h *harness) everSawCode(user string) []fakeslack.Message {
	var out []fakeslack.Message
	for _, m := range h.slack.Messages() {
		visible := m.Channel == "C0SUPPORT" && (!m.Ephemeral || m.User == user) || m.Channel == fakeslack.DMChannel(user)
		if visible && slices.ContainsFunc(m.Versions, fakeslack.Version.ShowsCode) {
			out = append(out, m)
		}
	}
	return out
}

// editableWithCode lists every message, anyone's, that the bot could still
// edit and that shows code now.
func (h *harness) editableWithCode(code string) []fakeslack.Message {
	var out []fakeslack.Message
	for _, m := range h.slack.Messages() {
		if m.Editable && !m.Deleted && strings.Contains(shown(m.Latest()), code[:4]+"-"+code[4:]) {
			out = append(out, m)
		}
	}
	return out
}

// checkCard fails the test when any version of the channel's cards shows
// a code or a whole number (the fake fails it too), or more than one card
// was posted.
func (h *harness) checkCard() {
	h.t.Helper()
	cs := h.cards()
	if len(cs) > 1 {
		h.t.Errorf("%d cards in the channel, want one:\n%s", len(cs), screenText(cs))
	}
	for _, c := range cs {
		for _, v := range c.Versions {
			if v.ShowsCode() || v.ShowsPhone() || !strings.Contains(shown(v), maskedEG) {
				h.t.Errorf("a card version shows a code or the whole number, or not the masked one:\n%s", shown(v))
			}
		}
	}
}

// TestHandOff: the code goes to the agent's DM, kept live there (the
// countdown in place, then the final state replacing it); the requester
// sees a line saying so and how it ended, never the code; the channel's
// card follows the state, never showing the code or the whole number; and
// after the end no message the bot can edit shows the code.
func TestHandOff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		act       func(h *harness, env *fakeslack.Envelope, code string)
		dm        string   // what the agent's DM shows at the end
		requester []string // what the requester sees at the end, message by message (the card among them)
		card      string
		event     pairing.EventKind
	}{
		{"the phone links", func(h *harness, _ *fakeslack.Envelope, code string) {
			h.wawp.EnterCode(instanceEG, code)
			h.tickAndWait()
		}, "Linked —", []string{"Requesting", "WhatsApp pairing", "Code sent to", "Linked —"}, "✅ Linked at", pairing.EventLinked},
		{"the code expires", func(h *harness, _ *fakeslack.Envelope, _ string) {
			h.clock.advance(time.Second)
			h.tickAndWait()
		}, "Expired —", []string{"Requesting", "WhatsApp pairing", "Code sent to", "Expired —"}, "⌛ Expired", pairing.EventExpired},
		{"the agent cancels in the DM", func(h *harness, _ *fakeslack.Envelope, _ string) {
			if _, err := h.slack.Click(h.slack.DMScreen(agent)[0].ID, agent, "cancel"); err != nil {
				h.t.Fatal(err)
			}
			h.agentDM("Cancelled")
			h.tickAndWait()
		}, "Cancelled —", []string{"Requesting", "WhatsApp pairing", "Code sent to", "Cancelled —"}, "🛑 Cancelled", pairing.EventCancelled},
		{"the requester cancels from their line", func(h *harness, env *fakeslack.Envelope, _ string) {
			h.click(env.MessageID, "U1", "cancel")
			h.agentDM("Cancelled")
			h.tickAndWait()
		}, "Cancelled —", []string{"Requesting", "WhatsApp pairing", "Cancelled —"}, "🛑 Cancelled", pairing.EventCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := cardHarness(t, "", true)
			env := h.command("U1", handoffText)
			if ack := shown(h.waitAck(env)); !strings.Contains(ack, "to send to <@"+agent+"> privately") {
				t.Errorf("the ack: %s", ack)
			}
			h.waitText(env.MessageID, "Code sent to <@"+agent+"> privately")
			code := h.wawp.Code(instanceEG)
			dm := h.agentDM("Enter this code")
			if first := shown(dm.Versions[0]); !strings.Contains(first, "<@U1> is getting you a WhatsApp pairing code") {
				t.Errorf("the agent's DM opened with:\n%s\nwant who is sending a code, before it came", first)
			}
			if got := shown(dm.Latest()); !dm.Editable || !strings.Contains(got, code[:4]+"-"+code[4:]) || !strings.Contains(got, "sent to you by <@U1>") || !strings.Contains(got, "▓") {
				t.Errorf("the agent's DM: %s; want the live code, who sent it, editable", screenText([]fakeslack.Message{dm}))
			}
			c := h.card("⏳ Waiting for the phone")
			if got := shown(c.Latest()); !strings.Contains(got, "<@U1> for <@"+agent+">") || !strings.Contains(got, "support-eg") {
				t.Errorf("the card: %s; want who asked, for whom, which instance", got)
			}
			for range 4 { // every fifth of the lifetime, a countdown step in place
				h.clock.advance(time.Second)
				h.tickAndWait()
			}
			if got := h.slack.Message(dm.ID); len(got.Versions) != 6 {
				t.Errorf("the agent's DM has %d versions, want 6 (opened, the code, 4 countdown steps)", len(got.Versions))
			}
			tt.act(h, env, code)
			end := h.agentDM(tt.dm)
			h.card(tt.card)
			h.stop()
			if dms := h.slack.DMScreen(agent); len(dms) != 1 || dms[0].ID != dm.ID || end.Latest().ShowsCode() {
				t.Errorf("the agent's DM:\n%s\nwant the one message, changed in place, the code gone", screenText(dms))
			}
			got := h.describe("U1", tt.requester...)
			var shows []string
			for _, s := range got {
				shows = append(shows, s.shows)
			}
			if !slices.Equal(shows, tt.requester) {
				t.Errorf("the requester sees:\n%s\nwant %q", screenText(h.slack.Screen("U1", "C0SUPPORT")), tt.requester)
			}
			if saw := h.everSawCode("U1"); len(saw) != 0 {
				t.Errorf("the requester saw the code:\n%s", screenText(saw))
			}
			h.checkCard()
			if left := h.editableWithCode(code); len(left) != 0 {
				t.Errorf("after the end, messages the bot can edit still show the code:\n%s", screenText(left))
			}
			var kinds []pairing.EventKind
			for _, e := range h.auditEvents() {
				kinds = append(kinds, e.Kind)
				if e.User != "U1" || e.Recipient != agent {
					t.Errorf("audit event %s: user %q, recipient %q; want U1 and %s", e.Kind, e.User, e.Recipient, agent)
				}
			}
			if want := []pairing.EventKind{pairing.EventRequested, pairing.EventCodeIssued, tt.event}; !slices.Equal(kinds, want) {
				t.Errorf("audit %v, want %v", kinds, want)
			}
		})
	}
}

// The agent may ask for a new code from their DM once the first expired:
// it is the requester's request (their limits), shown in the same DM, and
// the card follows it.
func TestHandOffNewCodeFromTheDM(t *testing.T) {
	t.Parallel()
	h := cardHarness(t, "", true)
	env := h.command("U1", handoffText)
	h.waitText(env.MessageID, "Code sent to")
	first := h.wawp.Code(instanceEG)
	h.clock.advance(5 * time.Second)
	h.tickAndWait()
	dm := h.agentDM("Expired —")
	if _, err := h.slack.Click(dm.ID, agent, "new_code"); err != nil {
		t.Fatal(err)
	}
	h.agentDM("Code 2 of 3")
	second := h.wawp.Code(instanceEG)
	h.card("⏳ Waiting for the phone")
	h.wawp.EnterCode(instanceEG, second)
	h.tickAndWait()
	h.agentDM("Linked —")
	h.card("✅ Linked at")
	// The requester learns that the renewed code linked, as for the first.
	h.waitText(env.MessageID, "Linked —")
	h.stop()
	if dms := h.slack.DMScreen(agent); len(dms) != 1 {
		t.Errorf("the agent's DM:\n%s\nwant the one message", screenText(dms))
	}
	if saw := h.everSawCode("U1"); len(saw) != 0 {
		t.Errorf("the requester saw a code:\n%s", screenText(saw))
	}
	for _, code := range []string{first, second} {
		if left := h.editableWithCode(code); len(left) != 0 {
			t.Errorf("messages the bot can edit still show %s:\n%s", code, screenText(left))
		}
	}
	h.checkCard()
	for _, e := range h.auditEvents() {
		if e.User != "U1" || e.Recipient != agent {
			t.Errorf("audit event %s: user %q, recipient %q", e.Kind, e.User, e.Recipient)
		}
	}
}

// A hand-off to a bot, a deactivated member, a member of another
// organisation, yourself, or someone Slack cannot tell about is refused
// clearly: nothing is requested, nobody gets a DM, no card.
func TestHandOffRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		user    *fakeslack.User // the recipient as users.info has them (nil: unknown)
		mention string
		want    string
		outcome pairing.Outcome // audited, with the recipient ("": not audited)
	}{
		{"a bot", &fakeslack.User{ID: "U0ROBOT", Name: "robot", IsBot: true}, "U0ROBOT", "is a bot", pairing.OutcomeRecipientBot},
		{"deactivated", &fakeslack.User{ID: "U0GONE", Name: "gone", Deleted: true}, "U0GONE", "account is deactivated", pairing.OutcomeRecipientDeactivated},
		{"another organisation", &fakeslack.User{ID: "U0PARTNER", Name: "partner", TeamID: "T0OTHERORG"}, "U0PARTNER", "is in another organisation", pairing.OutcomeRecipientForeign},
		{"yourself", nil, "U1", "That is you: just use `/link support-eg +20 11 12223333`", ""},
		{"unknown to Slack", nil, "U0NOSUCH", "Slack could not say who", pairing.OutcomeRecipientUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := cardHarness(t, "", true)
			if tt.user != nil {
				h.slack.SetUser(*tt.user)
			}
			// Delivered twice (issue 11): refused, shown and audited once.
			h.slack.DuplicateNext(1)
			env := h.command("U1", "support-eg <tel:+201112223333|+20 111 222 3333> <@"+tt.mention+"|x>")
			v := h.waitText(env.MessageID, tt.want)
			if !strings.Contains(shown(v), "Nothing was requested") {
				t.Errorf("the refusal: %s", shown(v))
			}
			h.stop()
			if n := strings.Count(screenText(h.slack.Thread(env.MessageID)), tt.want); n != 1 {
				t.Errorf("the refusal shows %d times for one command delivered twice:\n%s", n, screenText(h.slack.Thread(env.MessageID)))
			}
			if n := len(h.wawp.Calls(fakewawp.RequestCode)); n != 0 {
				t.Errorf("Wawp was asked for %d codes", n)
			}
			if dm := h.slack.DMScreen(tt.mention); len(dm) != 0 {
				t.Errorf("%s got a DM:\n%s", tt.mention, screenText(dm))
			}
			if cs := h.cards(); len(cs) != 0 {
				t.Errorf("cards:\n%s", screenText(cs))
			}
			var got []pairing.Event
			for _, e := range h.auditEvents() {
				if e.Kind == pairing.EventRefused {
					got = append(got, e)
				}
			}
			switch {
			case tt.outcome == "" && len(got) != 0:
				t.Errorf("audited %+v", got)
			case tt.outcome != "" && (len(got) != 1 || got[0].Outcome != tt.outcome || got[0].Recipient != tt.mention || got[0].User != "U1" || got[0].Phone != maskedEG):
				t.Errorf("audited %+v; want one %s refusal of U1's hand-off to %s", got, tt.outcome, tt.mention)
			}
		})
	}
}

// A hand-off whose DM Slack refuses (the app's Messages tab is off) asks
// for no code: the requester is told why, nobody sees a code, and the log
// names the manifest setting.
func TestHandOffDMRefused(t *testing.T) {
	t.Parallel()
	h := cardHarness(t, "", true)
	h.slack.SetMessagesTab(false)
	env := h.command("U1", handoffText)
	v := h.waitText(env.MessageID, "could not send <@"+agent+"> a DM")
	if !strings.Contains(shown(v), "Messages Tab") || !strings.Contains(shown(v), "no code was requested") {
		t.Errorf("the requester is told: %s", shown(v))
	}
	h.stop()
	if n := len(h.wawp.Calls(fakewawp.RequestCode)); n != 0 {
		t.Errorf("Wawp was asked for %d codes", n)
	}
	for _, m := range h.slack.Messages() {
		if slices.ContainsFunc(m.Versions, fakeslack.Version.ShowsCode) {
			t.Errorf("a code was shown: %s", screenText([]fakeslack.Message{m}))
		}
	}
	if cs := h.cards(); len(cs) != 0 {
		t.Errorf("cards:\n%s", screenText(cs))
	}
	if !strings.Contains(h.logs.String(), "messages_tab_enabled") {
		t.Errorf("the log does not name the manifest setting")
	}
	events := h.auditEvents()
	if last := events[len(events)-1]; last.Outcome != pairing.OutcomeDMRefused || last.Recipient != agent {
		t.Errorf("the last audit event: %+v", last)
	}
}

// A channel the bot is not in gets no card: the requester is told once,
// in their first answer, how to add the bot, and the pairing goes on.
func TestCardNotInChannel(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		channel fakeslack.Channel
		text    string
		first   string // the requester's first answer
	}{
		{"public, code shown to the requester", fakeslack.Channel{ID: "C0SUPPORT", Public: true}, "support-eg +201112223333", "Enter this code"},
		{"private, handed off", fakeslack.Channel{ID: "C0SUPPORT"}, handoffText, "Code sent to"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := cardHarness(t, "", false)
			h.slack.SetChannel(tt.channel)
			env := h.command("U1", tt.text)
			v := h.waitText(env.MessageID, tt.first)
			if !strings.Contains(shown(v), "/invite @linkbot") {
				t.Errorf("the first answer does not say how to add the bot:\n%s", shown(v))
			}
			h.clock.advance(5 * time.Second)
			h.tickAndWait()
			h.waitText(env.MessageID, "Expired —")
			h.stop()
			told := 0
			for _, m := range h.slack.Screen("U1", "C0SUPPORT") {
				if strings.Contains(shown(m.Latest()), "/invite") {
					told++
				}
			}
			if told != 1 {
				t.Errorf("told how to add the bot %d times, want once:\n%s", told, screenText(h.slack.Screen("U1", "C0SUPPORT")))
			}
			if cs := h.cards(); len(cs) != 0 {
				t.Errorf("cards:\n%s", screenText(cs))
			}
		})
	}
}

// A restart mid-countdown resumes the edits of the agent's DM and of the
// card: their channels and ts are stored with the pairing.
func TestRestartResumesHandOffAndCard(t *testing.T) {
	t.Parallel()
	h := cardHarness(t, "", true)
	env := h.command("U1", handoffText)
	h.waitText(env.MessageID, "Code sent to")
	code := h.wawp.Code(instanceEG)
	dm := h.agentDM("Enter this code")
	card := h.card("Waiting for the phone")
	h.stop()
	h.start()
	h.clock.advance(2 * time.Second)
	h.tickAndWait()
	if got := h.slack.Message(dm.ID); len(got.Versions) != len(dm.Versions)+1 || !strings.Contains(shown(got.Latest()), "▓▓▓▓▓▓░░░░") {
		t.Errorf("after the restart the DM message has %d versions (had %d), showing:\n%s\nwant the countdown step made in place", len(got.Versions), len(dm.Versions), shown(got.Latest()))
	}
	h.clock.advance(3 * time.Second)
	h.tickAndWait()
	h.agentDM("Expired —")
	if got := h.card("⌛ Expired"); got.ID != card.ID {
		t.Errorf("the card's final state went to another message")
	}
	h.stop()
	if dms := h.slack.DMScreen(agent); len(dms) != 1 || dms[0].ID != dm.ID {
		t.Errorf("the agent's DM:\n%s\nwant the one message", screenText(dms))
	}
	if left := h.editableWithCode(code); len(left) != 0 {
		t.Errorf("messages the bot can edit still show the code:\n%s", screenText(left))
	}
	h.checkCard()
}

// The default flow with a card: after a Refresh click the code message is
// edited in place; when the pairing ends no message the bot can edit shows
// the code (the clicked ephemeral, the card), and the card never showed it.
func TestCardWithClickedEphemeral(t *testing.T) {
	t.Parallel()
	h := cardHarness(t, "", true)
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	code := h.wawp.Code(instanceEG)
	if got := shown(h.card("Waiting for the phone").Latest()); !strings.Contains(got, "Requested by <@U1>, who sees the code privately") {
		t.Errorf("the card: %s", got)
	}
	h.click(env.MessageID, "U1", "refresh")
	h.waitText(env.MessageID, "left")
	h.clock.advance(5 * time.Second)
	h.tickAndWait()
	h.waitText(env.MessageID, "Expired —")
	h.card("⌛ Expired")
	h.stop()
	if left := h.editableWithCode(code); len(left) != 0 {
		t.Errorf("messages the bot can edit still show the code:\n%s", screenText(left))
	}
	h.checkCard()
}

// TestManifest: the app manifest asks for exactly the scopes the bot uses
// (the end-to-end tests run the fake with these scopes, so one missing
// fails them: users:read for a hand-off's users.info, usergroups:read for
// access rules), not chat:write.public (cards go only where the bot was
// invited); /link escapes mentions, so a hand-off's arrives as <@U…|name>;
// and the Messages tab is on, for DMs.
func TestManifest(t *testing.T) {
	m := readManifest(t)
	if want := []string{"commands", "chat:write", "users:read", "usergroups:read"}; !slices.Equal(m.OAuth.Scopes.Bot, want) {
		t.Errorf("bot scopes %q, want %q", m.OAuth.Scopes.Bot, want)
	}
	if len(m.Features.SlashCommands) != 1 || m.Features.SlashCommands[0].Command != "/link" || !m.Features.SlashCommands[0].ShouldEscape {
		t.Errorf("slash commands %+v; want /link with should_escape: true", m.Features.SlashCommands)
	}
	if !m.Features.AppHome.MessagesTab {
		t.Errorf("the Messages tab is off: DMs (delivery: dm, hand-offs) are refused")
	}
}

// A guest (a restricted member of the workspace) may be handed a code:
// field agents are often guests.
func TestHandOffToAGuest(t *testing.T) {
	t.Parallel()
	h := cardHarness(t, "", true)
	h.slack.SetUser(fakeslack.User{ID: agent, Name: "agent", IsRestricted: true})
	env := h.command("U1", handoffText)
	h.waitText(env.MessageID, "Code sent to")
	h.agentDM("Enter this code")
}

// Try again on a hand-off that failed before its DM was opened (the
// instance was starting up) runs the checks the first /link ran: who the
// recipient is now (deactivated since: refused), and the DM opened before
// request-code (the Messages tab turned off since: refused). Neither asks
// Wawp for a code, and no code reaches anyone.
func TestHandOffTryAgainChecksTheRecipient(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		change  func(h *harness)
		want    string
		outcome pairing.Outcome // audited for the renewal, with the recipient
	}{
		{"deactivated since", func(h *harness) { h.slack.SetUser(fakeslack.User{ID: agent, Name: "agent", Deleted: true}) }, "account is deactivated", pairing.OutcomeRecipientDeactivated},
		{"Messages tab off since", func(h *harness) { h.slack.SetMessagesTab(false) }, "could not send <@" + agent + "> a DM", pairing.OutcomeDMRefused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := cardHarness(t, "", true)
			h.wawp.SetStatus(instanceEG, "STARTING", "")
			env := h.command("U1", handoffText)
			h.waitText(env.MessageID, "still starting up")
			h.wawp.SetStatus(instanceEG, "SCAN_QR_CODE", "")
			h.clock.advance(time.Minute)
			tt.change(h)
			h.click(env.MessageID, "U1", "try_again")
			h.waitText(env.MessageID, tt.want)
			h.clock.advance(10 * time.Second)
			h.tickAndWait()
			h.stop()
			if n := len(h.wawp.Calls(fakewawp.RequestCode)); n != 0 {
				t.Errorf("Wawp was asked for %d codes", n)
			}
			for _, m := range h.slack.Messages() {
				if slices.ContainsFunc(m.Versions, fakeslack.Version.ShowsCode) {
					t.Errorf("a code was shown: %s", screenText([]fakeslack.Message{m}))
				}
			}
			events := h.auditEvents()
			if !slices.ContainsFunc(events, func(e pairing.Event) bool { return e.Outcome == tt.outcome && e.Recipient == agent && e.User == "U1" }) {
				t.Errorf("audit events %+v; want one with outcome %s for U1's hand-off to %s", events, tt.outcome, agent)
			}
		})
	}
}

// Enterprise Grid, the app installed to one workspace of the organisation
// (manifest.yml: org_deploy_enabled: false): a member of that workspace
// whose home workspace is another of the organisation (users.info's
// team_id) may be handed a code; a member of the organisation who is not
// in this workspace, or of another organisation, may not.
func TestHandOffInEnterpriseGrid(t *testing.T) {
	t.Parallel()
	const org = "E0LINKBOT"
	for _, tt := range []struct {
		name string
		user fakeslack.User
		want string
	}{
		{"a member of this workspace from another of the organisation", fakeslack.User{ID: agent, Name: "agent", TeamID: "T0OTHERWS", EnterpriseID: org, Teams: []string{"T0OTHERWS", fakeslack.TeamID}}, "Code sent to"},
		{"a member of the organisation not in this workspace", fakeslack.User{ID: agent, Name: "agent", TeamID: "T0OTHERWS", EnterpriseID: org, Teams: []string{"T0OTHERWS"}}, "is in another organisation"},
		{"a member of another organisation", fakeslack.User{ID: agent, Name: "agent", TeamID: "T0PARTNER", EnterpriseID: "E0PARTNER", Teams: []string{"T0PARTNER", fakeslack.TeamID}}, "is in another organisation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.setConfig("code_lifetime: 5s\n")
			h.manualTicks()
			h.slack.SetEnterprise(org, false)
			h.slack.SetUser(tt.user)
			h.start()
			env := h.command("U1", handoffText)
			h.waitText(env.MessageID, tt.want)
		})
	}
}

// A hand-off whose recipient's DM Slack will not take the code into
// (chat.update refused for good on that DM: msg_too_long, invalid_blocks,
// …) fails there: the code is withdrawn (no message shows it, the
// instance is free again), the requester is told why, the agent's opening
// no longer promises a code, and the log says what happened (not that
// the code was shown ephemerally: a hand-off's code never is).
func TestHandOffCodeRefusedByTheDMTellsTheRequester(t *testing.T) {
	t.Parallel()
	h := cardHarness(t, "", false)
	h.slack.Refuse("chat.update", fakeslack.DMChannel(agent), "msg_too_long")
	env := h.command("U1", handoffText)
	h.waitAck(env)
	v := h.waitText(env.MessageID, "would not let the bot put the code into")
	if !strings.Contains(shown(v), "msg_too_long") || !strings.Contains(shown(v), "withdrawn") {
		t.Errorf("the requester is told: %s", shown(v))
	}
	h.tickAndWait()
	h.tickAndWait()
	for _, m := range h.slack.Messages() {
		if slices.ContainsFunc(m.Versions, fakeslack.Version.ShowsCode) {
			t.Errorf("a code was shown: %s", screenText([]fakeslack.Message{m}))
		}
	}
	if dm := h.slack.DMScreen(agent); len(dm) != 1 {
		t.Errorf("the agent's DM:\n%s\nwant the one opening", screenText(dm))
	}
	if n := h.slack.Refused("chat.update", fakeslack.DMChannel(agent)); n > 2 {
		t.Errorf("chat.update refused for good was called %d times, want at most twice (the code, then the opening's retraction)", n)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "the hand-off fails") || strings.Contains(logs, "shown ephemerally") {
		t.Errorf("logs:\n%s", logs)
	}
	// The instance is free: another request gets a code at once.
	again := h.command("U3", "support-eg +201001234567")
	h.waitText(again.MessageID, "Pairing code")
	h.stop()
	if !slices.ContainsFunc(h.auditEvents(), func(e pairing.Event) bool {
		return e.Outcome == pairing.OutcomeDMRefused && e.Recipient == agent
	}) {
		t.Errorf("no audit event records the refused DM")
	}
}

// Two hand-offs to the same field agent within a second (two coordinators,
// or one handing off two phones): Slack allows about one post a second
// into one conversation, and the second DM's opening is answered 429
// (Retry-After 1 s). The bot waits that second out (it runs after the
// ack, within the DM's 5 s) and delivers both, rather than refusing a
// valid request.
func TestTwoHandOffsToOneAgentAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setConfig("  - alias: field-two\n    id: B1B2C3D4E5F6\n    region: EG\ncode_lifetime: 60s\n")
	h.wawp.AddInstance("B1B2C3D4E5F6", "")
	h.slack.SetUser(fakeslack.User{ID: agent, Name: "agent"})
	h.start()
	first := h.command("U1", handoffText)
	second := h.command("U3", "field-two <tel:+201001234567|+20 100 123 4567> <@"+agent+"|agent>")
	for _, env := range []*fakeslack.Envelope{first, second} {
		if _, ok := h.waitMessage(env.MessageID, "Code sent to"); !ok {
			t.Errorf("a hand-off to an agent who got another one a moment before was not delivered; its requester sees:\n%s\nthe agent's DM:\n%s\nlogs:\n%s",
				screenText(h.slack.Thread(env.MessageID)), screenText(h.slack.DMScreen(agent)), h.logs.String())
		}
	}
}
