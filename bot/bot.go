package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/linkbot/linkbot/pairing"
)

// Config wires a Bot.
type Config struct {
	AppToken  string
	BotToken  string
	APIURL    string // Slack Web API base, with trailing slash
	Service   *pairing.Service
	Directory *pairing.Directory
	Log       *slog.Logger
	// HTTP posts to response_urls; nil means a client with a 10 s timeout.
	HTTP *http.Client
	// Region is the default region, shown in help.
	Region string
	// TickInterval is how often live pairings are polled and their
	// messages brought up to date; zero means 5 s. The config file allows
	// whole seconds only; tests tick faster (see tickSchedule).
	TickInterval time.Duration
	// ShutdownGrace bounds how long Run waits for in-flight work on exit;
	// zero means long enough for the longest code request (its lease) and
	// the post of its answer, and at least 10 s. Requests still in flight
	// after it end as interrupted.
	ShutdownGrace time.Duration
	// MaxRetryWait caps the pause before a response_url post is retried
	// after a 429 (Slack's Retry-After, 1 s when it names no seconds) or a
	// 5xx (1 s); zero means 10 s. Tests pause less.
	MaxRetryWait time.Duration
	// Access holds the access rules: "" for the default, else by instance ID.
	Access map[string]Access
	// Observer is told about commands, acks and edits (metrics); may be nil.
	Observer Observer
}

// Observer receives the bot's events for metrics.
type Observer interface {
	Command(outcome pairing.Outcome)
	Ack(d time.Duration)
	ResponseURLUse()
	Connected(connected bool)
}

type nopObserver struct{}

func (nopObserver) Command(pairing.Outcome) {}
func (nopObserver) Ack(time.Duration)       {}
func (nopObserver) ResponseURLUse()         {}
func (nopObserver) Connected(bool)          {}

// Bot serves /link over Socket Mode.
type Bot struct {
	cfg    Config
	api    *slack.Client
	sm     *socketmode.Client
	log    *slog.Logger
	teamID string
	work   sync.WaitGroup
	// working counts the work goroutines running, for the shutdown log.
	working atomic.Int64

	// workCtx ends when shutdown stops waiting for in-flight work.
	workCtx  context.Context
	stopWork context.CancelFunc

	editing   sync.Map      // pairing ID → an edit is in flight
	editSlots chan struct{} // bounds concurrent edits
	groups    groupMembers
	obs       Observer
	locks     messageLocks // one writer per Slack message
}

// New returns a Bot; Run connects it.
func New(cfg Config) *Bot {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 5 * time.Second
	}
	if cfg.MaxRetryWait <= 0 {
		cfg.MaxRetryWait = maxRetryWait
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
		if cfg.Service != nil {
			cfg.ShutdownGrace = max(cfg.ShutdownGrace, cfg.Service.RequestLease()+answerMargin)
		}
	}
	opts := []slack.Option{slack.OptionAppLevelToken(cfg.AppToken), slack.OptionHTTPClient(cfg.HTTP)}
	if cfg.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(cfg.APIURL))
	}
	api := slack.New(cfg.BotToken, opts...)
	b := &Bot{cfg: cfg, api: api, log: cfg.Log, editSlots: make(chan struct{}, maxEditsInFlight), obs: cfg.Observer}
	b.workCtx, b.stopWork = context.WithCancel(context.Background())
	if b.obs == nil {
		b.obs = nopObserver{}
	}
	b.sm = socketmode.New(api, socketmode.OptionLog(slogAdapter{cfg.Log}))
	return b
}

// slogAdapter routes slack-go's internal logger into slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Output(_ int, s string) error {
	a.l.Debug(strings.TrimSpace(s), "component", "socketmode")
	return nil
}

// ErrAuth means Slack rejected a token.
var ErrAuth = errors.New("slack rejected the token")

