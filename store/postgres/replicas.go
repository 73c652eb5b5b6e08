package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/linkbot/linkbot/pairing"
)

// queueClaimCommand queues claiming d's key (not empty) on b: the
// statement returns a row when it claimed it. A concurrent claim of the
// same key waits on the key's row until the first transaction ends, then
// sees its key (READ COMMITTED re-checks ON CONFLICT against the committed
// row): of two claims, on any replicas, exactly one returns a row.
func queueClaimCommand(b *pgx.Batch, d pairing.Dedupe, now time.Time) *pgx.QueuedQuery {
	return b.Queue(`INSERT INTO dedupe_keys AS k (key, until_ns) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET until_ns = EXCLUDED.until_ns WHERE k.until_ns <= $3
		RETURNING 1`, pgText(d.Key), nanos(d.Until), nanos(now))
}

// ClaimCommand claims d.Key (see pairing.Storage) in one statement.
func (db *DB) ClaimCommand(ctx context.Context, d pairing.Dedupe, now time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if d.Key == "" {
		return true, nil
	}
	b := &pgx.Batch{}
	first := false
	queueClaimCommand(b, d, now).Query(func(rows pgx.Rows) error {
		first = rows.Next()
		rows.Close()
		return rows.Err()
	})
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return false, fmt.Errorf("claim command: %w", db.classify(ctx, err))
	}
	return first, nil
}

// Lead elects leader or renews held (see pairing.Storage) in one
// statement on the leader_lease row, with the lease on the database's
// clock (with CallerClock, now's): the row is inserted when there is
// none; otherwise updated only when its lease ran out (an election: a new
// term) or it is held's own term still running (a renewal: the same
// term, a later expiry). Concurrent candidates, on any replicas, wait for
// each other on the row and each sees what the one before it left, so at
// most one wins. No session lock: a pooled connection, a pooler or a
// half-open socket cannot keep or lose leadership by accident, only the
// row's expiry decides.
func (db *DB) Lead(ctx context.Context, leader string, held pairing.Term, ttl time.Duration, now time.Time) (pairing.Term, error) {
	if err := ctx.Err(); err != nil {
		return pairing.Term{}, err
	}
	var heldNs *int64
	if !held.IsZero() && held.Leader == leader {
		n := nanos(held.ElectedAt)
		heldNs = &n
	}
	var elected int64
	err := db.pool.QueryRow(ctx, `WITH clock AS (SELECT COALESCE($2::bigint, `+sqlNow+`) AS now)
		INSERT INTO leader_lease AS l (leader_id, elected_ns, expires_ns)
		SELECT $1, clock.now, clock.now + $3::bigint FROM clock
		ON CONFLICT (name) DO UPDATE SET
			leader_id = EXCLUDED.leader_id,
			elected_ns = CASE WHEN l.expires_ns > EXCLUDED.elected_ns THEN l.elected_ns ELSE EXCLUDED.elected_ns END,
			expires_ns = EXCLUDED.expires_ns
		WHERE l.expires_ns <= EXCLUDED.elected_ns
			OR (l.leader_id = EXCLUDED.leader_id AND l.elected_ns = $4::bigint)
		RETURNING l.elected_ns`,
		pgText(leader), db.nowParam(now), int64(ttl), heldNs).Scan(&elected)
	if errors.Is(err, pgx.ErrNoRows) {
		return pairing.Term{}, nil
	}
	if err != nil {
		return pairing.Term{}, fmt.Errorf("lead: %w", db.classify(ctx, err))
	}
	return pairing.Term{Leader: leader, ElectedAt: time.Unix(0, elected)}, nil
}

// TakeEdit takes one of the perMinute edits of the sliding minute before
// now (see pairing.Storage) in one conditional statement on edit_window's
// single row, whose taken_ns lists when the minute's edits were taken on
// the database's clock (with CallerClock, now's): an edit is taken, and
// its time appended, only while fewer than perMinute of the listed times
// lie within the minute before now. Times that left the minute go on the
// way (and times more than a minute ahead: a clock stepped back holds
// nothing for long). Concurrent takers, on any replicas, wait for each
// other on the row and each sees the list the previous one left, so no
// minute — whichever second it starts at — holds more than perMinute,
// as Slack counts them (Tier 3, about 50 a minute per workspace:
// https://api.slack.com/docs/rate-limits).
func (db *DB) TakeEdit(ctx context.Context, now time.Time, perMinute int) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if perMinute <= 0 {
		return false, nil
	}
	var taken bool
	err := db.pool.QueryRow(ctx, `WITH clock AS (SELECT COALESCE($1::bigint, `+sqlNow+`) AS now)
		INSERT INTO edit_window AS e (id, taken_ns)
		SELECT 1, ARRAY[clock.now] FROM clock
		ON CONFLICT (id) DO UPDATE SET taken_ns = ARRAY(
			SELECT t FROM unnest(e.taken_ns) AS t
			WHERE t > EXCLUDED.taken_ns[1] - 60000000000 AND t < EXCLUDED.taken_ns[1] + 60000000000 ORDER BY t) || EXCLUDED.taken_ns[1]
		WHERE (SELECT count(*) FROM unnest(e.taken_ns) AS t
			WHERE t > EXCLUDED.taken_ns[1] - 60000000000 AND t < EXCLUDED.taken_ns[1] + 60000000000) < $2
		RETURNING true`, db.nowParam(now), perMinute).Scan(&taken)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take edit: %w", db.classify(ctx, err))
	}
	return taken, nil
}

