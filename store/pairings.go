package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

type attempt struct {
	User     string `json:"user"`
	Team     string `json:"team"`
	Instance string `json:"instance"`
	Pairing  string `json:"pairing"`
	// Outcome is the state the attempt's pairing settled in (requesting
	// until it settles). Nothing reads it back: it explains the file.
	Outcome string `json:"outcome"`
}

// Reserve checks the per-phone, per-user and per-instance limits and, when
// all allow it, records the attempt and stores the pairing as Requesting, all
// in one transaction: two agents racing for one phone can never both pass.
// The pairing is watched from this moment, so a request that never settles
// (the process stopped mid-request) is still found and ended when its lease
// runs out: its message never stays at "Requesting…".
//
// It runs in bbolt's Batch to share one fsync among concurrent callers. Batch
// may run the function more than once; that is safe because the function
// reads everything it decides from the transaction and only returns an error
// for storage failures.
func (db *DB) Reserve(ctx context.Context, r pairing.Reservation) (pairing.Decision, error) {
	var d pairing.Decision
	err := db.batch(ctx, func(tx *bolt.Tx) error {
		d = pairing.Decision{}
		if first, err := claimCommand(tx, r.Dedupe, r.Now); err != nil || !first {
			d.Duplicate = !first
			return err
		}
		p := r.Pairing
		live := tx.Bucket(bucketLive)
		pairings := tx.Bucket(bucketPairings)
		if id := live.Get([]byte(p.Instance)); id != nil && string(id) != r.Replaces {
			if holder, err := loadPairing(pairings, id); err == nil && holder.Live(r.Now) {
				holder.WipeCredentials()
				d = pairing.Decision{Refused: pairing.LimitInstance, RetryAt: holder.ExpiresAt, Holder: holder}
				return refuse(tx, r, &d)
			}
		}
		// The phone's window, or for a QR link the instance's QR window.
		phoneTimes := windowTimes(tx.Bucket(bucketPhoneAttempts), p.AttemptKey(), r.Now, r.PhoneLimit.Period)
		if r.PhoneLimit.Max > 0 && len(phoneTimes) >= r.PhoneLimit.Max {
			d = pairing.Decision{Refused: p.KeyLimit(), Count: len(phoneTimes), RetryAt: phoneTimes[len(phoneTimes)-r.PhoneLimit.Max].Add(r.PhoneLimit.Period)}
			return refuse(tx, r, &d)
		}
		userTimes := windowTimes(tx.Bucket(bucketUserAttempts), p.RequestedBy, r.Now, r.UserLimit.Period)
		if r.UserLimit.Max > 0 && len(userTimes) >= r.UserLimit.Max {
			d = pairing.Decision{Refused: pairing.LimitUser, Count: len(userTimes), RetryAt: userTimes[len(userTimes)-r.UserLimit.Max].Add(r.UserLimit.Period)}
			return refuse(tx, r, &d)
		}
		a := attempt{User: p.RequestedBy, Team: p.Team, Instance: p.Instance, Pairing: p.ID, Outcome: string(pairing.StateRequesting)}
		at, err := putAttempt(tx, p.AttemptKey(), p.RequestedBy, r.Now, a)
		if err != nil {
			return err
		}
		p.State = pairing.StateRequesting
		p.RequestedAt = at
		p.ExpiresAt = r.Now.Add(r.Hold)
		p.Attempt = len(phoneTimes) + 1
		if err := putJSON(pairings, []byte(p.ID), p); err != nil {
			return err
		}
		if err := live.Put([]byte(p.Instance), []byte(p.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketWatched).Put([]byte(p.ID), nil); err != nil {
			return err
		}
		d.Count, d.Pairing = p.Attempt, p
		return appendAudit(tx, r.Granted)
	})
	if err != nil {
		return pairing.Decision{}, fmt.Errorf("reserve code request: %w", err)
	}
	return d, nil
}

// refuse records a refusal: its audit event and, for a request of its own
// (a /link, not a renewal, whose answer only replaces a click's message),
// the refused request as a final pairing, watched until its message shows
// the refusal: a post that Slack never got is posted again.
func refuse(tx *bolt.Tx, r pairing.Reservation, d *pairing.Decision) error {
	if r.Replaces == "" {
		p := d.RefusedPairing(r.Pairing, r.Now)
		if err := putJSON(tx.Bucket(bucketPairings), []byte(p.ID), p); err != nil {
			return err
		}
		if err := tx.Bucket(bucketWatched).Put([]byte(p.ID), nil); err != nil {
			return err
		}
		d.Pairing = p
	}
	if r.Refused.Kind == "" {
		return nil
	}
	e := r.Refused
	e.Outcome = d.Refused.Outcome()
	return appendAudit(tx, e)
}

// windowTimes returns the times of key's attempts in (now-period, now], oldest first.
func windowTimes(b *bolt.Bucket, key string, now time.Time, period time.Duration) []time.Time {
	prefix := append([]byte(key), 0)
	var times []time.Time
	c := b.Cursor()
	for k, _ := c.Seek(timeKey(key, now.Add(-period).Add(1))); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Next() {
		times = append(times, keyTime(k))
	}
	return times
}

// putAttempt stores a under phone and under user at the first nanosecond
// at or after t that is free in both windows (two requests can share a
// clock reading) and returns the time used, which becomes the pairing's
// RequestedAt: settleAttempt finds both entries by it.
func putAttempt(tx *bolt.Tx, phone, user string, t time.Time, a attempt) (time.Time, error) {
	phones, users := tx.Bucket(bucketPhoneAttempts), tx.Bucket(bucketUserAttempts)
	for phones.Get(timeKey(phone, t)) != nil || users.Get(timeKey(user, t)) != nil {
		t = t.Add(1)
	}
	if err := putJSON(phones, timeKey(phone, t), a); err != nil {
		return t, err
	}
	return t, putJSON(users, timeKey(user, t), a)
}

// Settle applies s and returns the updated pairing.
func (db *DB) Settle(ctx context.Context, s pairing.Settlement) (pairing.Pairing, error) {
	var p pairing.Pairing
	err := db.update(ctx, func(tx *bolt.Tx) error {
		var err error
		change := func(p *pairing.Pairing) error {
			was := *p
			if err := s.Change(p); err != nil {
				return err
			}
			// A request whose lease ran out, or whose instance slot names
			// another pairing, no longer holds its instance: its code never
			// goes live, or one instance would have two live codes.
			if was.State == pairing.StateRequesting && p.State == pairing.StateLive {
				held := tx.Bucket(bucketLive).Get([]byte(was.Instance))
				if !s.Now.Before(was.ExpiresAt) || string(held) != was.ID {
					return pairing.ErrInterrupted
				}
			}
			return nil
		}
		if p, err = updatePairing(tx, s.ID, s.Now, change); err != nil {
			return err
		}
		if err := settleAttempt(tx, p, s.Counted); err != nil {
			return err
		}
		if s.Replaced != "" {
			if err := settleReplaced(tx, s, p); err != nil {
				return err
			}
		}
		return appendAudit(tx, s.Audit)
	})
	if err != nil {
		return pairing.Pairing{}, fmt.Errorf("settle pairing %q: %w", s.ID, err)
	}
	return p, nil
}

// settleReplaced ends or reinstates the pairing a renewal replaced. The
// two share one message, and only one of them goes on being watched for
// it: the renewal, or a reinstated old pairing whose code still works.
func settleReplaced(tx *bolt.Tx, s pairing.Settlement, renewal pairing.Pairing) error {
	if s.Counted {
		ended, err := endPairing(tx, s.Replaced, pairing.StateSuperseded, s.Now, renewal)
		if err != nil || !ended {
			return err
		}
		return appendEndAudit(tx, s.ReplacedAudit, pairing.EventSuperseded, s.Now)
	}
	watched := tx.Bucket(bucketWatched)
	old, err := loadPairing(tx.Bucket(bucketPairings), []byte(s.Replaced))
	if errors.Is(err, pairing.ErrNotFound) {
		return watched.Delete([]byte(s.Replaced))
	}
	if err != nil {
		return err
	}
	if !old.Live(s.Now) {
		// The renewal's view replaces its last one. A code that ran out
		// while the renewal was on its way (New code clicked just past the
		// expiry, before a tick ended it) ends here as expired, code wiped
		// and audited: nothing watches it any more to end it later.
		// A pairing that ended on its own meanwhile keeps its final state;
		// endPairing stops watching it unless a window of its own (recorded
		// while the renewal was on its way) still shows the code.
		ended, err := endPairing(tx, old.ID, pairing.StateExpired, s.Now, renewal)
		if err != nil || !ended {
			return err
		}
		return appendEndAudit(tx, s.ReplacedAudit, pairing.EventExpired, s.Now)
	}
	live := tx.Bucket(bucketLive)
	if held := live.Get([]byte(old.Instance)); held != nil && string(held) != renewal.ID && string(held) != old.ID {
		// Someone else's pairing holds the instance now (the renewal's
		// lease ran out before it settled): its request voids the old code
		// on WhatsApp, and one instance never has two live codes. The old
		// pairing ends as superseded, code wiped and audited; left live
		// and unwatched, nothing would ever end it.
		ended, err := endPairing(tx, old.ID, pairing.StateSuperseded, s.Now, renewal)
		if err != nil || !ended {
			return err
		}
		return appendEndAudit(tx, s.ReplacedAudit, pairing.EventSuperseded, s.Now)
	}
	if s.ReplacedURL != "" {
		old.ClickURL, old.ClickIssued = s.ReplacedURL, s.Now
	}
	if err := putJSON(tx.Bucket(bucketPairings), []byte(old.ID), old); err != nil {
		return err
	}
	if err := watched.Delete([]byte(renewal.ID)); err != nil {
		return err
	}
	return live.Put([]byte(old.Instance), []byte(old.ID))
}

// Interrupt ends a request that is still Requesting as interrupted, in one
// transaction: the attempt keeps counting (request-code may have reached
// WhatsApp), a code it was renewing is void (superseded), the instance is
// released, the event is audited. The pairing stays watched until its
// message says what happened. It returns the pairing as stored and whether
// this call ended it (false when it settled first or its lease still runs).
func (db *DB) Interrupt(ctx context.Context, in pairing.Interruption) (pairing.Pairing, bool, error) {
	var (
		p     pairing.Pairing
		ended bool
	)
	err := db.update(ctx, func(tx *bolt.Tx) error {
		var err error
		if p, err = loadPairing(tx.Bucket(bucketPairings), []byte(in.ID)); err != nil {
			return err
		}
		if p.State != pairing.StateRequesting || (in.Lapsed && in.Now.Before(p.ExpiresAt)) {
			return nil
		}
		p, err = updatePairing(tx, in.ID, in.Now, func(p *pairing.Pairing) error { p.State = pairing.StateInterrupted; return nil })
		if err != nil {
			return err
		}
		if err := settleAttempt(tx, p, true); err != nil {
			return err
		}
		if p.Renews != "" {
			if err := settleReplaced(tx, pairing.Settlement{Replaced: p.Renews, Now: in.Now, Counted: true, ReplacedAudit: in.ReplacedAudit}, p); err != nil {
				return err
			}
		}
		ended = true
		return appendAudit(tx, in.Audit)
	})
	if err != nil {
		return pairing.Pairing{}, false, fmt.Errorf("interrupt pairing %q: %w", in.ID, err)
	}
	return p, ended, nil
}

// settleAttempt records on p's attempt the state p settled in, or, when
// the request did not count, removes the attempt from both windows.
func settleAttempt(tx *bolt.Tx, p pairing.Pairing, counted bool) error {
	for _, e := range []struct {
		bucket []byte
		key    string
	}{{bucketPhoneAttempts, p.AttemptKey()}, {bucketUserAttempts, p.RequestedBy}} {
		b := tx.Bucket(e.bucket)
		k := timeKey(e.key, p.RequestedAt)
		raw := b.Get(k)
		if raw == nil {
			continue
		}
		if !counted {
			if err := b.Delete(k); err != nil {
				return err
			}
			continue
		}
		var a attempt
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		a.Outcome = string(p.State)
		if err := putJSON(b, k, a); err != nil {
			return err
		}
	}
	return nil
}

// NextAllowed returns when phone may next get a code under limit (now if it
// may already) and how many requests are in the window.
func (db *DB) NextAllowed(ctx context.Context, phone string, now time.Time, limit pairing.Window) (time.Time, int, error) {
	var (
		at time.Time
		n  int
	)
	err := db.view(ctx, func(tx *bolt.Tx) error {
		times := windowTimes(tx.Bucket(bucketPhoneAttempts), phone, now, limit.Period)
		n = len(times)
		at = now
		if limit.Max > 0 && n >= limit.Max {
			at = times[n-limit.Max].Add(limit.Period)
		}
		return nil
	})
	return at, n, err
}

// Pairing returns the pairing with id.
func (db *DB) Pairing(ctx context.Context, id string) (pairing.Pairing, error) {
	var p pairing.Pairing
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var err error
		p, err = loadPairing(tx.Bucket(bucketPairings), []byte(id))
		return err
	})
	if err != nil {
		return pairing.Pairing{}, fmt.Errorf("pairing %q: %w", id, err)
	}
	return p, nil
}

