package postgres

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// BenchmarkReserveParallel measures check-and-record with 50 concurrent
// callers on the local server, in production mode (leases on the
// database's clock; the server's fsync on), each for its own phone, user
// and instance, each with the dedupe key of its command (as the bot
// sends them): the transaction claims the key, takes its three advisory
// locks, counts both windows, reads the instance's holder, and writes the
// attempt, the pairing, the slot and the audit event.
func BenchmarkReserveParallel(b *testing.B) {
	db := mustOpen(b, pgtest.URL(b), Options{})
	var n atomic.Int64
	b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), fmt.Sprint("2010", 10000000+i), fmt.Sprint("U", i), t0)
			r.Dedupe = pairing.Dedupe{Key: fmt.Sprint("envelope:", i), Until: t0.Add(time.Hour)}
			if d, err := db.Reserve(b.Context(), r); err != nil || d.Refused != pairing.LimitNone {
				b.Errorf("reserve %d: %+v %v", i, d, err)
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "reserves/s")
}

// BenchmarkReserveOnePhone: 50 concurrent callers for one phone (the
// locks serialise them; all but the first three are refused, and each
// refusal is stored and audited).
func BenchmarkReserveOnePhone(b *testing.B) {
	db := mustOpen(b, pgtest.URL(b), Options{})
	var n atomic.Int64
	b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := reservation(fmt.Sprint("p", i), fmt.Sprint("I", i), "201011112222", fmt.Sprint("U", i), t0)
			r.Dedupe = pairing.Dedupe{Key: fmt.Sprint("envelope:", i), Until: t0.Add(time.Hour)}
			if _, err := db.Reserve(b.Context(), r); err != nil {
				b.Errorf("reserve %d: %v", i, err)
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "reserves/s")
}

// BenchmarkWatchedPairings10k: the tick's storage read over 10,000 live
// pairings on 100 instances (the tick itself: -bench Tick10k ./bot).
func BenchmarkWatchedPairings10k(b *testing.B) {
	db := mustOpen(b, pgtest.URL(b), Options{})
	now := time.Now()
	var ps []pairing.Pairing
	for i := range 10_000 {
		inst := fmt.Sprintf("INST%08d", i%100)
		ps = append(ps, pairing.Pairing{
			ID: fmt.Sprintf("p%05d", i), Instance: inst, InstanceName: inst, Phone: fmt.Sprintf("20101%07d", i),
			RequestedBy: "U1", State: pairing.StateLive, Code: "ABCD1234", IssuedAt: now, RequestedAt: now,
			ExpiresAt: now.Add(time.Hour), LastView: "live:0", ResponseURL: "https://hooks.slack.test/unused",
		})
	}
	if err := db.Restore(b.Context(), ps); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if w, err := db.WatchedPairings(b.Context()); err != nil || len(w) != len(ps) {
			b.Fatalf("%d watched, %v", len(w), err)
		}
	}
}

// BenchmarkClaimEditParallel: the path of every Slack edit on several
// replicas (issue 11), 50 concurrent callers each on its own pairing:
// ClaimView (the claim and a response_url use, one transaction), then
// FinishView (the view shown, the claim ended, one transaction).
func BenchmarkClaimEditParallel(b *testing.B) {
	db := mustOpen(b, pgtest.URL(b), Options{})
	const pairings = 1000
	now := time.Now()
	var ps []pairing.Pairing
	for i := range pairings {
		ps = append(ps, pairing.Pairing{
			ID: fmt.Sprintf("p%05d", i), Instance: fmt.Sprintf("INST%08d", i), InstanceName: "x", Phone: fmt.Sprintf("20101%07d", i),
			RequestedBy: "U1", State: pairing.StateLive, Code: "ABCD1234", IssuedAt: now, RequestedAt: now,
			ExpiresAt: now.Add(time.Hour), LastView: "live:0", ResponseURL: "https://hooks.slack.test/unused",
		})
	}
	if err := db.Restore(b.Context(), ps); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			id := fmt.Sprintf("p%05d", i%pairings)
			// Each claim moves the view on by one: from whatever it shows.
			p, err := db.Pairing(b.Context(), id)
			if err != nil {
				b.Error(err)
				return
			}
			to := fmt.Sprint("live:", i)
			c := pairing.ViewClaim{ID: id, Surface: pairing.SurfaceEphemeral, From: p.LastView, To: to, Token: fmt.Sprint("t", i),
				Now: time.Now(), For: pairing.DefaultEditClaim, URL: fmt.Sprintf("https://hooks.slack.test/%d", i), Issued: time.Now()}
			won, err := db.ClaimView(b.Context(), c)
			if err != nil {
				b.Error(err)
				return
			}
			if !won {
				continue // another caller moved it first
			}
			if _, err := db.FinishView(b.Context(), id, c.Surface, c.Token, pairing.Surface{LastView: to}, false); err != nil {
				b.Error(err)
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "edits/s")
}
