package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/linkbot/linkbot/pairing"
)

// keyedPhoneKey is the phone key of an audit event: HMAC-SHA256 of the
// digits under the database's secret, 16 bytes in hex. It is the bbolt
// store's function, so events copied from a file (with its secret) are
// found by the same phone here.
func keyedPhoneKey(secret []byte, digits string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(digits))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// legacyPhoneKey is the unkeyed key of events older bbolt versions wrote
// (sha256("linkbot-phone:"+digits), 8 bytes in hex); such events reach
// PostgreSQL only through copy-store, and a phone query matches both forms.
func legacyPhoneKey(digits string) string {
	sum := sha256.Sum256([]byte("linkbot-phone:" + digits))
	return hex.EncodeToString(sum[:8])
}

// instanceIndexName is how an instance's alias or ID is matched: lower
// case (aliases are matched case-insensitively, as in /link).
func instanceIndexName(s string) string {
	return pgText(strings.ToLower(strings.ReplaceAll(s, "\x00", "")))
}

// eventInstanceName is what an instance query matches event e by: the
// instance ID it records, or for older events without one, its alias
// (matching an ID-carrying event by its alias would hand an instance's
// events to whichever instance is given that alias later).
func eventInstanceName(e pairing.Event) string {
	if e.InstanceID != "" {
		return instanceIndexName(e.InstanceID)
	}
	return instanceIndexName(e.Instance)
}

// nullIfEmpty is s, or SQL NULL when it is empty.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// queueAudit queues appending e (nothing when e.Kind is empty). e.Digits
// becomes the keyed phone key, kept in its own column; neither the digits
// nor the key is in the stored document.
func (db *DB) queueAudit(b *pgx.Batch, e pairing.Event) error {
	if e.Kind == "" {
		return nil
	}
	if e.Digits != "" {
		secret := db.phoneKeySecret()
		if secret == nil {
			return errors.New("the database has no phone key secret (opened read-only)")
		}
		e.PhoneKey = keyedPhoneKey(secret, e.Digits)
	}
	key := e.PhoneKey
	e.PhoneKey, e.Digits = "", ""
	doc, err := encodeJSON(e)
	if err != nil {
		return err
	}
	b.Queue(`INSERT INTO audit_events (at_ns, phone_key, instance_key, doc) VALUES ($1, $2, $3, $4)`,
		nanos(e.Time), nullIfEmpty(pgText(key)), nullIfEmpty(eventInstanceName(e)), doc)
	return nil
}

// appendAudit appends e inside tx.
func (db *DB) appendAudit(ctx context.Context, tx pgx.Tx, e pairing.Event) error {
	b := &pgx.Batch{}
	if err := db.queueAudit(b, e); err != nil {
		return err
	}
	return send(ctx, tx, b)
}

// AppendAudit appends e to the audit log.
func (db *DB) AppendAudit(ctx context.Context, e pairing.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := &pgx.Batch{}
	err := db.queueAudit(b, e)
	if err == nil && b.Len() > 0 {
		err = db.pool.SendBatch(ctx, b).Close()
	}
	if err != nil {
		return fmt.Errorf("append audit event: %w", db.classify(ctx, err))
	}
	return nil
}

// auditPage is how many rows one read of the audit log fetches when Keep
// may drop some or a record may not parse; a query with a Limit and no
// Keep fetches Limit+1 (one more tells whether older ones were left out).
const auditPage = 1000

// Audit returns the events q selects, oldest first, and whether the limit
// left older matching events out. It reads newest first through the index
// q allows (phone key, instance, time), a page at a time, and stops as
// soon as it has Limit events. Returned events carry no PhoneKey. A record
// that does not parse is skipped and logged, so it cannot hide every other
// event.
func (db *DB) Audit(ctx context.Context, q pairing.AuditQuery) (events []pairing.Event, more bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	where, args := []string{"at_ns >= $1"}, []any{nanos(q.Since)}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !q.Until.IsZero() {
		where = append(where, "at_ns < "+arg(nanos(q.Until)))
	}
	if q.Phone != "" {
		var keys []string
		if secret := db.phoneKeySecret(); secret != nil {
			keys = append(keys, keyedPhoneKey(secret, q.Phone))
		}
		keys = append(keys, legacyPhoneKey(q.Phone))
		where = append(where, "phone_key = ANY("+arg(keys)+")")
	}
	var instances []string
	for _, in := range q.Instances {
		if n := instanceIndexName(in); n != "" && !slices.Contains(instances, n) {
			instances = append(instances, n)
		}
	}
	if len(instances) > 0 {
		where = append(where, "instance_key = ANY("+arg(instances)+")")
	}
	page := auditPage
	if q.Keep == nil && q.Limit > 0 {
		page = q.Limit + 1
	}
	var (
		skipped   int
		firstSkip string
		cursor    *[2]int64 // at_ns and seq of the last row read
	)
	base, baseArgs := where, len(args)
read:
	for {
		conds, a := base, args[:baseArgs:baseArgs]
		if cursor != nil {
			a = append(a, cursor[0], cursor[1])
			conds = append(slices.Clone(conds), fmt.Sprintf("(at_ns, seq) < ($%d, $%d)", len(a)-1, len(a)))
		}
		a = append(a, page)
		rows, err := db.pool.Query(ctx, fmt.Sprintf(`SELECT seq, at_ns, doc FROM audit_events WHERE %s ORDER BY at_ns DESC, seq DESC LIMIT $%d`,
			strings.Join(conds, " AND "), len(a)), a...)
		if err != nil {
			return nil, false, fmt.Errorf("read audit log: %w", db.classify(ctx, err))
		}
		var (
			n       int
			seq, at int64
			raw     []byte
			last    [2]int64
		)
		_, err = pgx.ForEachRow(rows, []any{&seq, &at, &raw}, func() error {
			n++
			last = [2]int64{at, seq}
			var e pairing.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				if skipped++; skipped == 1 {
					firstSkip = fmt.Sprintf("seq %d: %v", seq, err)
				}
				return nil
			}
			if q.Keep != nil && !q.Keep(e) {
				return nil
			}
			if q.Limit > 0 && len(events) == q.Limit {
				more = true
				return errStop
			}
			e.PhoneKey = ""
			events = append(events, e)
			return nil
		})
		switch {
		case errors.Is(err, errStop):
			break read
		case err != nil:
			return nil, false, fmt.Errorf("read audit log: %w", db.classify(ctx, err))
		case n < page:
			break read
		}
		cursor = &last
	}
	slices.Reverse(events)
	if skipped > 0 {
		db.log.Warn("audit log: unreadable records skipped", "skipped", skipped, "first", firstSkip)
	}
	return events, more, nil
}

// errStop ends a read that has what it needs.
var errStop = errors.New("stop")
