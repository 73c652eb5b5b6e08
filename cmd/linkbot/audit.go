package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/linkbot/linkbot/store"
)

// auditCommand prints audit events: `linkbot audit [--since 24h] [--phone …]
// [--instance …] [--json]`. It reads the database file directly; while the
// bot runs (and holds the file) it asks the bot's HTTP listener instead.
func auditCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	since := fs.String("since", "24h", "how far back, e.g. 24h, 30m, 720h")
	phone := fs.String("phone", "", "only events for this phone (with country code, or national in LINKBOT_DEFAULT_REGION)")
	instance := fs.String("instance", "", "only events for this instance (alias or ID)")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if help, err := parseFlags(fs, args, "linkbot audit [--since 24h] [--phone P] [--instance I] [--json]", stdout); help || err != nil {
		return err
	}
	region := getenv("LINKBOT_DEFAULT_REGION")
	f, err := parseAuditQuery(*since, *phone, *instance, region, time.Now())
	if err != nil {
		return &usageError{err.Error()}
	}
	path := or(getenv("LINKBOT_DB"), "linkbot.db")
	var events []store.Event
	db, err := store.Open(path, store.Options{ReadOnly: true, LockTimeout: time.Second})
	switch {
	case err == nil:
		events, err = db.AuditEvents(f.since, f.match)
		db.Close()
		if err != nil {
			return err
		}
	case errors.Is(err, store.ErrLocked) && getenv("LINKBOT_HTTP_ADDR") != "":
		events, err = fetchAudit(getenv("LINKBOT_HTTP_ADDR"), *since, *phone, *instance)
		if err != nil {
			return err
		}
	case errors.Is(err, store.ErrLocked):
		return fmt.Errorf("%w; set LINKBOT_HTTP_ADDR to the running bot's listener to read through it", err)
	default:
		return err
	}
	for _, e := range events {
		if *asJSON {
			json.NewEncoder(stdout).Encode(e)
			continue
		}
		fmt.Fprintf(stdout, "%s  %-12s %-12s %-14s %-18s %s\n", e.Time.UTC().Format("2006-01-02 15:04:05Z"), e.Kind, e.User, or(e.Instance, "-"), or(e.Phone, "-"), e.Outcome)
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "%d events since %s\n", len(events), f.since.UTC().Format(time.RFC3339))
	}
	return nil
}

func fetchAudit(addr, since, phone, instance string) ([]store.Event, error) {
	q := url.Values{"since": {since}, "phone": {phone}, "instance": {instance}}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/audit?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("reading the audit log from the running bot at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return nil, fmt.Errorf("the running bot answered HTTP %d: %s", resp.StatusCode, msg)
	}
	var events []store.Event
	if err := json.NewDecoder(resp.Body).Decode(&events); err != nil {
		return nil, fmt.Errorf("reading the audit log from the running bot: %w", err)
	}
	return events, nil
}