// Run checks the bot token, connects over Socket Mode and serves until ctx
// ends; then it waits for in-flight work to finish.
func (b *Bot) Run(ctx context.Context) error {
	auth, err := b.api.AuthTestContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // asked to stop before it started: not a failure
		}
		switch err.Error() {
		case "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired":
			return fmt.Errorf("SLACK_BOT_TOKEN: %w (%v)", ErrAuth, err)
		}
		return fmt.Errorf("checking SLACK_BOT_TOKEN with Slack's auth.test: %w", err)
	}
	b.teamID = auth.TeamID
	b.log.Info("slack bot authenticated", "team", auth.Team, "team_id", auth.TeamID, "bot_user", auth.UserID)
	open := true
	for _, a := range b.cfg.Access {
		open = open && a.Open()
	}
	if open {
		b.log.Info("no access rules configured: every member of the workspace may request codes", "team", auth.Team)
	}
	// Group members are needed for access checks, which run before the
	// ack and so cannot ask Slack: load them before taking commands.
	groupsCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	b.refreshGroups(groupsCtx)
	cancel()

	runErr := make(chan error, 1)
	sockCtx, stopSocket := context.WithCancel(ctx)
	go func() { runErr <- b.sm.RunContext(sockCtx) }()
	socketRunning := true
	// closeSocket closes the socket, so Slack stops sending commands here,
	// and waits for its goroutine (RunContext returns once sockCtx is done;
	// it sends events only while that is not).
	closeSocket := func() {
		stopSocket()
		if socketRunning {
			<-runErr
		}
	}
	c, err := b.startCron(ctx)
	if err != nil {
		closeSocket()
		return err
	}
	// On the way out: stop the cron (a running tick ends with ctx), close
	// the socket, then give in-flight requests and edits a bounded time to
	// finish. Run returns only when every goroutine it started has.
	defer b.drain()
	defer closeSocket()
	defer func() { <-c.Stop().Done() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-runErr:
			socketRunning = false
			if ctx.Err() != nil {
				return nil
			}
			switch err.Error() { // apps.connections.open turned the app token away
			case "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired":
				return fmt.Errorf("SLACK_APP_TOKEN: %w (%v)", ErrAuth, err)
			}
			return fmt.Errorf("socket mode: %w", err)
		case evt := <-b.sm.Events:
			if err := b.dispatch(ctx, evt); err != nil {
				return err
			}
		}
	}
}

// dispatch handles one Socket Mode event. It never does network I/O before
// the ack and never blocks: slow work runs in goroutines, so pings and
// other envelopes are never held up.
func (b *Bot) dispatch(ctx context.Context, evt socketmode.Event) error {
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		b.obs.Connected(false)
		b.log.Info("slack socket connecting")
	case socketmode.EventTypeConnected:
		b.log.Info("slack socket connected")
	case socketmode.EventTypeHello:
		n := 0
		if evt.Request != nil {
			n = evt.Request.NumConnections
		}
		// Slack spreads commands over up to 10 connections per app: a second
		// process on the same token steals commands from this one.
		level := slog.LevelInfo
		if n > 1 {
			level = slog.LevelWarn
		}
		b.log.Log(ctx, level, "slack socket ready", "num_connections", n)
		b.obs.Connected(true)
	case socketmode.EventTypeConnectionError:
		b.log.Warn("slack socket connection failed; retrying")
	case socketmode.EventTypeInvalidAuth:
		return fmt.Errorf("SLACK_APP_TOKEN: %w (apps.connections.open answered 404)", ErrAuth)
	case socketmode.EventTypeDisconnect:
		b.obs.Connected(false)
		b.log.Info("slack asked to reconnect")
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || evt.Request == nil {
			return nil
		}
		b.command(ctx, evt.Request.EnvelopeID, cmd)
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		b.ack(ctx, evt.Request, nil)
		if ok {
			b.goWork(ctx, func(ctx context.Context) { b.interaction(ctx, cb) })
		}
	default:
		b.ack(ctx, evt.Request, nil)
	}
	return nil
}

func (b *Bot) ack(ctx context.Context, req *socketmode.Request, payload any) {
	if req == nil || req.EnvelopeID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := b.sm.AckCtx(ctx, req.EnvelopeID, payload); err != nil {
		b.log.Error("ack failed", "envelope", req.EnvelopeID, "err", err)
	}
}

// answerMargin is the time the shutdown grace allows, beyond a request's
// lease, for posting its answer.
const answerMargin = 5 * time.Second

// shutdownCutoff bounds each last step of a shutdown that cut work short:
// interrupting the requests in flight, and posting their messages.
const shutdownCutoff = 5 * time.Second

