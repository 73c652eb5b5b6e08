package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/wawp"
)

// startDM stores a live pairing of user's with delivery dm, its code issued
// at issued on instance, and shows it as the bot does after Start: the code
// in user's DM, one line in the channel.
func (r *countdownRig) startDM(id, user, instance string, issued time.Time) pairing.Pairing {
	return r.startDMCard(id, user, instance, issued, false)
}

// startDMCard is startDM with, if card, a status card in C0SUPPORT
// (announce), posted with the code.
func (r *countdownRig) startDMCard(id, user, instance string, issued time.Time, card bool) pairing.Pairing {
	r.t.Helper()
	p := r.requestDM(id, user, instance, issued, card)
	if !p.DM.Posted() || card && !p.Card.Posted() {
		r.t.Fatalf("the DM or card of %s was not posted: %+v, %+v", id, p.DM, p.Card)
	}
	return p
}

// requestDM is startDMCard without requiring the DM (or the card) to be
// posted: the code may be shown ephemerally instead.
func (r *countdownRig) requestDM(id, user, instance string, issued time.Time, card bool) pairing.Pairing {
	r.t.Helper()
	r.wawp.AddInstance(instance, "")
	_, url := r.slack.OpenMessage(user, "⏳ Requesting…")
	p := pairing.Pairing{
		ID: id, Instance: instance, InstanceName: instance, Phone: "20101" + fmt.Sprintf("%07d", len(id)*1000+int(id[len(id)-1])),
		RequestedBy: user, Team: fakeslack.TeamID, Channel: "C0SUPPORT", ResponseURL: url, URLIssued: issued,
		Delivery: pairing.DeliveryDM, DM: pairing.Surface{Recipient: user},
		State: pairing.StateLive, Code: "ABCD1234", Attempt: 1, RequestedAt: issued, IssuedAt: issued, ExpiresAt: issued.Add(pairing.DefaultCodeLifetime),
	}
	if card {
		p.Card = pairing.Surface{Channel: "C0SUPPORT"}
	}
	if err := r.db.Restore([]pairing.Pairing{p}); err != nil {
		r.t.Fatal(err)
	}
	r.bot.show(context.Background(), p, showing{answer: onNone})
	p, err := r.db.Pairing(r.t.Context(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// sawCode reports whether user has seen code so far, in their DM or
// ephemerally in C0SUPPORT.
func (r *countdownRig) sawCode(user, code string) bool {
	for _, m := range append(r.slack.DMScreen(user), r.slack.Screen(user, "C0SUPPORT")...) {
		if slices.ContainsFunc(m.Versions, func(v fakeslack.Version) bool { return shows(v, code) }) {
			return true
		}
	}
	return false
}

// unseen lists the users of U000…U(n-1) who have not seen code so far.
func (r *countdownRig) unseen(n int, code string) []string {
	var out []string
	for i := range n {
		if user := fmt.Sprintf("U%03d", i); !r.sawCode(user, code) {
			out = append(out, user)
		}
	}
	return out
}

// Status cards share the workspace's chat.update limit with the DMs: 100
// live DM pairings, each with a card, ticking at once stay inside the
// fake's 50 a minute, and every DM and every card ends on its final state.
func TestCardsShareTheEditLimit(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.slack.SetChannel(fakeslack.Channel{ID: "C0SUPPORT", Public: true, Member: true})
	// The cards are posted at one instant as the test's setup: Slack's
	// one post a second per channel is TestPostRateLimitIsHeld's.
	r.slack.SetPostsPerSecond(0)
	const n = 100
	for i := range n {
		r.requestDM(fmt.Sprintf("p%03d", i), fmt.Sprintf("U%03d", i), fmt.Sprintf("INST%08d", i%20), t0, true)
	}
	maxCalls := 0
	for s := 5; s <= 600; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
		maxCalls = max(maxCalls, r.slack.Calls("chat.update"))
		if s == 145 { // the codes expire at 150 s
			if u := r.unseen(n, "ABCD1234"); len(u) > 0 {
				t.Errorf("%d requesters never saw their code before it expired: %v", len(u), u)
			}
		}
	}
	if n := r.slack.RateLimitedCalls("chat.update"); n != 0 {
		t.Errorf("Slack answered %d chat.update calls with 429", n)
	}
	if maxCalls > fakeslack.DefaultMethodLimit {
		t.Errorf("%d chat.update calls in one minute, more than Slack's %d", maxCalls, fakeslack.DefaultMethodLimit)
	}
	cards := r.slack.Screen("U9NOBODY", "C0SUPPORT")
	if len(cards) != n {
		t.Fatalf("%d cards, want %d", len(cards), n)
	}
	for _, c := range cards {
		if !strings.Contains(shownText(c.Latest()), "Expired") {
			t.Fatalf("a card at the end:\n%s\nwant the expiry", screenText([]fakeslack.Message{c}))
		}
	}
	for i := range n {
		// A code the budget could not put into its DM soon was shown
		// ephemerally instead, and its DM never opened.
		if dm := r.slack.DMScreen(fmt.Sprintf("U%03d", i)); len(dm) > 1 || len(dm) == 1 && !strings.Contains(shownText(dm[0].Latest()), "Expired") {
			t.Fatalf("a DM at the end:\n%s", screenText(dm))
		}
	}
	if w := r.watched(); len(w) != 0 {
		t.Errorf("%d pairings still watched", len(w))
	}
}

// 200 DM pairings asked at once share the workspace's chat.update limit
// (the fake's 50 a minute, on the test's clock), which cannot carry 200
// codes into their DMs before they expire (150 s). The bot stays inside it
// (the fake never has to answer 429, and fails the test on any call made
// before a Retry-After ran out); the codes the budget can put into their
// DMs within a quarter of their lifetime go there, and every other
// requester sees theirs ephemerally at once, so every requester sees
// their code before it expires, and none is told it was not entered in
// time without having seen it. Every DM ends showing its final state, and
// nothing stays watched.
func TestTwoHundredDMsStayWithinTheEditLimit(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	const n = 200
	for i := range n {
		r.requestDM(fmt.Sprintf("p%03d", i), fmt.Sprintf("U%03d", i), fmt.Sprintf("INST%08d", i%20), t0, false)
	}
	maxCalls := 0
	for s := 5; s <= 600; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
		maxCalls = max(maxCalls, r.slack.Calls("chat.update"))
		if s == 145 { // the codes expire at 150 s
			if u := r.unseen(n, "ABCD1234"); len(u) > 0 {
				t.Errorf("%d requesters never saw their code before it expired: %v", len(u), u)
			}
		}
	}
	if n := r.slack.RateLimitedCalls("chat.update"); n != 0 {
		t.Errorf("Slack answered %d chat.update calls with 429", n)
	}
	if maxCalls > fakeslack.DefaultMethodLimit {
		t.Errorf("%d chat.update calls in one minute, more than Slack's %d", maxCalls, fakeslack.DefaultMethodLimit)
	}
	inDM := 0
	for i := range n {
		user := fmt.Sprintf("U%03d", i)
		dm := r.slack.DMScreen(user)
		if len(dm) > 1 || len(dm) == 1 && (!strings.Contains(shownText(dm[0].Latest()), "Expired") || shows(dm[0].Latest(), "ABCD1234")) {
			t.Fatalf("%s's DM at the end:\n%s\nwant its one message showing the expiry, no code (or none)", user, screenText(dm))
		}
		inDM += len(dm)
	}
	if inDM < 30 {
		t.Errorf("only %d codes went to their DMs; the budget carries about 35 within a quarter of their lifetime", inDM)
	}
	if w := r.watched(); len(w) != 0 {
		t.Errorf("%d pairings still watched", len(w))
	}
}

// A 429 on chat.update stops every DM edit until its Retry-After has run
// out (the fake fails the test on any call before), then the edit due by
// then is made.
func TestDMEditsHonourRetryAfter(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	p := r.startDM("a", "U1", "INSTAAAAAAAA", t0)
	r.startDM("b", "U2", "INSTBBBBBBBB", t0)
	r.slack.RateLimitNextCall("chat.update", 20*time.Second) // other calls used the workspace's minute
	for s := 5; s <= 45; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	if n := r.slack.RateLimitedCalls("chat.update"); n != 1 {
		t.Fatalf("%d 429s, want the one Slack answered at 30 s", n)
	}
	dm := r.slack.Message(r.slack.DMScreen("U1")[0].ID)
	if len(dm.Versions) != 2 { // opened, then the code put in
		t.Errorf("the DM was edited %d times while Retry-After ran", len(dm.Versions)-2)
	}
	r.clock.Set(t0.Add(50 * time.Second)) // the 429's Retry-After has run out
	r.tick()
	for _, user := range []string{"U1", "U2"} {
		if dm := r.slack.DMScreen(user)[0]; len(dm.Versions) != 3 || !strings.Contains(shownText(dm.Latest()), "▓▓▓▓▓▓▓▓░░") {
			t.Errorf("%s's DM after Retry-After: %d versions\n%s\nwant the step due then", user, len(dm.Versions), screenText([]fakeslack.Message{dm}))
		}
	}
	_ = p
}

// With one use of the edit budget left, a final state goes before a
// countdown step (it takes a code off the screen), and among countdown
// steps the oldest pairing's goes first; what waits is edited by a later
// tick, as it is by then.
func TestFinalStatesFirstThenOldestSteps(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	a := r.startDM("a", "U1", "INSTAAAAAAAA", t0)
	b := r.startDM("b", "U2", "INSTBBBBBBBB", t0.Add(time.Second))
	c := r.startDM("c", "U3", "INSTCCCCCCCC", t0.Add(2*time.Second))
	r.bot.edits = newEditBudget(4, r.clock.Now) // one use every 15 s, one at a time
	// Each DM was opened, then its code put in: its versions count from there.
	versions := func(user string) int { return len(r.slack.DMScreen(user)[0].Versions) - 1 }
	// At 32 s all three have a countdown step due; c is cancelled.
	r.clock.Set(t0.Add(32 * time.Second))
	if _, err := r.svc.Cancel(context.Background(), c.ID, "U3", pairing.Click{}); err != nil {
		t.Fatal(err)
	}
	r.tick()
	if got := []int{versions("U1"), versions("U2"), versions("U3")}; fmt.Sprint(got) != "[1 1 2]" || !strings.Contains(shownText(r.slack.DMScreen("U3")[0].Latest()), "Cancelled") {
		t.Errorf("DM versions of a, b, c after one use: %v; want only c's cancellation", got)
	}
	r.clock.Set(t0.Add(47 * time.Second))
	r.tick()
	if got := []int{versions("U1"), versions("U2")}; fmt.Sprint(got) != "[2 1]" {
		t.Errorf("DM versions of a, b after the next use: %v; want the oldest, a, first", got)
	}
	r.clock.Set(t0.Add(62 * time.Second))
	r.tick()
	if got := []int{versions("U1"), versions("U2")}; fmt.Sprint(got) != "[3 1]" {
		t.Errorf("DM versions of a, b at 62 s: %v; want a's second step first (a is older)", got)
	}
	r.clock.Set(t0.Add(77 * time.Second))
	r.tick()
	// b's first step never got its turn; by now its second is due, and
	// that is what is drawn: a view no longer true is never posted late.
	if dm := r.slack.DMScreen("U2")[0]; len(dm.Versions) != 3 || !strings.Contains(shownText(dm.Latest()), "▓▓▓▓▓▓░░░░") {
		t.Errorf("b's DM: %d versions\n%s\nwant one edit, to the step due now", len(dm.Versions), screenText([]fakeslack.Message{dm}))
	}
	_, _ = a, b
}

// A chat.update Slack refuses for good (msg_too_long, is_archived,
// channel_not_found, …) is not tried again every tick: it would spend the
// shared edit budget on a call that can only fail, and starve the other
// pairings. The message is stuck; at the end it is deleted and the final
// state posted anew, once, while the other pairing gets every step.
func TestPermanentEditRefusalStopsEditing(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	a := r.startDM("a", "U1", "INSTAAAAAAAA", t0)
	r.startDM("b", "U2", "INSTBBBBBBBB", t0)
	r.slack.Refuse("chat.update", a.DM.Channel, "msg_too_long")
	for s := 5; s <= 200; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	if n := r.slack.Refused("chat.update", a.DM.Channel); n != 1 {
		t.Errorf("chat.update refused for good was called %d times, want once", n)
	}
	dm := r.slack.DMScreen("U1")
	if len(dm) != 1 || !strings.Contains(shownText(dm[0].Latest()), "Expired") || dm[0].Latest().ShowsCode() {
		t.Errorf("a's DM at the end:\n%s\nwant the stuck message deleted and the final state posted anew", screenText(dm))
	}
	if b := r.slack.DMScreen("U2")[0]; len(b.Versions) != 1+1+dmSteps || !strings.Contains(shownText(b.Latest()), "Expired") {
		t.Errorf("b's DM: %d versions\n%s\nwant opened, the code, %d steps and the end", len(b.Versions), screenText([]fakeslack.Message{b}), dmSteps-1)
	}
	if w := r.watched(); len(w) != 0 {
		t.Errorf("%d pairings still watched", len(w))
	}
}

// When the final state of a message that can no longer be edited cannot
// be posted anew either (not_in_channel, channel_not_found, …), the
// surface ends there: no tick posts it again.
func TestRefusedRepostIsNotRetried(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	a := r.startDM("a", "U1", "INSTAAAAAAAA", t0)
	r.slack.CloseEditWindow(a.DM.Channel, a.DM.TS)
	r.slack.Refuse("chat.postMessage", a.DM.Channel, "channel_not_found")
	for s := 5; s <= 200; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	if n := r.slack.Refused("chat.postMessage", a.DM.Channel); n != 1 {
		t.Errorf("the refused post was made %d times, want once", n)
	}
	if dm := r.slack.DMScreen("U1"); len(dm) != 0 {
		t.Errorf("U1's DM at the end:\n%s\nwant the stuck message (with its code) deleted", screenText(dm))
	}
	if w := r.watched(); len(w) != 0 {
		t.Errorf("%d pairings still watched", len(w))
	}
}

// Status cards posted into one channel at once meet Slack's one post a
// second per channel: the 429's Retry-After holds that channel's posts
// (the fake fails the test on a post before it ran out), and every card
// is posted by later ticks.
func TestPostRateLimitIsHeld(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.slack.SetChannel(fakeslack.Channel{ID: "C0SUPPORT", Public: true, Member: true})
	for i := range 3 {
		id, user, instance := fmt.Sprintf("p%d", i), fmt.Sprintf("U%d", i), fmt.Sprintf("INST0000000%d", i)
		r.wawp.AddInstance(instance, "")
		_, url := r.slack.OpenMessage(user, "⏳ Requesting…")
		p := pairing.Pairing{
			ID: id, Instance: instance, InstanceName: instance, Phone: fmt.Sprintf("2010100000%02d", i),
			RequestedBy: user, Team: fakeslack.TeamID, Channel: "C0SUPPORT", ResponseURL: url, URLIssued: t0,
			Delivery: pairing.DeliveryDM, DM: pairing.Surface{Recipient: user}, Card: pairing.Surface{Channel: "C0SUPPORT"},
			State: pairing.StateLive, Code: "ABCD1234", Attempt: 1, RequestedAt: t0, IssuedAt: t0, ExpiresAt: t0.Add(pairing.DefaultCodeLifetime),
		}
		if err := r.db.Restore([]pairing.Pairing{p}); err != nil {
			t.Fatal(err)
		}
		r.bot.show(context.Background(), p, showing{answer: onNone})
	}
	for s := range 4 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	if cards := r.slack.Screen("U9NOBODY", "C0SUPPORT"); len(cards) != 3 {
		t.Errorf("%d cards, want 3:\n%s", len(cards), screenText(cards))
	}
	for i := range 3 {
		if dm := r.slack.DMScreen(fmt.Sprintf("U%d", i)); len(dm) != 1 || !shows(dm[0].Latest(), "ABCD1234") {
			t.Errorf("U%d's DM:\n%s\nwant the code (another channel's 429 holds nothing here)", i, screenText(dm))
		}
	}
}

// A DM whose code Slack never lets into the message (every chat.update on
// it refused for good) is replaced once, not over and over: the DM then
// fails as a refused post does, the code is shown ephemerally, and no
// tick loops on it.
func TestCodeEditRefusedForGoodDoesNotLoop(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.slack.Refuse("chat.update", fakeslack.DMChannel("U1"), "msg_too_long")
	_, url := r.slack.OpenMessage("U1", "⏳ Requesting…")
	p := pairing.Pairing{
		ID: "a", Instance: rigInstance, InstanceName: "support", Phone: "201012345678",
		RequestedBy: "U1", Team: fakeslack.TeamID, Channel: "C0SUPPORT", ResponseURL: url, URLIssued: t0,
		Delivery: pairing.DeliveryDM, DM: pairing.Surface{Recipient: "U1"},
		State: pairing.StateLive, Code: "ABCD1234", Attempt: 1, RequestedAt: t0, IssuedAt: t0, ExpiresAt: t0.Add(pairing.DefaultCodeLifetime),
	}
	if err := r.db.Restore([]pairing.Pairing{p}); err != nil {
		t.Fatal(err)
	}
	r.bot.show(context.Background(), p, showing{answer: onNone})
	if got := shownText(r.slack.Screen("U1", "C0SUPPORT")[len(r.slack.Screen("U1", "C0SUPPORT"))-1].Latest()); !strings.Contains(got, "ABCD-1234") {
		t.Errorf("the channel shows %q; want the code, ephemerally, since the DM would not take it", got)
	}
	for s := 5; s <= 200; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	if n := r.slack.Refused("chat.update", fakeslack.DMChannel("U1")); n > 2 {
		t.Errorf("chat.update refused for good was called %d times, want at most twice (the message, then its one replacement)", n)
	}
	if w := r.watched(); len(w) != 0 {
		t.Errorf("%d pairings still watched", len(w))
	}
	for _, m := range r.slack.DMScreen("U1") {
		if m.Latest().ShowsCode() {
			t.Errorf("U1's DM shows a code at the end: %s", screenText([]fakeslack.Message{m}))
		}
	}
}

// A 429's Retry-After outlives the process: it is stored, and a bot
// started during it (a restart, another replica) makes no chat.update
// before it runs out (the fake fails the test on any call before), then
// edits what is due by then.
func TestRetryAfterSurvivesARestart(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.startDM("a", "U1", "INSTAAAAAAAA", t0)
	r.slack.RateLimitNextCall("chat.update", 40*time.Second)
	r.clock.Set(t0.Add(30 * time.Second))
	r.tick() // the step due at 30 s: 429, Retry-After 40 s
	if n := r.slack.RateLimitedCalls("chat.update"); n != 1 {
		t.Fatalf("%d 429s, want 1", n)
	}
	// The restart: a new bot on the same storage.
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, ""), APIURL: r.slack.APIURL(), BotToken: fakeslack.BotToken})
	r.bot.loadHolds(t.Context())
	for s := 35; s <= 65; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	if dm := r.slack.DMScreen("U1")[0]; len(dm.Versions) != 2 {
		t.Errorf("the DM was edited %d times during the Retry-After", len(dm.Versions)-2)
	}
	r.clock.Set(t0.Add(75 * time.Second)) // the Retry-After ran out at 70 s
	r.tick()
	if dm := r.slack.DMScreen("U1")[0]; len(dm.Versions) != 3 {
		t.Errorf("after the Retry-After the DM has %d versions, want the step due then", len(dm.Versions))
	}
}