// ReservedPairing returns the pairing a Reserve of p stored, or
// ErrNotFound. It reads in a write transaction: bbolt has one writer at a
// time, so a Reserve still in flight ends (committed or not) before the
// read.
func (db *DB) ReservedPairing(ctx context.Context, p pairing.Pairing) (pairing.Pairing, error) {
	var found pairing.Pairing
	err := db.update(ctx, func(tx *bolt.Tx) error {
		var err error
		found, err = loadPairing(tx.Bucket(bucketPairings), []byte(p.ID))
		return err
	})
	if err != nil {
		return pairing.Pairing{}, fmt.Errorf("pairing %q: %w", p.ID, err)
	}
	return found, nil
}

// Holder returns the pairing that holds instance at now (one live code per
// instance), or ErrNotFound when none does. Its code is left out.
func (db *DB) Holder(ctx context.Context, instance string, now time.Time) (pairing.Pairing, error) {
	var p pairing.Pairing
	err := db.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketLive).Get([]byte(instance))
		if id == nil {
			return pairing.ErrNotFound
		}
		var err error
		if p, err = loadPairing(tx.Bucket(bucketPairings), id); err != nil {
			return err
		}
		if !p.Live(now) {
			return pairing.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return pairing.Pairing{}, fmt.Errorf("holder of %q: %w", instance, err)
	}
	p.WipeCredentials()
	return p, nil
}

