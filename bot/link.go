package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/linkbot/linkbot/pairing"
)

// command answers a /link at once (parsing and normalising are pure CPU)
// and requests the code after the ack.
func (b *Bot) command(ctx context.Context, envelopeID string, cmd slack.SlashCommand) {
	start := time.Now()
	received := b.cfg.Service.Now()
	log := b.log.With("request", envelopeID, "user", cmd.UserID, "channel", cmd.ChannelID)
	reply := b.safePrepare(envelopeID, cmd, received, log)
	var payload any
	if reply.msg.Text != "" { // the form's ack is empty: the modal answers it
		payload = reply.msg.ackPayload()
	}
	b.ack(ctx, &socketmode.Request{EnvelopeID: envelopeID}, payload)
	b.obs.Ack(time.Since(start))
	if reply.outcome != "" {
		b.obs.Command(reply.outcome)
		log.Info("command answered", "outcome", reply.outcome)
	}
	if reply.after == nil {
		return
	}
	b.goWork(ctx, func(ctx context.Context) {
		ctx = withDedupeKey(ctx, reply.dedupeKey)
		reply.after(ctx, pairing.WithRequestID(ctx, envelopeID), log)
	})
}

// safePrepare is prepare that survives its own bugs: a panic becomes an
// "internal error" answer instead of a crashed process and a Slack timeout.
func (b *Bot) safePrepare(envelopeID string, cmd slack.SlashCommand, now time.Time, log *slog.Logger) (r reply) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic preparing a command", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r = reply{msg: InternalErrorView(cmd.TriggerID), outcome: pairing.OutcomeInternalError}
		}
	}()
	r = b.prepare(cmd, now)
	r.dedupeKey = commandKey(cmd.TriggerID, envelopeID)
	return r
}

// commandKey is a slash command's dedupe key (pairing.Dedupe): its
// trigger_id, which Slack makes for each invocation (one person's one
// /link; https://api.slack.com/interactivity/handling#modal_responses)
// and which a redelivery carries unchanged, being the same payload. Not
// the envelope ID: Slack does not document that a retried envelope keeps
// its envelope_id (https://api.slack.com/apis/socket-mode, "Acknowledging
// events", says only that unacknowledged envelopes are retried, with
// retry_attempt and retry_reason), and a retried Socket Mode delivery has
// been reported arriving in a new envelope (gugu91/pinet#226: "A retried
// Slack event gets a new envelope"). The envelope ID is the fallback for
// a payload without a trigger_id; "" (no dedupe) without either.
func commandKey(triggerID, envelopeID string) string {
	switch {
	case triggerID != "":
		return "cmd:" + triggerID
	case envelopeID != "":
		return "cmd:env:" + envelopeID
	}
	return ""
}

// reply is the immediate answer to a command and the work that follows it.
type reply struct {
	msg     Message
	outcome pairing.Outcome // for metrics and the log, when the command ends with the ack
	after   func(ctx, reqCtx context.Context, log *slog.Logger)
	// dedupeKey is the command's identity (commandKey): the work after the
	// ack records it in the same transaction as its first write, and a
	// duplicate does nothing.
	dedupeKey string
}