// clickDM presses action as user on their newest DM message (a click on a
// non-ephemeral message in the app's DM, as Slack sends it), and waits for
// the work it started.
func (r *countdownRig) clickDM(user, action, pairingID string) {
	r.t.Helper()
	dms := r.slack.DMScreen(user)
	if len(dms) == 0 {
		r.t.Fatalf("%s has no DM message to click", user)
	}
	dm := dms[len(dms)-1]
	var cb slack.InteractionCallback
	cb.Type = slack.InteractionTypeBlockActions
	cb.User.ID = user
	cb.ResponseURL = r.slack.NewResponseURL(dm.ID)
	cb.Container = slack.Container{Type: "message", ChannelID: dm.Channel, MessageTs: dm.TS}
	cb.ActionCallback.BlockActions = []*slack.BlockAction{{ActionID: action, Value: pairingID}}
	r.bot.interaction(context.Background(), cb)
	r.bot.work.Wait()
}

// New code clicked in a DM while the shared edit budget is busy with
// other pairings' countdown steps: the renewal's DM (its message still
// showing the superseded code) ranks with the urgent edits, ahead of every
// older pairing's countdown steps, so the superseded code leaves the DM
// and the new one goes in with the next use of the budget.
func TestDMNewCodeGoesAheadOfCountdownSteps(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.startDM("a", "U1", "INSTAAAAAAAA", t0)
	r.startDM("b", "U2", "INSTBBBBBBBB", t0.Add(time.Second))
	c := r.startDM("c", "U3", "INSTCCCCCCCC", t0.Add(2*time.Second))
	r.bot.edits = newEditBudget(4, r.clock.Now) // one use every 15 s
	r.clock.Set(t0.Add(32 * time.Second))
	r.tick() // a's step takes the one use
	r.clickDM("U3", ActionNewCode, c.ID)
	newCode := r.wawp.Code("INSTCCCCCCCC")
	if newCode == "" || newCode == "ABCD1234" {
		t.Fatalf("no new code was requested: %q", newCode)
	}
	// The next use of the budget comes at 47 s.
	r.clock.Set(t0.Add(47 * time.Second))
	r.tick()
	dm := r.slack.DMScreen("U3")
	if len(dm) != 1 {
		t.Fatalf("U3's DM:\n%s", screenText(dm))
	}
	got := shownText(dm[0].Latest())
	if strings.Contains(got, "ABCD-1234") {
		t.Errorf("the first use of the budget after New code left the superseded code ABCD-1234 in U3's DM:\n%s", got)
	}
	if !strings.Contains(got, newCode[:4]+"-"+newCode[4:]) {
		t.Errorf("the first use of the budget after New code did not put the new code %s in U3's DM:\n%s", newCode, got)
	}
}

