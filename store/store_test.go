package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

var t0 = time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)

func openTest(t testing.TB) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "test.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func reservation(id, instance, phone, user string, now time.Time) pairing.Reservation {
	return pairing.Reservation{
		Pairing:    pairing.Pairing{ID: id, Instance: instance, Phone: phone, RequestedBy: user},
		PhoneLimit: pairing.Window{Max: 3, Period: 15 * time.Minute},
		UserLimit:  pairing.Window{Max: 5, Period: time.Hour},
		Now:        now, Hold: 30 * time.Second,
	}
}

// end marks a pairing final, and its final view shown, so its instance is
// free again and nothing watches it.
func end(t *testing.T, db *DB, id string, now time.Time) {
	t.Helper()
	if _, err := db.UpdatePairing(id, now, func(p *pairing.Pairing) error { p.State = pairing.StateExpired; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordView(id, string(pairing.StateExpired), true); err != nil {
		t.Fatal(err)
	}
}

func TestReserveWindows(t *testing.T) {
	db := openTest(t)
	for i := range 3 {
		now := t0.Add(time.Duration(i) * time.Minute)
		d, err := db.Reserve(reservation(fmt.Sprint("p", i), "I1", "201112223333", "U1", now))
		if err != nil || d.Refused != pairing.LimitNone || d.Count != i+1 {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
		end(t, db, fmt.Sprint("p", i), now)
	}
	d, _ := db.Reserve(reservation("p3", "I1", "201112223333", "U1", t0.Add(5*time.Minute)))
	if d.Refused != pairing.LimitPhone || !d.RetryAt.Equal(t0.Add(15*time.Minute)) || d.Count != 3 {
		t.Errorf("4th request: %+v, want phone refusal until 14:15", d)
	}
	// The window slides: at 14:15 the first request leaves it.
	d, _ = db.Reserve(reservation("p4", "I1", "201112223333", "U1", t0.Add(15*time.Minute)))
	if d.Refused != pairing.LimitNone {
		t.Errorf("after the window: %+v, want granted", d)
	}
	// Another user for another phone is unaffected; the same user soon hits theirs.
	end(t, db, "p4", t0.Add(15*time.Minute))
	r := reservation("p5", "I1", "447400123456", "U1", t0.Add(16*time.Minute))
	r.UserLimit.Max = 4
	d, _ = db.Reserve(r)
	if d.Refused != pairing.LimitUser {
		t.Errorf("6th request by U1 in an hour: %+v, want user refusal", d)
	}
}

func TestReserveInstanceHeld(t *testing.T) {
	db := openTest(t)
	if d, _ := db.Reserve(reservation("a", "I1", "201112223333", "U1", t0)); d.Refused != pairing.LimitNone {
		t.Fatal(d)
	}
	d, _ := db.Reserve(reservation("b", "I1", "201009998888", "U2", t0.Add(time.Second)))
	if d.Refused != pairing.LimitInstance || d.Holder.RequestedBy != "U1" || d.Holder.Code != "" {
		t.Errorf("second request on a held instance: %+v", d)
	}
	// A hold that outlived its lease (a crash mid-request) frees the instance.
	if d, _ := db.Reserve(reservation("c", "I1", "201009998888", "U2", t0.Add(time.Minute))); d.Refused != pairing.LimitNone {
		t.Errorf("after the hold expired: %+v", d)
	}
	// The holder's own New code replaces it.
	r := reservation("d", "I1", "201009998888", "U2", t0.Add(61*time.Second))
	r.Replaces = "c"
	if d, _ := db.Reserve(r); d.Refused != pairing.LimitNone {
		t.Errorf("replacing own pairing: %+v", d)
	}
	// WhatsApp saw the new request: the old code is void.
	db.Settle(pairing.Settlement{ID: "d", Now: t0.Add(61 * time.Second), Change: func(p *pairing.Pairing) error { p.State = pairing.StateLive; return nil }, Counted: true, Replaced: "c"})
	if p, _ := db.Pairing("c"); p.State != pairing.StateSuperseded {
		t.Errorf("replaced pairing state = %s", p.State)
	}
}

func TestReserveRaceNeverExceedsLimit(t *testing.T) {
	db := openTest(t)
	var wg sync.WaitGroup
	granted := make(chan string, 50)
	for i := range 50 {
		wg.Go(func() {
			d, err := db.Reserve(reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), "201112223333", fmt.Sprint("U", i), t0))
			if err != nil {
				t.Error(err)
			}
			if d.Refused == pairing.LimitNone {
				granted <- fmt.Sprint("p", i)
			}
		})
	}
	wg.Wait()
	close(granted)
	if n := len(granted); n != 3 {
		t.Errorf("%d of 50 racing requests granted, want exactly 3", n)
	}
	if n, _ := db.AttemptCount("201112223333", t0, 15*time.Minute); n != 3 {
		t.Errorf("attempts recorded = %d, want 3", n)
	}
}

func TestFinishAttemptUncounted(t *testing.T) {
	db := openTest(t)
	db.Reserve(reservation("a", "I1", "201112223333", "U1", t0))
	if _, err := db.Settle(pairing.Settlement{ID: "a", Now: t0, Change: func(*pairing.Pairing) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if n, _ := db.AttemptCount("201112223333", t0, time.Hour); n != 0 {
		t.Errorf("uncounted attempt still counts: %d", n)
	}
}

func TestCodeWipedWhenPairingEnds(t *testing.T) {
	db := openTest(t)
	db.Reserve(reservation("a", "I1", "201112223333", "U1", t0))
	db.UpdatePairing("a", t0, func(p *pairing.Pairing) error {
		p.State, p.Code, p.ExpiresAt = pairing.StateLive, "ABCD1234", t0.Add(time.Minute)
		return nil
	})
	p, _ := db.UpdatePairing("a", t0, func(p *pairing.Pairing) error { p.State = pairing.StateCancelled; return nil })
	if p.Code != "" {
		t.Errorf("code kept after the pairing ended: %+v", p)
	}
	if d, _ := db.Reserve(reservation("b", "I1", "201009998888", "U2", t0)); d.Refused != pairing.LimitNone {
		t.Errorf("ended pairing still holds its instance: %+v", d)
	}
}

func TestResponseURLBudget(t *testing.T) {
	db := openTest(t)
	const u = "https://hooks.slack.test/r/1"
	for i := range 4 {
		if err := db.UseResponseURL(u, t0, t0, 1); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
	}
	if err := db.UseResponseURL(u, t0, t0, 1); !errors.Is(err, pairing.ErrBudgetSpent) {
		t.Errorf("5th use while keeping one: %v, want pairing.ErrBudgetSpent", err)
	}
	if err := db.UseResponseURL(u, t0, t0, 0); err != nil {
		t.Errorf("final use: %v", err)
	}
	if err := db.UseResponseURL(u, t0, t0, 0); !errors.Is(err, pairing.ErrBudgetSpent) {
		t.Errorf("6th use: %v, want pairing.ErrBudgetSpent", err)
	}
	db.RefundResponseURL(u)
	if left, _ := db.ResponseURLUsesLeft(u, t0); left != 1 {
		t.Errorf("after refund: %d left, want 1", left)
	}
	if err := db.UseResponseURL("https://hooks.slack.test/r/2", t0, t0.Add(31*time.Minute), 0); !errors.Is(err, pairing.ErrBudgetSpent) {
		t.Errorf("use after 30 min: %v, want pairing.ErrBudgetSpent", err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(path, Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("second open: %v, want ErrLocked", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestAuditNeverStoresCode(t *testing.T) {
	db := openTest(t)
	db.AppendAudit(pairing.Event{Time: t0, Kind: "code_issued", User: "U1", Phone: "+20 111 ••• 3333"})
	db.AppendAudit(pairing.Event{Time: t0.Add(time.Second), Kind: "linked", User: "U1"})
	got, err := db.AuditEvents(time.Time{}, nil)
	if err != nil || len(got) != 2 || got[0].Kind != "code_issued" || got[1].Kind != "linked" {
		t.Errorf("AuditEvents = %+v, %v", got, err)
	}
}

func TestPruneKeepsFileBounded(t *testing.T) {
	db := openTest(t)
	var sizes []int64
	now := t0
	for cycle := range 6 {
		for i := range 200 {
			r := reservation(fmt.Sprintf("c%d-%d", cycle, i), fmt.Sprintf("I%d", i), fmt.Sprintf("2010%08d", i), fmt.Sprintf("U%d", i), now)
			if d, err := db.Reserve(r); err != nil || d.Refused != pairing.LimitNone {
				t.Fatalf("cycle %d: %+v %v", cycle, d, err)
			}
			db.UseResponseURL(fmt.Sprintf("https://r/%d-%d", cycle, i), now, now, 0)
			end(t, db, r.Pairing.ID, now)
		}
		now = now.Add(2 * time.Hour)
		st, err := db.Prune(now, pairing.PruneBefore{Attempts: now.Add(-time.Hour), Pairings: now.Add(-time.Hour)})
		if err != nil || st.Pairings != 200 || st.Attempts != 400 || st.ResponseURLs != 200 {
			t.Fatalf("cycle %d: pruned %+v, %v; want 200 pairings, 400 attempts, 200 urls", cycle, st, err)
		}
		sizes = append(sizes, db.FileSize())
	}
	if last, early := sizes[len(sizes)-1], sizes[2]; last > early*3/2 {
		t.Errorf("file grows although pruned: sizes %v", sizes)
	}
}

func TestPruneKeepsWatchedAndLive(t *testing.T) {
	db := openTest(t)
	db.Reserve(reservation("live", "I1", "201112223333", "U1", t0))
	db.Reserve(reservation("watched", "I2", "201009998888", "U1", t0))
	db.Settle(pairing.Settlement{ID: "watched", Now: t0, Change: func(p *pairing.Pairing) error { p.State = pairing.StateExpired; return nil }})
	if _, err := db.Prune(t0.Add(48*time.Hour), pairing.PruneBefore{Attempts: t0, Pairings: t0.Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"watched"} {
		if _, err := db.Pairing(id); err != nil {
			t.Errorf("pruned %s: %v", id, err)
		}
	}
}

// A watched pairing whose record does not parse can never be advanced or
// shown: pruning drops it (and its record), and says how many it dropped,
// instead of keeping it watched for good.
func TestPruneDropsDamagedWatchedPairing(t *testing.T) {
	db := openTest(t)
	db.bolt.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketPairings).Put([]byte("bad"), []byte(`{"state":`))
		return tx.Bucket(bucketWatched).Put([]byte("bad"), nil)
	})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	st, err := db.Prune(now, pairing.PruneBefore{Attempts: now, Pairings: now})
	if err != nil {
		t.Fatal(err)
	}
	if n := db.WatchedCount(); n != 0 {
		t.Errorf("after pruning, %d watched entries for a pairing nobody can read", n)
	}
	if st.DamagedPairings != 1 || st.Pairings != 1 {
		t.Errorf("prune stats %+v, want the damaged pairing counted and removed", st)
	}
}

func TestPruneAuditRetention(t *testing.T) {
	db := openTest(t)
	for i := range 5 {
		db.AppendAudit(pairing.Event{Time: t0.Add(time.Duration(i) * 24 * time.Hour), Kind: "requested", User: "U1"})
	}
	st, err := db.Prune(t0.Add(10*24*time.Hour), pairing.PruneBefore{AuditEvents: t0.Add(3 * 24 * time.Hour)})
	if err != nil || st.AuditEvents != 3 {
		t.Fatalf("pruned %+v, %v; want 3 audit events", st, err)
	}
	left, _ := db.AuditEvents(time.Time{}, nil)
	if len(left) != 2 || !left[0].Time.Equal(t0.Add(3*24*time.Hour)) {
		t.Errorf("left %+v", left)
	}
	// No retention keeps everything.
	if st, _ := db.Prune(t0.Add(100*24*time.Hour), pairing.PruneBefore{}); st.AuditEvents != 0 {
		t.Errorf("pruned audit without a retention: %+v", st)
	}
}

// Every reserved pairing is watched from the moment it is reserved: if the
// process dies before the request settles, the countdown still finds it.
func TestReserveWatches(t *testing.T) {
	db := openTest(t)
	if d, err := db.Reserve(reservation("a", "I1", "201112223333", "U1", t0)); err != nil || d.Refused != pairing.LimitNone {
		t.Fatal(d, err)
	}
	w, err := db.WatchedPairings()
	if err != nil || len(w) != 1 || w[0].ID != "a" || w[0].State != pairing.StateRequesting {
		t.Errorf("watched = %+v, %v; want the requesting pairing", w, err)
	}
}

// A request whose lease runs out unsettled ends as interrupted: it still
// counts (request-code may have reached WhatsApp), its instance is free,
// the event is audited, and it stays watched until its message says so.
// Before the lease runs out, or once settled, nothing changes.
func TestInterruptWhenLeaseRunsOut(t *testing.T) {
	db := openTest(t)
	db.Reserve(reservation("a", "I1", "201112223333", "U1", t0)) // lease: 30 s
	ev := pairing.Event{Time: t0.Add(30 * time.Second), Kind: "interrupted", User: "U1", Pairing: "a"}
	p, ended, err := db.Interrupt(pairing.Interruption{ID: "a", Now: t0.Add(29 * time.Second), Lapsed: true, Audit: ev})
	if err != nil || ended || p.State != pairing.StateRequesting {
		t.Fatalf("within the lease: %+v ended=%v %v; want it untouched", p, ended, err)
	}
	p, ended, err = db.Interrupt(pairing.Interruption{ID: "a", Now: t0.Add(30 * time.Second), Lapsed: true, Audit: ev})
	if err != nil || !ended || p.State != pairing.StateInterrupted || !p.EndedAt.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("lease run out: %+v ended=%v %v; want interrupted", p, ended, err)
	}
	if n, _ := db.AttemptCount("201112223333", t0.Add(time.Minute), 15*time.Minute); n != 1 {
		t.Errorf("interrupted attempt counts %d, want 1", n)
	}
	if d, _ := db.Reserve(reservation("b", "I1", "201009998888", "U2", t0.Add(31*time.Second))); d.Refused != pairing.LimitNone {
		t.Errorf("instance still held after the interruption: %+v", d)
	}
	if w, _ := db.WatchedPairings(); len(w) != 2 {
		t.Errorf("watched %d pairings, want the interrupted one (not yet shown) and the new one", len(w))
	}
	events, _ := db.AuditEvents(time.Time{}, func(e pairing.Event) bool { return e.Kind == "interrupted" })
	if len(events) != 1 || events[0].Pairing != "a" {
		t.Errorf("interrupted events = %+v", events)
	}
	// Settled requests are never interrupted.
	db.Settle(pairing.Settlement{ID: "b", Now: t0.Add(32 * time.Second), Counted: true, Change: func(p *pairing.Pairing) error {
		p.State, p.ExpiresAt = pairing.StateLive, t0.Add(3*time.Minute)
		return nil
	}})
	if p, ended, _ := db.Interrupt(pairing.Interruption{ID: "b", Now: t0.Add(2 * time.Minute), Audit: ev}); ended || p.State != pairing.StateLive {
		t.Errorf("a settled pairing was interrupted: %+v", p)
	}
}

// A New code whose request is interrupted voids the code it replaced:
// WhatsApp may have seen the new request.
func TestInterruptedRenewalSupersedes(t *testing.T) {
	db := openTest(t)
	db.Reserve(reservation("a", "I1", "201112223333", "U1", t0))
	db.Settle(pairing.Settlement{ID: "a", Now: t0, Counted: true, Change: func(p *pairing.Pairing) error {
		p.State, p.Code, p.ExpiresAt = pairing.StateLive, "ABCD1234", t0.Add(150*time.Second)
		return nil
	}})
	r := reservation("b", "I1", "201112223333", "U1", t0.Add(10*time.Second))
	r.Replaces, r.Pairing.Renews, r.Pairing.Message = "a", "a", "a"
	if d, _ := db.Reserve(r); d.Refused != pairing.LimitNone {
		t.Fatal(d)
	}
	if _, ended, err := db.Interrupt(pairing.Interruption{ID: "b", Now: t0.Add(40 * time.Second), Lapsed: true}); !ended || err != nil {
		t.Fatal(ended, err)
	}
	if a, _ := db.Pairing("a"); a.State != pairing.StateSuperseded || a.Code != "" {
		t.Errorf("replaced pairing: %+v, want superseded without its code", a)
	}
	if w, _ := db.WatchedPairings(); len(w) != 1 || w[0].ID != "b" {
		t.Errorf("watched %+v, want only the interrupted renewal", w)
	}
}

// A live slot pointing at a pairing that is no longer live (a request from
// before watching began at reserve time, never settled) is freed by
// pruning, and the pairing itself is then pruned like any ended one.
func TestPruneFreesDeadLiveSlots(t *testing.T) {
	db := openTest(t)
	db.Reserve(reservation("a", "I1", "201112223333", "U1", t0))
	db.RecordView("a", "", true) // as an old database has it: not watched
	st, err := db.Prune(t0.Add(48*time.Hour), pairing.PruneBefore{Attempts: t0, Pairings: t0.Add(24 * time.Hour)})
	if err != nil || st.Pairings != 1 {
		t.Errorf("pruned %+v, %v; want the dead request", st, err)
	}
	if _, err := db.Pairing("a"); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("dead request kept: %v", err)
	}
}

// Opening a database watches requests left unwatched by an older version,
// so their messages reach a final state too.
func TestOpenWatchesUnsettledRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Reserve(reservation("a", "I1", "201112223333", "U1", t0))
	db.RecordView("a", "", true)
	db.Close()
	db, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if w, _ := db.WatchedPairings(); len(w) != 1 || w[0].ID != "a" {
		t.Errorf("watched %+v after reopening, want the unsettled request", w)
	}
}

// A /link refused by a limit is kept as a final, watched pairing, so its
// message can be drawn again; a renewal's refusal (it only answers a click
// on a message that still shows a working code) stores nothing.
func TestRefusalKeptUntilShown(t *testing.T) {
	db := openTest(t)
	db.Reserve(reservation("holder", "I1", "201112223333", "U1", t0))
	d, err := db.Reserve(reservation("refused", "I1", "201009998888", "U2", t0.Add(time.Second)))
	if err != nil || d.Refused != pairing.LimitInstance {
		t.Fatal(d, err)
	}
	p, err := db.Pairing("refused")
	if err != nil || p.State != pairing.StateRefused || p.RefusedBy() != pairing.LimitInstance || p.HeldBy != "holder" || !p.RetryAt.Equal(t0.Add(30*time.Second)) || d.Pairing.ID != "refused" {
		t.Errorf("refused pairing = %+v, %v", p, err)
	}
	if w, _ := db.WatchedPairings(); len(w) != 2 {
		t.Errorf("watching %d pairings, want the holder and the refusal", len(w))
	}
	r := reservation("renewal", "I1", "201009998888", "U2", t0.Add(2*time.Second))
	r.Replaces = "refused"
	if d, _ := db.Reserve(r); d.Refused != pairing.LimitInstance || d.Pairing.ID != "" {
		t.Errorf("renewal refusal: %+v", d)
	}
	if _, err := db.Pairing("renewal"); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("a renewal's refusal was stored: %v", err)
	}
}

// A final state is one a pairing never leaves: a renewal that settles as
// counted ends the pairing it replaced as superseded only if that one has
// not ended meanwhile. A pairing that linked while New code was in flight
// stays linked.
func TestSupersedeKeepsFinalState(t *testing.T) {
	db := openTest(t)
	now := t0
	a := pairing.Pairing{ID: "a", Instance: "INST00000001", Phone: "201112223333", RequestedBy: "U1", State: pairing.StateLive, Code: "ABCD1234",
		IssuedAt: now, ExpiresAt: now.Add(150 * time.Second)}
	if err := db.Restore([]pairing.Pairing{a}); err != nil {
		t.Fatal(err)
	}
	d, err := db.Reserve(pairing.Reservation{Pairing: pairing.Pairing{ID: "b", Instance: a.Instance, Phone: a.Phone, RequestedBy: "U1", Renews: "a"},
		Replaces: "a", PhoneLimit: pairing.Window{Max: 3, Period: time.Hour}, UserLimit: pairing.Window{Max: 3, Period: time.Hour}, Now: now, Hold: time.Minute})
	if err != nil || d.Refused != pairing.LimitNone {
		t.Fatal(d, err)
	}
	// The phone enters A's code while B's request is on its way.
	if _, err := db.UpdatePairing("a", now.Add(time.Second), func(p *pairing.Pairing) error { p.State = pairing.StateLinked; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Settle(pairing.Settlement{ID: "b", Now: now.Add(2 * time.Second), Counted: true, Replaced: "a",
		Change: func(p *pairing.Pairing) error { p.State = pairing.StateLive; return nil }}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Pairing("a"); got.State != pairing.StateLinked {
		t.Errorf("pairing a linked, then was rewritten to %q", got.State)
	}
}
