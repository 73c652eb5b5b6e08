package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

// Export is everything a file holds, for moving it to another store
// (`linkbot copy-store`). Records that do not parse are left out and
// counted in Damaged.
type Export struct {
	// PhoneKeySecret is the secret the audit log's phone keys are keyed
	// with (nil for a file that never had one). The receiving store must
	// take it over, or the copied events are no longer found by phone.
	PhoneKeySecret []byte
	Attempts       []Attempt
	Pairings       []pairing.Pairing
	Watched        []string          // IDs of the pairings whose messages are kept current
	Holders        map[string]string // instance → the pairing in its slot
	ResponseURLs   []ResponseURL
	// SlackHolds are the Slack Retry-After holds the file recorded
	// (SetHold), by key: a bot started on the other store waits out the
	// ones still running.
	SlackHolds map[string]time.Time
	Damaged    int
}

// Attempt is one code request as the limits count it.
type Attempt struct {
	Phone, User, Team, Instance, Pairing string
	At                                   time.Time
	Outcome                              string // the state its pairing settled in
}

// ResponseURL is the budget of one Slack response_url.
type ResponseURL struct {
	URL    string
	Issued time.Time
	Used   int
}

// Export reads everything but the audit log (ExportAudit reads that) in
// one read transaction. While the file is open, even read-only, no bot can
// open it to write (bbolt's lock), so the two reads see one state.
func (db *DB) Export(ctx context.Context) (Export, error) {
	var out Export
	err := db.view(ctx, func(tx *bolt.Tx) error {
		out = Export{Holders: map[string]string{}, SlackHolds: map[string]time.Time{}}
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if s := meta.Get(metaPhoneKeySecret); s != nil {
				out.PhoneKeySecret = slices.Clone(s)
			}
		}
		forEach := func(name []byte, f func(k, v []byte) error) error {
			if b := tx.Bucket(name); b != nil { // a file no linkbot wrote to has none
				return b.ForEach(f)
			}
			return nil
		}
		// Each attempt is kept twice (per phone and per user); the phone
		// bucket's key has the phone and the time, its value the rest.
		err := forEach(bucketPhoneAttempts, func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			var a attempt
			if i < 0 || len(k) != i+9 || json.Unmarshal(v, &a) != nil {
				out.Damaged++
				return nil
			}
			out.Attempts = append(out.Attempts, Attempt{Phone: string(k[:i]), At: keyTime(k), User: a.User, Team: a.Team,
				Instance: a.Instance, Pairing: a.Pairing, Outcome: a.Outcome})
			return nil
		})
		if err != nil {
			return err
		}
		err = forEach(bucketPairings, func(_, v []byte) error {
			var p pairing.Pairing
			if json.Unmarshal(v, &p) != nil {
				out.Damaged++
				return nil
			}
			out.Pairings = append(out.Pairings, p)
			return nil
		})
		if err != nil {
			return err
		}
		err = forEach(bucketWatched, func(k, _ []byte) error { out.Watched = append(out.Watched, string(k)); return nil })
		if err != nil {
			return err
		}
		err = forEach(bucketLive, func(k, v []byte) error { out.Holders[string(k)] = string(v); return nil })
		if err != nil {
			return err
		}
		err = forEach(bucketResponseURLs, func(k, v []byte) error {
			var b urlBudget
			if json.Unmarshal(v, &b) != nil {
				out.Damaged++
				return nil
			}
			out.ResponseURLs = append(out.ResponseURLs, ResponseURL{URL: string(k), Issued: b.Issued, Used: b.Used})
			return nil
		})
		if err != nil {
			return err
		}
		return forEach(bucketHolds, func(k, v []byte) error {
			var until time.Time
			if until.UnmarshalText(v) != nil {
				out.Damaged++
				return nil
			}
			out.SlackHolds[string(k)] = until
			return nil
		})
	})
	if err != nil {
		return Export{}, fmt.Errorf("export: %w", err)
	}
	return out, nil
}

// ExportAudit hands each audit event, oldest first and with the phone key
// it was stored with, to yield (which may stop it by returning an error),
// in one read transaction. It returns how many records did not parse and
// were left out.
func (db *DB) ExportAudit(ctx context.Context, yield func(pairing.Event) error) (damaged int, err error) {
	err = db.view(ctx, func(tx *bolt.Tx) error {
		damaged = 0
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var e pairing.Event
			if json.Unmarshal(v, &e) != nil {
				damaged++
				return nil
			}
			return yield(e)
		})
	})
	if err != nil {
		return damaged, fmt.Errorf("export the audit log: %w", err)
	}
	return damaged, nil
}