// drain waits for in-flight work on shutdown, at most ShutdownGrace, which
// by default covers the longest code request (two Wawp calls of up to
// wawp_timeout each) and its answer: a request in flight ends as it would
// have, with its code or its refusal shown. If work is still running after
// that, the requests in flight end as interrupted (they count: request-code
// may have reached WhatsApp), the rest is cancelled, and the interrupted
// requests' messages say so; a post that does not make it is posted by the
// next start, which still watches them.
//
// drain returns only once every piece of work has returned, cut short or
// not: work outlives the serving context (goWork), so it must not outlive
// the database, which is closed when Run returns. Cut work ends soon, since
// every wait in it (Wawp calls, Slack posts, pauses before retries, edit
// slots) follows its context.
func (b *Bot) drain() {
	if b.waitWork(b.cfg.ShutdownGrace) {
		return
	}
	// The serving context is done by now: interrupting gets its own.
	ictx, icancel := context.WithTimeout(context.Background(), shutdownCutoff)
	ended := b.cfg.Service.Interrupt(ictx)
	icancel()
	b.log.Warn("shutdown: in-flight work did not finish in time; cutting it short", "grace", b.cfg.ShutdownGrace, "interrupted_requests", len(ended))
	b.stopWork()
	b.log.Info("shutdown: waiting for the work cut short to return", "tasks", b.working.Load())
	b.work.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownCutoff)
	defer cancel()
	for _, p := range ended {
		b.show(ctx, p, false)
	}
}

