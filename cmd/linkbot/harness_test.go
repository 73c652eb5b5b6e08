package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/linkbot/linkbot/bot"
	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

const (
	wawpToken  = "wawp-secret-token-1234"
	instanceEG = "A1B2C3D4E5F6"
	waitLong   = 10 * time.Second
)

// syncBuffer collects the bot's log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness runs the real program against fake Slack and fake Wawp.
type harness struct {
	t      testing.TB
	slack  *fakeslack.Server
	wawp   *fakewawp.Server
	env    map[string]string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error

	configPath string
	// clock is the bot's clock: the real time plus however far the test
	// moved it on, so a code expires or a lease runs out when the test says.
	clock *testClock
	// opts is how the harness runs serve: ticks every harnessTick (codes
	// and leases follow clock), or only when the test calls tick.
	opts serveOptions
	bot  atomic.Pointer[bot.Bot] // the running bot, for tick
}

// harnessTick is the countdown tick of end-to-end tests: fast enough that
// a wait for the next tick costs nothing, slow enough to leave the CPU to
// the test.
const harnessTick = 20 * time.Millisecond

// harnessLockWait is how long the bot and linkbot audit wait for the
// database file's lock in end-to-end tests.
const harnessLockWait = 20 * time.Millisecond

// testClock is the real time moved on by advance.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// advance moves the clock d on, as if d had passed.
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// manualTicks makes the bot tick only when the test calls tick; call it
// before start.
func (h *harness) manualTicks() {
	h.opts.tickInterval = time.Hour
}

// tick runs one countdown tick now: it returns once the tick has polled
// Wawp and moved every pairing on, and has started (not finished) the edits.
func (h *harness) tick() {
	h.t.Helper()
	b := h.bot.Load()
	if b == nil {
		h.t.Fatal("tick: the bot is not running")
	}
	b.Tick(context.Background())
}

// tickAndWait is tick that also waits for the edits the tick started.
func (h *harness) tickAndWait() {
	h.t.Helper()
	h.tick()
	b := h.bot.Load()
	if !eventually(waitLong, func() bool { return b.EditsInFlight() == 0 }) {
		h.t.Fatal("the tick's edits never finished")
	}
}

// appManifest is what manifest.yml sets that the fake must mirror.
type appManifest struct {
	Features struct {
		AppHome struct {
			MessagesTab bool `yaml:"messages_tab_enabled"`
		} `yaml:"app_home"`
		SlashCommands []struct {
			Command      string `yaml:"command"`
			ShouldEscape bool   `yaml:"should_escape"`
		} `yaml:"slash_commands"`
	} `yaml:"features"`
	OAuth struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
}

// readManifest reads manifest.yml.
func readManifest(t testing.TB) appManifest {
	t.Helper()
	raw, err := os.ReadFile("../../manifest.yml")
	if err != nil {
		t.Fatal(err)
	}
	var m appManifest
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest.yml: %v", err)
	}
	return m
}

// manifestMessagesTab reads manifest.yml's
// features.app_home.messages_tab_enabled: whether Slack lets the app post
// in its DMs with people (delivery: dm, hand-offs).
func manifestMessagesTab(t testing.TB) bool {
	return readManifest(t).Features.AppHome.MessagesTab
}

// baseConfig is the config file every end-to-end test starts from.
const baseConfig = "wawp_timeout: 500ms\ntick_interval: 1s\ninstances:\n  - alias: support-eg\n    id: " + instanceEG + "\n    region: EG\n"

// setConfig rewrites the config file as baseConfig plus extra YAML.
func (h *harness) setConfig(extra string) {
	writeFile(h.t, h.configPath, baseConfig+extra)
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		slack: fakeslack.New(func(v string) { t.Errorf("%s", v) }),
		wawp:  fakewawp.New(wawpToken),
		logs:  &syncBuffer{},
		clock: &testClock{},
	}
	h.opts = serveOptions{
		tickInterval: harnessTick, now: h.clock.Now, started: func(b *bot.Bot) { h.bot.Store(b) },
		// A retry after Slack's 429 or 5xx waits a tick, whatever
		// Retry-After says: what the tests assert is that it happens, and
		// what it costs.
		maxRetryWait: harnessTick,
		// A bot the test stopped has let go of the file; the bot the test
		// runs holds it for its whole life.
		lockWait: harnessLockWait,
	}
	t.Cleanup(h.slack.Close)
	t.Cleanup(h.wawp.Close)
	// Slack as the app made from manifest.yml has it: its Messages tab, its
	// bot scopes, and the harness's clock for the fake's limits and
	// lifetimes.
	h.slack.SetMessagesTab(manifestMessagesTab(t))
	h.slack.SetScopes(readManifest(t).OAuth.Scopes.Bot...)
	h.slack.SetClock(h.clock.Now)
	h.wawp.AddInstance(instanceEG, "")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "linkbot.yml")
	h.configPath = cfgPath
	h.setConfig("")
	h.env = map[string]string{
		"SLACK_APP_TOKEN":    fakeslack.AppToken,
		"SLACK_BOT_TOKEN":    fakeslack.BotToken,
		"WAWP_ACCESS_TOKEN":  wawpToken,
		"SLACK_API_URL":      h.slack.APIURL(),
		"WAWP_BASE_URL":      h.wawp.URL,
		"LINKBOT_DB":         filepath.Join(dir, "linkbot.db"),
		"LINKBOT_CONFIG":     cfgPath,
		"LINKBOT_LOG_FORMAT": "text",
	}
	return h
}

