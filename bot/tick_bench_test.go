package bot

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/linkbot/linkbot/internal/procstat"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
	"github.com/linkbot/linkbot/store/postgres"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// BenchmarkTick10k: one countdown tick over 10,000 live pairings on 100
// instances, fake Wawp answering each call in 20 ms, on each store: the
// bbolt file (durable) and PostgreSQL (the local server, a schema of its
// own; skipped without LINKBOT_TEST_DATABASE_URL outside CI). The
// pairings are seeded with the store's Restore: the bot itself allows one
// live code per instance, so 100 per instance only exists in a seeded
// store.
func BenchmarkTick10k(b *testing.B) {
	b.Run("bbolt", func(b *testing.B) {
		t0 := time.Now()
		r := newCountdownRig(b, t0)
		benchmarkTick(b, r, t0, r.db.Restore)
	})
	b.Run("postgres", func(b *testing.B) {
		db, err := postgres.Open(b.Context(), pgtest.URL(b), postgres.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		t0 := time.Now()
		r := newCountdownRigOn(b, t0, db)
		benchmarkTick(b, r, t0, func(ps []pairing.Pairing) error { return db.Restore(context.Background(), ps) })
	})
}

func benchmarkTick(b *testing.B, r *countdownRig, t0 time.Time, restore func([]pairing.Pairing) error) {
	const pairings, instances = 10_000, 100
	r.wawp.SetDelay(20 * time.Millisecond)
	var ps []pairing.Pairing
	for i := range pairings {
		inst := fmt.Sprintf("INST%08d", i%instances)
		if i < instances {
			r.wawp.AddInstance(inst, "")
		}
		ps = append(ps, pairing.Pairing{
			ID: fmt.Sprintf("p%05d", i), Instance: inst, InstanceName: inst, Phone: fmt.Sprintf("20101%07d", i),
			RequestedBy: "U1", State: pairing.StateLive, Code: "ABCD1234", IssuedAt: t0, RequestedAt: t0,
			ExpiresAt: t0.Add(time.Hour), LastView: "live:0", ResponseURL: "http://127.0.0.1:1/unused",
		})
	}
	if err := restore(ps); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	calls := len(r.wawp.Calls(fakewawp.SessionInfo))
	cpu := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		r.bot.Tick(ctx)
		r.bot.work.Wait()
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/float64(time.Millisecond), "cpu-ms/tick")
	b.ReportMetric(float64(len(r.wawp.Calls(fakewawp.SessionInfo))-calls)/float64(b.N), "wawp-calls/tick")
	b.ReportMetric(procstat.PeakRSSMB(), "peak-RSS-MB")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
