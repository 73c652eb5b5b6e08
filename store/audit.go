package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Event is one audit record. It never holds a pairing code, and Phone is
// stored masked by the caller.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"` // requested, refused, code_issued, linked, expired, cancelled, error
	User     string    `json:"user"`
	Team     string    `json:"team,omitempty"`
	Channel  string    `json:"channel,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Phone    string    `json:"phone,omitempty"` // masked, e.g. +20 111 ••• 3333
	PhoneKey string    `json:"phone_key,omitempty"`
	Pairing  string    `json:"pairing,omitempty"`
	Outcome  string    `json:"outcome,omitempty"`
}

// AppendAudit appends e to the audit log.
func (db *DB) AppendAudit(e Event) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error { return appendAudit(tx, e) })
	if err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	return nil
}

// appendAudit writes e inside tx; an event without Kind is skipped.
func appendAudit(tx *bolt.Tx, e Event) error {
	if e.Kind == "" {
		return nil
	}
	b := tx.Bucket(bucketAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	k := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(e.Time.UnixNano())), seq)
	return putJSON(b, k, e)
}

// AuditEvents returns the events at or after since that match keep, oldest first.
func (db *DB) AuditEvents(since time.Time, keep func(Event) bool) ([]Event, error) {
	var out []Event
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if since.Before(time.Unix(0, 0)) {
			since = time.Unix(0, 0)
		}
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, uint64(since.UnixNano()))); k != nil; k, v = c.Next() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if keep == nil || keep(e) {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}