// waitWork waits up to d for in-flight work and reports whether it all finished.
func (b *Bot) waitWork(d time.Duration) bool {
	done := make(chan struct{})
	go func() { b.work.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// goWork runs f after the ack; Run waits for it on shutdown. f's context
// outlives the serving context (a request in flight finishes during
// shutdown) until drain stops waiting and cuts it short; Run returns only
// after f has. A panic in f is logged and
// contained: one bad request must not take the bot down.
func (b *Bot) goWork(ctx context.Context, f func(context.Context)) {
	b.work.Add(1)
	b.working.Add(1)
	go func() {
		defer b.work.Done()
		defer b.working.Add(-1)
		defer func() {
			if r := recover(); r != nil {
				b.log.Error("panic in request handling", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}()
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		defer context.AfterFunc(b.workCtx, cancel)()
		f(ctx)
	}()
}

// command answers a /link at once (parsing and normalising are pure CPU)
// and requests the code after the ack.
func (b *Bot) command(ctx context.Context, envelopeID string, cmd slack.SlashCommand) {
	start := time.Now()
	received := b.cfg.Service.Now()
	log := b.log.With("request", envelopeID, "user", cmd.UserID, "channel", cmd.ChannelID)
	reply := b.safePrepare(cmd, received, log)
	b.ack(ctx, &socketmode.Request{EnvelopeID: envelopeID}, reply.msg.ackPayload())
	b.obs.Ack(time.Since(start))
	if reply.outcome != "" {
		b.obs.Command(reply.outcome)
		log.Info("command answered", "outcome", reply.outcome)
	}
	if reply.after == nil {
		return
	}
	b.goWork(ctx, func(ctx context.Context) {
		reply.after(ctx, pairing.WithRequestID(ctx, envelopeID), log)
	})
}

// safePrepare is prepare that survives its own bugs: a panic becomes an
// "internal error" answer instead of a crashed process and a Slack timeout.
func (b *Bot) safePrepare(cmd slack.SlashCommand, now time.Time, log *slog.Logger) (r reply) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic preparing a command", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r = reply{msg: InternalErrorView(cmd.TriggerID), outcome: pairing.OutcomeInternalError}
		}
	}()
	return b.prepare(cmd, now)
}

// reply is the immediate answer to a command and the work that follows it.
type reply struct {
	msg     Message
	outcome pairing.Outcome // for metrics and the log, when the command ends with the ack
	after   func(ctx, reqCtx context.Context, log *slog.Logger)
}

// prepare decides the immediate reply to a command (pure CPU: no network,
// no disk) and what to do after the ack.
func (b *Bot) prepare(cmd slack.SlashCommand, now time.Time) reply {
	if b.teamID != "" && cmd.TeamID != b.teamID {
		return reply{msg: ForeignTeamView(), outcome: pairing.OutcomeForeignTeam, after: b.auditRefusal(cmd, now, pairing.Instance{}, "", pairing.OutcomeForeignTeam)}
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
	}
	in, err := b.cfg.Directory.Resolve(parsed.Instance)
	if err != nil {
		return reply{msg: UnknownInstanceView(parsed.Instance, b.cfg.Directory.Names()), outcome: pairing.OutcomeUnknownInstance}
	}
	if !b.allowed(in.ID, cmd.UserID, cmd.ChannelID) {
		return reply{msg: AccessDeniedView(in.Name, b.rulesFor(in.ID).Ask), outcome: pairing.OutcomeAccessDenied, after: b.auditRefusal(cmd, now, in, parsed.Phone, pairing.OutcomeAccessDenied)}
	}
	phone, err := pairing.NormalizePhone(parsed.Phone, in.Region)
	var perr *pairing.PhoneError
	if errors.As(err, &perr) {
		return reply{msg: PhoneView(perr), outcome: pairing.OutcomeBadPhone}
	}
	req := pairing.Request{
		Instance: in, Phone: phone, User: cmd.UserID, Team: cmd.TeamID, Channel: cmd.ChannelID,
		ResponseURL: cmd.ResponseURL, URLIssued: now,
	}
	return reply{msg: RequestingView(phone, in.Name), after: func(ctx, reqCtx context.Context, log *slog.Logger) {
		p, err := b.cfg.Service.Start(reqCtx, req)
		b.obs.Command(pairing.OutcomeOf(err))
		if p.ID != "" && p.State != pairing.StateRequesting {
			// Every request past the limits has a stored pairing, watched
			// until its message shows how it ended; shown from the store, an
			// answer whose post is lost is posted again by the next tick.
			b.show(ctx, p, false)
			return
		}
		b.respond(ctx, log, req.ResponseURL, req.URLIssued, 0, b.result(p, err, req.Instance.Name, cmd.TriggerID))
	}}
}

// auditRefusal records a refusal decided before the ack (writing is disk
// I/O, so it happens after). The phone, if it parses, is stored masked.
func (b *Bot) auditRefusal(cmd slack.SlashCommand, now time.Time, in pairing.Instance, phone string, why pairing.Outcome) func(context.Context, context.Context, *slog.Logger) {
	return func(ctx, _ context.Context, log *slog.Logger) {
		err := b.cfg.Service.AuditRefusal(ctx, pairing.Refusal{
			Time: now, User: cmd.UserID, Team: cmd.TeamID, Channel: cmd.ChannelID, Instance: in, Phone: phone, Outcome: why,
		})
		if err != nil {
			log.Error("audit", "err", err)
		}
	}
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
		return reply{msg: AccessDeniedView("any instance", b.rulesFor("").Ask), outcome: pairing.OutcomeAccessDenied, after: b.auditRefusal(cmd, now, pairing.Instance{}, "", pairing.OutcomeAccessDenied)}
	}
	q := pairing.HistoryQuery{Limit: historyLimit}
	shown := subject
	if in, err := b.cfg.Directory.Resolve(subject); err == nil {
		if !b.allowed(in.ID, cmd.UserID, cmd.ChannelID) {
			return reply{msg: AccessDeniedView(in.Name, b.rulesFor(in.ID).Ask), outcome: pairing.OutcomeAccessDenied, after: b.auditRefusal(cmd, now, in, "", pairing.OutcomeAccessDenied)}
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
		events, err := b.cfg.Service.History(ctx, q)
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
			return LimitView(lerr, instance, now)
		}
	case o.IsStatus():
		if serr, ok := errors.AsType[*pairing.StatusError](err); ok {
			return StatusView(serr, instance, p.ID, now)
		}
	case o == pairing.OutcomeWawpError:
		return WawpErrorView(err, instance)
	case o == pairing.OutcomeTooSoon:
		if terr, ok := errors.AsType[*pairing.TooSoonError](err); ok {
			return TooSoonView(p.InstanceName, p.ID, terr.RetryAt, now)
		}
	case o == pairing.OutcomeAccessDenied:
		return AccessDeniedView(p.InstanceName, b.rulesFor(p.Instance).Ask)
	case o == pairing.OutcomeEnded:
		return EndedView()
	}
	b.log.Error("request failed", "request", requestID, "err", err)
	return InternalErrorView(requestID)
}

