package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/linkbot/linkbot/pairing"
)

// Lock order, so that no two transactions wait for each other in a
// circle: a command's dedupe key (Reserve holds at most one, and takes it
// first), pairing rows (FOR UPDATE; a renewal before the pairing it
// renews, i.e. newer before older), then advisory locks (sorted), then
// instance slots (live_by_instance rows), then response_url rows
// (ClaimView, after its pairing's row). Reserve takes advisory locks
// right after its key and touches no existing pairing row; a Settle that may give an
// old code its instance back takes the instance's advisory lock after its
// pairing rows and before any slot; everything else only deletes its own
// slot. Every transaction that gives an instance to a pairing holds that
// instance's advisory lock, so the slot it read is still the slot it
// writes.

// holds says whether a pairing in state whose lease runs until lease holds
// its instance at dbNow (all on the database's clock).
func holds(state pairing.State, lease, dbNow int64) bool {
	return (state == pairing.StateRequesting || state == pairing.StateLive) && lease > dbNow
}

// stored is a pairing as its row holds it.
type stored struct {
	p     pairing.Pairing
	lease int64 // lease_until_ns
}

// endedNanos is when p ended for pruning: EndedAt, or ExpiresAt if it
// never ended (as bbolt's Prune reads it).
func endedNanos(p pairing.Pairing) int64 {
	if !p.EndedAt.IsZero() {
		return nanos(p.EndedAt)
	}
	return nanos(p.ExpiresAt)
}

// pairingKeys are the document keys this binary's pairing.Pairing writes.
// An update replaces exactly these (doc - pairingKeys || new), so keys a
// newer version added survive an older replica's writes.
var pairingKeys = jsonKeys(reflect.TypeFor[pairing.Pairing]())

// jsonKeys lists the JSON object keys encoding/json writes for struct t.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		keys = append(keys, name)
	}
	return keys
}

// encodeJSON marshals v for a jsonb column. PostgreSQL's jsonb refuses
// the escape \u0000, so a NUL in any string (an error text from Wawp, say)
// becomes U+FFFD; the record stays readable and nothing else changes.
func encodeJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil || !bytes.Contains(raw, []byte(`\u0000`)) {
		return raw, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return json.Marshal(replaceNUL(doc))
}

func replaceNUL(v any) any {
	switch v := v.(type) {
	case string:
		return strings.ReplaceAll(v, "\x00", "\uFFFD")
	case []any:
		for i := range v {
			v[i] = replaceNUL(v[i])
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[replaceNUL(k).(string)] = replaceNUL(x)
		}
		return out
	}
	return v
}

// pgText is s as a text column takes it: PostgreSQL text holds neither
// NUL nor invalid UTF-8. Keys (phone, user, instance, url) go through it
// both when written and when looked up, so they still match.
func pgText(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// lockID is the advisory lock of key ("phone\x00…", "user\x00…",
// "instance\x00…") in the store's schema: 64 bits of FNV-1a. A collision
// only makes two keys wait for each other.
func (db *DB) lockID(key string) int64 {
	h := fnv.New64a()
	if db.lockSpace != "" {
		h.Write([]byte("schema\x00" + db.lockSpace + "\x00"))
	}
	h.Write([]byte("linkbot\x00" + key))
	return int64(h.Sum64())
}

// queueLocks queues the advisory locks of keys on b, sorted and once each,
// one statement each so they are taken in that order.
func (db *DB) queueLocks(b *pgx.Batch, keys ...string) {
	var ids []int64
	for _, k := range keys {
		ids = append(ids, db.lockID(k))
	}
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, id)
	}
}

// send runs the statements queued on b in tx, in one round trip.
func send(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}

