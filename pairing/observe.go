package pairing

import (
	"context"
	"time"
)

// ObserveStorage is db with every call reported to observe when it
// returns: the method's name, how long it took and its error (nil on
// success; ErrUnavailable, errors.Is, when the database could not be
// reached). It is the hook for the database latency metrics of issue 11
// (wired where the service is made). observe runs on the caller's
// goroutine, after the call, and must be quick and safe for concurrent
// use. Every method is wrapped explicitly, so a method added to Storage
// does not compile here until it is observed too.
func ObserveStorage(db Storage, observe func(call string, took time.Duration, err error)) Storage {
	return &observed{db: db, observe: observe}
}

type observed struct {
	db      Storage
	observe func(string, time.Duration, error)
}

// report reports the call named call that began at start and returned
// *err; it is deferred, so it reads the error the call returned.
func (o *observed) report(call string, start time.Time, err *error) {
	o.observe(call, time.Since(start), *err)
}

func (o *observed) Reserve(ctx context.Context, r Reservation) (d Decision, err error) {
	defer o.report("Reserve", time.Now(), &err)
	return o.db.Reserve(ctx, r)
}

func (o *observed) ClaimCommand(ctx context.Context, d Dedupe, now time.Time) (first bool, err error) {
	defer o.report("ClaimCommand", time.Now(), &err)
	return o.db.ClaimCommand(ctx, d, now)
}

func (o *observed) Settle(ctx context.Context, s Settlement) (p Pairing, err error) {
	defer o.report("Settle", time.Now(), &err)
	return o.db.Settle(ctx, s)
}

func (o *observed) Interrupt(ctx context.Context, in Interruption) (p Pairing, ended bool, err error) {
	defer o.report("Interrupt", time.Now(), &err)
	return o.db.Interrupt(ctx, in)
}

func (o *observed) Pairing(ctx context.Context, id string) (p Pairing, err error) {
	defer o.report("Pairing", time.Now(), &err)
	return o.db.Pairing(ctx, id)
}

func (o *observed) ReservedPairing(ctx context.Context, p Pairing) (found Pairing, err error) {
	defer o.report("ReservedPairing", time.Now(), &err)
	return o.db.ReservedPairing(ctx, p)
}

func (o *observed) Holder(ctx context.Context, instance string, now time.Time) (p Pairing, err error) {
	defer o.report("Holder", time.Now(), &err)
	return o.db.Holder(ctx, instance, now)
}

func (o *observed) UpdatePairing(ctx context.Context, id string, now time.Time, change func(*Pairing) error) (p Pairing, err error) {
	defer o.report("UpdatePairing", time.Now(), &err)
	return o.db.UpdatePairing(ctx, id, now, change)
}

func (o *observed) WatchedPairings(ctx context.Context) (ps []Pairing, err error) {
	defer o.report("WatchedPairings", time.Now(), &err)
	return o.db.WatchedPairings(ctx)
}

func (o *observed) RecordModal(ctx context.Context, id string, m ModalSurface, now time.Time, superseded bool) (p Pairing, err error) {
	defer o.report("RecordModal", time.Now(), &err)
	return o.db.RecordModal(ctx, id, m, now, superseded)
}

func (o *observed) RecordView(ctx context.Context, id, key string, unwatch bool) (err error) {
	defer o.report("RecordView", time.Now(), &err)
	return o.db.RecordView(ctx, id, key, unwatch)
}

func (o *observed) ClaimView(ctx context.Context, c ViewClaim) (won bool, err error) {
	defer o.report("ClaimView", time.Now(), &err)
	return o.db.ClaimView(ctx, c)
}

func (o *observed) FinishView(ctx context.Context, id, surface, token string, shown Surface, unwatch bool) (done bool, err error) {
	defer o.report("FinishView", time.Now(), &err)
	return o.db.FinishView(ctx, id, surface, token, shown, unwatch)
}

func (o *observed) NextAllowed(ctx context.Context, phone string, now time.Time, limit Window) (at time.Time, n int, err error) {
	defer o.report("NextAllowed", time.Now(), &err)
	return o.db.NextAllowed(ctx, phone, now, limit)
}

func (o *observed) AppendAudit(ctx context.Context, e Event) (err error) {
	defer o.report("AppendAudit", time.Now(), &err)
	return o.db.AppendAudit(ctx, e)
}

func (o *observed) Audit(ctx context.Context, q AuditQuery) (events []Event, more bool, err error) {
	defer o.report("Audit", time.Now(), &err)
	return o.db.Audit(ctx, q)
}

func (o *observed) UseResponseURL(ctx context.Context, url string, issued, now time.Time, keep int) (err error) {
	defer o.report("UseResponseURL", time.Now(), &err)
	return o.db.UseResponseURL(ctx, url, issued, now, keep)
}

func (o *observed) RefundResponseURL(ctx context.Context, url string) (err error) {
	defer o.report("RefundResponseURL", time.Now(), &err)
	return o.db.RefundResponseURL(ctx, url)
}

func (o *observed) SetHold(ctx context.Context, key string, until time.Time) (err error) {
	defer o.report("SetHold", time.Now(), &err)
	return o.db.SetHold(ctx, key, until)
}

func (o *observed) Holds(ctx context.Context, now time.Time) (h map[string]time.Time, err error) {
	defer o.report("Holds", time.Now(), &err)
	return o.db.Holds(ctx, now)
}

func (o *observed) Lead(ctx context.Context, leader string, held Term, ttl time.Duration, now time.Time) (term Term, err error) {
	defer o.report("Lead", time.Now(), &err)
	return o.db.Lead(ctx, leader, held, ttl, now)
}

func (o *observed) TakeEdit(ctx context.Context, now time.Time, perMinute int) (taken bool, err error) {
	defer o.report("TakeEdit", time.Now(), &err)
	return o.db.TakeEdit(ctx, now, perMinute)
}

func (o *observed) Resign(ctx context.Context, term Term) (err error) {
	defer o.report("Resign", time.Now(), &err)
	return o.db.Resign(ctx, term)
}

func (o *observed) Prune(ctx context.Context, now time.Time, before PruneBefore) (st PruneStats, err error) {
	defer o.report("Prune", time.Now(), &err)
	return o.db.Prune(ctx, now, before)
}