// A hand-off's requester clicks New code on the final state below their
// line while the shared edit budget is empty: the click is answered at
// once ("Code sent to"), in place, through its own response_url, though
// the new code reaches the recipient's DM only with the budget's next use.
func TestHandOffNewCodeFromTheChannelIsAnsweredWithAnEmptyBudget(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.slack.SetUser(fakeslack.User{ID: "U9", Name: "agent"})
	msgID, url := r.slack.OpenMessage("U1", "⏳ Requesting…")
	p := pairing.Pairing{
		ID: "a", Instance: rigInstance, InstanceName: "support", Phone: "201012345678",
		RequestedBy: "U1", Team: fakeslack.TeamID, Channel: "C0SUPPORT", ResponseURL: url, URLIssued: t0,
		Delivery: pairing.DeliveryDM, DM: pairing.Surface{Recipient: "U9"},
		State: pairing.StateLive, Code: "ABCD1234", Attempt: 1, RequestedAt: t0, IssuedAt: t0, ExpiresAt: t0.Add(pairing.DefaultCodeLifetime),
	}
	if err := r.db.Restore([]pairing.Pairing{p}); err != nil {
		t.Fatal(err)
	}
	r.bot.show(context.Background(), p, showing{answer: onNone})
	r.clock.Set(t0.Add(pairing.DefaultCodeLifetime + time.Second))
	r.tick()
	if got := shownText(r.latest(msgID)); !strings.Contains(got, "Expired") {
		t.Fatalf("the requester sees %q; want the expiry", got)
	}
	r.bot.edits = newEditBudget(4, r.clock.Now)
	r.bot.edits.take()
	r.click(msgID, ActionNewCode, "a")
	if got := shownText(r.latest(msgID)); !strings.Contains(got, "Code sent to") {
		t.Errorf("New code clicked with an empty edit budget: the requester sees\n%s\nwant the new code's line", got)
	}
	if dm := r.slack.DMScreen("U9"); len(dm) != 1 || shows(dm[0].Latest(), r.wawp.Code(rigInstance)) {
		t.Errorf("the agent's DM shows the new code without a use of the budget:\n%s", screenText(dm))
	}
}