// prepare decides the immediate reply to a command (pure CPU: no network,
// no disk) and what to do after the ack.
func (b *Bot) prepare(cmd slack.SlashCommand, now time.Time) reply {
	if b.teamID != "" && cmd.TeamID != b.teamID {
		return reply{msg: ForeignTeamView(), outcome: pairing.OutcomeForeignTeam, after: b.auditRefusal(cmd, now, pairing.Instance{}, "", pairing.OutcomeForeignTeam, "")}
	}
	parsed, err := ParseCommand(cmd.Text)
	var uerr *UsageError
	if errors.As(err, &uerr) {
		return reply{msg: UsageView(uerr), outcome: pairing.OutcomeUsage}
	}
	switch parsed.Kind {
	case CommandHelp:
		return reply{msg: HelpView(b.cfg.Directory.Names(), b.cfg.Region), outcome: pairing.OutcomeHelp}
	case CommandHistory:
		return b.history(cmd, parsed.Subject, now)
	case CommandForm:
		return b.form(cmd, parsed, now)
	}
	in, err := b.cfg.Directory.Resolve(parsed.Instance)
	if err != nil {
		return reply{msg: UnknownInstanceView(parsed.Instance, b.cfg.Directory.Names()), outcome: pairing.OutcomeUnknownInstance}
	}
	if !b.allowed(in.ID, cmd.UserID, cmd.ChannelID) {
		return reply{msg: AccessDeniedView(in.Name, b.rulesFor(in.ID).Ask), outcome: pairing.OutcomeAccessDenied, after: b.auditRefusal(cmd, now, in, parsed.Phone, pairing.OutcomeAccessDenied, "")}
	}
	phone, err := pairing.NormalizePhone(parsed.Phone, in.Region)
	var perr *pairing.PhoneError
	if errors.As(err, &perr) {
		return reply{msg: PhoneView(perr), outcome: pairing.OutcomeBadPhone}
	}
	req := pairing.Request{
		Instance: in, Phone: phone, User: cmd.UserID, Team: cmd.TeamID, Channel: cmd.ChannelID,
		ResponseURL: cmd.ResponseURL, URLIssued: now, Delivery: b.deliveryFor(in.ID),
	}
	if b.announceFor(in.ID) && !strings.HasPrefix(cmd.ChannelID, "D") {
		// A status card in the channel (not in a DM, which is nobody's
		// coordination channel).
		req.Card = pairing.Surface{Channel: cmd.ChannelID}
	}
	msg := RequestingView(phone, in.Name)
	recipient := parsed.Recipient
	if recipient != "" {
		again := fmt.Sprintf("`/link %s %s`", escape(parsed.Instance), escape(phone.International))
		if recipient == cmd.UserID {
			return reply{msg: RecipientRefusedView(pairing.OutcomeRecipientSelf, recipient, again, ""), outcome: pairing.OutcomeRecipientSelf}
		}
		// Handed off: the code goes to the recipient's DM, opened just
		// before request-code (openHandoffDM), and never to the requester.
		req.Delivery, req.DM, req.Prepare = pairing.DeliveryDM, pairing.Surface{Recipient: recipient}, b.openHandoffDM
		msg = HandoffRequestingView(phone, in.Name, recipient)
	}
	again := fmt.Sprintf("`/link %s %s`", escape(parsed.Instance), escape(phone.International))
	return reply{msg: msg, after: func(ctx, reqCtx context.Context, log *slog.Logger) {
		b.startAfterAck(ctx, reqCtx, log, started{
			req: req, who: cmd, now: now, phoneText: parsed.Phone, recipient: recipient, again: again,
			shown: onNone,
			refuse: func(ctx context.Context, m Message) {
				b.respond(ctx, log, req.ResponseURL, req.URLIssued, 0, m)
			},
			answer: func(ctx context.Context, p pairing.Pairing, err error) {
				b.answer(ctx, log, req.ResponseURL, req.URLIssued, p, err, req.Instance.Name, cmd.TriggerID)
			},
		})
	}}
}

// started is a request past its pre-ack checks, the command's or the
// form's, and where its answers go.
type started struct {
	req pairing.Request
	// who asked, where (user, team, channel: for the refusal's audit), and
	// when; phoneText is the phone as typed, audited masked.
	who       slack.SlashCommand
	now       time.Time
	phoneText string
	// recipient is whom the code is handed off to ("": the requester);
	// again is the command that asks without them.
	recipient, again string
	// shown is the surface a stored pairing's answer goes to (onNone for
	// the command, onModal for the form).
	shown surface
	// refuse shows a refused hand-off; answer shows what became of a Start
	// with no stored pairing to show.
	refuse func(ctx context.Context, m Message)
	answer func(ctx context.Context, p pairing.Pairing, err error)
	// redrawn is set for the form: a redelivery's ack (Socket Mode
	// redelivers an envelope whose ack was lost) turns the window back
	// into "Requesting…" over what the first delivery's work showed, so a
	// duplicate shows a refusal again (only its audit is claimed once).
	// duplicate, when set (the form), shows again what a duplicate Start's
	// first delivery stored; nil for the command, whose ack draws nothing.
	redrawn   bool
	duplicate func(ctx context.Context)
}

