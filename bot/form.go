package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// The /link form (issue 10): /link alone, or /link <instance> without a
// phone, opens a modal, "Link a WhatsApp number". Slack's rules shape it:
//
//   - views.open needs the command's trigger_id within 3 seconds, and the
//     bot does no network or disk I/O before the ack; so the ack is empty
//     and the form is opened right after it, from what is known without
//     asking anyone: the access rules and the instance status cache
//     (pairing.Service.CachedStatus, fed by the ticks). Then Wawp is asked
//     (CheckStatuses) and the statuses are refreshed with views.update,
//     passing the hash views.open returned: if the person submitted
//     meanwhile (the form became the code window), Slack answers
//     hash_conflict and the stale form is not drawn over the window
//     (https://api.slack.com/methods/views.update).
//   - The submission is answered in its ack (response_action,
//     https://api.slack.com/surfaces/modals#updating_response), again
//     without I/O: the checks that need none — access, the number, a
//     cached status that says the instance cannot pair, a hand-off to
//     oneself — come back as errors on their field, in the command's
//     words; otherwise the form turns into the live code window
//     (response_action update) and the request runs after the ack, like
//     the command's. The limits live in the store, so a refusal by one
//     comes after the ack and is shown in the window, with when.
//   - Up to 100 instances fit a static select; more are offered through an
//     external select, answered over the socket (block_suggestion) from
//     the same cache.

// Callback and block IDs of the modals.
const (
	CallbackForm   = "link_form"
	CallbackWindow = "code_window"
	BlockInstance  = "instance"
	BlockPhone     = "phone"
	BlockDeliver   = "deliver"
	// ActionShowWindow is the code message's "Show code window" button.
	ActionShowWindow = "show_window"
	// maxStaticOptions is how many options a static select may have.
	maxStaticOptions = 100
	// formTitle is the form's title (at most 24 characters).
	formTitle = "Link a WhatsApp number"
)

// formMeta is what the form carries in its private_metadata: where the
// command was typed and its response_url, through which the pairing's
// final state still reaches the requester if they close the window. The
// response_url is a credential for the requester's messages, and the
// metadata is readable in the Slack client: it is sealed (see sealer).
type formMeta struct {
	Channel     string `json:"c"`
	Team        string `json:"t"`
	ResponseURL string `json:"u"` // sealed
	Issued      int64  `json:"i"`
}

// FormOption is one instance the form offers, with what is known of it.
type FormOption struct {
	Instance pairing.Instance
	Status   pairing.InstanceStatus // zero: not known yet
}

// FormModel is what the form shows.
type FormModel struct {
	Options   []FormOption // the instances the person may use, by name
	Selected  string       // the instance ID chosen with /link <instance>
	Recipient string       // the person /link @person named
	Meta      string       // private_metadata
	Checking  bool         // the statuses are being asked for
	Cached    bool         // the cache's states, not refreshed in this form (no edit left for it)
	Region    string       // the default region
}

// statusLabel is an instance's state as a word with an emoji.
func statusLabel(st pairing.InstanceStatus) string {
	switch {
	case !st.Known():
		return "⏳ checking…"
	case st.Gone:
		return "❌ not found in Wawp"
	case st.Failed:
		return "❔ status unknown"
	}
	switch st.Status {
	case pairing.StatusScanQR:
		return "🟢 ready to pair"
	case pairing.StatusStarting:
		return "🟡 starting"
	case pairing.StatusWorking:
		if st.Me != "" {
			return "🔗 already linked to " + pairing.PhoneFromDigits(st.Me).Masked()
		}
		return "🔗 already linked"
	case pairing.StatusStopped:
		return "⏹ stopped"
	case pairing.StatusFailed:
		return "🔴 failed"
	}
	return "⏳ not ready (" + string(st.Status) + ")"
}