// start runs the bot and waits until its socket is up.
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() {
		h.done <- runWith(ctx, h.opts, []string{"linkbot"}, func(k string) string { return h.env[k] }, &bytes.Buffer{}, h.logs)
	}()
	h.t.Cleanup(h.stop)
	if !h.slack.WaitFor(waitLong, func() bool { n, _ := h.slack.Connections(); return n > 0 }) {
		h.t.Fatalf("bot never connected; logs:\n%s", h.logs.String())
	}
}

// stop cancels the bot and waits for run to return.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("run returned %v", err)
		}
	case <-time.After(waitLong):
		h.t.Errorf("run did not return after cancel")
	}
	h.cancel = nil
	h.bot.Store(nil)
	if !h.slack.WaitFor(waitLong, func() bool { n, _ := h.slack.Connections(); return n == 0 }) {
		h.t.Errorf("socket still open after stop")
	}
}

// command sends /link text as user and returns the envelope.
func (h *harness) command(user, text string) *fakeslack.Envelope {
	h.t.Helper()
	env, err := h.slack.SendCommand(fakeslack.Command{User: user, Text: text})
	if err != nil {
		h.t.Fatalf("send command: %v", err)
	}
	return env
}

// latest is what changed last among the messages of thread (a command's
// ack message ID, Envelope.MessageID): what its user just saw happen.
func (h *harness) latest(thread string) fakeslack.Version {
	var last fakeslack.Version
	for _, m := range h.slack.Thread(thread) {
		if v := m.Latest(); v.Seq > last.Seq {
			last = v
		}
	}
	return last
}

// waitText waits until one of thread's messages (what the command brought
// to its user's screen: its ack and every message its response_url or
// clicks on them made) shows want, and returns that message as it is then.
func (h *harness) waitText(thread, want string) fakeslack.Version {
	h.t.Helper()
	m, ok := h.waitMessage(thread, want)
	if !ok {
		h.t.Fatalf("thread %s never showed %q; it shows:\n%s\nlogs:\n%s", thread, want, screenText(h.slack.Thread(thread)), h.logs.String())
	}
	return m.Latest()
}

// waitMessage waits until one of thread's messages shows want and returns
// the newest such message.
func (h *harness) waitMessage(thread, want string) (fakeslack.Message, bool) {
	var found fakeslack.Message
	ok := h.slack.WaitFor(waitLong, func() bool {
		th := h.slack.Thread(thread)
		for i := len(th) - 1; i >= 0; i-- {
			if strings.Contains(shown(th[i].Latest()), want) {
				found = th[i]
				return true
			}
		}
		return false
	})
	return found, ok
}

// waitAck waits for the command's ack and returns it.
func (h *harness) waitAck(env *fakeslack.Envelope) fakeslack.Version {
	h.t.Helper()
	var m fakeslack.Message
	if !h.slack.WaitFor(waitLong, func() bool { m = h.slack.Message(env.MessageID); return len(m.Versions) > 0 }) {
		h.t.Fatalf("command %s never acked", env.ID)
	}
	return m.Versions[0]
}

// click presses action as user on the newest message of thread that shows
// the button (as a person would: the one at the bottom).
func (h *harness) click(thread, user, action string) *fakeslack.Envelope {
	h.t.Helper()
	env, err := h.tryClick(thread, user, action)
	if err != nil {
		h.t.Fatal(err)
	}
	return env
}

// tryClick is click that reports a button no message shows.
func (h *harness) tryClick(thread, user, action string) (*fakeslack.Envelope, error) {
	th := h.slack.Thread(thread)
	for i := len(th) - 1; i >= 0; i-- {
		if strings.Contains(string(th[i].Latest().Blocks), `"action_id":"`+action+`"`) {
			return h.slack.Click(th[i].ID, user, action)
		}
	}
	return nil, fmt.Errorf("no message of thread %s shows a %q button:\n%s", thread, action, screenText(th))
}

// editableCode lists the messages on user's screens (the channel, their
// DM) that the bot could still edit and that show code.
func (h *harness) editableCode(user, code string) []fakeslack.Message {
	var out []fakeslack.Message
	for _, m := range append(h.slack.Screen(user, "C0SUPPORT"), h.slack.DMScreen(user)...) {
		if m.Editable && strings.Contains(shown(m.Latest()), code[:4]+"-"+code[4:]) {
			out = append(out, m)
		}
	}
	return out
}

// screenText is a screen as text, for failure messages.
func screenText(ms []fakeslack.Message) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "  [%s %s editable=%v] %s\n", m.ID, m.Via, m.Editable, strings.ReplaceAll(shown(m.Latest()), "\n", " | "))
	}
	return b.String()
}

// shown is everything a person sees in a message version, markup kept:
// the fallback text and the text of every block.
func shown(v fakeslack.Version) string {
	return strings.Join(append([]string{v.Text}, blockLines(v.Blocks)...), "\n")
}
