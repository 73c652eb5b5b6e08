package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/linkbot/linkbot/bot"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/wawp"
	"github.com/linkbot/linkbot/store"
	"github.com/linkbot/linkbot/store/postgres"
)

// version is set at build time with -ldflags "-X main.version=…" (the
// Dockerfile does); otherwise versionString reads the build information.
var version string

// versionString says what this binary was built from.
func versionString() string {
	info, _ := debug.ReadBuildInfo()
	return describeVersion(version, info)
}

// describeVersion prefers the version given at link time, then the module
// version the go command stamped (a release tag for `go install …@v1.2.0`;
// since Go 1.24 a pseudo-version with the commit, and +dirty for local
// changes, for a plain `go build` in a clone), then the VCS revision.
func describeVersion(ldflag string, info *debug.BuildInfo) string {
	const unknown = "built without version information: build in a git clone, or with -ldflags -X main.version=…"
	if info == nil {
		if ldflag != "" {
			return ldflag
		}
		return "devel (" + unknown + ")"
	}
	v := ldflag
	if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	if v == "" {
		var rev, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev == "" {
			return "devel (" + info.GoVersion + "; " + unknown + ")"
		}
		v = "devel-" + rev[:min(12, len(rev))]
		if modified == "true" {
			v += "-dirty"
		}
	}
	return v + " (" + info.GoVersion + ")"
}

const usage = `linkbot — link a WhatsApp number to a Wawp instance from Slack

Usage:
  linkbot            run the bot (configured by environment variables, see README)
  linkbot demo [--json] [--verbose]
                     play a scripted session against built-in fake Slack and Wawp (no account needed)
  linkbot check-config [FILE]
                     validate a config file (default $LINKBOT_CONFIG) without connecting
  linkbot audit [--since 24h] [--phone P] [--instance I] [--limit 1000] [--json]
                     print audit events from LINKBOT_DB (through the running bot's socket while it runs),
                     or from PostgreSQL when LINKBOT_DATABASE_URL is set
  linkbot migrate    run the PostgreSQL migrations on LINKBOT_DATABASE_URL and say what it applied
  linkbot copy-store [--from linkbot.db] [--to postgres://…]
                     copy a bbolt file (the bot stopped) into an empty PostgreSQL database
                     (--to defaults to LINKBOT_DATABASE_URL, --from to LINKBOT_DB)
  linkbot version    print the version
  linkbot help       show this text
`

// run is the whole program; main only calls it, so tests run the real
// thing with their own getenv, arguments and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWith(ctx, serveOptions{}, args, getenv, stdout, stderr)
}

// serveOptions are settings of serve that only tests use; the zero value is
// how the bot runs. The config file keeps minimums that make sense for
// people (ticks of whole seconds, codes of at least 5 s, a 2 s wait for
// the file lock, Slack's Retry-After); the end-to-end tests need ticks,
// lifetimes and pauses of milliseconds, a clock they can move on, and
// ticks they trigger themselves, to run in seconds without depending on
// the machine's speed.
type serveOptions struct {
	// tickInterval, when set, replaces tick_interval; it may be below a
	// second.
	tickInterval time.Duration
	// codeLifetime, when set, replaces code_lifetime.
	codeLifetime time.Duration
	// now, when set, is the service's clock.
	now func() time.Time
	// maxRetryWait, when set, caps the pause before a response_url post
	// is retried after a 429 or 5xx (10 s; Slack's Retry-After is whole
	// seconds).
	maxRetryWait time.Duration
	// lockWait, when set, replaces how long the bot (lockWait, 2 s) and
	// linkbot audit (auditLockWait, 250 ms) wait for the database file's
	// lock.
	lockWait time.Duration
	// started, when set, is given the bot before it runs (a test triggers
	// ticks through it).
	started func(*bot.Bot)
}