// Resign deletes term's lease row, if it is still term's.
func (db *DB) Resign(ctx context.Context, term pairing.Term) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if term.IsZero() {
		return nil
	}
	if _, err := db.pool.Exec(ctx, `DELETE FROM leader_lease WHERE leader_id = $1 AND elected_ns = $2`,
		pgText(term.Leader), nanos(term.ElectedAt)); err != nil {
		return fmt.Errorf("resign: %w", db.classify(ctx, err))
	}
	return nil
}

// checkSurface refuses a surface pairings do not have (pairing.ErrNoSurface),
// after ctx: a call whose context is done says so first, as every other.
func checkSurface(ctx context.Context, surface string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return pairing.CheckSurface(surface)
}

// viewPath is where the view shown on surface is in a pairing's document
// (see pairing.Pairing.View): last_view for the ephemeral message, dm →
// last_view and card → last_view for the others.
func viewPath(surface string) []string {
	if surface == pairing.SurfaceEphemeral {
		return []string{"last_view"}
	}
	return []string{surface, "last_view"}
}

// ClaimView claims the edit c names (see pairing.Storage), with its
// response_url use, in one transaction. The claim is kept in the
// pairing's document under view_claims → surface (token, to, and until_ns
// on the database's clock): a key pairing.Pairing does not have, so no
// write of the pairing drops it (see save), and one row holds both what
// the claim checks and what it writes. The conditional UPDATE locks the
// row, so claims racing for it, on any replicas, are decided one after
// the other, each against what the one before left; the use is taken
// after (lock order: pairing row, then response_url row), and a spent
// budget rolls the claim back.
//
// A superseded pairing claims nothing but its code window (its own, not
// the message's): its renewal owns the message now.
// A renewal shown in the message of the pairing it renews claims nothing
// on a surface while that pairing's claim there runs, and the other way
// round (an old pairing reinstated after its renewal failed uncounted
// loses while the renewal's claim of their message runs). Together they
// keep the two from editing one message at once: a claim of the old
// pairing that won before the renewal settled is seen by the renewal's
// claims (Settle waits on the old row's lock until the claim committed),
// and one tried after it loses to the superseded state. Claims of the two
// racing each other are decided one after the other: each first locks
// the renewals of its pairing (FOR SHARE, through the pairings_renews
// index) and then its own row, in statements before the UPDATE, so the
// UPDATE's snapshot holds whatever claim the other committed meanwhile.
func (db *DB) ClaimView(ctx context.Context, c pairing.ViewClaim) (bool, error) {
	if err := checkSurface(ctx, c.Surface); err != nil {
		return false, fmt.Errorf("claim view of %q: %w", c.ID, err)
	}
	var won bool
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		won = false
		b := &pgx.Batch{}
		// Lock order: the renewals first (newer before older), then the
		// row itself, each in a statement of its own, so that the UPDATE
		// after them reads (with a snapshot of its own) what a claim of the
		// renewal or of the renewed pairing committed while these waited.
		b.Queue(`SELECT 1 FROM pairings WHERE doc->>'renews' = $1 AND doc->>'renews' <> '' AND id <> $1 ORDER BY id FOR SHARE`, pgText(c.ID))
		exists := false
		b.Queue(`SELECT 1 FROM pairings WHERE id = $1 FOR NO KEY UPDATE`, pgText(c.ID)).Query(func(rows pgx.Rows) error {
			exists = rows.Next()
			rows.Close()
			return rows.Err()
		})
		b.Queue(`WITH clock AS (SELECT COALESCE($6::bigint, `+sqlNow+`) AS now)
			UPDATE pairings SET doc = jsonb_set(doc || jsonb_build_object('view_claims', coalesce(doc->'view_claims', '{}'::jsonb)),
				ARRAY['view_claims', $2::text], jsonb_build_object('token', $4::text, 'to', $5::text, 'until_ns', clock.now + $7::bigint))
			FROM clock
			WHERE id = $1 AND coalesce(doc #>> $3::text[], '') = $8::text
				AND NOT coalesce((doc->'view_claims'->$2::text->>'until_ns')::bigint > clock.now, false)
				AND (state <> 'superseded' OR $2::text = 'modal')
				AND NOT EXISTS (SELECT 1 FROM pairings o, clock
					WHERE coalesce(pairings.doc->>'message', '') <> '' AND o.id = pairings.doc->>'renews' AND o.id <> pairings.id
						AND coalesce((o.doc->'view_claims'->$2::text->>'until_ns')::bigint > clock.now, false))
				AND NOT EXISTS (SELECT 1 FROM pairings n, clock
					WHERE n.doc->>'renews' = pairings.id AND n.doc->>'renews' <> '' AND n.id <> pairings.id
						AND coalesce(n.doc->>'message', '') <> ''
						AND coalesce((n.doc->'view_claims'->$2::text->>'until_ns')::bigint > clock.now, false))
			RETURNING true`,
			pgText(c.ID), pgText(c.Surface), viewPath(pgText(c.Surface)), pgText(c.Token), pgText(c.To), db.nowParam(c.Now), int64(c.For), pgText(c.From),
		).Query(func(rows pgx.Rows) error {
			won = rows.Next()
			rows.Close()
			return rows.Err()
		})
		err := send(ctx, tx, b)
		if err == nil && !won {
			if !exists {
				return pairing.ErrNotFound
			}
			return nil
		}
		if err != nil || c.URL == "" {
			return err
		}
		taken, err := takeUse(ctx, tx, c.URL, c.Issued, c.Now, c.Keep)
		if err != nil {
			return err
		}
		if !taken {
			won = false
			return pairing.ErrBudgetSpent
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, pairing.ErrBudgetSpent) {
			return false, err
		}
		return false, fmt.Errorf("claim view of %q: %w", c.ID, err)
	}
	return won, nil
}