// UpdatePairing applies change to the stored pairing and saves it. When the
// pairing is no longer live afterwards, its code is wiped and its instance
// released: a code must not outlive its pairing anywhere, the store included.
func (db *DB) UpdatePairing(ctx context.Context, id string, now time.Time, change func(*pairing.Pairing) error) (pairing.Pairing, error) {
	var p pairing.Pairing
	err := db.update(ctx, func(tx *bolt.Tx) error {
		var err error
		p, err = updatePairing(tx, id, now, change)
		return err
	})
	if err != nil {
		// p is the pairing as change left it (unsaved), as documented.
		return p, fmt.Errorf("update pairing %q: %w", id, err)
	}
	return p, nil
}

// RecordModal stores m as pairing id's window and watches the pairing
// while m is open, in one transaction; a superseded pairing is refused
// (pairing.ErrReplaced) unless superseded is set.
func (db *DB) RecordModal(ctx context.Context, id string, m pairing.ModalSurface, now time.Time, superseded bool) (pairing.Pairing, error) {
	var p pairing.Pairing
	err := db.update(ctx, func(tx *bolt.Tx) error {
		var err error
		p, err = updatePairing(tx, id, now, func(p *pairing.Pairing) error { return p.SetModal(m, superseded) })
		if err != nil || !m.Open() {
			return err
		}
		return tx.Bucket(bucketWatched).Put([]byte(id), nil)
	})
	if err != nil {
		return p, fmt.Errorf("record window of pairing %q: %w", id, err)
	}
	return p, nil
}

