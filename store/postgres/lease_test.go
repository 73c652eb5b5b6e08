package postgres

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// TestSettleAfterLeaseLapsedOnDatabaseClock (issue 11:
// "one live code per instance is a constraint plus a lease whose expiry
// uses the database's clock, never a replica's"): replica A reserved an
// instance and was frozen (a VM paused; on resume its wall clock lags
// until NTP steps it) while request-code ran. Its lease lapsed on the
// database's clock and replica B was granted the instance. When A's code
// comes, Settle lets A's Change decide by A's clock (Start's Change
// compares its own now with ExpiresAt, read back from the database
// without a monotonic reading): A's pairing goes live beside B's, with a
// fresh lease, while the instance slot names B. Two live codes for one
// instance. Settle must not make live a request whose lease ran out on
// the database's clock (or whose slot another pairing holds).
func TestSettleAfterLeaseLapsedOnDatabaseClock(t *testing.T) {
	dbs := replicas(t, 2, Options{}) // the database's clock, as in production
	a, b := dbs[0], dbs[1]
	ctx := t.Context()

	aNow := time.Now()
	ra := reservation("a", "I1", "201112223333", "U1", aNow)
	ra.Hold = 50 * time.Millisecond
	granted(t, a, ra)

	// B asks until the database says A's lease ran out.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		rb := reservation(fmt.Sprint("b", i), "I1", "201009998888", "U2", time.Now())
		rb.PhoneLimit, rb.UserLimit = pairing.Window{Max: 1000, Period: time.Minute}, pairing.Window{Max: 1000, Period: time.Minute}
		d, err := b.Reserve(ctx, rb)
		if err != nil {
			t.Fatal(err)
		}
		if d.Refused == pairing.LimitNone {
			live := func(p *pairing.Pairing) error {
				p.State, p.Code, p.IssuedAt, p.ExpiresAt = pairing.StateLive, "BBBB2222", time.Now(), time.Now().Add(3*time.Minute)
				return nil
			}
			if _, err := b.Settle(ctx, pairing.Settlement{ID: d.Pairing.ID, Now: time.Now(), Counted: true, Change: live}); err != nil {
				t.Fatal(err)
			}
			break
		}
		select {
		case <-deadline:
			t.Fatal("B was never granted the instance")
		case <-time.After(20 * time.Millisecond):
		}
	}

	// A resumes; its clock lags: to it, only 10 ms have passed.
	issued := aNow.Add(10 * time.Millisecond)
	p, err := a.Settle(ctx, pairing.Settlement{ID: "a", Now: issued, Counted: true, Change: func(p *pairing.Pairing) error {
		// As pairing.Service.Start's Change.
		if p.State != pairing.StateRequesting || !issued.Before(p.ExpiresAt) {
			return pairing.ErrInterrupted
		}
		p.State, p.Code, p.IssuedAt, p.ExpiresAt = pairing.StateLive, "AAAA1111", issued, issued.Add(3*time.Minute)
		return nil
	}})
	if errors.Is(err, pairing.ErrInterrupted) || (err == nil && p.State != pairing.StateLive) {
		return // refused: fixed
	}
	if err != nil {
		t.Fatal(err)
	}
	holder, herr := b.Holder(ctx, "I1", time.Now())
	t.Errorf("A's request, whose lease lapsed on the database's clock while B was granted the instance, settled live with its code (holder of I1: %s, %v): two live codes for one instance", holder.ID, herr)
}
