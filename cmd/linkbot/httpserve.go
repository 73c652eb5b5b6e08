package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// httpStopGrace is how long stopping an HTTP server waits for the requests
// being served before it closes their connections.
const httpStopGrace = 5 * time.Second

// serveHTTP serves h on ln (what names the server in the log) until stop
// is called. stop takes no more requests, waits up to grace for those
// being served, then closes their connections (which ends their
// contexts), and returns only once every handler has returned: a handler
// never outlives what it uses, such as the database, which serve closes
// after stopping its servers.
func serveHTTP(ln net.Listener, h http.Handler, grace time.Duration, what string, log *slog.Logger) (stop func()) {
	var active handlers
	srv := &http.Server{Handler: active.track(h), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what, "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn(what+": requests still running at shutdown; closing their connections", "grace", grace)
			srv.Close()
		}
		active.wait()
	}
}

// handlers counts the handlers running, so the server's stop can wait for
// them: http.Server.Shutdown stops waiting at its deadline, and Close does
// not wait at all.
type handlers struct {
	mu      sync.Mutex
	stopped bool
	running sync.WaitGroup
}

// track wraps h so that wait waits for it; after wait it answers 503.
func (a *handlers) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		if a.stopped {
			a.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		a.running.Add(1) // before wait reads stopped: Add happens before Wait
		a.mu.Unlock()
		defer a.running.Done()
		h.ServeHTTP(w, r)
	})
}

// wait stops new handlers and waits for the running ones to return.
func (a *handlers) wait() {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	a.running.Wait()
}