func updatePairing(tx *bolt.Tx, id string, now time.Time, change func(*pairing.Pairing) error) (pairing.Pairing, error) {
	pairings := tx.Bucket(bucketPairings)
	p, err := loadPairing(pairings, []byte(id))
	if err != nil {
		return pairing.Pairing{}, err
	}
	if err := change(&p); err != nil {
		return p, err
	}
	if !p.Live(now) {
		if p.Final() && p.EndedAt.IsZero() {
			p.EndedAt = now
		}
		p.WipeCredentials()
		live := tx.Bucket(bucketLive)
		if string(live.Get([]byte(p.Instance))) == p.ID {
			if err := live.Delete([]byte(p.Instance)); err != nil {
				return p, err
			}
		}
	}
	return p, putJSON(pairings, []byte(id), p)
}

// endPairing gives a replaced pairing its final state and stops editing its
// message, which now shows the pairing that replaced it. A pairing that
// reached a final state meanwhile (it linked while New code was in flight,
// or a "New code" on an expired code) keeps it: a final state is never
// overwritten. It reports whether it ended the pairing. Its code window
// (see pairing.Pairing.KeepsWindow) goes to renewal when renewal carries it, else a
// superseded pairing stays watched until the window says it was replaced.
func endPairing(tx *bolt.Tx, id string, state pairing.State, now time.Time, renewal pairing.Pairing) (bool, error) {
	ended, own := false, false
	_, err := updatePairing(tx, id, now, func(p *pairing.Pairing) error {
		if !p.Final() {
			p.State, ended = state, true
		}
		own = p.KeepsWindow(renewal)
		return nil
	})
	if errors.Is(err, pairing.ErrNotFound) {
		return false, nil
	}
	if err != nil || own {
		return ended, err
	}
	return ended, tx.Bucket(bucketWatched).Delete([]byte(id))
}

