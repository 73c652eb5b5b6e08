package main

import (
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// withWawpTimeout is the config file with another wawp_timeout.
func withWawpTimeout(d string) string {
	return strings.Replace(baseConfig, "wawp_timeout: 500ms", "wawp_timeout: "+d, 1)
}

// SIGTERM while Wawp is slow: a request can take twice wawp_timeout (the
// session check, then request-code). The shutdown waits for it, so the
// agent gets the request's real outcome instead of a message stuck at
// "Requesting…". (That the wait covers a request's lease, which is
// longer than any fixed grace, is TestShutdownInterruptsAStuckRequest's in
// bot.)
func TestShutdownWaitsForASlowRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	writeFile(t, h.configPath, withWawpTimeout("600ms"))
	// The session check answers after 300 ms, request-code never: the
	// request takes 900 ms (300 ms + the 600 ms timeout), all of it after
	// the shutdown began.
	h.wawp.SetDelay(300 * time.Millisecond)
	h.wawp.FailNext(instanceEG, fakewawp.RequestCode, fakewawp.Failure{Hang: true})
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Requesting")
	h.cancel() // SIGTERM
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("run did not return after cancel")
	}
	h.cancel = nil
	if got := shown(h.latest(env.MessageID)); !strings.Contains(got, "Wawp did not answer in time") {
		t.Errorf("after shutdown the message shows\n%s\nwant Wawp's timeout\nlogs:\n%s", got, h.logs.String())
	}
}

// kill -9 mid-request: the database file holds a request that never
// settled (here: a copy of the file taken while Wawp had the request, and
// Slack never saw the dead process's answer). The restarted bot ends it as
// interrupted when its lease runs out, says so in the message, and the
// instance is free again; the interrupted request counted.
func TestRestartAfterCrashMidRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	writeFile(t, h.configPath, withWawpTimeout("1s"))
	h.wawp.FailNext(instanceEG, fakewawp.RequestCode, fakewawp.Failure{Hang: true})
	h.slack.FailNextResponse(404) // the dead process's answer never shows
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	if !eventually(waitLong, func() bool { return len(h.wawp.Calls(fakewawp.RequestCode)) == 1 }) {
		t.Fatal("request-code was never called")
	}
	crashImage, err := os.ReadFile(h.env["LINKBOT_DB"])
	if err != nil {
		t.Fatal(err)
	}
	h.stop()
	if got := shown(h.latest(env.MessageID)); !strings.Contains(got, "Requesting") {
		t.Fatalf("the dead process's answer showed: %s", got)
	}
	writeFile(t, h.env["LINKBOT_DB"], string(crashImage))
	h.start()
	h.clock.advance(7 * time.Second) // the request's lease (2 × wawp_timeout + 5 s) runs out
	v := h.waitText(env.MessageID, "Interrupted")
	for _, want := range []string{"counts toward this number's limit: code 1 of 3", "`/link support-eg +20 11 12223333`"} {
		if !strings.Contains(shown(v), want) {
			t.Errorf("interrupted message lacks %q:\n%s", want, shown(v))
		}
	}
	env2 := h.command("U1", "support-eg +201112223333")
	h.waitText(env2.MessageID, "Code 2 of 3")
	h.stop()
	if kinds := h.auditKinds(); !slices.Contains(kinds, "interrupted") {
		t.Errorf("audit %v has no interrupted event", kinds)
	}
}

// TestNoGoroutineOutlivesRun: once run has returned, no goroutine of
// linkbot's own (bot, pairing, store, the serve code, cron, bbolt, Socket
// Mode) is left, so nothing can touch the closed database. The fakes'
// goroutines and the test's own are left out. (An outside review's check;
// it held.)
func TestNoGoroutineOutlivesRun(t *testing.T) {
	h := newHarness(t)
	h.env["LINKBOT_HTTP_ADDR"] = freeAddr(t)
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	get(t, "http://"+h.env["LINKBOT_HTTP_ADDR"]+"/metrics")
	h.stop()
	own := regexp.MustCompile(`linkbot/linkbot/(bot|pairing|store|cmd/linkbot)\.|robfig/cron|bbolt|socketmode`)
	leaked := func() []string {
		buf := make([]byte, 1<<22)
		var out []string
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			switch {
			case strings.Contains(g, "fakeslack"), strings.Contains(g, "fakewawp"), strings.Contains(g, "TestNoGoroutineOutlivesRun("):
			case own.MatchString(g) && !strings.Contains(g, "testing.tRunner"):
				out = append(out, g)
			}
		}
		return out
	}
	// A goroutine may be on its way out when run returns; it has a moment.
	deadline := time.After(waitLong)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for len(leaked()) > 0 {
		select {
		case <-deadline:
			for _, g := range leaked() {
				t.Errorf("goroutine left after run returned:\n%s", g)
			}
			return
		case <-tick.C:
		}
	}
}