// Three tiers share the edit budget: final states first, then codes going
// into their DMs, then countdown steps. A pairing that ended (cancelled)
// takes the next use ahead of older pairings whose DMs wait for their
// codes: its DM, which the bot can edit, stops showing a code that is over.
func TestFinalStatesGoBeforeCodeOpenings(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	b := r.startDM("b", "U9", "INSTBBBBBBBB", t0.Add(time.Second)) // its DM shows its code
	r.bot.edits = newEditBudget(4, r.clock.Now)                    // one use every 15 s
	r.bot.edits.take()
	// Two older requests whose DMs are open, their codes not in yet (a
	// third would see its code ephemerally: the budget could not put it
	// in within a quarter of its lifetime).
	for i, user := range []string{"U1", "U2"} {
		r.startDM(fmt.Sprintf("o%d", i), user, fmt.Sprintf("INSTO000000%d", i), t0)
	}
	r.clock.Set(t0.Add(16 * time.Second))
	if _, err := r.svc.Cancel(context.Background(), b.ID, "U9", pairing.Click{}); err != nil {
		t.Fatal(err)
	}
	r.tick()
	if dm := r.slack.DMScreen("U9"); len(dm) != 1 || shows(dm[0].Latest(), "ABCD1234") {
		t.Errorf("the first use of the budget after b was cancelled went elsewhere: U9's DM still shows its code:\n%s", screenText(dm))
	}
	r.clock.Set(t0.Add(31 * time.Second))
	r.tick()
	if dm := r.slack.DMScreen("U1"); len(dm) != 1 || !shows(dm[0].Latest(), "ABCD1234") {
		t.Errorf("the next use went elsewhere: the oldest opening's DM does not show its code:\n%s", screenText(dm))
	}
}

