package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/linkbot/linkbot/pairing"
)

// readyTimeout bounds /readyz's database ping: a probe must answer well
// within an orchestrator's usual 1 s timeout.
const readyTimeout = 800 * time.Millisecond

// metrics are linkbot's Prometheus series; it implements bot.Observer and
// wawp.Observer.
type metrics struct {
	reg        *prometheus.Registry
	commands   *prometheus.CounterVec
	wawpCalls  *prometheus.CounterVec
	wawpTime   *prometheus.HistogramVec
	ack        prometheus.Histogram
	urlUses    prometheus.Counter
	reconnects prometheus.Counter
	refusals   *prometheus.CounterVec
	connected  atomic.Bool
	everUp     atomic.Bool

	// Issue 11: leadership of the ticker and the database's latency.
	leading   atomic.Bool
	termMu    sync.Mutex
	term      pairing.Term // the last term seen leading
	elections prometheus.Counter
	dbTime    *prometheus.HistogramVec
	// leadership, once set (watchLeadership), answers linkbot_leader.
	leadership atomic.Pointer[func() (pairing.Term, bool)]
}

// watchLeadership makes linkbot_leader read f (the service's Leadership)
// at each scrape.
func (m *metrics) watchLeadership(f func() (pairing.Term, bool)) { m.leadership.Store(&f) }

// newMetrics makes the series; watched counts the pairings whose messages
// are kept current (the store's WatchedCount).
func newMetrics(watched func() int) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "linkbot_commands_total", Help: "Slash commands by outcome (code_issued, limit_phone, bad_phone, access_denied, …).",
		}, []string{"outcome"}),
		wawpCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "linkbot_wawp_calls_total", Help: "Wawp API calls by endpoint and HTTP status (or timeout/unreachable).",
		}, []string{"endpoint", "status"}),
		wawpTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "linkbot_wawp_call_seconds", Help: "Wawp API call latency.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"endpoint"}),
		ack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "linkbot_ack_seconds", Help: "Time from receiving a slash command to acking it (Slack allows 3 s).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 3},
		}),
		urlUses:    prometheus.NewCounter(prometheus.CounterOpts{Name: "linkbot_response_url_uses_total", Help: "Posts through Slack response_urls (each URL allows 5)."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "linkbot_socket_reconnects_total", Help: "Socket Mode reconnections after the first connection."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "linkbot_limit_refusals_total", Help: "Code requests refused by a limit (phone, user, instance) before reaching Wawp.",
		}, []string{"limit"}),
	}
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "linkbot_live_pairings", Help: "Pairings whose messages are being kept current."},
		func() float64 { return float64(watched()) })
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "linkbot_socket_connected", Help: "1 while the Socket Mode connection is up."},
		func() float64 {
			if m.connected.Load() {
				return 1
			}
			return 0
		})
	m.elections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "linkbot_leader_terms_total", Help: "Terms this replica began leading the ticker (elections it won; a jump on several replicas means leadership is flapping).",
	})
	m.dbTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "linkbot_db_call_seconds", Help: "Storage call latency by call and result (ok, unavailable, error).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"call", "result"})
	leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "linkbot_leader", Help: "1 while this replica leads the ticker (only the leader ticks)."},
		func() float64 {
			leading := m.leading.Load()
			if f := m.leadership.Load(); f != nil {
				_, leading = (*f)() // as of now: a lease not renewed in time ends without a tick
			}
			if leading {
				return 1
			}
			return 0
		})
	m.reg.MustRegister(m.elections, m.dbTime, leader)
	m.reg.MustRegister(m.commands, m.wawpCalls, m.wawpTime, m.ack, m.urlUses, m.reconnects, m.refusals, live, up,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) Command(outcome pairing.Outcome) {
	m.commands.WithLabelValues(string(outcome)).Inc()
	if limit := outcome.Limit(); limit != pairing.LimitNone {
		m.refusals.WithLabelValues(string(limit)).Inc()
	}
}
func (m *metrics) Ack(d time.Duration) { m.ack.Observe(d.Seconds()) }
func (m *metrics) ResponseURLUse()     { m.urlUses.Inc() }
func (m *metrics) Connected(up bool) {
	if up && !m.connected.Load() && m.everUp.Swap(true) {
		m.reconnects.Inc()
	}
	m.connected.Store(up)
}

// Leader implements bot.LeaderObserver: a term it had not seen leading
// counts as an election won.
func (m *metrics) Leader(leading bool, term pairing.Term) {
	m.leading.Store(leading)
	if !leading || term.IsZero() {
		return
	}
	m.termMu.Lock()
	defer m.termMu.Unlock()
	if !term.Equal(m.term) {
		m.term = term
		m.elections.Inc()
	}
}

// StorageCall is pairing.ObserveStorage's hook: every storage call's
// latency, by call and result.
func (m *metrics) StorageCall(call string, took time.Duration, err error) {
	result := "ok"
	switch {
	case errors.Is(err, pairing.ErrUnavailable):
		result = "unavailable"
	case err != nil:
		result = "error"
	}
	m.dbTime.WithLabelValues(call, result).Observe(took.Seconds())
}

func (m *metrics) WawpCall(endpoint, status string, d time.Duration) {
	m.wawpCalls.WithLabelValues(endpoint, status).Inc()
	m.wawpTime.WithLabelValues(endpoint).Observe(d.Seconds())
}

// listen serves /healthz, /readyz and /metrics on addr until the returned
// stop is called (see serveHTTP). It
// never serves the audit log: that goes only over the unix socket beside
// the database (auditsock.go), so the listener can be published for
// Prometheus without exposing who linked which phone.
//
// /readyz answers 503 while the Slack socket is down or ready (the
// database's ping, nil for a bbolt file) fails: a replica that cannot
// reach its database answers every command with "try again", and a
// load balancer or orchestrator should know.
func listen(addr string, m *metrics, ready func(context.Context) error, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !m.connected.Load() {
			http.Error(w, "slack socket not connected", http.StatusServiceUnavailable)
			return
		}
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			err := ready(ctx)
			cancel()
			if err != nil {
				log.Warn("readyz: the database cannot be reached", "err", err)
				http.Error(w, "database unreachable", http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	stop := serveHTTP(ln, mux, httpStopGrace, "http listener", log)
	log.Info("http listener up", "addr", ln.Addr().String(), "paths", "/healthz /readyz /metrics")
	return stop, nil
}