// optionText is an instance's option: its name and state, within Slack's
// 75 characters. cached: the form will not be refreshed, so a state not
// known is said as such, not as being checked.
func optionText(o FormOption, cached bool) string {
	label := statusLabel(o.Status)
	if cached && !o.Status.Known() {
		label = "❔ not checked yet"
	}
	t := o.Instance.Name + " · " + label
	if utf8.RuneCountInString(t) > 75 {
		t = string([]rune(t)[:74]) + "…"
	}
	return t
}

func option(o FormOption) *slack.OptionBlockObject { return optionOf(o, false) }

func optionOf(o FormOption, cached bool) *slack.OptionBlockObject {
	return slack.NewOptionBlockObject(o.Instance.ID, slack.NewTextBlockObject(slack.PlainTextType, optionText(o, cached), true, false), nil)
}

// Bounds of the phone field's hint. Slack refuses a view whose input hint
// is longer than 2,000 characters (views.open answers invalid_arguments;
// https://api.slack.com/reference/block-kit/blocks#input), so the hint
// never lists instances, only regions, and at most hintRegions of them.
const (
	maxHint     = 2000
	hintRegions = 3
)

// regionHint is the phone field's hint: how a number without + is read,
// with an example: one short line per region of the instances offered
// (never their names: there may be hundreds), at most hintRegions of
// them, then "…".
func regionHint(m FormModel) string {
	seen := map[string]bool{}
	var order []string
	for _, o := range m.Options {
		if m.Selected != "" && o.Instance.ID != m.Selected {
			continue
		}
		r := o.Instance.Region
		if r == "" {
			r = m.Region
		}
		if !seen[r] {
			seen[r] = true
			order = append(order, r)
		}
	}
	var hint string
	switch {
	case len(order) == 1 && order[0] != "":
		hint = fmt.Sprintf("Without a +, the number is read as one from %s, e.g. %s.", order[0], pairing.RegionExample(order[0]))
	case len(order) <= 1:
		hint = "Include the country code, e.g. +20 111 222 3333."
	default:
		lines := []string{"Without a +, the number is read in the chosen instance's region:"}
		for _, r := range order {
			if r == "" {
				continue
			}
			if len(lines) > hintRegions {
				lines = append(lines, "…")
				break
			}
			lines = append(lines, fmt.Sprintf("%s: e.g. %s", r, pairing.RegionExample(r)))
		}
		hint = strings.Join(lines, "\n")
	}
	if utf8.RuneCountInString(hint) > maxHint { // a region code from a config gone wrong
		hint = string([]rune(hint)[:maxHint-1]) + "…"
	}
	return hint
}

// FormView is the /link form.
func FormView(m FormModel) slack.ModalViewRequest {
	var sel *slack.SelectBlockElement
	if len(m.Options) > maxStaticOptions {
		sel = slack.NewOptionsSelectBlockElement(slack.OptTypeExternal, plain("Type an instance's name"), BlockInstance)
		zero := 0
		sel.MinQueryLength = &zero
	} else {
		var opts []*slack.OptionBlockObject
		for _, o := range m.Options {
			opts = append(opts, optionOf(o, m.Cached))
		}
		sel = slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plain("Choose an instance"), BlockInstance, opts...)
	}
	for _, o := range m.Options {
		if o.Instance.ID == m.Selected {
			sel.InitialOption = optionOf(o, m.Cached)
		}
	}
	instance := slack.NewInputBlock(BlockInstance, plain("Instance"), nil, sel)
	phoneInput := slack.NewPlainTextInputBlockElement(plain("+20 111 222 3333"), BlockPhone)
	phone := slack.NewInputBlock(BlockPhone, plain("Phone"), plain(regionHint(m)), phoneInput)
	users := slack.NewOptionsSelectBlockElement(slack.OptTypeUser, plain("Keep it myself"), BlockDeliver)
	if m.Recipient != "" {
		users.InitialUser = m.Recipient
	}
	deliver := slack.NewInputBlock(BlockDeliver, plain("Deliver to"), plain("Hand the code to the person holding the phone: it goes to their DM, not to you."), users)
	deliver.Optional = true
	status := "Instance states as of now."
	switch {
	case m.Checking:
		status = "⏳ Checking the instances' states with Wawp…"
	case m.Cached:
		status = "Instance states as last seen; the one you pick is checked again before a code is asked for."
	}
	return slack.ModalViewRequest{
		Type: slack.VTModal, Title: plain(formTitle), Submit: plain("Get code"), Close: plain("Cancel"),
		CallbackID: CallbackForm, PrivateMetadata: m.Meta,
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			section("intro", "Pick the instance and type the number of the phone to link. The code appears here, and only you see it."),
			instance,
			contextBlock("states", status),
			phone,
			deliver,
		}},
	}
}