// A DM whose code Slack never lets into the message (every chat.update on
// it refused for good), opened while the shared edit budget had no use
// left, so the code goes in on a later tick: the refusal fails the DM
// there as it would have right after the opening (the code is shown
// ephemerally), instead of deleting and re-posting the opening on every
// tick with a use (each a new DM notification), the code shown nowhere.
func TestCodeEditRefusedForGoodOnALaterTickFailsTheDM(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.slack.Refuse("chat.update", fakeslack.DMChannel("U1"), "msg_too_long")
	r.bot.edits = newEditBudget(4, r.clock.Now) // one use every 15 s
	if !r.bot.edits.take() {                    // another pairing took the one use there was
		t.Fatal("no use to take")
	}
	_, url := r.slack.OpenMessage("U1", "⏳ Requesting…")
	p := pairing.Pairing{
		ID: "a", Instance: rigInstance, InstanceName: "support", Phone: "201012345678",
		RequestedBy: "U1", Team: fakeslack.TeamID, Channel: "C0SUPPORT", ResponseURL: url, URLIssued: t0,
		Delivery: pairing.DeliveryDM, DM: pairing.Surface{Recipient: "U1"},
		State: pairing.StateLive, Code: "ABCD1234", Attempt: 1, RequestedAt: t0, IssuedAt: t0, ExpiresAt: t0.Add(pairing.DefaultCodeLifetime),
	}
	if err := r.db.Restore([]pairing.Pairing{p}); err != nil {
		t.Fatal(err)
	}
	r.bot.show(context.Background(), p, showing{answer: onNone})
	for s := 15; s <= 120; s += 15 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	posts := 0
	for _, m := range r.slack.Messages() {
		if m.Channel == fakeslack.DMChannel("U1") {
			posts++
		}
	}
	if posts != 1 {
		t.Errorf("U1's DM was posted %d times in 2 minutes (each one a new DM notification), want once; chat.update refused %d times", posts, r.slack.Refused("chat.update", fakeslack.DMChannel("U1")))
	}
	var sawCode bool
	for _, m := range r.slack.Screen("U1", "C0SUPPORT") {
		sawCode = sawCode || shows(m.Latest(), "ABCD1234")
	}
	if !sawCode {
		t.Errorf("the code was never shown to U1 (the DM never took it, and it never fell back to the ephemeral message):\n%s", screenText(r.slack.Screen("U1", "C0SUPPORT")))
	}
}