// interaction handles a button click, after the ack.
func (b *Bot) interaction(ctx context.Context, cb slack.InteractionCallback) {
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
		return
	}
	action := cb.ActionCallback.BlockActions[0]
	now := b.cfg.Service.Now()
	log := b.log.With("action", action.ActionID, "user", cb.User.ID, "pairing", action.Value)
	if b.teamID != "" && cb.Team.ID != "" && cb.Team.ID != b.teamID {
		b.respond(ctx, log, cb.ResponseURL, now, 0, ForeignTeamView())
		return
	}
	// Answers go to the message the click came from, in turn with its
	// other writers (a countdown edit of the same message may be in flight).
	// The click's change and its answer are one write: a tick that reads
	// the pairing after the change (a Cancel, a renewal's new code) waits
	// for the click's answer and then finds it shown, instead of posting
	// it first and having the click post it again.
	message, instance := action.Value, ""
	if clicked, err := b.cfg.Service.Pairing(ctx, action.Value); err == nil {
		message, instance = clicked.MessageID(), clicked.InstanceName
	}
	unlock := b.locks.lock(message)
	defer unlock()
	show := func(p pairing.Pairing) {
		if p.MessageID() == message {
			b.showLocked(ctx, p, true)
			return
		}
		b.show(ctx, p, true)
	}
	answer := func(p pairing.Pairing, err error) {
		if p.InstanceName != "" {
			instance = p.InstanceName
		}
		// A renewal refused by a limit has no pairing of its own: its
		// refusal names the clicked pairing's instance.
		b.respond(ctx, log, cb.ResponseURL, now, 0, b.result(p, err, instance, cb.TriggerID))
	}
	// Each click brings a fresh response_url with a fresh budget: the
	// service makes it the one the message's later edits go through.
	var (
		p   pairing.Pairing
		err error
	)
	switch action.ActionID {
	case ActionRefresh:
		p, err = b.cfg.Service.Refresh(ctx, action.Value, cb.User.ID, cb.ResponseURL, now)
	case ActionNewCode, ActionTryAgain:
		p, err = b.cfg.Service.Renew(ctx, pairing.Renewal{
			ID: action.Value, User: cb.User.ID, Team: cb.Team.ID, ResponseURL: cb.ResponseURL, URLIssued: now,
			// Checked against the channel the pairing was requested in.
			Allowed: func(instanceID, channel string) bool { return b.allowed(instanceID, cb.User.ID, channel) },
		})
	case ActionCancel:
		p, err = b.cfg.Service.Cancel(ctx, action.Value, cb.User.ID, cb.ResponseURL, now)
	default:
		log.Warn("unknown action")
		return
	}
	log.Info("button handled", "err", err)
	if errors.Is(err, pairing.ErrNotAllowed) {
		log.Info("button refused by the access rules", "instance", p.InstanceName)
	}
	if errors.Is(err, pairing.ErrReplaced) {
		if p.ID == action.Value {
			// Its message shows the pairing that replaced it, which has
			// ended since: that view stays.
			return
		}
		// The pairing that holds the message now is the answer (through the
		// click's fresh response_url, like Refresh).
		err = nil
	}
	if err != nil && p.ID != "" && p.ID != action.Value && p.State != pairing.StateRequesting {
		// A renewal that ended without a code: its stored view is the answer.
		show(p)
		return
	}
	if errors.Is(err, pairing.ErrEnded) && p.ID != "" {
		// Cancel after the end: show how it ended instead.
		err = nil
	}
	if err != nil {
		answer(p, err)
		return
	}
	show(p)
}

// postOutcome is how a response_url post ended.
type postOutcome int

const (
	posted      postOutcome = iota
	budgetSpent             // no use left that this post may take
	urlGone                 // Slack answered 404/410: the message cannot be edited any more
	postFailed              // network trouble or repeated 429/5xx: try again later
	postDropped             // what the message should show changed before a retry
)

// maxPostTries bounds retries of one response_url post after a 429 or 5xx.
const maxPostTries = 3

// maxRetryWait caps how long one post waits for Slack's Retry-After, unless
// Config.MaxRetryWait says otherwise.
const maxRetryWait = 10 * time.Second