// formOptions are the instances user, in channel, may use, each with its
// cached status (no I/O).
func (b *Bot) formOptions(user, channel string) []FormOption {
	var out []FormOption
	for _, in := range b.cfg.Directory.Instances() {
		if !b.allowed(in.ID, user, channel) {
			continue
		}
		st, _ := b.cfg.Service.CachedStatus(in.ID)
		out = append(out, FormOption{Instance: in, Status: st})
	}
	return out
}

// form is the reply to /link without a phone: no ack message, and the
// form opened right after the ack.
func (b *Bot) form(cmd slack.SlashCommand, parsed Command, now time.Time) reply {
	opts := b.formOptions(cmd.UserID, cmd.ChannelID)
	selected := ""
	if parsed.Instance != "" {
		in, err := b.cfg.Directory.Resolve(parsed.Instance)
		if err != nil {
			return reply{msg: UnknownInstanceView(parsed.Instance, b.cfg.Directory.Names()), outcome: pairing.OutcomeUnknownInstance}
		}
		if !b.allowed(in.ID, cmd.UserID, cmd.ChannelID) {
			return reply{msg: AccessDeniedView(in.Name, b.rulesFor(in.ID).Ask), outcome: pairing.OutcomeAccessDenied, after: b.auditRefusal(cmd, now, in, "", pairing.OutcomeAccessDenied, "")}
		}
		selected = in.ID
		found := false
		for _, o := range opts {
			found = found || o.Instance.ID == in.ID
		}
		if !found { // a raw instance ID, not in the config
			st, _ := b.cfg.Service.CachedStatus(in.ID)
			opts = append(opts, FormOption{Instance: in, Status: st})
		}
	}
	if len(opts) == 0 {
		if !b.allowedAnywhere(cmd.UserID, cmd.ChannelID) {
			return reply{msg: AccessDeniedView("any instance", b.rulesFor("").Ask), outcome: pairing.OutcomeAccessDenied, after: b.auditRefusal(cmd, now, pairing.Instance{}, "", pairing.OutcomeAccessDenied, "")}
		}
		// No configured instance to choose from: the command's way.
		return reply{msg: HelpView(b.cfg.Directory.Names(), b.cfg.Region), outcome: pairing.OutcomeHelp}
	}
	meta, _ := json.Marshal(formMeta{Channel: cmd.ChannelID, Team: cmd.TeamID, ResponseURL: b.meta.seal(cmd.ResponseURL), Issued: now.Unix()})
	m := FormModel{Options: opts, Selected: selected, Recipient: parsed.Recipient, Meta: string(meta), Checking: true, Region: b.cfg.Region}
	return reply{outcome: pairing.OutcomeForm, after: func(ctx, _ context.Context, log *slog.Logger) {
		b.openForm(ctx, cmd, m, now, log)
	}}
}