// A code that expires before Slack lets the bot put it into its DM (here a
// long Retry-After on chat.update, from other apps' calls) is not reported
// as "not entered in time": the requester is told, in the channel and in
// the DM once it can be edited, that Slack's rate limit held it up, and
// offered a new code.
func TestCodeThatNeverReachedItsDMSaysSo(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.slack.RateLimitNextCall("chat.update", 200*time.Second)
	p := r.requestDM("a", "U1", rigInstance, t0, false)
	if p.DM.LastView != viewOpening {
		t.Fatalf("the DM: %+v; want it opened, its code held up by the 429", p.DM)
	}
	for s := 5; s <= 210; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	if r.sawCode("U1", "ABCD1234") {
		t.Fatal("U1 saw the code")
	}
	ch := r.slack.Screen("U1", "C0SUPPORT")
	got := shownText(ch[len(ch)-1].Latest())
	if !strings.Contains(got, "rate limit") || !strings.Contains(got, "New code") || strings.Contains(got, "not entered in time") {
		t.Errorf("the requester is told:\n%s\nwant Slack's rate limit named, and New code", got)
	}
	dm := r.slack.DMScreen("U1")
	if len(dm) != 1 || !strings.Contains(shownText(dm[0].Latest()), "never reached your DM") {
		t.Errorf("U1's DM at the end:\n%s", screenText(dm))
	}
	if w := r.watched(); len(w) != 0 {
		t.Errorf("%d pairings still watched", len(w))
	}
}

