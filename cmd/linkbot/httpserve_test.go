package main

import (
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPStopWaitsForHandlers: stopping the listener or the audit socket
// returns only after every handler has returned, even one that outlasts
// the grace (its connection is closed, and it is waited for): serve closes
// the database after stopping them, and a handler reads the database.
// (Before, stop gave up at the grace and left the handler running.)
func TestHTTPStopWaitsForHandlers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var order atomic.Int32
	var handlerDone, stopDone int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release // whatever its context says
		handlerDone = order.Add(1)
	})
	stop := serveHTTP(ln, h, 20*time.Millisecond, "test server", slog.New(slog.DiscardHandler))
	clientErr := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
		clientErr <- err
	}()
	select {
	case <-entered:
	case <-time.After(waitLong):
		t.Fatal("the handler never ran")
	}
	stopped := make(chan struct{})
	go func() { stop(); stopDone = order.Add(1); close(stopped) }()
	// Let the handler go once stop has closed its connection (the client
	// sees it) or has returned.
	select {
	case <-clientErr:
	case <-stopped:
	case <-time.After(waitLong):
		t.Fatal("stop neither closed the connection nor returned")
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(waitLong):
		t.Fatal("stop did not return after the handler did")
	}
	if handlerDone == 0 || stopDone < handlerDone {
		t.Errorf("stop returned before the handler did")
	}
	// Stopped: a request that still reaches it is not served.
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err == nil {
		resp.Body.Close()
		t.Errorf("served after stop: %s", resp.Status)
	}
}
