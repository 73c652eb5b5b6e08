package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

// The audit log's buckets and meta keys. Events live in bucketAudit keyed
// by big-endian unix nanos + sequence (the "primary key"), so the log is
// already indexed by time. The two index buckets map
// "<phone key>\x00<primary key>" and "<instance name or ID, lower case>\x00
// <primary key>" to nothing, so a phone's or an instance's events are read
// newest first without touching anyone else's.
var (
	bucketMeta            = []byte("meta")
	bucketAuditByPhone    = []byte("audit_by_phone")
	bucketAuditByInstance = []byte("audit_by_instance")

	metaPhoneKeySecret = []byte("phone_key_secret")   // 32 random bytes, created once per database
	metaAuditIndexed   = []byte("audit_indexed")      // set once every event has its index entries
	metaAuditIndexFrom = []byte("audit_index_resume") // primary key the upgrade indexed last, while it runs
)

// phoneKeySecretSize is the HMAC key's length: SHA-256's block-sized
// security margin needs no more than 32 bytes.
const phoneKeySecretSize = 32

// keyedPhoneKey is the phone key of events written since keys became
// keyed: HMAC-SHA256(secret, digits), 16 bytes in hex. Without the secret
// (which stays in the database file) it cannot be recomputed from a guessed
// number, so an exported event's key no longer gives the number away.
func keyedPhoneKey(secret []byte, digits string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(digits))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// legacyPhoneKey is the unkeyed key that events written before the upgrade
// carry: sha256("linkbot-phone:"+digits), 8 bytes in hex. It cannot be
// replaced by the keyed form (that needs the digits, which were never
// stored), so queries by phone match both forms. Only old events can match
// the legacy form: every event written since carries the keyed form, which
// is twice as long, so the two never collide.
func legacyPhoneKey(digits string) string {
	sum := sha256.Sum256([]byte("linkbot-phone:" + digits))
	return hex.EncodeToString(sum[:8])
}

// prepareAudit creates the database's phone-key secret if it has none and
// gives events written before the indexes existed their index entries, in
// transactions of auditIndexChunk events so a large log does not build one
// huge transaction. It runs in Open, before anything else writes.
func prepareAudit(b *bolt.DB) error {
	ready := false
	b.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		ready = meta.Get(metaPhoneKeySecret) != nil && meta.Get(metaAuditIndexed) != nil
		return nil
	})
	if ready {
		return nil // the usual start: no write, no fsync
	}
	err := b.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta.Get(metaPhoneKeySecret) != nil {
			return nil
		}
		secret := make([]byte, phoneKeySecretSize)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		return meta.Put(metaPhoneKeySecret, secret)
	})
	if err != nil {
		return fmt.Errorf("create the phone key secret: %w", err)
	}
	for done := false; !done; {
		err := b.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta.Get(metaAuditIndexed) != nil {
				done = true
				return nil
			}
			c := tx.Bucket(bucketAudit).Cursor()
			k, v := c.First()
			if from := meta.Get(metaAuditIndexFrom); from != nil {
				if k, v = c.Seek(from); bytes.Equal(k, from) {
					k, v = c.Next()
				}
			}
			var last []byte
			for n := 0; k != nil && n < auditIndexChunk; k, v = c.Next() {
				var e pairing.Event
				if json.Unmarshal(v, &e) == nil {
					if err := putIndexEntries(tx, e, k); err != nil {
						return err
					}
				}
				last, n = k, n+1
			}
			if k == nil {
				done = true
				if err := meta.Delete(metaAuditIndexFrom); err != nil {
					return err
				}
				return meta.Put(metaAuditIndexed, []byte{1})
			}
			return meta.Put(metaAuditIndexFrom, slices.Clone(last))
		})
		if err != nil {
			return fmt.Errorf("index the audit log: %w", err)
		}
	}
	return nil
}

// auditIndexChunk is how many old events one upgrade transaction indexes.
var auditIndexChunk = 20_000

// indexEntry is one key in an index bucket.
type indexEntry struct {
	bucket []byte
	key    []byte
}

// indexEntries lists the index keys of event e stored under primary key pk:
// its phone key, and its instance's name and ID (lower case, once each).
// Appending and pruning both use it, so the indexes stay in step.
func indexEntries(e pairing.Event, pk []byte) []indexEntry {
	var out []indexEntry
	if e.PhoneKey != "" {
		out = append(out, indexEntry{bucketAuditByPhone, indexKey(e.PhoneKey, pk)})
	}
	name, id := instanceIndexName(e.Instance), instanceIndexName(e.InstanceID)
	if name != "" {
		out = append(out, indexEntry{bucketAuditByInstance, indexKey(name, pk)})
	}
	if id != "" && id != name {
		out = append(out, indexEntry{bucketAuditByInstance, indexKey(id, pk)})
	}
	return out
}

