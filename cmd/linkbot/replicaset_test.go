package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// replicaSet runs several real linkbot processes (the test binary
// re-executed as main, see TestMain) on one PostgreSQL schema, against
// one fake Slack that spreads envelopes over their sockets at random and
// one fake Wawp (issue 11). Processes can be stopped (SIGTERM) and killed
// (SIGKILL, no cleanup at all).
type replicaSet struct {
	t      *testing.T
	slack  *fakeslack.Server
	wawp   *fakewawp.Server
	env    map[string]string
	dbURL  string
	mu     sync.Mutex
	procs  []*replica
	config string
}

// replica is one linkbot process.
type replica struct {
	name string
	cmd  *exec.Cmd
	addr string // its HTTP listener (/readyz, /metrics)
	logs *syncBuffer
	done chan struct{}
}

// replicaInstances are the instances the replicas serve: support-eg and
// eight more, each its own Wawp instance.
func replicaInstances() (yaml string, ids []string) {
	yaml = "instances:\n  - alias: support-eg\n    id: " + instanceEG + "\n    region: EG\n"
	ids = []string{instanceEG}
	for i := 1; i <= 8; i++ {
		id := fmt.Sprintf("FLEET%07d", i)
		yaml += fmt.Sprintf("  - alias: fleet-%d\n    id: %s\n    region: EG\n", i, id)
		ids = append(ids, id)
	}
	return yaml, ids
}

// newReplicaSet prepares n replicas (not started) with extra config
// YAML; codes live codeLifetime, ticks every second (the leader lease:
// three ticks).
func newReplicaSet(t *testing.T, dbURL, codeLifetime string) *replicaSet {
	t.Helper()
	if testing.Short() {
		t.Skip("several linkbot processes: not in -short")
	}
	rs := &replicaSet{
		t:     t,
		slack: fakeslack.New(func(v string) { t.Errorf("%s", v) }),
		wawp:  fakewawp.New(wawpToken),
		dbURL: dbURL,
	}
	t.Cleanup(rs.slack.Close)
	t.Cleanup(rs.wawp.Close)
	rs.slack.SetMessagesTab(manifestMessagesTab(t))
	rs.slack.SetScopes(readManifest(t).OAuth.Scopes.Bot...)
	instances, ids := replicaInstances()
	for _, id := range ids {
		rs.wawp.AddInstance(id, "")
	}
	dir := t.TempDir()
	rs.config = filepath.Join(dir, "linkbot.yml")
	writeFile(t, rs.config, "wawp_timeout: 2s\ntick_interval: 1s\ncode_lifetime: "+codeLifetime+"\n"+instances)
	rs.env = map[string]string{
		"LINKBOT_TEST_MAIN":    "1",
		"SLACK_APP_TOKEN":      fakeslack.AppToken,
		"SLACK_BOT_TOKEN":      fakeslack.BotToken,
		"WAWP_ACCESS_TOKEN":    wawpToken,
		"SLACK_API_URL":        rs.slack.APIURL(),
		"WAWP_BASE_URL":        rs.wawp.URL,
		"LINKBOT_DATABASE_URL": dbURL,
		"LINKBOT_CONFIG":       rs.config,
		"LINKBOT_LOG_FORMAT":   "text",
		"LINKBOT_DB":           filepath.Join(dir, "unused.db"),
	}
	t.Cleanup(func() {
		for _, r := range rs.all() {
			rs.kill(r)
		}
		if t.Failed() {
			for _, r := range rs.all() {
				t.Logf("logs of %s:\n%s", r.name, r.logs.String())
			}
		}
	})
	return rs
}

// start starts one more replica and waits until its socket is up.
func (rs *replicaSet) start() *replica {
	rs.t.Helper()
	rs.mu.Lock()
	r := &replica{name: fmt.Sprintf("replica-%d", len(rs.procs)+1), addr: freeAddr(rs.t), logs: &syncBuffer{}, done: make(chan struct{})}
	rs.procs = append(rs.procs, r)
	rs.mu.Unlock()
	open, _ := rs.slack.Connections()
	r.cmd = exec.Command(os.Args[0])
	for k, v := range rs.env {
		r.cmd.Env = append(r.cmd.Env, k+"="+v)
	}
	r.cmd.Env = append(r.cmd.Env, "LINKBOT_HTTP_ADDR="+r.addr)
	r.cmd.Stderr, r.cmd.Stdout = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		rs.t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	if !rs.slack.WaitFor(waitLong, func() bool { n, _ := rs.slack.Connections(); return n > open }) {
		rs.t.Fatalf("%s never connected; logs:\n%s", r.name, r.logs.String())
	}
	return r
}

func (rs *replicaSet) all() []*replica {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]*replica(nil), rs.procs...)
}

// running is the replicas still running.
func (rs *replicaSet) running() []*replica {
	var out []*replica
	for _, r := range rs.all() {
		select {
		case <-r.done:
		default:
			out = append(out, r)
		}
	}
	return out
}

// stop sends r SIGTERM and waits for it to exit (a deploy's stop).
func (rs *replicaSet) stop(r *replica) {
	rs.t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		rs.t.Fatalf("%s did not stop after SIGTERM; logs:\n%s", r.name, r.logs.String())
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		rs.t.Errorf("%s exited %d after SIGTERM", r.name, code)
	}
}

// kill sends r SIGKILL (kill -9: no shutdown at all) and waits for it.
func (rs *replicaSet) kill(r *replica) {
	r.cmd.Process.Kill()
	<-r.done
}

// leaderGauge matches linkbot_leader's sample in /metrics.
var leaderGauge = regexp.MustCompile(`(?m)^linkbot_leader (\d)`)

// leads reports whether r says (its /metrics) that it leads the ticker.
func (r *replica) leads() bool {
	resp, err := httpGet("http://" + r.addr + "/metrics")
	if err != nil {
		return false
	}
	m := leaderGauge.FindStringSubmatch(resp)
	return m != nil && m[1] == "1"
}

// leader is the running replica that leads, waiting up to timeout for
// exactly one to say so.
func (rs *replicaSet) leader(timeout time.Duration) *replica {
	rs.t.Helper()
	var found *replica
	ok := eventually(timeout, func() bool {
		found = nil
		n := 0
		for _, r := range rs.running() {
			if r.leads() {
				found, n = r, n+1
			}
		}
		return n == 1
	})
	if !ok {
		return nil
	}
	return found
}

// command sends /link text as user.
func (rs *replicaSet) command(user, text string) *fakeslack.Envelope {
	rs.t.Helper()
	env, err := rs.slack.SendCommand(fakeslack.Command{User: user, Text: text})
	if err != nil {
		rs.t.Fatalf("send command: %v", err)
	}
	return env
}

// answered is what the thread of a command shows beyond its ack.
func (rs *replicaSet) answered(env *fakeslack.Envelope) []fakeslack.Message {
	var out []fakeslack.Message
	for _, m := range rs.slack.Thread(env.MessageID) {
		if m.Via != fakeslack.ViaAck {
			out = append(out, m)
		}
	}
	return out
}

// threadShows reports whether any message of env's thread shows want.
func (rs *replicaSet) threadShows(env *fakeslack.Envelope, want string) bool {
	return strings.Contains(screenText(rs.slack.Thread(env.MessageID)), want)
}

// httpGet fetches url's body (no test failure: a replica may be down).
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
