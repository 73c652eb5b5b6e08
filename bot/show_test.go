package bot

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/wawp"
)

// hookedStorage runs afterUpdate after each UpdatePairing: a test's way
// into the moment between a click's change to a pairing and its answer.
type hookedStorage struct {
	pairing.Storage
	afterUpdate func()
}

func (s hookedStorage) UpdatePairing(ctx context.Context, id string, now time.Time, change func(*pairing.Pairing) error) (pairing.Pairing, error) {
	p, err := s.Storage.UpdatePairing(ctx, id, now, change)
	if s.afterUpdate != nil {
		s.afterUpdate()
	}
	return p, err
}

// A click and a tick racing for one message post its new view once. A
// Cancel click gives the message its fresh response_url; a tick that reads
// the pairing right after the change (before the click's answer) waits for
// the click's answer and finds it shown, instead of posting the
// cancellation first and having the click post it again (a second post
// only spends a use of the click's response_url).
func TestClickAndTickPostTheClicksAnswerOnce(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	store := &hookedStorage{Storage: r.db}
	r.svc = pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), store, pairing.Config{Now: r.clock.Now})
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, "")})
	msgID := r.start()
	watched, _ := r.db.WatchedPairings(context.Background())
	uses := func() int {
		all, _ := r.changes(msgID, 0)
		total := 0
		for _, v := range all {
			if v.Via == fakeslack.ViaClickURL || v.Via == fakeslack.ViaCommandURL {
				total++
			}
		}
		return total
	}
	before := uses()
	store.afterUpdate = func() {
		store.afterUpdate = nil
		// A tick between the click's Cancel and its answer; it has moved on
		// once it posted, or once its edit waits for the message.
		r.bot.Tick(context.Background())
		if !poll(5*time.Second, func() bool { return uses() > before || r.bot.locks.queued(watched[0].MessageID()) >= 2 }) {
			t.Error("the tick neither posted nor waited for the message")
		}
	}
	r.click(msgID, ActionCancel, watched[0].ID)
	if got := uses() - before; got != 1 {
		t.Errorf("the cancellation was posted %d times, want 1", got)
	}
	if p, _ := r.db.Pairing(context.Background(), watched[0].ID); p.LastView != string(pairing.StateCancelled) {
		t.Errorf("LastView = %q, want cancelled", p.LastView)
	}
	r.tick()
	if got := uses() - before; got != 1 {
		t.Errorf("after the next tick the cancellation was posted %d times, want 1", got)
	}
}

// gateWawp answers at once until slow is set; then each request-code
// says so on waiting and waits for release (a slow Wawp: each call may
// take up to wawp_timeout). working names the instances whose session is
// linked, and to which phone.
type gateWawp struct {
	mu      sync.Mutex
	slow    bool
	release chan struct{}
	waiting chan struct{}
	working map[string]string // instance → linked phone
}

func (w *gateWawp) SessionInfo(_ context.Context, instance string) (pairing.Session, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if me, ok := w.working[instance]; ok {
		return pairing.Session{Status: pairing.StatusWorking, Me: me}, nil
	}
	return pairing.Session{Status: pairing.StatusScanQR}, nil
}

func (w *gateWawp) RequestCode(context.Context, string, string) (string, error) {
	w.mu.Lock()
	slow := w.slow
	w.mu.Unlock()
	if slow {
		w.waiting <- struct{}{}
		<-w.release
	}
	return "ABCD1234", nil
}

// TestSlowClicksDoNotStallOtherMessagesEdits: a click holds its message's
// lock from before Service.Renew until its answer is posted, across both
// Wawp calls (up to 2 × wawp_timeout). With one click per edit slot
// waiting on a slow Wawp, a tick must still edit an unrelated message —
// here one whose phone just linked — at once. (Before, each clicked
// message's edit took an edit slot and then waited for the click's lock,
// so every slot waited for Wawp and no other message was edited.) Every
// message was refreshed first, so its countdown moves in place (a
// click's response_url is its editor) and each tick has an edit for it.
func TestSlowClicksDoNotStallOtherMessagesEdits(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	stub := &gateWawp{release: make(chan struct{}), waiting: make(chan struct{}, 100), working: map[string]string{}}
	r.svc = pairing.NewService(stub, r.db, pairing.Config{Now: r.clock.Now})
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, ""), APIURL: r.slack.APIURL(), BotToken: fakeslack.BotToken})
	const n = maxEditsInFlight + 1
	type msg struct {
		id string
		p  pairing.Pairing
	}
	var msgs []msg
	for i := range n {
		user := fmt.Sprint("U", i)
		msgID, url := r.slack.OpenMessage(user, "⏳ Requesting…")
		p, err := r.svc.Start(context.Background(), pairing.Request{
			Instance: pairing.Instance{ID: fmt.Sprintf("INST%08d", i), Name: fmt.Sprint("i", i)}, Phone: pairing.PhoneFromDigits(fmt.Sprintf("2011122%05d", i)),
			User: user, ResponseURL: url, URLIssued: t0,
		})
		if err != nil {
			t.Fatal(err)
		}
		r.bot.show(context.Background(), p, showing{answer: onEphemeral})
		r.bot.interaction(context.Background(), r.clickBy(user, msgID, ActionRefresh, p.ID))
		msgs = append(msgs, msg{msgID, p})
	}
	r.bot.work.Wait()
	stub.mu.Lock()
	stub.slow = true
	stub.mu.Unlock()
	defer func() { close(stub.release); r.bot.work.Wait() }()
	r.clock.Set(t0.Add(70 * time.Second))
	for _, m := range msgs[:n-1] { // New code on every message but the last
		cb := r.clickBy(m.p.RequestedBy, m.id, ActionNewCode, m.p.ID)
		r.bot.goWork(context.Background(), func(ctx context.Context) { r.bot.interaction(ctx, cb) })
	}
	for range n - 1 {
		select {
		case <-stub.waiting:
		case <-time.After(10 * time.Second):
			t.Fatal("the clicks never reached request-code")
		}
	}
	// Half the codes' time is over: every message's countdown moves on
	// (the clicks' leases run until t0+95 s).
	r.clock.Set(t0.Add(76 * time.Second))
	r.bot.Tick(context.Background())
	last := msgs[n-1]
	if !poll(10*time.Second, func() bool { _, editing := r.bot.editing.Load(last.p.ID); return !editing }) {
		t.Fatal("the last message's countdown edit never ended")
	}
	if got := r.latest(last.id); !strings.Contains(string(got.Blocks), "▓▓▓▓▓░░░░░") {
		t.Errorf("the last message's countdown did not move on: %s", got.Blocks)
	}
	// The last message's phone links.
	stub.mu.Lock()
	stub.working[last.p.Instance] = last.p.Phone
	stub.mu.Unlock()
	r.bot.Tick(context.Background())
	if !poll(10*time.Second, func() bool { return strings.Contains(shownText(r.latest(last.id)), "is now connected") }) {
		t.Errorf("an unrelated message does not show Linked: the edit slots wait for clicks on a slow Wawp (slots in use %d)", len(r.bot.editSlots))
	}
}