// instanceIndexName is how an instance's alias or ID is indexed: lower
// case (aliases are matched case-insensitively, as in /link), without NULs
// (the separator).
func instanceIndexName(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "\x00", ""))
}

// eventInstanceName is what an instance query matches event e by: the
// instance ID it records, or for older events without one, its alias.
// Matching an ID-carrying event by its alias would hand an instance's
// events to whichever instance is given that alias later.
func eventInstanceName(e pairing.Event) string {
	if e.InstanceID != "" {
		return instanceIndexName(e.InstanceID)
	}
	return instanceIndexName(e.Instance)
}

func indexKey(prefix string, pk []byte) []byte {
	k := make([]byte, 0, len(prefix)+1+len(pk))
	k = append(k, prefix...)
	k = append(k, 0)
	return append(k, pk...)
}

func putIndexEntries(tx *bolt.Tx, e pairing.Event, pk []byte) error {
	for _, ix := range indexEntries(e, pk) {
		if err := tx.Bucket(ix.bucket).Put(ix.key, nil); err != nil {
			return err
		}
	}
	return nil
}

// AppendAudit appends e to the audit log.
func (db *DB) AppendAudit(ctx context.Context, e pairing.Event) error {
	err := db.update(ctx, func(tx *bolt.Tx) error { return appendAudit(tx, e) })
	if err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	return nil
}

// appendAudit writes e and its index entries inside tx; an event without
// Kind is skipped. e.Digits becomes the keyed PhoneKey and is not stored.
func appendAudit(tx *bolt.Tx, e pairing.Event) error {
	if e.Kind == "" {
		return nil
	}
	if e.Digits != "" {
		secret := tx.Bucket(bucketMeta).Get(metaPhoneKeySecret)
		if len(secret) == 0 {
			return errors.New("the database has no phone key secret")
		}
		e.PhoneKey, e.Digits = keyedPhoneKey(secret, e.Digits), ""
	}
	b := tx.Bucket(bucketAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	pk := binary.BigEndian.AppendUint64(timeBytes(e.Time), seq)
	if err := putJSON(b, pk, e); err != nil {
		return err
	}
	return putIndexEntries(tx, e, pk)
}

// timeBytes is t as the 8-byte big-endian unix nanos that start a primary
// key; times before 1970 count as 1970.
func timeBytes(t time.Time) []byte {
	var n uint64
	if !t.Before(time.Unix(0, 0)) {
		n = uint64(t.UnixNano())
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 16), n)
}