// A DM that fails before its code went in does not keep promising a code:
// its opening is replaced by where the code is instead when Slack refused
// the code for what it was (a short message may pass), or deleted when
// Slack refuses any edit of the message.
func TestFailedDMTakesBackItsOpening(t *testing.T) {
	for _, tt := range []struct {
		code string
		want string // what the DM shows at the end ("": nothing)
	}{
		{"msg_too_long", "shown in <#C0SUPPORT> instead"},
		{"cant_update_message", ""},
	} {
		t.Run(tt.code, func(t *testing.T) {
			t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
			r := newCountdownRig(t, t0)
			r.slack.SetMessagesTab(true)
			r.slack.FailNextCall("chat.update", tt.code)
			r.requestDM("a", "U1", rigInstance, t0, false)
			if !r.sawCode("U1", "ABCD1234") {
				t.Errorf("U1 never saw the code:\n%s", screenText(r.slack.Screen("U1", "C0SUPPORT")))
			}
			dm := r.slack.DMScreen("U1")
			switch {
			case tt.want == "" && len(dm) != 0, tt.want != "" && (len(dm) != 1 || !strings.Contains(shownText(dm[0].Latest()), tt.want)):
				t.Errorf("U1's DM:\n%s\nwant %q", screenText(dm), tt.want)
			}
		})
	}
}