// queueInsert queues writing p as a new row (or over a row of the same
// ID: a request stored again replaces it, as bbolt's Put does).
func queueInsert(b *pgx.Batch, p pairing.Pairing, watched bool, lease int64) error {
	doc, err := encodeJSON(p)
	if err != nil {
		return err
	}
	b.Queue(`INSERT INTO pairings (id, instance, state, watched, lease_until_ns, ended_ns, doc)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET instance = EXCLUDED.instance, state = EXCLUDED.state, watched = EXCLUDED.watched,
			lease_until_ns = EXCLUDED.lease_until_ns, ended_ns = EXCLUDED.ended_ns, doc = EXCLUDED.doc`,
		pgText(p.ID), pgText(p.Instance), string(p.State), watched, lease, endedNanos(p), doc)
	return nil
}

// windowQuery selects the attempt times of one phone or user after a time.
const windowQuery = `SELECT at_ns FROM attempts WHERE %s = $1 AND at_ns > $2 ORDER BY at_ns`

// scanTimes collects the times a window query returns into times.
func scanTimes(times *[]int64) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		var err error
		*times, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	}
}

// Reserve checks the per-phone, per-user and per-instance limits and, when
// all allow it, records the attempt, stores the pairing as Requesting
// (watched from now on, so a request that never settles is still ended
// when its lease runs out), gives it the instance and appends r.Granted,
// in one transaction. The transaction locks the phone, the user and the
// instance first, so requests racing for any of them — on any replica —
// are decided one after the other. It takes two round trips: BEGIN, the
// locks and the reads in one; the writes and COMMIT in the other.
func (db *DB) Reserve(ctx context.Context, r pairing.Reservation) (pairing.Decision, error) {
	var (
		d                     pairing.Decision
		p                     = r.Pairing
		dbNow                 int64
		holderID, holderState *string
		holderLease           *int64
		holderDoc             []byte
		phoneTimes, userTimes []int64
	)
	reads := &pgx.Batch{}
	// The command's key first, before any advisory lock: a redelivery of
	// the same command for the same phone waits here for the first one to
	// end (the key's row), and never holds the phone's lock while waiting.
	first := true
	if r.Dedupe.Key != "" {
		queueClaimCommand(reads, r.Dedupe, r.Now).Query(func(rows pgx.Rows) error {
			first = rows.Next()
			rows.Close()
			return rows.Err()
		})
	}
	// The phone's window, or for a QR link the instance's QR window.
	db.queueLocks(reads, "phone\x00"+p.AttemptKey(), "user\x00"+p.RequestedBy, "instance\x00"+p.Instance)
	reads.Queue(`SELECT COALESCE($1::bigint, `+sqlNow+`)`, db.nowParam(r.Now)).QueryRow(func(row pgx.Row) error { return row.Scan(&dbNow) })
	reads.Queue(`SELECT l.pairing_id, p.state, p.lease_until_ns, p.doc FROM live_by_instance l
		LEFT JOIN pairings p ON p.id = l.pairing_id WHERE l.instance = $1`, pgText(p.Instance)).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			if err := rows.Scan(&holderID, &holderState, &holderLease, &holderDoc); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	reads.Queue(fmt.Sprintf(windowQuery, "phone"), pgText(p.AttemptKey()), nanos(r.Now.Add(-r.PhoneLimit.Period))).Query(scanTimes(&phoneTimes))
	if r.UserLimit.Max > 0 {
		reads.Queue(fmt.Sprintf(windowQuery, "user_id"), pgText(p.RequestedBy), nanos(r.Now.Add(-r.UserLimit.Period))).Query(scanTimes(&userTimes))
	}
	err := db.inPipelinedTx(ctx, reads, func() (*pgx.Batch, error) {
		w := &pgx.Batch{}
		if !first {
			d = pairing.Decision{Duplicate: true}
			return w, nil
		}
		if holderID != nil && *holderID != r.Replaces && holderDoc != nil && holds(pairing.State(*holderState), *holderLease, dbNow) {
			var holder pairing.Pairing
			if json.Unmarshal(holderDoc, &holder) == nil {
				holder.WipeCredentials()
				d = pairing.Decision{Refused: pairing.LimitInstance, RetryAt: holder.ExpiresAt, Holder: holder}
				return w, db.queueRefusal(w, r, &d, dbNow)
			}
		}
		if n := len(phoneTimes); r.PhoneLimit.Max > 0 && n >= r.PhoneLimit.Max {
			d = pairing.Decision{Refused: p.KeyLimit(), Count: n, RetryAt: time.Unix(0, phoneTimes[n-r.PhoneLimit.Max]).Add(r.PhoneLimit.Period)}
			return w, db.queueRefusal(w, r, &d, dbNow)
		}
		if n := len(userTimes); r.UserLimit.Max > 0 && n >= r.UserLimit.Max {
			d = pairing.Decision{Refused: pairing.LimitUser, Count: n, RetryAt: time.Unix(0, userTimes[n-r.UserLimit.Max]).Add(r.UserLimit.Period)}
			return w, db.queueRefusal(w, r, &d, dbNow)
		}

		p.State = pairing.StateRequesting
		p.RequestedAt = r.Now
		p.ExpiresAt = r.Now.Add(r.Hold)
		p.Attempt = len(phoneTimes) + 1
		w.Queue(`INSERT INTO attempts (phone, user_id, at_ns, pairing_id, team, instance, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			pgText(p.AttemptKey()), pgText(p.RequestedBy), nanos(r.Now), pgText(p.ID), pgText(p.Team), pgText(p.Instance), string(pairing.StateRequesting))
		if err := queueInsert(w, p, true, lease(dbNow, p.ExpiresAt, r.Now)); err != nil {
			return nil, err
		}
		w.Queue(`INSERT INTO live_by_instance (instance, pairing_id) VALUES ($1, $2)
			ON CONFLICT (instance) DO UPDATE SET pairing_id = EXCLUDED.pairing_id`, pgText(p.Instance), pgText(p.ID))
		if err := db.queueAudit(w, r.Granted); err != nil {
			return nil, err
		}
		d = pairing.Decision{Count: p.Attempt, Pairing: p}
		return w, nil
	})
	if err != nil {
		return pairing.Decision{}, fmt.Errorf("reserve code request: %w", err)
	}
	return d, nil
}

// queueRefusal queues recording a refusal: its audit event and, for a
// request of its own (a /link, not a renewal), the refused request as a
// final pairing, watched until its message shows the refusal.
func (db *DB) queueRefusal(w *pgx.Batch, r pairing.Reservation, d *pairing.Decision, dbNow int64) error {
	if r.Replaces == "" {
		p := d.RefusedPairing(r.Pairing, r.Now)
		if err := queueInsert(w, p, true, lease(dbNow, p.ExpiresAt, r.Now)); err != nil {
			return err
		}
		d.Pairing = p
	}
	if r.Refused.Kind == "" {
		return nil
	}
	e := r.Refused
	e.Outcome = d.Refused.Outcome()
	return db.queueAudit(w, e)
}

// lockPairing reads pairing id and locks its row until tx ends; it also
// reads the clock leases are measured on (dbNow).
func (db *DB) lockPairing(ctx context.Context, tx pgx.Tx, id string, now time.Time) (stored, int64, error) {
	var (
		s     stored
		raw   []byte
		dbNow int64
	)
	err := tx.QueryRow(ctx, `SELECT doc, lease_until_ns, COALESCE($2::bigint, `+sqlNow+`) FROM pairings WHERE id = $1 FOR UPDATE`,
		pgText(id), db.nowParam(now)).Scan(&raw, &s.lease, &dbNow)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, 0, pairing.ErrNotFound
	}
	if err != nil {
		return s, 0, err
	}
	if err := json.Unmarshal(raw, &s.p); err != nil {
		return s, 0, fmt.Errorf("the stored pairing does not parse: %w", err)
	}
	return s, dbNow, nil
}

// lockPairingIfAny is lockPairing, with nil for a pairing that is gone.
func (db *DB) lockPairingIfAny(ctx context.Context, tx pgx.Tx, id string, now time.Time) (*stored, error) {
	s, _, err := db.lockPairing(ctx, tx, id, now)
	if errors.Is(err, pairing.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// applyChange runs change on the locked pairing cur and saves the result;
// when change fails, nothing is saved and the pairing as change left it
// comes back with the error.
func (db *DB) applyChange(ctx context.Context, tx pgx.Tx, cur stored, dbNow int64, now time.Time, change func(*pairing.Pairing) error) (pairing.Pairing, error) {
	p := cur.p
	if err := change(&p); err != nil {
		return p, err
	}
	return p, db.save(ctx, tx, cur, &p, dbNow, now)
}

// save writes p over cur, its locked row. A new ExpiresAt gets a new
// lease (measured from dbNow); a pairing that no longer holds its instance
// afterwards loses its code (a code must not outlive its pairing anywhere,
// the database included), gets its end time and gives its instance slot
// back. The document keeps keys this binary does not know.
func (db *DB) save(ctx context.Context, tx pgx.Tx, cur stored, p *pairing.Pairing, dbNow int64, now time.Time) error {
	l := cur.lease
	if !p.ExpiresAt.Equal(cur.p.ExpiresAt) {
		l = lease(dbNow, p.ExpiresAt, now)
	}
	b := &pgx.Batch{}
	if !holds(p.State, l, dbNow) {
		if p.Final() && p.EndedAt.IsZero() {
			p.EndedAt = now
		}
		p.WipeCredentials()
		b.Queue(`DELETE FROM live_by_instance WHERE instance = $1 AND pairing_id = $2`, pgText(p.Instance), pgText(p.ID))
	}
	doc, err := encodeJSON(p)
	if err != nil {
		return err
	}
	b.Queue(`UPDATE pairings SET instance = $2, state = $3, lease_until_ns = $4, ended_ns = $5, doc = (doc - $6::text[]) || $7::jsonb WHERE id = $1`,
		pgText(cur.p.ID), pgText(p.Instance), string(p.State), l, endedNanos(*p), pairingKeys, doc)
	return send(ctx, tx, b)
}

// unwatch stops keeping pairing id's message current.
func unwatch(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `UPDATE pairings SET watched = false WHERE id = $1 AND watched`, pgText(id))
	return err
}

// Settle applies s and returns the updated pairing, in one transaction.
// A request that s would make live is refused with
// pairing.ErrInterrupted, nothing changed, when its lease ran out on the
// database's clock or its instance slot names another pairing.
func (db *DB) Settle(ctx context.Context, s pairing.Settlement) (pairing.Pairing, error) {
	var out pairing.Pairing
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// The instance's lock first, as Reserve takes it (before any row):
		// whether the request still holds its slot is then decided with
		// no Reserve for the instance in between.
		var instance string
		err := tx.QueryRow(ctx, `SELECT instance FROM pairings WHERE id = $1`, pgText(s.ID)).Scan(&instance)
		if errors.Is(err, pgx.ErrNoRows) {
			return pairing.ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, db.lockID("instance\x00"+instance)); err != nil {
			return err
		}
		cur, dbNow, err := db.lockPairing(ctx, tx, s.ID, s.Now)
		if err != nil {
			return err
		}
		var old *stored
		if s.Replaced != "" {
			if old, err = db.lockPairingIfAny(ctx, tx, s.Replaced, s.Now); err != nil {
				return err
			}
			if old != nil && !s.Counted {
				// The old code may take its instance back: hold the
				// instance's lock, as Reserve does, before any slot.
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, db.lockID("instance\x00"+old.p.Instance)); err != nil {
					return err
				}
			}
		}
		change := func(p *pairing.Pairing) error {
			if err := s.Change(p); err != nil {
				return err
			}
			// A request whose lease ran out on the database's clock, or
			// whose instance slot names another pairing, no longer holds
			// its instance (another replica's request may have it): its
			// code never goes live, whatever the caller's clock says, or
			// one instance would have two live codes.
			if cur.p.State == pairing.StateRequesting && p.State == pairing.StateLive {
				var holder string
				err := tx.QueryRow(ctx, `SELECT pairing_id FROM live_by_instance WHERE instance = $1`, pgText(cur.p.Instance)).Scan(&holder)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return err
				}
				if !holds(cur.p.State, cur.lease, dbNow) || holder != cur.p.ID {
					return pairing.ErrInterrupted
				}
			}
			return nil
		}
		p, err := db.applyChange(ctx, tx, cur, dbNow, s.Now, change)
		if err != nil {
			return err
		}
		if err := settleAttempt(ctx, tx, p, s.Counted); err != nil {
			return err
		}
		if s.Replaced != "" {
			if err := db.settleReplaced(ctx, tx, s, p, old, dbNow); err != nil {
				return err
			}
		}
		if err := db.appendAudit(ctx, tx, s.Audit); err != nil {
			return err
		}
		out = p
		return nil
	})
	if err != nil {
		return pairing.Pairing{}, fmt.Errorf("settle pairing %q: %w", s.ID, err)
	}
	return out, nil
}

// settleReplaced ends or reinstates old (locked; nil when it is gone), the
// pairing the renewal replaced. The two share one message, and only one of
// them goes on being watched for it: the renewal, or a reinstated old
// pairing whose code still works.
func (db *DB) settleReplaced(ctx context.Context, tx pgx.Tx, s pairing.Settlement, renewal pairing.Pairing, old *stored, dbNow int64) error {
	if old == nil {
		return nil
	}
	if s.Counted {
		ended, err := db.endPairing(ctx, tx, *old, pairing.StateSuperseded, dbNow, s.Now, renewal)
		if err != nil || !ended {
			return err
		}
		return db.appendEndAudit(ctx, tx, s.ReplacedAudit, pairing.EventSuperseded, s.Now)
	}
	if !holds(old.p.State, old.lease, dbNow) {
		// The renewal's view replaces its last one. A code that ran out
		// while the renewal was on its way ends here as expired, code
		// wiped and audited: nothing watches it any more to end it later.
		// A pairing that ended on its own meanwhile keeps its final state;
		// endPairing stops watching it unless a window of its own (recorded
		// while the renewal was on its way) still shows the code.
		ended, err := db.endPairing(ctx, tx, *old, pairing.StateExpired, dbNow, s.Now, renewal)
		if err != nil || !ended {
			return err
		}
		return db.appendEndAudit(ctx, tx, s.ReplacedAudit, pairing.EventExpired, s.Now)
	}
	// Give the old code its instance back, unless someone else's pairing
	// holds it now.
	tag, err := tx.Exec(ctx, `INSERT INTO live_by_instance (instance, pairing_id) VALUES ($1, $2)
		ON CONFLICT (instance) DO UPDATE SET pairing_id = EXCLUDED.pairing_id
		WHERE live_by_instance.pairing_id IN ($2, $3)`, pgText(old.p.Instance), pgText(old.p.ID), pgText(renewal.ID))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		// Someone else's pairing holds it: the old code is void (see the
		// bbolt store's settleReplaced), so it ends as superseded.
		ended, err := db.endPairing(ctx, tx, *old, pairing.StateSuperseded, dbNow, s.Now, renewal)
		if err != nil || !ended {
			return err
		}
		return db.appendEndAudit(ctx, tx, s.ReplacedAudit, pairing.EventSuperseded, s.Now)
	}
	p := old.p
	if s.ReplacedURL != "" {
		// The click's fresh response_url replaces the clicked message: it
		// edits the old pairing's ephemeral message from now on. A click
		// in the DM brought none, and the editors stay as they were.
		p.ClickURL, p.ClickIssued = s.ReplacedURL, s.Now
	}
	if err := db.save(ctx, tx, *old, &p, dbNow, s.Now); err != nil {
		return err
	}
	return unwatch(ctx, tx, renewal.ID)
}

// endPairing gives a replaced pairing (locked) its final state and stops
// editing its message, which now shows the pairing that replaced it. A
// pairing that reached a final state meanwhile keeps it: a final state is
// never overwritten. It reports whether it ended the pairing.
func (db *DB) endPairing(ctx context.Context, tx pgx.Tx, old stored, state pairing.State, dbNow int64, now time.Time, renewal pairing.Pairing) (bool, error) {
	p := old.p
	ended := false
	if !p.Final() {
		p.State, ended = state, true
	}
	own := p.KeepsWindow(renewal)
	if err := db.save(ctx, tx, old, &p, dbNow, now); err != nil {
		return false, err
	}
	if own {
		return ended, nil
	}
	return ended, unwatch(ctx, tx, p.ID)
}

// appendEndAudit appends e, the audit record of a pairing that ended as
// kind at now, unless e names no pairing.
func (db *DB) appendEndAudit(ctx context.Context, tx pgx.Tx, e pairing.Event, kind pairing.EventKind, now time.Time) error {
	if e.Pairing == "" {
		return nil
	}
	e.Kind, e.Time = kind, now
	return db.appendAudit(ctx, tx, e)
}

// settleAttempt records on p's attempt the state p settled in, or, when
// the request did not count, deletes the attempt (it leaves the phone's
// and the user's windows at once).
func settleAttempt(ctx context.Context, tx pgx.Tx, p pairing.Pairing, counted bool) error {
	var err error
	if counted {
		_, err = tx.Exec(ctx, `UPDATE attempts SET outcome = $2 WHERE pairing_id = $1`, pgText(p.ID), string(p.State))
	} else {
		_, err = tx.Exec(ctx, `DELETE FROM attempts WHERE pairing_id = $1`, pgText(p.ID))
	}
	return err
}

// Interrupt ends a request that is still Requesting as interrupted, in one
// transaction: the attempt keeps counting (request-code may have reached
// WhatsApp), a code it was renewing is void (superseded), the instance is
// released, the event is audited. With Lapsed, only once its lease ran
// out by the database's clock. The pairing stays watched until its
// message says what happened.
func (db *DB) Interrupt(ctx context.Context, in pairing.Interruption) (pairing.Pairing, bool, error) {
	var (
		out   pairing.Pairing
		ended bool
	)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		ended = false
		cur, dbNow, err := db.lockPairing(ctx, tx, in.ID, in.Now)
		if err != nil {
			return err
		}
		out = cur.p
		if cur.p.State != pairing.StateRequesting || (in.Lapsed && cur.lease > dbNow) {
			return nil
		}
		var old *stored
		if cur.p.Renews != "" {
			if old, err = db.lockPairingIfAny(ctx, tx, cur.p.Renews, in.Now); err != nil {
				return err
			}
		}
		p, err := db.applyChange(ctx, tx, cur, dbNow, in.Now, func(p *pairing.Pairing) error { p.State = pairing.StateInterrupted; return nil })
		if err != nil {
			return err
		}
		if err := settleAttempt(ctx, tx, p, true); err != nil {
			return err
		}
		if p.Renews != "" {
			s := pairing.Settlement{Replaced: p.Renews, Now: in.Now, Counted: true, ReplacedAudit: in.ReplacedAudit}
			if err := db.settleReplaced(ctx, tx, s, p, old, dbNow); err != nil {
				return err
			}
		}
		out, ended = p, true
		return db.appendAudit(ctx, tx, in.Audit)
	})
	if err != nil {
		return pairing.Pairing{}, false, fmt.Errorf("interrupt pairing %q: %w", in.ID, err)
	}
	return out, ended, nil
}

// NextAllowed returns when phone may next get a code under limit (now if
// it may already) and how many requests are in the window.
func (db *DB) NextAllowed(ctx context.Context, phone string, now time.Time, limit pairing.Window) (time.Time, int, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, 0, err
	}
	rows, err := db.pool.Query(ctx, fmt.Sprintf(windowQuery, "phone"), pgText(phone), nanos(now.Add(-limit.Period)))
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("next allowed: %w", db.classify(ctx, err))
	}
	times, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("next allowed: %w", db.classify(ctx, err))
	}
	n := len(times)
	if limit.Max > 0 && n >= limit.Max {
		return time.Unix(0, times[n-limit.Max]).Add(limit.Period), n, nil
	}
	return now, n, nil
}

// Pairing returns the pairing with id.
func (db *DB) Pairing(ctx context.Context, id string) (pairing.Pairing, error) {
	if err := ctx.Err(); err != nil {
		return pairing.Pairing{}, err
	}
	var raw []byte
	err := db.pool.QueryRow(ctx, `SELECT doc FROM pairings WHERE id = $1`, pgText(id)).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		err = pairing.ErrNotFound
	}
	var p pairing.Pairing
	if err == nil {
		err = json.Unmarshal(raw, &p)
	}
	if err != nil {
		return pairing.Pairing{}, fmt.Errorf("pairing %q: %w", id, db.classify(ctx, err))
	}
	return p, nil
}

// ReservedPairing returns the pairing a Reserve of p stored, or
// ErrNotFound, after waiting for any Reserve of p still in flight: in one
// transaction it takes the advisory locks Reserve takes (p's phone, user
// and instance, in the same sorted order) and then reads the row. A
// Reserve holds those locks until its COMMIT is done, so a COMMIT whose
// reply was lost is visible once they are granted; one whose session is
// stuck is ended by idle_in_transaction_session_timeout, or this lookup by
// lock_timeout (ErrUnavailable: the caller asks again). BEGIN, the locks
// and the read take two round trips, COMMIT a third.
func (db *DB) ReservedPairing(ctx context.Context, p pairing.Pairing) (pairing.Pairing, error) {
	var raw []byte
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		db.queueLocks(b, "phone\x00"+p.AttemptKey(), "user\x00"+p.RequestedBy, "instance\x00"+p.Instance)
		b.Queue(`SELECT doc FROM pairings WHERE id = $1`, pgText(p.ID)).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				if err := rows.Scan(&raw); err != nil {
					return err
				}
			}
			return rows.Err()
		})
		return send(ctx, tx, b)
	})
	if err == nil && raw == nil {
		err = pairing.ErrNotFound
	}
	var found pairing.Pairing
	if err == nil {
		err = json.Unmarshal(raw, &found)
	}
	if err != nil {
		return pairing.Pairing{}, fmt.Errorf("pairing %q: %w", p.ID, db.classify(ctx, err))
	}
	return found, nil
}

// Holder returns the pairing that holds instance (one live code per
// instance) by its lease on the database's clock, or ErrNotFound when none
// does. Its code is left out.
func (db *DB) Holder(ctx context.Context, instance string, now time.Time) (pairing.Pairing, error) {
	if err := ctx.Err(); err != nil {
		return pairing.Pairing{}, err
	}
	var raw []byte
	err := db.pool.QueryRow(ctx, `SELECT p.doc FROM live_by_instance l JOIN pairings p ON p.id = l.pairing_id
		WHERE l.instance = $1 AND p.state IN ('requesting', 'live') AND p.lease_until_ns > COALESCE($2::bigint, `+sqlNow+`)`,
		pgText(instance), db.nowParam(now)).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		err = pairing.ErrNotFound
	}
	var p pairing.Pairing
	if err == nil {
		err = json.Unmarshal(raw, &p)
	}
	if err != nil {
		return pairing.Pairing{}, fmt.Errorf("holder of %q: %w", instance, db.classify(ctx, err))
	}
	p.WipeCredentials()
	return p, nil
}

// UpdatePairing applies change to the stored pairing and saves it, in one
// transaction that locks its row. When the pairing no longer holds its
// instance afterwards, its code is wiped and its instance released.
func (db *DB) UpdatePairing(ctx context.Context, id string, now time.Time, change func(*pairing.Pairing) error) (pairing.Pairing, error) {
	var p pairing.Pairing
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		cur, dbNow, err := db.lockPairing(ctx, tx, id, now)
		if err != nil {
			return err
		}
		p, err = db.applyChange(ctx, tx, cur, dbNow, now, change)
		return err
	})
	if err != nil {
		// p is the pairing as change left it (unsaved), as documented.
		return p, fmt.Errorf("update pairing %q: %w", id, err)
	}
	return p, nil
}

// RecordModal stores m as pairing id's window and watches the pairing
// while m is open, in one transaction holding the pairing's row: a
// renewal another replica settled before is seen (pairing.ErrReplaced,
// unless superseded is set).
func (db *DB) RecordModal(ctx context.Context, id string, m pairing.ModalSurface, now time.Time, superseded bool) (pairing.Pairing, error) {
	var p pairing.Pairing
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		cur, dbNow, err := db.lockPairing(ctx, tx, id, now)
		if err != nil {
			return err
		}
		p, err = db.applyChange(ctx, tx, cur, dbNow, now, func(p *pairing.Pairing) error { return p.SetModal(m, superseded) })
		if err != nil || !m.Open() {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE pairings SET watched = true WHERE id = $1 AND NOT watched`, pgText(id))
		return err
	})
	if err != nil {
		return p, fmt.Errorf("record window of pairing %q: %w", id, err)
	}
	return p, nil
}