// startAfterAck is the work after the ack of a /link or a form
// submission: who the recipient is (Slack is asked only after the ack),
// a refusal audited once and shown, else Start, and its outcome shown.
func (b *Bot) startAfterAck(ctx, reqCtx context.Context, log *slog.Logger, s started) {
	if s.recipient != "" {
		if why, detail := b.checkRecipient(ctx, s.recipient); why != "" {
			// The refusal's audit claims the request's key: a second
			// delivery of it shows nothing more, unless its ack drew over
			// the refusal (the form): then it is shown again.
			if !b.auditRefusalOnce(ctx, s.who, s.now, s.req.Instance, s.phoneText, why, s.recipient, log) {
				if s.redrawn {
					s.refuse(ctx, RecipientRefusedView(why, s.recipient, s.again, detail))
				}
				return
			}
			b.obs.Command(why)
			log.Info("hand-off refused", "outcome", why, "recipient", s.recipient)
			s.refuse(ctx, RecipientRefusedView(why, s.recipient, s.again, detail))
			return
		}
	}
	req := s.req
	req.DedupeKey = dedupeKey(ctx)
	p, err := b.cfg.Service.Start(reqCtx, req)
	if errors.Is(err, pairing.ErrDuplicate) {
		// Slack delivered the request twice (or again): the first
		// delivery answers it.
		b.obs.Command(pairing.OutcomeDuplicate)
		if s.duplicate != nil {
			s.duplicate(ctx)
		}
		return
	}
	b.obs.Command(pairing.OutcomeOf(err))
	if p.ID != "" && p.State != pairing.StateRequesting {
		// Every request past the limits has a stored pairing, watched
		// until its message shows how it ended; shown from the store, an
		// answer whose post is lost is posted again by the next tick.
		b.show(ctx, p, showing{answer: s.shown})
		return
	}
	s.answer(ctx, p, err)
}

// deliveryFor is where instance's codes go: its own setting, else the
// default, else ephemeral.
func (b *Bot) deliveryFor(instance string) pairing.Delivery {
	if d, ok := b.cfg.Delivery[instance]; ok && d != "" {
		return d
	}
	if d := b.cfg.Delivery[""]; d != "" {
		return d
	}
	return pairing.DeliveryEphemeral
}

// announceFor says whether instance's pairings get a status card: its own
// setting, else the default.
func (b *Bot) announceFor(instance string) bool {
	if a, ok := b.cfg.Announce[instance]; ok {
		return a
	}
	return b.cfg.Announce[""]
}

// checkRecipient asks Slack (users.info) who a hand-off's recipient is
// and returns why the code may not go to them ("" when it may): a bot, a
// deactivated member, or a member of another organisation (Slack Connect:
// codes stay in the installing workspace). Guests may get codes. When
// Slack cannot say, the hand-off is refused too (detail says why).
func (b *Bot) checkRecipient(ctx context.Context, user string) (pairing.Outcome, string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u, err := b.api.GetUserInfoContext(ctx, user)
	switch {
	case err != nil:
		return pairing.OutcomeRecipientUnknown, webFailure(err)
	case u.IsBot || u.ID == "USLACKBOT":
		return pairing.OutcomeRecipientBot, ""
	case u.Deleted:
		return pairing.OutcomeRecipientDeactivated, ""
	case b.teamID != "" && u.TeamID != b.teamID && !b.memberHere(u):
		return pairing.OutcomeRecipientForeign, ""
	}
	return "", ""
}

