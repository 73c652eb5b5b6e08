package main

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// race sends texts[i] as user U<i+1>, all at once, and waits until each
// command's thread shows an answer beyond its ack.
func (rs *replicaSet) race(texts []string) []*fakeslack.Envelope {
	rs.t.Helper()
	envs := make([]*fakeslack.Envelope, len(texts))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, text := range texts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			env, err := rs.slack.SendCommand(fakeslack.Command{User: fmt.Sprintf("U%d", i+1), Text: text})
			if err != nil {
				rs.t.Errorf("send: %v", err)
				return
			}
			envs[i] = env
		}()
	}
	close(start)
	wg.Wait()
	for i, env := range envs {
		if env == nil {
			rs.t.FailNow()
		}
		if !eventually(waitLong, func() bool { return len(rs.answered(env)) > 0 }) {
			rs.t.Fatalf("command %d (%q) never answered:\n%s", i, texts[i], screenText(rs.slack.Thread(env.MessageID)))
		}
	}
	return envs
}

// requestCodes counts request-code calls to instance ("" for any).
func (rs *replicaSet) requestCodes(instance string) int {
	n := 0
	for _, c := range rs.wawp.Calls(fakewawp.RequestCode) {
		if instance == "" || c.Instance == instance {
			n++
		}
	}
	return n
}

// TestReplicasKeepLimitsExact: three linkbot processes on one database,
// Slack spreading envelopes over their sockets at random and delivering
// some twice. Eight agents racing for one phone on eight instances get
// exactly the phone's limit of codes (3), the rest a limit refusal; eight
// racing for one instance get exactly one live code; request-code is
// called once per code shown, however many envelopes arrived twice.
func TestReplicasKeepLimitsExact(t *testing.T) {
	rs := newReplicaSet(t, pgURL(t), "30s")
	for range 3 {
		rs.start()
	}
	rs.slack.SetDuplicates(0.3)
	rs.slack.DuplicateNext(4) // some for sure

	var texts []string
	for i := 1; i <= 8; i++ {
		texts = append(texts, fmt.Sprintf("fleet-%d +201112223333", i))
	}
	envs := rs.race(texts)
	codes, refused := 0, 0
	for _, env := range envs {
		switch {
		case rs.threadShows(env, "Enter this code"):
			codes++
		case rs.threadShows(env, "already had 3 codes"):
			refused++
		}
	}
	if codes != 3 || refused != 5 {
		t.Errorf("one phone, eight instances, three replicas: %d codes and %d limit refusals; want 3 and 5", codes, refused)
	}
	if n := rs.requestCodes(""); n != 3 {
		t.Errorf("request-code called %d times; want 3 (the phone's limit)", n)
	}
	deliveries := 0
	for _, env := range envs {
		deliveries += rs.slack.Envelope(env.ID).Deliveries
	}
	if deliveries <= len(envs) {
		t.Errorf("%d deliveries of %d envelopes: the race had no duplicates", deliveries, len(envs))
	}

	rs.slack.DuplicateNext(4)
	texts = texts[:0]
	for i := 1; i <= 8; i++ {
		texts = append(texts, fmt.Sprintf("support-eg +2010099988%02d", i))
	}
	envs = rs.race(texts)
	codes = 0
	for _, env := range envs {
		if rs.threadShows(env, "Enter this code") {
			codes++
		} else if !rs.threadShows(env, "already has a live code") {
			t.Errorf("neither a code nor the instance's refusal:\n%s", screenText(rs.slack.Thread(env.MessageID)))
		}
	}
	if n := rs.requestCodes(instanceEG); codes != 1 || n != 1 {
		t.Errorf("one instance, eight agents, three replicas: %d codes shown, %d request-code calls; want 1 and 1", codes, n)
	}
}