// appendEndAudit appends e, the audit record of a pairing that ended as
// kind at now, unless e names no pairing.
func appendEndAudit(tx *bolt.Tx, e pairing.Event, kind pairing.EventKind, now time.Time) error {
	if e.Pairing == "" {
		return nil
	}
	e.Kind, e.Time = kind, now
	return appendAudit(tx, e)
}

// loadPairing reads pairing id from the pairings bucket.
func loadPairing(pairings *bolt.Bucket, id []byte) (pairing.Pairing, error) {
	raw := pairings.Get(id)
	if raw == nil {
		return pairing.Pairing{}, pairing.ErrNotFound
	}
	var p pairing.Pairing
	err := json.Unmarshal(raw, &p)
	return p, err
}

// WatchedPairings returns the pairings whose messages are still kept
// current: live ones, and ended ones whose final state is not shown yet.
func (db *DB) WatchedPairings(ctx context.Context) ([]pairing.Pairing, error) {
	var out []pairing.Pairing
	err := db.view(ctx, func(tx *bolt.Tx) error {
		pairings := tx.Bucket(bucketPairings)
		return tx.Bucket(bucketWatched).ForEach(func(id, _ []byte) error {
			if p, err := loadPairing(pairings, id); err == nil {
				out = append(out, p)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("watched pairings: %w", err)
	}
	return out, nil
}

// RecordView remembers which view the message shows now (key), so it is
// edited only when that changes; unwatch ends editing for good. Runs in
// Batch: concurrent edits share one fsync, and the function is idempotent.
func (db *DB) RecordView(ctx context.Context, id, key string, unwatch bool) error {
	err := db.batch(ctx, func(tx *bolt.Tx) error {
		if unwatch {
			if err := tx.Bucket(bucketWatched).Delete([]byte(id)); err != nil {
				return err
			}
		}
		pairings := tx.Bucket(bucketPairings)
		p, err := loadPairing(pairings, []byte(id))
		if errors.Is(err, pairing.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		p.LastView = key
		return putJSON(pairings, []byte(id), p)
	})
	if err != nil {
		return fmt.Errorf("record view of %q: %w", id, err)
	}
	return nil
}

// Restore writes pairings as they are, bypassing every limit, and watches
// the live and requesting ones. It is for restoring a backup and for
// seeding load tests; the bot itself only creates pairings through Reserve.
func (db *DB) Restore(ps []pairing.Pairing) error {
	err := db.update(context.Background(), func(tx *bolt.Tx) error {
		for _, p := range ps {
			if err := putJSON(tx.Bucket(bucketPairings), []byte(p.ID), p); err != nil {
				return err
			}
			if !p.Final() {
				if err := tx.Bucket(bucketWatched).Put([]byte(p.ID), nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore pairings: %w", err)
	}
	return nil
}

// WatchedCount is how many pairings' messages are being kept current.
func (db *DB) WatchedCount() int {
	var n int
	db.view(context.Background(), func(tx *bolt.Tx) error { n = tx.Bucket(bucketWatched).Stats().KeyN; return nil })
	return n
}
