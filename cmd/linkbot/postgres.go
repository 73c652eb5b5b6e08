package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store"
	"github.com/linkbot/linkbot/store/postgres"
)

// databaseURL reads LINKBOT_DATABASE_URL (or, for copy-store, --to) for a
// subcommand that needs PostgreSQL: unset or malformed is a configuration
// error (exit 78), said without the URL's password.
func databaseURL(url, what string) (string, error) {
	if url == "" {
		return "", &configError{problems: []string{"LINKBOT_DATABASE_URL is not set: " + what + " needs the PostgreSQL database's URL (postgres://USER:PASSWORD@HOST:5432/DATABASE)"}}
	}
	if err := postgres.CheckURL(url); err != nil {
		return "", &configError{problems: []string{"LINKBOT_DATABASE_URL " + err.Error()}}
	}
	return url, nil
}

// migrateCommand is `linkbot migrate`: it runs the migrations the database
// at LINKBOT_DATABASE_URL has not run (what the bot does at start, alone,
// e.g. before a deploy), and says which it applied.
func migrateCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	if help, err := parseFlags(fs, args, "linkbot migrate — runs the PostgreSQL migrations on LINKBOT_DATABASE_URL", stdout); help || err != nil {
		return err
	}
	url, err := databaseURL(getenv("LINKBOT_DATABASE_URL"), "linkbot migrate")
	if err != nil {
		return err
	}
	applied, version, err := postgres.Migrate(ctx, url, nil)
	for _, m := range applied {
		fmt.Fprintf(stdout, "applied %s (%s)\n", m.File, m.Duration.Round(time.Millisecond))
	}
	if err != nil {
		return err
	}
	where := postgres.Describe(url)
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "PostgreSQL at %s is up to date: schema version %d, nothing to apply\n", where, version)
		return nil
	}
	fmt.Fprintf(stdout, "PostgreSQL at %s is now at schema version %d\n", where, version)
	return nil
}

// copyStoreCommand is `linkbot copy-store --from linkbot.db --to
// postgres://…`: it copies a bbolt file into an empty PostgreSQL database
// in one transaction — limits (the attempts in their windows), pairings
// (live ones keep their instances and codes), the watch list,
// response_url budgets, and the audit log with the file's phone-key
// secret, so events stay findable by phone — and says what it copied.
// The bot must be stopped: the file is opened for reading, which bbolt's
// lock refuses while a bot holds it. A database that already holds
// anything is refused, so running it twice copies nothing twice.
func copyStoreCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("copy-store", flag.ContinueOnError)
	from := fs.String("from", or(getenv("LINKBOT_DB"), "linkbot.db"), "the bbolt file to copy (default $LINKBOT_DB, else linkbot.db)")
	to := fs.String("to", "", "the PostgreSQL URL to copy into (default $LINKBOT_DATABASE_URL; a password on the command line shows in ps, so prefer the variable)")
	if help, err := parseFlags(fs, args, "linkbot copy-store [--from linkbot.db] [--to postgres://…]", stdout); help || err != nil {
		return err
	}
	url, err := databaseURL(or(*to, getenv("LINKBOT_DATABASE_URL")), "linkbot copy-store")
	if err != nil {
		return err
	}
	if _, err := os.Stat(*from); err != nil {
		return fmt.Errorf("copy-store: %w", err)
	}
	src, err := store.Open(*from, store.Options{ReadOnly: true, LockTimeout: 250 * time.Millisecond})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("copy-store: %s is in use: stop the bot first (it must not change the file while it is copied): %w", *from, err)
	}
	if err != nil {
		return fmt.Errorf("copy-store: %w", err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		return fmt.Errorf("copy-store: %w", err)
	}
	defer dst.Close()

	ex, err := src.Export(ctx)
	if err != nil {
		return fmt.Errorf("copy-store: %w", err)
	}
	in := postgres.Import{PhoneKeySecret: ex.PhoneKeySecret, Pairings: ex.Pairings, Watched: ex.Watched, Holders: ex.Holders, SlackHolds: ex.SlackHolds}
	for _, a := range ex.Attempts {
		in.Attempts = append(in.Attempts, postgres.Attempt(a))
	}
	for _, u := range ex.ResponseURLs {
		in.ResponseURLs = append(in.ResponseURLs, postgres.ResponseURL(u))
	}
	damaged := ex.Damaged
	st, err := dst.Import(ctx, in, func(add func(pairing.Event) error) error {
		n, err := src.ExportAudit(ctx, add)
		damaged += n
		return err
	})
	if errors.Is(err, postgres.ErrNotEmpty) {
		return fmt.Errorf("copy-store: PostgreSQL at %s: %w; copy-store copies into an empty database only (nothing was copied). "+
			"To copy again, empty it first (e.g. drop its schema and run linkbot migrate)", dst.Where(), err)
	}
	if err != nil {
		return fmt.Errorf("copy-store: nothing was copied: %w", err)
	}
	fmt.Fprintf(stdout, "copied %s to PostgreSQL at %s:\n", *from, dst.Where())
	fmt.Fprintf(stdout, "  %d attempts (the limits' windows)\n", st.Attempts)
	fmt.Fprintf(stdout, "  %d pairings (%d watched, %d holding their instance)\n", st.Pairings, st.Watched, st.Holders)
	fmt.Fprintf(stdout, "  %d response_url budgets\n", st.ResponseURLs)
	fmt.Fprintf(stdout, "  %d Slack Retry-After holds (replicas wait out the ones still running)\n", st.SlackHolds)
	fmt.Fprintf(stdout, "  %d audit events\n", st.AuditEvents)
	if st.Secret {
		fmt.Fprintln(stdout, "  the phone-key secret (copied events are found by phone as before)")
	}
	if damaged > 0 {
		fmt.Fprintf(stdout, "  left out: %d records of the file that do not parse\n", damaged)
	}
	return nil
}
