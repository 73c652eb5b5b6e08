package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/linkbot/linkbot/pairing"
)

// Import is a whole store to copy into an empty database (`linkbot
// copy-store` fills it from a bbolt file).
type Import struct {
	// PhoneKeySecret replaces the database's own, so events keyed under it
	// are still found by phone (nil keeps the database's).
	PhoneKeySecret []byte
	Attempts       []Attempt
	Pairings       []pairing.Pairing
	Watched        []string          // IDs of the pairings whose messages are kept current
	Holders        map[string]string // instance → the pairing in its slot
	ResponseURLs   []ResponseURL
	// SlackHolds are Slack Retry-After holds (SetHold), by key, so the
	// replicas wait out the ones still running.
	SlackHolds map[string]time.Time
}

// Attempt is one code request as the limits count it.
type Attempt struct {
	Phone, User, Team, Instance, Pairing string
	At                                   time.Time
	Outcome                              string
}

// ResponseURL is the budget of one Slack response_url.
type ResponseURL struct {
	URL    string
	Issued time.Time
	Used   int
}

// ImportStats counts what Import copied.
type ImportStats struct {
	Attempts     int
	Pairings     int
	Watched      int
	Holders      int
	ResponseURLs int
	SlackHolds   int
	AuditEvents  int
	Secret       bool // the phone-key secret was taken over
}

// ErrNotEmpty means Import's target already holds pairings, attempts,
// budgets, audit events, or anything a running bot writes (a leader
// lease, handled commands, Slack holds, the edit budget, a phone-key
// secret another process made), or another process has it open (a bot
// that has read its phone-key secret): it copies into an empty database
// nobody else uses only, so running it twice cannot double anything and
// no running bot keeps a secret the database no longer has.
var ErrNotEmpty = errors.New("the database is not empty")

// importChunk is how many audit events one COPY carries.
const importChunk = 5000