// openForm opens the form with what is known, then refreshes the
// instances' states with views.update. The refresh spends the shared edit
// budget; its use is taken before the form opens, so a form says it is
// checking only when its refresh will come: with no use left, it opens
// with the cached states, said as such (Wawp is asked all the same, for
// the cache the submission reads).
func (b *Bot) openForm(ctx context.Context, cmd slack.SlashCommand, m FormModel, now time.Time, log *slog.Logger) {
	refresh := b.edits.take()
	m.Checking, m.Cached = refresh, !refresh
	opened, err := b.api.OpenViewContext(ctx, cmd.TriggerID, FormView(m))
	if err != nil {
		if refresh {
			b.edits.refund()
		}
		log.Warn("the /link form could not be opened", "reason", webFailure(err))
		b.respond(ctx, log, cmd.ResponseURL, now, 0, FormFailedView(b.cfg.Directory.Names()))
		return
	}
	statuses := b.cfg.Service.CheckStatuses(ctx, checkedOptions(m.Options, m.Selected))
	if !refresh {
		log.Info("the form shows the cached states: the shared edit budget had no use left to refresh it")
		return
	}
	for i, o := range m.Options {
		if st, ok := statuses[o.Instance.ID]; ok {
			m.Options[i].Status = st
		}
	}
	m.Checking = false
	_, err = b.updateView(ctx, opened.ID, opened.Hash, FormView(m))
	switch code, _ := slackRefusal(err); {
	case code == "hash_conflict", code == "not_found":
		// Submitted (it is the code window now) or closed meanwhile.
		log.Info("the form changed before its states were refreshed; left as it is", "slack_error", code)
	case err != nil:
		log.Warn("refreshing the form's states failed", "reason", webFailure(err))
	}
}

// maxStatusChecks bounds how many instances one form asks Wawp about:
// past it (a form with an external select), the rest show what the cache
// knows, and the ticks and other forms fill it in. Every instance shown is
// asked again, cached or not: the cache may be up to 30 s old, and the
// submission's check reads it.
const maxStatusChecks = maxStaticOptions

// checkedOptions lists the instances the refresh asks Wawp about: the one
// chosen first, then the others, at most maxStatusChecks.
func checkedOptions(opts []FormOption, first string) []string {
	var ids []string
	if first != "" {
		ids = append(ids, first)
	}
	for _, o := range opts {
		if o.Instance.ID != first && len(ids) < maxStatusChecks {
			ids = append(ids, o.Instance.ID)
		}
	}
	return ids
}

// updateView makes one views.update call, unless a 429's Retry-After is
// running on the shared edit budget (errBlocked). Views calls are Tier 4,
// not chat.update's Tier 3, but every edit the bot makes spends the one
// budget (issue 10), and a 429 on either stops both until it runs out.
func (b *Bot) updateView(ctx context.Context, viewID, hash string, view slack.ModalViewRequest) (*slack.ViewResponse, error) {
	return b.updateViewClaimed(ctx, nil, viewID, hash, view)
}

// updateViewClaimed is updateView under a claim: holds (when set) is asked
// right before the call, after its turn came, and errClaimRanOut returned,
// with no call, when the claim no longer holds.
func (b *Bot) updateViewClaimed(ctx context.Context, holds func() bool, viewID, hash string, view slack.ModalViewRequest) (*slack.ViewResponse, error) {
	b.refreshHolds(ctx) // a Retry-After another replica met holds this one too
	b.updating.Lock()
	defer b.updating.Unlock()
	if b.edits.blocked() {
		return nil, errBlocked
	}
	if holds != nil && !holds() {
		return nil, errClaimRanOut
	}
	resp, err := b.api.UpdateViewContext(ctx, view, "", hash, viewID)
	var (
		rl     *slack.RateLimitedError
		status slack.StatusCodeError
	)
	switch {
	case errors.As(err, &rl):
		b.edits.block(rl.RetryAfter)
	case errors.As(err, &status) && status.Code == 429:
		b.edits.block(time.Second)
	}
	return resp, err
}