// WatchedPairings returns the pairings whose messages are still kept
// current, by ID. A record that does not parse is skipped.
func (db *DB) WatchedPairings(ctx context.Context) ([]pairing.Pairing, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, `SELECT doc FROM pairings WHERE watched ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("watched pairings: %w", db.classify(ctx, err))
	}
	defer rows.Close()
	var out []pairing.Pairing
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("watched pairings: %w", db.classify(ctx, err))
		}
		var p pairing.Pairing
		if json.Unmarshal(raw, &p) == nil {
			out = append(out, p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("watched pairings: %w", db.classify(ctx, err))
	}
	return out, nil
}

// RecordView remembers which view the message shows now (key), so it is
// edited only when that changes; unwatch ends editing for good. One
// statement: no row is read back first.
func (db *DB) RecordView(ctx context.Context, id, key string, unwatch bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := db.pool.Exec(ctx, `UPDATE pairings SET doc = jsonb_set(doc, '{last_view}', to_jsonb($2::text)), watched = watched AND NOT $3::boolean WHERE id = $1`,
		pgText(id), pgText(key), unwatch)
	if err != nil {
		return fmt.Errorf("record view of %q: %w", id, db.classify(ctx, err))
	}
	return nil
}

// WatchedCount is how many pairings' messages are being kept current (-1
// when the database cannot say within a second: a metrics scrape must not
// hang on it).
func (db *DB) WatchedCount() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pairings WHERE watched`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// Restore writes pairings as they are, bypassing every limit, and watches
// the live and requesting ones, leased from the database's clock by their
// ExpiresAt measured against time.Now(). It is for seeding load tests;
// the bot itself only creates pairings through Reserve.
func (db *DB) Restore(ctx context.Context, ps []pairing.Pairing) error {
	callerNow := time.Now()
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		dbNow, err := db.dbNow(ctx, tx, callerNow)
		if err != nil {
			return err
		}
		for chunk := range slices.Chunk(ps, 1000) {
			b := &pgx.Batch{}
			for _, p := range chunk {
				if err := queueInsert(b, p, !p.Final(), lease(dbNow, p.ExpiresAt, callerNow)); err != nil {
					return err
				}
			}
			if err := send(ctx, tx, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore pairings: %w", err)
	}
	return nil
}