// TestLeaderKilledMidCountdown: the replica that ticks is killed (kill -9)
// while codes count down. Another replica leads within about three ticks
// (the lease: 3 s), every pairing reaches its final state (expired), no
// view is posted twice on any message, and no response_url takes more
// than Slack's five posts (the fake reports any sixth as a violation).
func TestLeaderKilledMidCountdown(t *testing.T) {
	rs := newReplicaSet(t, pgURL(t), "8s")
	// A replica killed with an envelope unacked: Slack sends it again.
	rs.slack.SetRedelivery(time.Second, 3)
	for range 3 {
		rs.start()
	}
	leader := rs.leader(waitLong)
	if leader == nil {
		t.Fatal("no single leader among three replicas")
	}
	var envs []*fakeslack.Envelope
	for i := 1; i <= 4; i++ {
		env := rs.command(fmt.Sprintf("U%d", i), fmt.Sprintf("fleet-%d +20111222333%d", i, i))
		envs = append(envs, env)
	}
	for _, env := range envs {
		if !eventually(waitLong, func() bool { return rs.threadShows(env, "Enter this code") }) {
			t.Fatalf("no code:\n%s", screenText(rs.slack.Thread(env.MessageID)))
		}
	}
	// Refresh one, so its countdown is edited in place by the ticker.
	click, err := rs.slack.Click(rs.codeMessage(envs[0]), "U1", "refresh")
	if err != nil {
		t.Fatal(err)
	}
	if !eventually(waitLong, func() bool { return !rs.slack.Envelope(click.ID).AckedAt.IsZero() }) {
		t.Fatal("the Refresh click was never acked")
	}
	killed := time.Now()
	rs.kill(leader)
	next := rs.leader(10 * time.Second)
	if next == nil || next == leader {
		t.Fatal("no replica took the ticker over")
	}
	if took := time.Since(killed); took > 6*time.Second {
		t.Errorf("took %s to take over; want about three ticks (3 s)", took)
	}
	for _, env := range envs {
		if !eventually(20*time.Second, func() bool { return rs.threadShows(env, "Expired") }) {
			t.Errorf("a pairing never reached its final state:\n%s", screenText(rs.slack.Thread(env.MessageID)))
		}
	}
	for _, env := range envs {
		for _, m := range rs.slack.Thread(env.MessageID) {
			for i := 1; i < len(m.Versions); i++ {
				if m.Versions[i].Shown() == m.Versions[i-1].Shown() {
					t.Errorf("message %s: the same view posted twice in a row:\n%s", m.ID, m.Versions[i].Shown())
				}
			}
		}
		if n := strings.Count(screenText(rs.slack.Thread(env.MessageID)), "Expired —"); n != 1 {
			t.Errorf("the final state shows %d times in the thread; want once:\n%s", n, screenText(rs.slack.Thread(env.MessageID)))
		}
	}
}

// codeMessage is the message of env's thread that shows the code.
func (rs *replicaSet) codeMessage(env *fakeslack.Envelope) string {
	for _, m := range rs.slack.Thread(env.MessageID) {
		if strings.Contains(m.Latest().Shown(), "Enter this code") {
			return m.ID
		}
	}
	rs.t.Fatalf("no code message in %s", env.MessageID)
	return ""
}

// TestRollingRestart: while commands flow, every replica in turn is
// stopped (SIGTERM) and a new one started, as a deploy does. Slack
// redelivers an envelope no replica acked (the one going away closed its
// socket); no command is lost: each gets its answer.
func TestRollingRestart(t *testing.T) {
	rs := newReplicaSet(t, pgURL(t), "30s")
	rs.slack.SetRedelivery(time.Second, 3)
	for range 2 {
		rs.start()
	}
	var (
		mu   sync.Mutex
		envs []*fakeslack.Envelope
	)
	stop := make(chan struct{})
	sent := make(chan struct{})
	progress := make(chan struct{}, 1000) // one per command sent
	// flow waits until n more commands were sent: the restart's steps
	// happen while commands flow, however fast this machine is.
	flow := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-progress:
			case <-time.After(waitLong):
				t.Fatal("commands stopped flowing during the restart")
			}
		}
	}
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			env, err := rs.slack.SendCommand(fakeslack.Command{User: fmt.Sprintf("U%d", i%40), Text: fmt.Sprintf("fleet-%d +2011122%05d", i%8+1, i)})
			if err != nil {
				continue // between two replicas: no socket for a moment; the user types it again
			}
			mu.Lock()
			envs = append(envs, env)
			mu.Unlock()
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	}()
	flow(4)
	for _, old := range rs.running() {
		rs.start()
		flow(4)
		rs.stop(old)
		flow(4)
	}
	close(stop)
	<-sent
	mu.Lock()
	defer mu.Unlock()
	if len(envs) < 10 {
		t.Fatalf("only %d commands flowed during the restart", len(envs))
	}
	redelivered := 0
	for _, env := range envs {
		if rs.slack.Envelope(env.ID).Deliveries > 1 {
			redelivered++
		}
	}
	t.Logf("%d commands during the restart, %d redelivered", len(envs), redelivered)
	for _, env := range envs {
		if !eventually(waitLong, func() bool { return len(rs.answered(env)) > 0 }) {
			t.Errorf("command %s lost in the rolling restart (deliveries %d):\n%s", env.ID, rs.slack.Envelope(env.ID).Deliveries, screenText(rs.slack.Thread(env.MessageID)))
		}
	}
}

