package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/internal/procstat"
	"github.com/linkbot/linkbot/pairing/fakewawp"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
)

// wawpLatency is how long fake Wawp takes to answer each call.
const wawpLatency = 50 * time.Millisecond

// loadRun sends n /link commands (one instance, phone and user each) at
// the given rate (0 = all at once) and waits until every code is shown;
// on PostgreSQL when dbURL is set, else on the bbolt file.
func loadRun(b *testing.B, n int, rate float64, dbURL string) (acks, overhead []time.Duration) {
	h := newHarness(b)
	if dbURL != "" {
		h.env["LINKBOT_DATABASE_URL"] = dbURL
	}
	h.opts = serveOptions{} // the bot as it runs (the config file's 1 s ticks), not the tests' fast settings
	h.env["LINKBOT_LOG_FORMAT"] = "json"
	h.wawp.SetDelay(wawpLatency)
	for i := range n {
		h.wawp.AddInstance(fmt.Sprintf("LOAD%08d", i), "")
	}
	h.start()
	envs := make([]*fakeslack.Envelope, n)
	start := time.Now()
	for i := range n {
		if rate > 0 {
			// Pace by schedule, not by sleeping a fixed gap, so slow sends do not drift.
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			<-time.After(time.Until(due))
		}
		env, err := h.slack.SendCommand(fakeslack.Command{User: fmt.Sprintf("U%05d", i), Text: fmt.Sprintf("LOAD%08d +20101%07d", i, i)})
		if err != nil {
			b.Fatal(err)
		}
		envs[i] = env
	}
	delivered := func() int {
		c := 0
		for _, env := range envs {
			if len(h.slack.Thread(env.MessageID)) >= 2 { // the ack and the code below it
				c++
			}
		}
		return c
	}
	if !h.slack.WaitFor(60*time.Second, func() bool { return delivered() == n }) {
		b.Fatalf("only %d of %d codes delivered", delivered(), n)
	}

	for _, env := range envs {
		e := h.slack.Envelope(env.ID)
		acks = append(acks, e.AckedAt.Sub(e.SentAt))
		m := h.slack.Thread(env.MessageID)[1]
		if !strings.Contains(shown(m.Latest()), "Enter this code") {
			b.Fatalf("message %s: %s", m.ID, shown(m.Latest()))
		}
		// Two Wawp calls per command: session info, then request-code.
		overhead = append(overhead, m.Versions[0].At.Sub(e.AckedAt)-2*wawpLatency)
	}
	calls := h.wawp.Calls(fakewawp.RequestCode)
	phones := map[string]int{}
	for _, c := range calls {
		phones[c.Phone]++
	}
	if len(calls) != n || len(phones) != n {
		b.Errorf("request-code calls = %d for %d phones, want %d each once", len(calls), len(phones), n)
	}
	h.stop()
	return acks, overhead
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkLinkSteady: 1,000 /link at 200 per second against fake Wawp
// answering in 50 ms, on durable bbolt and on PostgreSQL (the local
// server; each command's dedupe key, claims and the leader lease on it).
// The ack comes before any database I/O on either, so its latency must
// not move. Run with -benchtime=1x.
func BenchmarkLinkSteady(b *testing.B) {
	b.Run("bbolt", func(b *testing.B) { benchmarkLinkSteady(b, "") })
	b.Run("postgres", func(b *testing.B) { benchmarkLinkSteady(b, pgtest.URL(b)) })
}

func benchmarkLinkSteady(b *testing.B, dbURL string) {
	var acks, overhead []time.Duration
	for b.Loop() {
		a, o := loadRun(b, 1000, 200, dbURL)
		acks, overhead = append(acks, a...), append(overhead, o...)
	}
	b.ReportMetric(ms(percentile(acks, 0.50)), "ack-p50-ms")
	b.ReportMetric(ms(percentile(acks, 0.99)), "ack-p99-ms")
	b.ReportMetric(ms(percentile(overhead, 0.50)), "overhead-p50-ms")
	b.ReportMetric(ms(percentile(overhead, 0.99)), "overhead-p99-ms")
	b.ReportMetric(procstat.PeakRSSMB(), "peak-RSS-MB")
}

// BenchmarkLinkBurst: 1,000 /link at once for 1,000 phones. Every ack
// must beat Slack's 3 s (fake Slack fails the run otherwise), every code
// must arrive, and each phone must have exactly one request.
func BenchmarkLinkBurst(b *testing.B) {
	var acks, overhead []time.Duration
	for b.Loop() {
		a, o := loadRun(b, 1000, 0, "")
		acks, overhead = append(acks, a...), append(overhead, o...)
	}
	b.ReportMetric(ms(percentile(acks, 0.99)), "ack-p99-ms")
	b.ReportMetric(ms(percentile(acks, 1)), "ack-max-ms")
	b.ReportMetric(ms(percentile(overhead, 1)), "overhead-max-ms")
	b.ReportMetric(procstat.PeakRSSMB(), "peak-RSS-MB")
}
