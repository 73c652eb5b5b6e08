package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
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
	// Delivery is where codes go (the config file's delivery): "" for the
	// default, else by instance ID; unset means ephemeral.
	Delivery map[string]pairing.Delivery
	// Announce says whether a status card is posted in the channel where
	// /link was typed (the config file's announce): "" for the default,
	// else by instance ID; unset means no card.
	Announce map[string]bool
	// EditsPerMinute is the shared budget of chat.update calls (DM edits)
	// across all pairings; zero means DefaultEditsPerMinute, below Slack's
	// Tier 3 limit of about 50 a minute per workspace.
	EditsPerMinute int
	// Observer is told about commands, acks and edits (metrics); may be nil.
	Observer Observer
	// Shared says the storage is shared by several replicas of the app
	// (PostgreSQL): other Socket Mode connections of the app are expected.
	Shared bool
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
	// enterpriseID is the Enterprise Grid organisation the workspace is
	// in ("" outside Grid): a member of the workspace whose home is
	// another workspace of it is no stranger (checkRecipient).
	enterpriseID string
	// botName is the bot user's name (auth.test), for "/invite @name".
	botName string
	work    sync.WaitGroup
	// working counts the work goroutines running, for the shutdown log.
	working atomic.Int64

	// workCtx ends when shutdown stops waiting for in-flight work.
	workCtx  context.Context
	stopWork context.CancelFunc

	editing sync.Map     // pairing ID → an edit is in flight
	ticking atomic.Int64 // edits started by ticks and still running
	// backlog is how many urgent edits (final states, codes going into
	// DMs) wait for the edit budget: counted by each tick (from the
	// stored pairings on a replica that does not lead: followBacklog),
	// plus the DMs opened since whose code did not go in at once
	// (codeGoesInSoon).
	backlog   atomic.Int64
	editSlots chan struct{} // bounds concurrent edits
	edits     *editBudget   // the workspace's chat.update budget, shared by all DMs
	updating  sync.Mutex    // one chat.update or chat.delete call at a time (see limited)
	posts     *postHolds    // chat.postMessage's Retry-Afters, per channel
	urlHolds  *postHolds    // response_url Retry-Afters, per url (by urlHoldID)
	postLocks messageLocks  // one chat.postMessage call at a time per destination (see lockPosts)
	groups    groupMembers
	obs       Observer
	locks     messageLocks // one writer per Slack message
	meta      sealer       // seals what a view's private_metadata must hide from Slack clients

	// beforeEdit, when set (tests only), runs in a tick's edit goroutine
	// before it takes its message's lock: a test's way to decide an edit
	// and let a click run first.
	beforeEdit func()
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
	if cfg.EditsPerMinute <= 0 {
		cfg.EditsPerMinute = DefaultEditsPerMinute
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
	b := &Bot{cfg: cfg, api: api, log: cfg.Log, editSlots: make(chan struct{}, maxEditsInFlight), obs: cfg.Observer, meta: newSealer(cfg.BotToken)}
	clock := time.Now
	if cfg.Service != nil {
		clock = cfg.Service.Now
	}
	b.edits = newEditBudget(cfg.EditsPerMinute, clock)
	b.posts = newPostHolds(clock)
	b.urlHolds = newPostHolds(clock)
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
	if auth.EnterpriseID != "" && (auth.TeamID == "" || auth.TeamID == auth.EnterpriseID) {
		// An org-wide install (Enterprise Grid, org_deploy_enabled): its
		// token stands for the organisation, and its methods need the
		// workspace named on each call (team_id), which the bot does not
		// do; its access rules, limits and checks are one workspace's.
		// manifest.yml sets org_deploy_enabled: false; install the app to
		// the workspace instead (README "Enterprise Grid").
		return fmt.Errorf("SLACK_BOT_TOKEN: %w (an org-wide install of Enterprise Grid organisation %s: linkbot serves one workspace; install it to a workspace, with org_deploy_enabled: false as in manifest.yml)", ErrAuth, auth.EnterpriseID)
	}
	b.teamID, b.enterpriseID, b.botName = auth.TeamID, auth.EnterpriseID, auth.User
	b.log.Info("slack bot authenticated", "team", auth.Team, "team_id", auth.TeamID, "bot_user", auth.UserID)
	b.loadHolds(ctx)
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
	defer func() {
		<-c.Stop().Done()
		b.resign() // no more ticks here: another replica may lead now
	}()
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

// answerMargin is the time the shutdown grace allows, beyond a request's
// lease, for posting its answer.
const answerMargin = 5 * time.Second

// shutdownCutoff bounds the last steps of a shutdown that cut work short:
// interrupting the requests in flight takes at most one, and the work cut
// short returning (each records what Wawp answered it, within
// pairing.RecordTimeout) and the posts of the interrupted requests'
// messages share a second one.
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
// slots) follows its context, and the writes recording what already
// happened (Wawp's answer, a post that landed) are bounded by
// pairing.RecordTimeout.
func (b *Bot) drain() {
	if b.waitWork(b.cfg.ShutdownGrace) {
		return
	}
	// The serving context is done by now: interrupting gets its own.
	cutoff := time.Now().Add(2 * shutdownCutoff)
	ictx, icancel := context.WithTimeout(context.Background(), shutdownCutoff)
	ended := b.cfg.Service.Interrupt(ictx)
	icancel()
	b.log.Warn("shutdown: in-flight work did not finish in time; cutting it short", "grace", b.cfg.ShutdownGrace, "interrupted_requests", len(ended))
	b.stopWork()
	b.log.Info("shutdown: waiting for the work cut short to return", "tasks", b.working.Load())
	b.work.Wait()
	ctx, cancel := context.WithDeadline(context.Background(), cutoff)
	defer cancel()
	for _, p := range ended {
		b.show(ctx, p, showing{answer: onNone})
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