// respond replaces the ephemeral message behind url with m, within the
// url's budget (counted in the store; keep uses stay for later posts). A
// 429 or 5xx is retried after a pause in this goroutine only. Only a 429
// gives its use back: after a 5xx, a timeout or a broken connection Slack
// may have counted the post, and a use given back then would let the
// final state become a 6th post, which Slack refuses. Failures are
// logged, never shown, and the url itself is never logged (it is a
// credential for the message).
func (b *Bot) respond(ctx context.Context, log *slog.Logger, url string, issued time.Time, keep int, m Message) postOutcome {
	return b.post(ctx, log, url, issued, keep, m, nil)
}

// post is respond for a message that follows stored state: before every
// retry, again (when set) says what the message should show now, or false
// when that changed, and the retry is dropped. A pause for Retry-After can
// outlast the state it was rendered from (a New code click lands in it),
// and a retry must never post a view that is no longer true.
func (b *Bot) post(ctx context.Context, log *slog.Logger, url string, issued time.Time, keep int, m Message, again func() (Message, bool)) postOutcome {
	for try := 1; ; try++ {
		if ctx.Err() != nil {
			return postFailed // shutting down: keep the use for the next start
		}
		if try > 1 && again != nil {
			var ok bool
			if m, ok = again(); !ok {
				log.Info("response_url retry dropped: the message has moved on")
				return postDropped
			}
		}
		if err := b.cfg.Service.UseResponseURL(ctx, url, issued, keep); err != nil {
			log.Warn("response_url not used", "reason", err)
			return budgetSpent
		}
		client, answer := recordAnswer(b.cfg.HTTP)
		err := slack.PostWebhookCustomHTTPContext(ctx, url, client, m.webhook())
		if err == nil {
			b.obs.ResponseURLUse()
			return posted
		}
		var (
			code slack.StatusCodeError
			wait time.Duration
		)
		switch {
		case answer.status == http.StatusTooManyRequests:
			// Any 429, whatever its Retry-After (slack-go reports only a
			// whole number of seconds as *slack.RateLimitedError; without
			// one, or with an HTTP date, its error no longer says 429).
			wait = max(retryAfter(answer.retryAfter, time.Now()), time.Second)
			// Slack refused the post before counting it: the use is ours again.
			if rerr := b.cfg.Service.RefundResponseURL(ctx, url); rerr != nil {
				log.Error("refund response_url use", "err", rerr)
			}
		case errors.As(err, &code) && code.Code >= 500:
			wait = time.Second
		case errors.As(err, &code) && (code.Code == http.StatusNotFound || code.Code == http.StatusGone):
			log.Warn("response_url gone; no more edits to this message", "status", code.Code)
			return urlGone
		}
		wait = min(wait, b.cfg.MaxRetryWait)
		if wait == 0 || try >= maxPostTries {
			log.Warn("response_url post failed", "reason", postFailure(err, answer.status), "try", try)
			return postFailed
		}
		select {
		case <-ctx.Done():
			return postFailed
		case <-time.After(wait):
		}
	}
}

// answer is what a response_url post got back: status 0 when no answer
// arrived (a broken connection, a timeout).
type answer struct {
	status     int
	retryAfter string
}

// answerRecorder is a transport that keeps the status and Retry-After of
// the answer to the one post it carries, which slack-go's error does not
// always keep (see post).
type answerRecorder struct {
	next http.RoundTripper
	answer
}

func (a *answerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err == nil {
		a.status, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	}
	return resp, err
}

// recordAnswer returns a copy of c (sharing its connections) that records
// the answer to one post in *answer, readable once the post has returned.
func recordAnswer(c *http.Client) (*http.Client, *answer) {
	rec := &answerRecorder{next: c.Transport}
	if rec.next == nil {
		rec.next = http.DefaultTransport
	}
	cc := *c
	cc.Transport = rec
	return &cc, &rec.answer
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date; zero
// when it says neither.
func retryAfter(h string, now time.Time) time.Duration {
	if secs, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(h); err == nil {
		return at.Sub(now)
	}
	return 0
}

// postFailure describes a webhook error without the URL it went to.
func postFailure(err error, status int) string {
	var code slack.StatusCodeError
	var rl *slack.RateLimitedError
	switch {
	case errors.As(err, &rl):
		return fmt.Sprintf("rate limited, retry after %s", rl.RetryAfter)
	case status == http.StatusTooManyRequests:
		return "rate limited"
	case errors.As(err, &code):
		return fmt.Sprintf("HTTP %d", code.Code)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timed out"
	}
	return "network error"
}