// errBlocked means a call was not made: a 429's Retry-After is running.
var errBlocked = errors.New("rate limited: waiting for Retry-After")

// markup is Slack mrkdwn markup an input error (plain text) cannot show.
var (
	dateToken = regexp.MustCompile(`<!date\^[^|>]*\|([^>]*)>`)
	userToken = regexp.MustCompile(`<@([A-Z0-9]+)>`)
)

// plainWords is a refusal's sentence as an input error shows it: its
// first section's text, without mrkdwn (a time's fallback, a user's ID).
func plainWords(m Message) string {
	t := m.Text
	for _, bl := range m.Blocks {
		if s, ok := bl.(*slack.SectionBlock); ok && s.Text != nil {
			t = s.Text.Text
			break
		}
	}
	t = dateToken.ReplaceAllString(t, "$1")
	t = userToken.ReplaceAllString(t, "that person")
	t = strings.NewReplacer("*", "", "`", "“", "&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(t)
	// “…“ back to “…”: quote() wraps in backticks on both sides.
	var out strings.Builder
	open := true
	for _, r := range t {
		if r == '“' {
			if !open {
				r = '”'
			}
			open = !open
		}
		out.WriteRune(r)
	}
	return out.String()
}

// submission answers a view_submission in its ack (no I/O) and returns
// the work that follows it, if any.
func (b *Bot) submission(cb slack.InteractionCallback) (any, func(ctx context.Context)) {
	if cb.View.CallbackID != CallbackForm {
		return nil, nil
	}
	now := b.cfg.Service.Now()
	log := b.log.With("user", cb.User.ID, "view", cb.View.ID)
	errs := func(block string, m Message) (any, func(context.Context)) {
		return slack.NewErrorsViewSubmissionResponse(map[string]string{block: plainWords(m)}), nil
	}
	if b.teamID != "" && cb.Team.ID != "" && cb.Team.ID != b.teamID {
		return errs(BlockInstance, ForeignTeamView())
	}
	var meta formMeta
	json.Unmarshal([]byte(cb.View.PrivateMetadata), &meta)
	responseURL, err := b.meta.open(meta.ResponseURL)
	if err != nil {
		// The requester's messages are not reached; the window still is.
		log.Warn("the form's response_url could not be read back", "err", err)
	}
	var values map[string]map[string]slack.BlockAction
	if cb.View.State != nil {
		values = cb.View.State.Values
	}
	instanceID := values[BlockInstance][BlockInstance].SelectedOption.Value
	phoneText := values[BlockPhone][BlockPhone].Value
	recipient := values[BlockDeliver][BlockDeliver].SelectedUser
	in, err := b.cfg.Directory.Resolve(instanceID)
	if err != nil {
		return errs(BlockInstance, UnknownInstanceView(instanceID, b.cfg.Directory.Names()))
	}
	if !b.allowed(in.ID, cb.User.ID, meta.Channel) {
		// Audited as the command's refusal is (after the ack: a write).
		payload, _ := errs(BlockInstance, AccessDeniedView(in.Name, b.rulesFor(in.ID).Ask))
		audit := b.auditRefusal(slack.SlashCommand{UserID: cb.User.ID, TeamID: cb.Team.ID, ChannelID: meta.Channel}, now, in, phoneText, pairing.OutcomeAccessDenied, "")
		return payload, func(ctx context.Context) { audit(ctx, ctx, log) }
	}
	if st, ok := b.cfg.Service.CachedStatus(in.ID); ok && !st.Gone && !st.Failed && st.Status != pairing.StatusScanQR {
		// What the cache says now is what the command's precheck would
		// find: said on the instance, in the command's words.
		serr := &pairing.StatusError{Status: st.Status, Me: st.Me, RetryAt: st.At.Add(pairing.DefaultWarmup)}
		return errs(BlockInstance, StatusView(serr, in.Name, "", now))
	}
	phone, err := pairing.NormalizePhone(phoneText, in.Region)
	var perr *pairing.PhoneError
	if errors.As(err, &perr) {
		return errs(BlockPhone, PhoneView(perr))
	}
	if err != nil {
		return errs(BlockPhone, InternalErrorView(""))
	}
	if recipient == cb.User.ID {
		return errs(BlockDeliver, notice("", "✋ The code is yours already: leave Deliver to empty to keep it, or pick the person holding the phone."))
	}
	issued := time.Unix(meta.Issued, 0)
	req := pairing.Request{
		Instance: in, Phone: phone, User: cb.User.ID, Team: cb.Team.ID, Channel: meta.Channel,
		ResponseURL: responseURL, URLIssued: issued, Delivery: b.deliveryFor(in.ID),
		Modal: pairing.ModalSurface{ViewID: cb.View.ID, User: cb.User.ID, LastView: viewRequesting},
	}
	if b.announceFor(in.ID) && meta.Channel != "" && !strings.HasPrefix(meta.Channel, "D") {
		req.Card = pairing.Surface{Channel: meta.Channel}
	}
	if recipient != "" {
		req.Delivery, req.DM, req.Prepare = pairing.DeliveryDM, pairing.Surface{Recipient: recipient}, b.openHandoffDM
	}
	window := WindowRequestingView(phone.International, in.Name, recipient)
	log.Info("form submitted", "instance", in.Name, "phone", phone.Masked())
	who := slack.SlashCommand{UserID: cb.User.ID, TeamID: cb.Team.ID, ChannelID: meta.Channel}
	again := fmt.Sprintf("`/link %s %s`", escape(in.Name), escape(phone.International))
	return slack.NewUpdateViewSubmissionResponse(&window), func(ctx context.Context) {
		b.startAfterAck(ctx, ctx, log, started{
			req: req, who: who, now: now, phoneText: phoneText, recipient: recipient, again: again,
			shown: onModal, redrawn: true,
			duplicate: func(ctx context.Context) { b.reshowWindow(ctx, cb.View.ID, log) },
			refuse: func(ctx context.Context, m Message) {
				b.showRefusalInWindow(ctx, cb.View.ID, m, log)
			},
			// No pairing of its own (a storage failure, a refusal): the
			// window says what the command would.
			answer: func(ctx context.Context, p pairing.Pairing, err error) {
				b.showRefusalInWindow(ctx, cb.View.ID, b.result(p, err, in.Name, cb.View.ID), log)
			},
		})
	}
}

// reshowWindow shows again, in the code window viewID, the pairing a
// redelivered form submission started the first time: the redelivery's
// ack turned the window back into "Requesting…" (with a hash the bot
// never saw), and its Start was a duplicate. The window is recorded as
// showing that, so the next update (now, else the next tick) redraws it.
// A pairing no longer watched has nothing more to show.
func (b *Bot) reshowWindow(ctx context.Context, viewID string, log *slog.Logger) {
	ps, err := b.cfg.Service.Watched(ctx)
	if err != nil {
		log.Warn("finding the redelivered submission's pairing failed", "err", err)
		return
	}
	id := ""
	for _, p := range ps {
		if p.Modal.ViewID == viewID && !p.Modal.Closed {
			id = p.ID
			break
		}
	}
	if id == "" {
		return
	}
	p, err := b.cfg.Service.Pairing(ctx, id)
	if err != nil {
		return
	}
	unlock := b.locks.lock(p.MessageID())
	defer unlock()
	if p, err = b.cfg.Service.Pairing(ctx, id); err != nil || p.Modal.ViewID != viewID || p.Modal.Closed {
		return
	}
	m := p.Modal
	m.LastView, m.Hash = viewRequesting, ""
	rctx, cancel := pairing.RecordContext(ctx)
	stored, err := b.cfg.Service.RecordModal(rctx, p.ID, m)
	cancel()
	if err != nil {
		log.Warn("recording the redrawn window failed", "err", err)
		return
	}
	b.showLocked(ctx, stored, showing{answer: onNone, edit: editNot, card: editNot, modal: editIfBudget})
}

// showRefusalInWindow turns the code window into m (an answer with no
// pairing behind it), with one views.update.
func (b *Bot) showRefusalInWindow(ctx context.Context, viewID string, m Message, log *slog.Logger) {
	b.edits.take() // spent if there is one; the answer goes anyway
	if _, err := b.updateView(ctx, viewID, "", windowOf(m, "")); err != nil {
		log.Warn("showing the answer in the code window failed", "reason", webFailure(err))
	}
}

// maxSuggestionBytes bounds a block_suggestion answer's JSON. The answer
// goes in the envelope's ack, and Slack silently drops a Socket Mode
// message of 20 KB or more (slack-go refuses to send one:
// socketmode.maxResponseSize; https://api.slack.com/apis/socket-mode
// "Payloads ... must be less than 20KB"). 100 options of 75 characters in
// Arabic or emoji (2–4 bytes each, 6 for <, > and & as json escapes them)
// are well past it; 1 KB is left for the envelope's own fields.
const maxSuggestionBytes = 19 * 1024

// suggestions answers a block_suggestion for the form's external select,
// in the ack (no I/O): the instances whose name contains what was typed.
func (b *Bot) suggestions(cb slack.InteractionCallback) any {
	var meta formMeta
	json.Unmarshal([]byte(cb.View.PrivateMetadata), &meta)
	resp, matching := suggestionsFor(b.formOptions(cb.User.ID, meta.Channel), cb.Value)
	if matching > len(resp.Options) {
		b.log.Info("suggestions cut to fit Slack's limits", "user", cb.User.ID, "shown", len(resp.Options), "matching", matching)
	}
	return resp
}

// suggestionsFor is the answer for query: the first options whose name or
// ID contains it, at most 100 and at most maxSuggestionBytes of JSON, and
// how many matched in all.
func suggestionsFor(all []FormOption, query string) (slack.OptionsResponse, int) {
	q := strings.ToLower(strings.TrimSpace(query))
	resp := slack.OptionsResponse{Options: []*slack.OptionBlockObject{}}
	empty, _ := json.Marshal(resp)
	size, matching := len(empty), 0
	for _, o := range all {
		if q != "" && !strings.Contains(strings.ToLower(o.Instance.Name), q) && !strings.Contains(strings.ToLower(o.Instance.ID), q) {
			continue
		}
		matching++
		if len(resp.Options) == maxStaticOptions || size > maxSuggestionBytes {
			continue
		}
		opt := option(o)
		enc, err := json.Marshal(opt)
		if err != nil {
			continue
		}
		n := len(enc)
		if len(resp.Options) > 0 {
			n++ // the comma
		}
		if size+n > maxSuggestionBytes {
			size = maxSuggestionBytes + 1 // full: the rest are only counted
			continue
		}
		size += n
		resp.Options = append(resp.Options, opt)
	}
	return resp, matching
}

// FormFailedView is said when the form could not be opened (Slack
// refused the view, or the trigger ran out): the command still works.
func FormFailedView(aliases []string) Message {
	m := HelpView(aliases, "")
	t := "⚠️ The form could not be opened. Type the instance and the number instead: `/link <instance> <phone>`."
	return notice("The form could not be opened", t, m.Blocks...)
}

// safeSubmission is submission that survives its own bugs: a panic closes
// nothing and answers with an error on the instance field.
func (b *Bot) safeSubmission(cb slack.InteractionCallback) (payload any, after func(context.Context)) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("panic answering the form", "panic", fmt.Sprint(r))
			payload, after = slack.NewErrorsViewSubmissionResponse(map[string]string{BlockInstance: plainWords(InternalErrorView(cb.View.ID))}), nil
		}
	}()
	return b.submission(cb)
}
