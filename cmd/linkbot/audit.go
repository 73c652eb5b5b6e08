package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store"
	"github.com/linkbot/linkbot/store/postgres"
)

// auditCommand prints audit events: `linkbot audit [--since 24h] [--phone …]
// [--instance …] [--limit 1000] [--json]`. It reads the database file
// directly; while the bot runs (and holds the file) it asks the bot over
// the unix socket beside the file, which only the file's owner may open.
// With LINKBOT_DATABASE_URL set it reads PostgreSQL instead.
func auditCommand(ctx context.Context, opts serveOptions, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	since := fs.Duration("since", defaultAuditSince, "how far back, e.g. 24h, 30m, 720h")
	phone := fs.String("phone", "", "only this phone's events: with country code, or national in the config file's default_region (or LINKBOT_DEFAULT_REGION)")
	instance := fs.String("instance", "", "only this instance's events: its alias or 12-character ID")
	limit := fs.Int("limit", defaultAuditLimit, fmt.Sprintf("at most this many events, the newest (1–%d)", maxAuditLimit))
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if help, err := parseFlags(fs, args, "linkbot audit [--since 24h] [--phone P] [--instance I] [--limit N] [--json]", stdout); help || err != nil {
		return err
	}
	dir, region, err := auditDirectory(getenv)
	if err != nil {
		return err
	}
	req, err := newAuditRequest(*since, *phone, *instance, *limit, dir, region, time.Now())
	if err != nil {
		return &usageError{err.Error()}
	}
	wait := auditLockWait
	if opts.lockWait > 0 {
		wait = opts.lockWait
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	var (
		events []pairing.Event
		more   bool
	)
	if url := getenv("LINKBOT_DATABASE_URL"); url != "" {
		events, more, err = readAuditPostgres(ctx, url, req, log)
	} else {
		events, more, err = readAudit(ctx, or(getenv("LINKBOT_DB"), "linkbot.db"), req, wait, log)
	}
	if err != nil {
		return err
	}
	for _, e := range events {
		if *asJSON {
			json.NewEncoder(stdout).Encode(e)
			continue
		}
		fmt.Fprintf(stdout, "%s  %-12s %-12s %-14s %-18s %s\n", e.Time.UTC().Format("2006-01-02 15:04:05Z"), e.Kind, e.User, or(e.Instance, "-"), or(e.Phone, "-"), e.Outcome)
	}
	note := stdout
	if *asJSON {
		note = stderr
	} else {
		fmt.Fprintf(stdout, "%d events since %s\n", len(events), req.Since.UTC().Format(time.RFC3339))
	}
	if more {
		fmt.Fprintf(note, "Only the newest %d are shown; older events in the window were left out (raise --limit or shorten --since).\n", len(events))
	}
	return nil
}

// auditLockWait is how long `linkbot audit` waits for the file's lock
// before asking the running bot. The running bot holds the lock for its
// whole life, so a short wait is enough to tell it is there.
const auditLockWait = 250 * time.Millisecond

// readAudit answers req from the file, or through the running bot when it
// holds the file's lock (waiting wait for it). Both read the same query
// with the same bounds. Damaged records skipped while reading the file are
// reported to log (the running bot logs those it skips in its own log).
func readAudit(ctx context.Context, path string, req auditRequest, wait time.Duration, log *slog.Logger) ([]pairing.Event, bool, error) {
	db, err := store.Open(path, store.Options{ReadOnly: true, LockTimeout: wait, Log: log})
	switch {
	case err == nil:
		defer db.Close()
		return db.Audit(ctx, req.query())
	case errors.Is(err, store.ErrLocked):
		events, more, serr := askRunningBot(auditSocketPath(path), req)
		if serr != nil {
			return nil, false, fmt.Errorf("%s is held by the running bot, and reading through it failed: %w", path, serr)
		}
		return events, more, nil
	default:
		return nil, false, err
	}
}

// readAuditPostgres answers req from the PostgreSQL database at url,
// directly: whoever has the database's credentials can read its audit log
// anyway, and every replica writes to it. It runs no migration.
func readAuditPostgres(ctx context.Context, url string, req auditRequest, log *slog.Logger) ([]pairing.Event, bool, error) {
	if err := postgres.CheckURL(url); err != nil {
		return nil, false, &configError{problems: []string{"LINKBOT_DATABASE_URL " + err.Error()}}
	}
	db, err := postgres.Open(ctx, url, postgres.Options{ReadOnly: true, Log: log})
	if err != nil {
		return nil, false, err
	}
	defer db.Close()
	return db.Audit(ctx, req.query())
}

// auditDirectory reads what `linkbot audit` needs from the configuration:
// the instances (so --instance takes an alias or an ID) and the default
// region (LINKBOT_DEFAULT_REGION, else the file's default_region) for
// national numbers in --phone. The file goes through the same checks as
// check-config's and the bot's (FILE:LINE problems, exit 78); like
// check-config, it needs no tokens, so it does not insist on the variables
// named by token_env.
func auditDirectory(getenv func(string) string) (dir *pairing.Directory, region string, err error) {
	region = strings.ToUpper(strings.TrimSpace(getenv("LINKBOT_DEFAULT_REGION")))
	var instances []pairing.Instance
	if path := getenv("LINKBOT_CONFIG"); path != "" {
		c, _, err := fileOnlyConfig(path, getenv)
		if err != nil {
			return nil, "", err
		}
		region, instances = c.DefaultRegion, c.Instances
	}
	return pairing.NewDirectory(instances, region), region, nil
}

// newAuditRequest turns the flags into a query: --instance resolved to its
// alias and ID (events record the alias; newer ones also the ID), --phone
// normalised with the instance's region, else the default region.
func newAuditRequest(since time.Duration, phone, instance string, limit int, dir *pairing.Directory, region string, now time.Time) (auditRequest, error) {
	if since <= 0 {
		return auditRequest{}, errors.New("--since must be a positive duration such as 24h or 30m")
	}
	if limit < 1 || limit > maxAuditLimit {
		return auditRequest{}, fmt.Errorf("--limit must be between 1 and %d", maxAuditLimit)
	}
	req := auditRequest{Since: now.Add(-since), Limit: limit}
	in := pairing.Instance{Region: region}
	if instance != "" {
		var err error
		if in, err = dir.Resolve(instance); err != nil {
			known := "none configured"
			if names := dir.Names(); len(names) > 0 {
				known = strings.Join(names, ", ")
			}
			return auditRequest{}, fmt.Errorf("--instance %q is neither a configured alias (%s) nor a 12-character instance ID", instance, known)
		}
		req.Instances = []string{in.ID}
		if in.Name != in.ID {
			req.Instances = append(req.Instances, in.Name)
		}
	}
	if phone != "" {
		p, err := pairing.NormalizePhone(phone, in.Region)
		var perr *pairing.PhoneError
		switch {
		case errors.As(err, &perr) && perr.Problem == pairing.PhoneNoCountryCode:
			return auditRequest{}, fmt.Errorf("--phone %q has no country code: include it (+20…), or set default_region in LINKBOT_CONFIG or LINKBOT_DEFAULT_REGION", phone)
		case err != nil:
			return auditRequest{}, fmt.Errorf("--phone %q is not a valid phone number%s", phone, inRegion(in.Region))
		}
		req.Phone = p.Digits
	}
	return req, nil
}

func inRegion(region string) string {
	if region == "" {
		return " (include the country code)"
	}
	return " for " + region + " (or include the country code)"
}