// Import copies in, and the audit events audit hands over (oldest first,
// each with the phone key it was stored with), into this database in one
// transaction that first locks every table against writers and checks
// they hold nothing (ErrNotEmpty otherwise): it copies everything or
// nothing. Live pairings hold their instances for the rest of their
// ExpiresAt, measured from now on the database's clock.
func (db *DB) Import(ctx context.Context, in Import, audit func(add func(pairing.Event) error) error) (ImportStats, error) {
	var st ImportStats
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		st = ImportStats{}
		// Every table a replica writes counts: a replica that has started
		// on this database (it leads the ticker, has handled a command,
		// recorded a Slack hold or spent the edit budget) keeps the phone-key
		// secret in memory, so the file's must not replace it under it.
		if _, err := tx.Exec(ctx, `LOCK TABLE pairings, live_by_instance, attempts, response_urls, audit_events,
			leader_lease, dedupe_keys, slack_holds, edit_budget, edit_window, linkbot_meta IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var counts [9]int64
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM pairings), (SELECT count(*) FROM attempts),
			(SELECT count(*) FROM response_urls), (SELECT count(*) FROM audit_events), (SELECT count(*) FROM live_by_instance),
			(SELECT count(*) FROM leader_lease), (SELECT count(*) FROM dedupe_keys), (SELECT count(*) FROM slack_holds),
			(SELECT count(*) FROM edit_budget) + (SELECT count(*) FROM edit_window)`).
			Scan(&counts[0], &counts[1], &counts[2], &counts[3], &counts[4], &counts[5], &counts[6], &counts[7], &counts[8]); err != nil {
			return err
		}
		if counts != [9]int64{} {
			return fmt.Errorf("%w: it holds %d pairings, %d attempts, %d response_url budgets, %d audit events, %d instance slots, "+
				"%d leader leases, %d handled commands, %d Slack holds and %d edit budget rows (a bot has run on it)",
				ErrNotEmpty, counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7], counts[8])
		}
		// Every process that opened the database to write (a bot, another
		// copy-store) registered itself when it read the phone-key secret
		// (DB.opener) and keeps that secret in memory until it closes.
		var others []string
		openers, err := tx.Query(ctx, `SELECT convert_from(value, 'UTF8') FROM linkbot_meta WHERE key LIKE $1 AND key <> $2 ORDER BY key`,
			openerPrefix+"%", db.opener)
		if err == nil {
			others, err = pgx.CollectRows(openers, pgx.RowTo[string])
		}
		if err != nil {
			return err
		}
		if len(others) > 0 {
			return fmt.Errorf("%w: %d other process(es) have it open (opened %s): stop every bot on it first; "+
				"one that stopped without closing leaves its row: once none runs, DELETE FROM linkbot_meta WHERE key LIKE '%s%%'",
				ErrNotEmpty, len(others), strings.Join(others, "; "), openerPrefix)
		}
		if in.PhoneKeySecret != nil {
			// The secret is replaced only when this store made it (Open
			// found none): one another process made is in use there.
			var current []byte
			err := tx.QueryRow(ctx, `SELECT value FROM linkbot_meta WHERE key = 'phone_key_secret'`).Scan(&current)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return err
			case !db.madeSecret || !bytes.Equal(current, db.phoneKeySecret()):
				return fmt.Errorf("%w: its phone-key secret was made by another process (a bot has run on it)", ErrNotEmpty)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO linkbot_meta (key, value) VALUES ('phone_key_secret', $1)
				ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, in.PhoneKeySecret); err != nil {
				return err
			}
			st.Secret = true
		}
		callerNow := time.Now()
		dbNow, err := db.dbNow(ctx, tx, callerNow)
		if err != nil {
			return err
		}

		copyRows := func(table string, cols []string, rows [][]any) (int, error) {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
			return int(n), err
		}
		var rows [][]any
		for _, a := range in.Attempts {
			rows = append(rows, []any{pgText(a.Phone), pgText(a.User), nanos(a.At), pgText(a.Pairing), pgText(a.Team), pgText(a.Instance), pgText(a.Outcome)})
		}
		if st.Attempts, err = copyRows("attempts", []string{"phone", "user_id", "at_ns", "pairing_id", "team", "instance", "outcome"}, rows); err != nil {
			return fmt.Errorf("attempts: %w", err)
		}

		rows = nil
		ids, watchedIDs := map[string]bool{}, map[string]bool{}
		for _, id := range in.Watched {
			watchedIDs[id] = true
		}
		for _, p := range in.Pairings {
			doc, err := encodeJSON(p)
			if err != nil {
				return err
			}
			watched := watchedIDs[p.ID]
			if watched {
				st.Watched++
			}
			ids[p.ID] = true
			rows = append(rows, []any{pgText(p.ID), pgText(p.Instance), string(p.State), watched, lease(dbNow, p.ExpiresAt, callerNow), endedNanos(p), string(doc)})
		}
		if st.Pairings, err = copyRows("pairings", []string{"id", "instance", "state", "watched", "lease_until_ns", "ended_ns", "doc"}, rows); err != nil {
			return fmt.Errorf("pairings: %w", err)
		}

		rows = nil
		for instance, id := range in.Holders {
			if ids[id] { // a slot naming a pairing that is gone holds nothing
				rows = append(rows, []any{pgText(instance), pgText(id)})
			}
		}
		if st.Holders, err = copyRows("live_by_instance", []string{"instance", "pairing_id"}, rows); err != nil {
			return fmt.Errorf("instance slots: %w", err)
		}

		rows = nil
		for _, u := range in.ResponseURLs {
			rows = append(rows, []any{pgText(u.URL), nanos(u.Issued), int32(min(max(u.Used, 0), pairing.ResponseURLUses))})
		}
		if st.ResponseURLs, err = copyRows("response_urls", []string{"url", "issued_ns", "used"}, rows); err != nil {
			return fmt.Errorf("response_url budgets: %w", err)
		}

		for key, until := range in.SlackHolds {
			// As SetHold: a hold a replica recorded meanwhile may be later.
			if _, err := tx.Exec(ctx, `INSERT INTO slack_holds (key, until_ns) VALUES ($1::text, $2::bigint)
				ON CONFLICT (key) DO UPDATE SET until_ns = GREATEST(slack_holds.until_ns, EXCLUDED.until_ns)`, pgText(key), nanos(until)); err != nil {
				return fmt.Errorf("slack holds: %w", err)
			}
			st.SlackHolds++
		}

		rows = nil
		flush := func() error {
			n, err := copyRows("audit_events", []string{"at_ns", "phone_key", "instance_key", "doc"}, rows)
			st.AuditEvents += n
			rows = rows[:0]
			return err
		}
		err = audit(func(e pairing.Event) error {
			if e.Kind == "" {
				return nil
			}
			key := e.PhoneKey
			e.PhoneKey, e.Digits = "", ""
			doc, err := encodeJSON(e)
			if err != nil {
				return err
			}
			rows = append(rows, []any{nanos(e.Time), nullIfEmpty(pgText(key)), nullIfEmpty(eventInstanceName(e)), string(doc)})
			if len(rows) == importChunk {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return fmt.Errorf("audit events: %w", err)
		}
		return nil
	})
	if err != nil {
		return ImportStats{}, fmt.Errorf("import: %w", err)
	}
	if in.PhoneKeySecret != nil {
		secret := slices.Clone(in.PhoneKeySecret)
		db.secret.Store(&secret)
	}
	return st, nil
}