// TestReplicasDatabaseGap: two replicas reach the database through a TCP
// proxy the test controls; it drops every connection and refuses new
// ones for a while (the shared server is never restarted). Commands
// during the gap get the clear answer and request nothing; no replica
// crashes; after the gap a replica leads again and commands get codes.
func TestReplicasDatabaseGap(t *testing.T) {
	proxy, dbURL := newDBProxy(t, pgURL(t))
	rs := newReplicaSet(t, dbURL, "30s")
	for range 2 {
		rs.start()
	}
	first := rs.command("U1", "fleet-1 +201112223331")
	if !eventually(waitLong, func() bool { return rs.threadShows(first, "Enter this code") }) {
		t.Fatalf("no code before the gap:\n%s", screenText(rs.slack.Thread(first.MessageID)))
	}
	calls := rs.requestCodes("")
	proxy.cut()
	const sorry = "linkbot cannot reach its database right now; nothing was done — try again in a minute"
	var gap []*fakeslack.Envelope
	for i := 2; i <= 5; i++ {
		gap = append(gap, rs.command(fmt.Sprintf("U%d", i), fmt.Sprintf("fleet-%d +20111222333%d", i, i)))
	}
	for _, env := range gap {
		if !eventually(waitLong, func() bool { return rs.threadShows(env, sorry) }) {
			t.Errorf("a command during the gap is not answered clearly:\n%s", screenText(rs.slack.Thread(env.MessageID)))
		}
	}
	if n := rs.requestCodes(""); n != calls {
		t.Errorf("request-code called %d times during the gap", n-calls)
	}
	proxy.restore()
	if rs.leader(waitLong) == nil {
		t.Error("no replica leads after the gap")
	}
	after := rs.command("U9", "fleet-2 +201112223332")
	if !eventually(waitLong, func() bool { return rs.threadShows(after, "Enter this code") }) {
		t.Errorf("no code after the gap:\n%s", screenText(rs.slack.Thread(after.MessageID)))
	}
	if n := len(rs.running()); n != 2 {
		t.Errorf("%d replicas running after the gap; want 2 (none crashed)", n)
	}
}

// TestEnvelopeOfAKilledReplicaIsRedelivered: a replica freezes (SIGSTOP)
// with envelopes on its socket it never acks, and is then killed; Slack
// redelivers them (retry_attempt 1) to the replica left, which handles
// each once: every command answered, none answered twice.
func TestEnvelopeOfAKilledReplicaIsRedelivered(t *testing.T) {
	rs := newReplicaSet(t, pgURL(t), "30s")
	rs.slack.SetRedelivery(time.Second, 3)
	frozen := rs.start()
	rs.start()
	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var envs []*fakeslack.Envelope
	// Sixteen, so that some go to the frozen replica (all sixteen missing
	// it: one chance in 65,536).
	for i := 1; i <= 16; i++ {
		envs = append(envs, rs.command(fmt.Sprintf("U%d", i), fmt.Sprintf("fleet-%d +2011122233%02d", (i-1)%8+1, i)))
	}
	rs.kill(frozen) // before the first redelivery: it goes to the other
	redelivered, codes := 0, 0
	for _, env := range envs {
		if !eventually(waitLong, func() bool { return len(rs.answered(env)) > 0 }) {
			t.Errorf("command %s never answered (deliveries %d):\n%s", env.ID, rs.slack.Envelope(env.ID).Deliveries, screenText(rs.slack.Thread(env.MessageID)))
			continue
		}
		if rs.slack.Envelope(env.ID).Deliveries > 1 {
			redelivered++
		}
		if rs.threadShows(env, "Enter this code") {
			codes++
		} else if !rs.threadShows(env, "already has a live code") {
			t.Errorf("neither a code nor the instance's refusal:\n%s", screenText(rs.slack.Thread(env.MessageID)))
		}
		if n := len(rs.answered(env)); n != 1 {
			t.Errorf("command %s answered %d times:\n%s", env.ID, n, screenText(rs.slack.Thread(env.MessageID)))
		}
	}
	if redelivered == 0 {
		t.Error("no envelope went to the frozen replica: the test proved nothing (run it again)")
	}
	if n := rs.requestCodes(""); n != codes || codes != 8 {
		t.Errorf("request-code called %d times, %d codes shown; want 8 each (one per instance)", n, codes)
	}
}