// After New code, the status card's new expiry ranks with the codes going
// into their DMs: ahead of older pairings' countdown steps.
func TestCardsNewExpiryGoesAheadOfCountdownSteps(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	r.slack.SetChannel(fakeslack.Channel{ID: "C0SUPPORT", Public: true, Member: true})
	r.startDM("a", "U1", "INSTAAAAAAAA", t0)
	r.startDM("b", "U2", "INSTBBBBBBBB", t0.Add(time.Second))
	c := r.startDMCard("c", "U3", "INSTCCCCCCCC", t0.Add(2*time.Second), true)
	r.bot.edits = newEditBudget(4, r.clock.Now) // one use every 15 s
	r.clock.Set(t0.Add(32 * time.Second))
	r.tick() // a's step takes the one use
	r.clickDM("U3", ActionNewCode, c.ID)
	for _, s := range []int{47, 62} { // c's DM, then its card
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	renewal := r.watched()
	var expires int64
	for _, p := range renewal {
		if p.Instance == "INSTCCCCCCCC" {
			expires = p.ExpiresAt.Unix()
		}
	}
	cards := r.slack.Screen("U9NOBODY", "C0SUPPORT")
	if len(cards) != 1 || expires == 0 || !strings.Contains(string(cards[0].Latest().Blocks), fmt.Sprint(expires)) {
		t.Errorf("two uses of the budget after New code, the card (want the new expiry %d):\n%s", expires, screenText(cards))
	}
}

// TestFollowerBacklogFollowsStoredState (review r9b): the DM backlog (codes waiting for the edit budget) is set
// only by Tick, after lead: on a replica that does not lead the ticker it
// only ever grows (surface.go backlog.Add on each opening that waits), so
// after one burst of DM requests answered there, codeGoesInSoon counts
// codes long expired (and put in by the leader) and that replica shows
// later codes ephemerally although the budget is full. Ten minutes after
// a burst, 20 DM requests in a quiet workspace must all open their DMs
// (the budget carries ~35 within a quarter of a code's lifetime), as they
// do on the leader.
func TestFollowerBacklogFollowsStoredState(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, leads := range []bool{true, false} {
		t.Run(map[bool]string{true: "leader", false: "follower"}[leads], func(t *testing.T) {
			r := newCountdownRig(t, t0)
			r.slack.SetMessagesTab(true)
			other := pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), r.db, pairing.Config{Now: r.clock.Now, LeaderID: "other-replica"})
			tick := func() {
				if !leads {
					if ok, err := other.Lead(t.Context()); !ok || err != nil {
						t.Fatalf("the other replica's Lead = %v, %v", ok, err)
					}
				}
				r.tick()
			}
			tick()
			for i := range 40 {
				r.requestDM(fmt.Sprintf("a%03d", i), fmt.Sprintf("U%03d", i), fmt.Sprintf("INST%08d", i), t0, false)
			}
			// Ten quiet minutes (the other replica, leading, ends them all).
			for s := 5; s <= 600; s += 5 {
				r.clock.Set(t0.Add(time.Duration(s) * time.Second))
				tick()
			}
			t1 := r.clock.Now()
			var ephemeral []string
			for i := range 20 {
				p := r.requestDM(fmt.Sprintf("b%03d", i), fmt.Sprintf("U%03d", 100+i), fmt.Sprintf("INST%08d", 100+i), t1, false)
				if !p.DM.Posted() {
					ephemeral = append(ephemeral, p.ID+":"+p.DM.Failed)
				}
			}
			if len(ephemeral) > 0 {
				t.Errorf("backlog %d: %d of 20 DM requests in a quiet workspace were shown ephemerally instead: %v", r.bot.backlog.Load(), len(ephemeral), ephemeral)
			}
		})
	}
}

// TestRetryAfterHonouredByRunningReplica (review r9b): Slack's Retry-After holds are stored (SetHold) but read
// back only when a bot starts (loadHolds): a 429 one replica met on
// chat.update (a per-workspace limit) does not stop another replica
// already running, which edits during the Retry-After (the fake fails the
// test on that call). Here the leader's tick meets the 429; a click
// answered by the other replica 5 s later edits the DM at once.
func TestRetryAfterHonouredByRunningReplica(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	other := r.replica()
	p := r.startDM("a", "U1", "INSTAAAAAAAA", t0)
	r.slack.RateLimitNextCall("chat.update", 40*time.Second)
	r.clock.Set(t0.Add(30 * time.Second))
	r.tick() // the step due at 30 s: 429, Retry-After 40 s, stored
	if n := r.slack.RateLimitedCalls("chat.update"); n != 1 {
		t.Fatalf("%d 429s, want 1", n)
	}
	r.clock.Set(t0.Add(35 * time.Second))
	dms := r.slack.DMScreen("U1")
	dm := dms[len(dms)-1]
	var cb slack.InteractionCallback
	cb.Type = slack.InteractionTypeBlockActions
	cb.User.ID = "U1"
	cb.ResponseURL = r.slack.NewResponseURL(dm.ID)
	cb.Container = slack.Container{Type: "message", ChannelID: dm.Channel, MessageTs: dm.TS}
	cb.ActionCallback.BlockActions = []*slack.BlockAction{{ActionID: ActionCancel, Value: p.ID, ActionTs: "1795615235.000100"}}
	other.interaction(context.Background(), cb)
	other.work.Wait()
	if got := len(r.slack.DMScreen("U1")[0].Versions); got != 2 {
		t.Errorf("the DM has %d versions; the other replica edited it during the Retry-After", got)
	}
}