// runWith is run with test-only serve options (see serveOptions).
func runWith(ctx context.Context, opts serveOptions, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 1 {
		sub = args[1]
	}
	switch sub {
	case "":
	case "run":
		// No flags: the bot is configured by the environment. A flag or
		// an argument here is a typo, not something to ignore.
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		if help, err := parseFlags(fs, args[2:], "linkbot run — no flags: environment variables configure it, see README", stdout); help || err != nil {
			return err
		}
	case "check-config":
		path := getenv("LINKBOT_CONFIG")
		switch len(args) {
		case 2:
		case 3:
			path = args[2]
		default:
			return &usageError{fmt.Sprintf("check-config takes one file, not %d arguments (usage: linkbot check-config [FILE])", len(args)-2)}
		}
		if path == "" {
			return &usageError{"check-config: name the file, or set LINKBOT_CONFIG (usage: linkbot check-config [FILE])"}
		}
		return checkConfig(path, getenv, stdout)
	case "demo":
		return demo(ctx, opts, args[2:], stdout, stderr)
	case "audit":
		return auditCommand(ctx, opts, args[2:], getenv, stdout, stderr)
	case "migrate":
		return migrateCommand(ctx, args[2:], getenv, stdout)
	case "copy-store":
		return copyStoreCommand(ctx, args[2:], getenv, stdout)
	case "version", "--version":
		if help, err := parseFlags(flag.NewFlagSet(sub, flag.ContinueOnError), args[2:], "linkbot version", stdout); help || err != nil {
			return err
		}
		fmt.Fprintln(stdout, "linkbot", versionString())
		return nil
	case "help", "-h", "--help":
		if len(args) > 2 {
			return &usageError{fmt.Sprintf("%s: unexpected argument %q (usage: linkbot help)", sub, args[2])}
		}
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return &usageError{fmt.Sprintf("unknown command %q (commands: run, demo, check-config, audit, migrate, copy-store, version, help; see linkbot help)", sub)}
	}

	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogFormat, stderr)
	return serve(ctx, cfg, log, opts)
}

// usageError is a mistyped command line (an unknown subcommand, a bad
// flag): main says so in one line and exits exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// parseFlags parses a subcommand's flags. A mistake is a usageError that
// shows the synopsis; -h prints the flags to stdout and reports help.
func parseFlags(fs *flag.FlagSet, args []string, synopsis string, stdout io.Writer) (help bool, err error) {
	fs.SetOutput(io.Discard) // the error is reported once, by main
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stdout, "Usage: %s\n", synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return true, nil
	case err != nil:
		return false, &usageError{fmt.Sprintf("%s: %v (usage: %s)", fs.Name(), err, synopsis)}
	case fs.NArg() > 0:
		return false, &usageError{fmt.Sprintf("%s: unexpected argument %q (usage: %s)", fs.Name(), fs.Arg(0), synopsis)}
	}
	return false, nil
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// lockWait is how long the bot waits for another process to let go of the
// database file (a restart may briefly overlap the old process's exit).
const lockWait = 2 * time.Second

// openDB opens the database file, waiting up to wait for its lock in
// short tries, so that SIGTERM (ctx) ends the wait at once. Damaged records
// that reads skip are reported to log.
func openDB(ctx context.Context, path string, wait time.Duration, log *slog.Logger) (*store.DB, error) {
	deadline := time.Now().Add(wait)
	for {
		db, err := store.Open(path, store.Options{LockTimeout: 100 * time.Millisecond, Log: log})
		if !errors.Is(err, store.ErrLocked) {
			return db, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("open %s: %w (waited %s; is another linkbot running?): only one linkbot may use a database file (and a Slack app token) at a time",
				path, store.ErrLocked, wait)
		}
	}
}