// memberHere reports whether u, whose home workspace is another, belongs
// to this one all the same: in Enterprise Grid a member's team_id is their
// home workspace, and enterprise_user lists every workspace of the
// organisation they are in (api.slack.com/enterprise/apps/changes-apis).
// A member of another organisation (Slack Connect) never is.
func (b *Bot) memberHere(u *slack.User) bool {
	return b.enterpriseID != "" && u.Enterprise.EnterpriseID == b.enterpriseID && slices.Contains(u.Enterprise.Teams, b.teamID)
}

// prepareHandoffRenewal is a renewal's Prepare (New code, Try again):
// for a hand-off, the checks its first /link ran before request-code, run
// again, since the recipient or Slack may have changed since: who the
// recipient is (checkRecipient: a bot, deactivated, another organisation),
// then their DM opened (openHandoffDM, when it is not open yet). A refusal
// asks for no code; the requester is told why. Both share the 5 s a
// request's lease keeps for its DM (handoffDMTimeout).
func (b *Bot) prepareHandoffRenewal(ctx context.Context, p pairing.Pairing) error {
	recipient := p.HandedTo()
	if recipient == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, handoffDMTimeout)
	defer cancel()
	if why, detail := b.checkRecipient(ctx, recipient); why != "" {
		b.log.Info("hand-off renewal refused", "pairing", p.ID, "outcome", why, "recipient", recipient, "detail", detail)
		return &pairing.DMError{Code: string(why), Refused: why}
	}
	return b.openHandoffDM(ctx, p)
}

// handoffDMTimeout bounds the post that opens a hand-off's DM: the margin
// a request's lease has beyond its two Wawp calls (pairing.Service's
// RequestLease).
const handoffDMTimeout = 5 * time.Second

// openHandoffDM opens a hand-off's DM with its recipient (the request's
// Prepare, just before request-code): a message saying who is sending a
// code for which phone, which the code then replaces. If Slack refuses it
// (messages_tab_disabled, …) no code is requested: nobody could be shown
// it. A renewal's DM is open already.
func (b *Bot) openHandoffDM(ctx context.Context, p pairing.Pairing) error {
	if p.DM.TS != "" {
		return nil
	}
	// It runs inside the request's lease (two Wawp calls of up to
	// wawp_timeout each, and 5 s more): it may take those 5 s.
	ctx, cancel := context.WithTimeout(ctx, handoffDMTimeout)
	defer cancel()
	log := b.log.With("pairing", p.ID, "recipient", p.DM.Recipient)
	m := b.render(ctx, p, b.cfg.Service.Now(), onDM)
	dm := p.DM
	var channel, ts string
	// Through the recipient's post hold: a 429 on their DM holds the
	// next posts to it. Slack allows about one post a second into one
	// conversation ("1 message per second to a specific channel",
	// api.slack.com/methods/chat.postMessage, Rate limiting), so two
	// hand-offs to one person a moment apart meet a short Retry-After:
	// it is waited out when it runs out within the DM's 5 s (this runs
	// after the ack), and only a longer one refuses the hand-off (Slack
	// said ratelimited).
	var (
		sent bool
		err  error
	)
	for try := 0; ; try++ {
		b.refreshHolds(ctx)
		sent, err = b.limited(b.lockPosts(dm.Recipient), b.posts.on(dm.Recipient), func() (err error) {
			channel, ts, err = b.api.PostMessageContext(ctx, dm.Recipient, slack.MsgOptionText(m.Text, false), slack.MsgOptionBlocks(m.Blocks...))
			return err
		})
		if sent && !rateLimited(err) || try == 2 || !b.waitHold(ctx, b.posts.heldUntil(dm.Recipient)) {
			break
		}
	}
	if !sent {
		err = slack.SlackErrorResponse{Err: "ratelimited"}
	}
	// Slack has answered: what it did is recorded even if ctx ended
	// meanwhile (the 5 s ran out, a shutdown).
	rctx, rcancel := pairing.RecordContext(ctx)
	defer rcancel()
	if err != nil {
		code, refused := slackRefusal(err)
		if refused {
			b.logDMRefusedFor(log, code, "the hand-off is refused and no code is requested")
		} else {
			code = webFailure(err)
			log.Warn("hand-off: the recipient's DM could not be posted; no code is requested", "reason", code)
		}
		dm.Failed = code
		if _, err := b.cfg.Service.RecordDM(rctx, p.ID, dm, false); err != nil {
			log.Error("recording the DM", "err", err)
		}
		return &pairing.DMError{Code: code}
	}
	dm.Channel, dm.TS, dm.LastView = channel, ts, viewWaiting
	if _, err := b.cfg.Service.RecordDM(rctx, p.ID, dm, false); err != nil {
		// Its edits would go nowhere: no code is requested.
		log.Error("recording the DM", "err", err)
		return &pairing.DMError{Code: "internal"}
	}
	return nil
}