// FinishView ends claim token on pairing id's surface (see
// pairing.Storage), in one transaction: the row is locked and read, the
// surface set as pairing.Pairing.WithShown sets it, the claim removed. The
// ephemeral message's view is the document's last_view; the DM and the
// card are the document's dm and card, each replaced whole (as every
// write of the pairing replaces them), and left out when zero, as
// encoding/json leaves them out.
func (db *DB) FinishView(ctx context.Context, id, surface, token string, shown pairing.Surface, unwatch bool) (bool, error) {
	if err := checkSurface(ctx, surface); err != nil {
		return false, fmt.Errorf("finish view of %q: %w", id, err)
	}
	var done bool
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		done = false
		var (
			raw  []byte
			held *string
		)
		err := tx.QueryRow(ctx, `SELECT doc, doc->'view_claims'->$2::text->>'token' FROM pairings WHERE id = $1 FOR UPDATE`,
			pgText(id), pgText(surface)).Scan(&raw, &held)
		if errors.Is(err, pgx.ErrNoRows) {
			return pairing.ErrNotFound
		}
		if err != nil || held == nil || *held != pgText(token) {
			return err
		}
		var p pairing.Pairing
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("the stored pairing does not parse: %w", err)
		}
		p = p.WithShown(surface, shown)
		var set []byte // the surface's document key as it is now; null: none
		switch surface {
		case pairing.SurfaceEphemeral:
			set, err = encodeJSON(map[string]string{"last_view": p.LastView})
		case pairing.SurfaceDM:
			set, err = surfaceDoc(surface, p.DM)
		case pairing.SurfaceCard:
			set, err = surfaceDoc(surface, p.Card)
		case pairing.SurfaceModal:
			if p.Modal != (pairing.ModalSurface{}) {
				set, err = encodeJSON(map[string]pairing.ModalSurface{surface: p.Modal})
			}
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE pairings SET
				doc = (doc - $2::text || coalesce($3::jsonb, '{}'::jsonb)) #- ARRAY['view_claims', $2::text],
				watched = watched AND NOT $4::boolean
			WHERE id = $1`, pgText(id), pgText(surface), set, unwatch)
		done = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("finish view of %q: %w", id, err)
	}
	return done, nil
}

// surfaceDoc is the document key of a DM or card surface sf, named
// surface (its key in pairing.Pairing's JSON): {"dm": {...}}, or nil for
// a zero sf, which encoding/json leaves out.
func surfaceDoc(surface string, sf pairing.Surface) ([]byte, error) {
	if sf == (pairing.Surface{}) {
		return nil, nil
	}
	return encodeJSON(map[string]pairing.Surface{surface: sf})
}