// serve runs the bot until ctx ends; opts are the tests' (see serveOptions).
func serve(ctx context.Context, cfg config, log *slog.Logger, opts serveOptions) error {
	if opts.tickInterval > 0 {
		cfg.TickInterval = opts.tickInterval
	}
	if opts.codeLifetime > 0 {
		cfg.CodeLifetime = opts.codeLifetime
	}
	wait := lockWait
	if opts.lockWait > 0 {
		wait = opts.lockWait
	}
	db, where, closeDB, err := openStorage(ctx, cfg, wait, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // SIGTERM while waiting for the file or the server: a requested stop
		}
		return err
	}
	defer closeDB()

	// Keep connections to Wawp and Slack warm: the default of two idle
	// connections per host forces a new TLS handshake under any load.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	wawpHTTP := wawpHTTPClient(cfg.WawpTimeout, transport)
	m := newMetrics(db.WatchedCount)
	client := wawp.NewClient(cfg.WawpBaseURL, cfg.WawpToken, wawpHTTP).Observe(m)
	accounts := map[string]pairing.Wawp{}
	for id, token := range cfg.Tokens {
		accounts[id] = wawp.NewClient(cfg.WawpBaseURL, token, wawpHTTP).Observe(m)
	}
	dir := pairing.NewDirectory(cfg.Instances, cfg.DefaultRegion)
	svc := pairing.NewService(client, pairing.ObserveStorage(db, m.StorageCall), pairing.Config{
		PhoneLimit: cfg.PhoneLimit, UserLimit: cfg.UserLimit, QRLimit: cfg.QRLimit, CodeLifetime: cfg.CodeLifetime, CallTimeout: cfg.WawpTimeout, Log: log,
		Accounts: accounts, AuditRetention: cfg.AuditRetention, Directory: dir, Now: opts.now,
		// The ticker's leader lease lasts three ticks (issue 11): a replica
		// that dies is replaced within about three ticks (at least a second:
		// the tests' fast ticks would otherwise make a slow renewal look
		// like a lost lease).
		LeaderTTL: max(3*cfg.TickInterval, time.Second), LeaderID: leaderID(),
	})
	m.watchLeadership(svc.Leadership)
	log.Info("linkbot starting", "version", versionString(), "db", where, "instances", len(cfg.Instances),
		"default_region", cfg.DefaultRegion, "phone_limit", cfg.PhoneLimit.Max, "phone_window", cfg.PhoneLimit.Period.String())
	b := bot.New(bot.Config{
		AppToken: cfg.AppToken, BotToken: cfg.BotToken, APIURL: cfg.SlackAPIURL,
		Service: svc, Directory: dir, Shared: cfg.DatabaseURL != "",
		Log: log, Region: cfg.DefaultRegion, TickInterval: cfg.TickInterval, MaxRetryWait: opts.maxRetryWait, Access: cfg.Access, Delivery: cfg.Delivery, Announce: cfg.Announce, Observer: m, HTTP: &http.Client{Timeout: 10 * time.Second, Transport: transport},
	})
	if cfg.HTTPAddr != "" {
		stop, err := listen(cfg.HTTPAddr, m, readiness(db), log)
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			// Another process may free it: a restart can succeed.
			return fmt.Errorf("LINKBOT_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
		case err != nil:
			// An address this machine does not have, a name that does not
			// resolve, a port it may not bind: restarting will not fix it.
			return &configError{problems: []string{fmt.Sprintf("LINKBOT_HTTP_ADDR %s: %v", cfg.HTTPAddr, err)}}
		}
		defer stop()
	}
	if opts.started != nil {
		opts.started(b)
	}
	if err := b.Run(ctx); err != nil {
		return err
	}
	log.Info("linkbot stopped")
	return nil
}

// leaderID names this replica in the ticker's election and its logs: the
// host name and process ID, which tell an operator which replica leads,
// and a random suffix, so a restarted container that got the same PID
// starts a term of its own.
func leaderID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "linkbot"
	}
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// readiness is the database check of /readyz: PostgreSQL's ping; none for
// the bbolt file, which is open as long as the process runs.
func readiness(db storage) func(context.Context) error {
	if p, ok := db.(interface{ Ping(context.Context) error }); ok {
		return p.Ping
	}
	return nil
}

// storage is the store serve runs on: bbolt's or PostgreSQL's.
type storage interface {
	pairing.Storage
	WatchedCount() int
}

// openStorage opens the PostgreSQL store when LINKBOT_DATABASE_URL is set
// (running its migrations), else the bbolt file with the audit socket
// beside it (with PostgreSQL, `linkbot audit` reads the database itself).
// where names what it opened for the log, never a password.
func openStorage(ctx context.Context, cfg config, wait time.Duration, log *slog.Logger) (db storage, where string, closeDB func(), err error) {
	if cfg.DatabaseURL != "" {
		pg, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Options{Log: log})
		if err != nil {
			return nil, "", nil, err
		}
		return pg, "postgres " + pg.Where(), func() { pg.Close() }, nil
	}
	file, err := openDB(ctx, cfg.DBPath, wait, log)
	if err != nil {
		return nil, "", nil, err
	}
	closeDB = func() { file.Close() }
	if stop, err := serveAuditSocket(auditSocketPath(cfg.DBPath), file, log); err != nil {
		log.Warn("audit socket unavailable: linkbot audit cannot read the log while the bot runs", "err", err)
	} else {
		closeDB = func() { stop(); file.Close() }
	}
	return file, cfg.DBPath, closeDB, nil
}

// wawpHTTPClient is the HTTP client for Wawp calls. Each call is bounded by
// wawp_timeout through its context (pairing.Service); the client's own
// timeout is only a backstop a little beyond it, so it never cuts a call
// shorter than wawp_timeout.
func wawpHTTPClient(callTimeout time.Duration, transport http.RoundTripper) *http.Client {
	return &http.Client{Timeout: callTimeout + 5*time.Second, Transport: transport}
}