// waitHold waits until a Retry-After's hold runs out at until (on the
// service's clock), if it does before ctx ends; it reports whether it
// waited (false: no hold, or ctx would end first).
func (b *Bot) waitHold(ctx context.Context, until time.Time) bool {
	if until.IsZero() {
		return false
	}
	d := until.Sub(b.cfg.Service.Now())
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// auditRefusal records a refusal decided before the ack (writing is disk
// I/O, so it happens after). The phone, if it parses, is stored masked;
// recipient is who a refused hand-off named.
func (b *Bot) auditRefusal(cmd slack.SlashCommand, now time.Time, in pairing.Instance, phone string, why pairing.Outcome, recipient string) func(context.Context, context.Context, *slog.Logger) {
	return func(ctx, _ context.Context, log *slog.Logger) {
		b.auditRefusalOnce(ctx, cmd, now, in, phone, why, recipient, log)
	}
}

// auditRefusalOnce claims the command's dedupe key and, unless the
// command was handled before (false: a duplicate, which must show
// nothing), audits its refusal.
func (b *Bot) auditRefusalOnce(ctx context.Context, cmd slack.SlashCommand, now time.Time, in pairing.Instance, phone string, why pairing.Outcome, recipient string, log *slog.Logger) bool {
	if !b.claim(ctx, log) {
		return false
	}
	err := b.cfg.Service.AuditRefusal(ctx, pairing.Refusal{
		Time: now, User: cmd.UserID, Team: cmd.TeamID, Channel: cmd.ChannelID, Instance: in, Phone: phone, Outcome: why,
		Recipient: recipient,
	})
	if err != nil {
		log.Error("audit", "err", err)
	}
	return true
}

// historyLimit is how many events /link history shows: the newest ones,
// whatever their age. The audit log is indexed by phone and instance, so
// reading them costs what is shown, not the size of the log.
const historyLimit = 10

// history answers /link history <phone|instance> with the events of the
// instances the asker may use: an instance they may not use is refused,
// and a phone's history leaves out other instances' events.
func (b *Bot) history(cmd slack.SlashCommand, subject string, now time.Time) reply {
	if !b.allowedAnywhere(cmd.UserID, cmd.ChannelID) {
		return reply{msg: AccessDeniedView("any instance", b.rulesFor("").Ask), outcome: pairing.OutcomeAccessDenied, after: b.auditRefusal(cmd, now, pairing.Instance{}, "", pairing.OutcomeAccessDenied, "")}
	}
	q := pairing.HistoryQuery{Limit: historyLimit}
	shown := subject
	if in, err := b.cfg.Directory.Resolve(subject); err == nil {
		if !b.allowed(in.ID, cmd.UserID, cmd.ChannelID) {
			return reply{msg: AccessDeniedView(in.Name, b.rulesFor(in.ID).Ask), outcome: pairing.OutcomeAccessDenied, after: b.auditRefusal(cmd, now, in, "", pairing.OutcomeAccessDenied, "")}
		}
		q.Instances = []string{in.ID, in.Name}
		shown = in.Name
	} else if phone, err := pairing.NormalizePhone(subject, b.cfg.Region); err == nil {
		q.Phone = phone.Digits
		shown = phone.Masked()
	} else {
		var perr *pairing.PhoneError
		if errors.As(err, &perr) && !pairing.IsInstanceID(subject) && strings.ContainsAny(subject, "0123456789") {
			return reply{msg: PhoneView(perr), outcome: pairing.OutcomeBadPhone}
		}
		return reply{msg: UnknownInstanceView(subject, b.cfg.Directory.Names()), outcome: pairing.OutcomeUnknownInstance}
	}
	// Each event passes its own instance's rules: a phone's history may
	// cross instances, and an instance's history finds events recorded
	// before instance IDs were by the alias they had then, which may name
	// another instance now.
	q.Allowed = func(instanceID string) bool { return b.allowed(instanceID, cmd.UserID, cmd.ChannelID) }
	return reply{msg: notice("Looking up history…", "📜 Looking up the history…"), outcome: pairing.OutcomeHistory, after: func(ctx, _ context.Context, log *slog.Logger) {
		if !b.claim(ctx, log) {
			return
		}
		events, err := b.cfg.Service.History(ctx, q)
		if errors.Is(err, pairing.ErrUnavailable) {
			b.postUncounted(ctx, log, cmd.ResponseURL, UnavailableView())
			return
		}
		if err != nil {
			log.Error("reading audit", "err", err)
			b.respond(ctx, log, cmd.ResponseURL, now, 0, InternalErrorView(cmd.TriggerID))
			return
		}
		b.respond(ctx, log, cmd.ResponseURL, now, 0, HistoryView(shown, events))
	}}
}

// result turns the outcome of Start, Renew, Refresh or Cancel into what
// the agent sees.
func (b *Bot) result(p pairing.Pairing, err error, instance, requestID string) Message {
	now := b.cfg.Service.Now()
	// The view follows the outcome the metrics count and the audit log
	// records; the error carries what the view shows.
	switch o := pairing.OutcomeOf(err); {
	case o.Limit() != pairing.LimitNone:
		if lerr, ok := errors.AsType[*pairing.LimitError](err); ok {
			if p.ID != "" && p.HandedTo() == "" && b.cfg.Service.QRSuggested(p, err) {
				return withQROffer(LimitView(lerr, instance, now), p.ID)
			}
			return LimitView(lerr, instance, now)
		}
	case o.IsStatus():
		if serr, ok := errors.AsType[*pairing.StatusError](err); ok {
			return StatusView(serr, instance, p.ID, now)
		}
	case o == pairing.OutcomeWawpError, o == pairing.OutcomeQRUnavailable:
		if p.ID != "" && p.HandedTo() == "" && b.cfg.Service.QRSuggested(p, err) {
			return withQROffer(WawpErrorView(err, instance), p.ID)
		}
		return WawpErrorView(err, instance)
	case o == pairing.OutcomeTooSoon:
		if terr, ok := errors.AsType[*pairing.TooSoonError](err); ok {
			return TooSoonView(p.InstanceName, p.ID, terr.RetryAt, now)
		}
	case o == pairing.OutcomeAccessDenied:
		return AccessDeniedView(p.InstanceName, b.rulesFor(p.Instance).Ask)
	case o == pairing.OutcomeEnded:
		return EndedView()
	case o == pairing.OutcomeUnavailable:
		return UnavailableView()
	case o == pairing.OutcomeCodeUnrecorded:
		return CodeUnrecordedView(instance)
	}
	b.log.Error("request failed", "request", requestID, "err", err)
	return InternalErrorView(requestID)
}