// Audit returns the events q selects, oldest first, and whether the limit
// left older matching events out. Returned events carry no PhoneKey. An
// event that records its instance ID matches an instance query by that ID
// only (an alias can be given to another instance later); older events,
// which recorded only the alias, match by alias. A record that does not
// parse (a damaged page, a bad restore) is skipped, so it cannot hide every
// other event from history and `linkbot audit`; the log's warning says how
// many were skipped and where the first one is.
func (db *DB) Audit(ctx context.Context, q pairing.AuditQuery) (events []pairing.Event, more bool, err error) {
	var (
		skipped   int
		firstSkip string
	)
	err = db.view(ctx, func(tx *bolt.Tx) error {
		skipped = 0
		audit, meta := tx.Bucket(bucketAudit), tx.Bucket(bucketMeta)
		if audit == nil {
			return nil // a file no linkbot ever wrote to
		}
		// A file written before the indexes, opened read-only (the upgrade
		// runs on the first read-write open), is read by a scan.
		indexed := meta != nil && meta.Get(metaAuditIndexed) != nil
		var phoneKeys []string
		if q.Phone != "" {
			if meta != nil && meta.Get(metaPhoneKeySecret) != nil {
				phoneKeys = append(phoneKeys, keyedPhoneKey(meta.Get(metaPhoneKeySecret), q.Phone))
			}
			phoneKeys = append(phoneKeys, legacyPhoneKey(q.Phone))
		}
		var instances []string
		for _, in := range q.Instances {
			if n := instanceIndexName(in); n != "" && !slices.Contains(instances, n) {
				instances = append(instances, n)
			}
		}
		lo, hi := timeBytes(q.Since), bytes.Repeat([]byte{0xff}, 8)
		if !q.Until.IsZero() {
			hi = timeBytes(q.Until)
		}
		var walks mergedWalk
		switch {
		case indexed && len(phoneKeys) > 0:
			for _, k := range phoneKeys {
				walks = append(walks, walkNewestFirst(tx.Bucket(bucketAuditByPhone), k, lo, hi))
			}
		case indexed && len(instances) > 0:
			for _, n := range instances {
				walks = append(walks, walkNewestFirst(tx.Bucket(bucketAuditByInstance), n, lo, hi))
			}
		default:
			walks = mergedWalk{walkNewestFirst(audit, "", lo, hi)}
		}
		for pk, v := walks.next(); pk != nil; pk, v = walks.next() {
			if v == nil {
				v = audit.Get(pk)
			}
			var e pairing.Event
			if err := json.Unmarshal(v, &e); err != nil {
				if skipped++; skipped == 1 {
					firstSkip = fmt.Sprintf("%x: %v", pk, err)
				}
				continue
			}
			if len(phoneKeys) > 0 && !slices.Contains(phoneKeys, e.PhoneKey) ||
				len(instances) > 0 && !slices.Contains(instances, eventInstanceName(e)) ||
				q.Keep != nil && !q.Keep(e) {
				continue
			}
			if q.Limit > 0 && len(events) == q.Limit {
				more = true
				break
			}
			e.PhoneKey = ""
			events = append(events, e)
		}
		slices.Reverse(events)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read audit log: %w", err)
	}
	if skipped > 0 {
		db.log.Warn("audit log: unreadable records skipped", "skipped", skipped, "first", firstSkip)
	}
	return events, more, nil
}

// AuditEvents returns every event at or after since that keep accepts,
// oldest first. It reads the whole window: readers serving people use
// Audit with a Limit.
func (db *DB) AuditEvents(ctx context.Context, since time.Time, keep func(pairing.Event) bool) ([]pairing.Event, error) {
	events, _, err := db.Audit(ctx, pairing.AuditQuery{Since: since, Keep: keep})
	return events, err
}

// walk reads the keys "<prefix>\x00<primary key>" of one bucket (or, with
// no prefix, the primary keys of the audit bucket itself) whose primary key
// lies in [lo, hi), newest first.
type walk struct {
	c      *bolt.Cursor
	prefix []byte
	lo     []byte
	k, v   []byte // current key and value; k is nil when done
}

func walkNewestFirst(b *bolt.Bucket, prefix string, lo, hi []byte) *walk {
	w := &walk{c: b.Cursor(), lo: lo}
	if prefix != "" {
		w.prefix = append([]byte(prefix), 0)
	}
	k, v := w.c.Seek(append(slices.Clone(w.prefix), hi...))
	if k == nil {
		k, v = w.c.Last()
	} else {
		k, v = w.c.Prev()
	}
	w.set(k, v)
	return w
}

func (w *walk) set(k, v []byte) {
	if k == nil || !bytes.HasPrefix(k, w.prefix) || len(k) != len(w.prefix)+16 || bytes.Compare(k[len(w.prefix):], w.lo) < 0 {
		w.k, w.v = nil, nil
		return
	}
	w.k, w.v = k, v
	if w.prefix != nil {
		w.v = nil // index entries carry no value: the event is read by primary key
	}
}

func (w *walk) pk() []byte { return w.k[len(w.prefix):] }

// mergedWalk reads several walks as one, newest first, each primary key
// once (an event is indexed under both its instance's alias and ID).
type mergedWalk []*walk

func (m mergedWalk) next() (pk, v []byte) {
	var best *walk
	for _, w := range m {
		if w.k != nil && (best == nil || bytes.Compare(w.pk(), best.pk()) > 0) {
			best = w
		}
	}
	if best == nil {
		return nil, nil
	}
	pk, v = best.pk(), best.v
	for _, w := range m {
		for w.k != nil && bytes.Equal(w.pk(), pk) {
			w.set(w.c.Prev())
		}
	}
	return pk, v
}

// pruneAudit deletes the events before cutoff and their index entries.
// The log is keyed by time, so it reads only what it deletes.
func pruneAudit(tx *bolt.Tx, cutoff time.Time) (int, error) {
	audit := tx.Bucket(bucketAudit)
	end := timeBytes(cutoff)
	var doomed []indexEntry
	c := audit.Cursor()
	for k, v := c.First(); k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
		pk := slices.Clone(k)
		var e pairing.Event
		if json.Unmarshal(v, &e) == nil {
			doomed = append(doomed, indexEntries(e, pk)...)
		}
		doomed = append(doomed, indexEntry{bucketAudit, pk})
	}
	n := 0
	for _, ix := range doomed {
		if err := tx.Bucket(ix.bucket).Delete(ix.key); err != nil {
			return 0, err
		}
		if bytes.Equal(ix.bucket, bucketAudit) {
			n++
		}
	}
	return n, nil
}
