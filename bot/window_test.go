package bot

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store"
)

// startWindow is startDM with the pairing's code window open too (as
// Show code window opens it).
func (r *countdownRig) startWindow(id, user, instance string, issued time.Time) pairing.Pairing {
	r.t.Helper()
	p := r.startDM(id, user, instance, issued)
	opened, err := r.bot.api.OpenView(r.slack.NewTrigger(user), windowOf(r.bot.render(context.Background(), p, r.clock.Now(), onModal), p.ID))
	if err != nil {
		r.t.Fatal(err)
	}
	p.Modal = pairing.ModalSurface{ViewID: opened.ID, Hash: opened.Hash, User: user}
	p.Modal.LastView = modalKey(p, r.clock.Now())
	if p, err = r.svc.RecordModal(r.t.Context(), id, p.Modal); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// TestWindowKeyFollowsTheCountdown: the window moves in the DM's steps,
// shows no code for a hand-off, and ends with the pairing.
func TestWindowKeyFollowsTheCountdown(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	p := pairing.Pairing{State: pairing.StateLive, Code: "ABCD1234", RequestedBy: "U1", IssuedAt: t0, ExpiresAt: t0.Add(150 * time.Second),
		Modal: pairing.ModalSurface{ViewID: "V1", User: "U1"}}
	handoff := p
	handoff.DM = pairing.Surface{Recipient: "U2"}
	linked := p
	linked.State, linked.Code = pairing.StateLinked, ""
	closed := p
	closed.Modal.Closed = true
	for _, tc := range []struct {
		name string
		p    pairing.Pairing
		at   time.Duration
		want string
	}{
		{"issued", p, 0, "live:0"},
		{"a fifth in", p, 31 * time.Second, "live:1"},
		{"the last fifth", p, 149 * time.Second, "live:4"},
		{"past its expiry", p, 151 * time.Second, "expired"},
		{"handed off", handoff, 10 * time.Second, "handoff:live"},
		{"linked", linked, 10 * time.Second, "linked"},
		{"closed", closed, 10 * time.Second, ""},
	} {
		if got := modalKey(tc.p, t0.Add(tc.at)); got != tc.want {
			t.Errorf("%s: modalKey = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Window updates spend the shared edit budget and honour a views 429:
// after Slack answered one, no views call is made until its Retry-After
// ran out (the fake fails the test on any), then the step due is drawn.
func TestWindowUpdatesHonourRetryAfter(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	a := r.startWindow("a", "U1", "INSTAAAAAAAA", t0)
	r.startWindow("b", "U2", "INSTBBBBBBBB", t0)
	r.slack.RateLimitNextCall(fakeslack.ViewsLimit, 20*time.Second)
	for s := 5; s <= 45; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	if n := r.slack.RateLimitedCalls(fakeslack.ViewsLimit); n != 1 {
		t.Fatalf("%d views 429s, want the one Slack answered at 30 s", n)
	}
	if v, _ := r.slack.ViewByID(a.Modal.ViewID); len(v.Versions) != 1 {
		t.Errorf("the window was updated %d times while Retry-After ran", len(v.Versions)-1)
	}
	r.clock.Set(t0.Add(65 * time.Second)) // Retry-After over; the second step due
	r.tick()
	for _, user := range []string{"U1", "U2"} {
		v, _ := r.slack.Modal(user)
		if len(v.Versions) != 2 || !strings.Contains(v.Shown(), "▓▓▓▓▓▓░░░░") || !strings.Contains(v.Shown(), "ABCD-1234") {
			t.Errorf("%s's window after Retry-After: %d versions\n%s\nwant the step due then", user, len(v.Versions), v.Shown())
		}
	}
	// The hash of each update is kept for the next one.
	stored, _ := r.svc.Pairing(r.t.Context(), "a")
	if v, _ := r.slack.ViewByID(a.Modal.ViewID); stored.Modal.Hash != v.Hash {
		t.Errorf("stored hash %q, the view's %q", stored.Modal.Hash, v.Hash)
	}
}

// A window another writer updated (hash_conflict) is not overwritten from
// a stale hash; the next update goes without one, from the stored pairing.
func TestWindowHashConflict(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	a := r.startWindow("a", "U1", "INSTAAAAAAAA", t0)
	// Someone else updated the view (another replica, say).
	if _, err := r.bot.api.UpdateView(windowOf(EndedView(), "a"), "", "", a.Modal.ViewID); err != nil {
		t.Fatal(err)
	}
	r.clock.Set(t0.Add(31 * time.Second))
	r.tick()
	if v, _ := r.slack.Modal("U1"); len(v.Versions) != 2 || strings.Contains(v.Shown(), "ABCD-1234") {
		t.Errorf("a stale hash overwrote the view: %d versions\n%s", len(v.Versions), v.Shown())
	}
	stored, _ := r.svc.Pairing(r.t.Context(), "a")
	if stored.Modal.Hash != "" || stored.Modal.LastView != "live:0" {
		t.Errorf("after hash_conflict: %+v; want no hash, the view still due", stored.Modal)
	}
	r.tick()
	if v, _ := r.slack.Modal("U1"); len(v.Versions) != 3 || !strings.Contains(v.Shown(), "ABCD-1234") {
		t.Errorf("the next update: %d versions\n%s", len(v.Versions), v.Shown())
	}
}

// TestWindowOpensWhileMessageLocked: "Show code window" opens the window
// at once, however long another writer holds the code message's lock (a
// New code click holds it across its Wawp round trip, longer than the
// trigger's 3 s); once the lock is free, the window becomes the pairing's
// and shows what happened meanwhile.
func TestWindowOpensWhileMessageLocked(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		meanwhile func(r *countdownRig, p pairing.Pairing, msgID string)
		want      string // what the window shows at the end
		recorded  bool   // the window is the pairing's
	}{
		{"nothing", func(*countdownRig, pairing.Pairing, string) {}, "Enter this code on the phone", true},
		{"the phone linked", func(r *countdownRig, p pairing.Pairing, _ string) {
			r.wawp.EnterCode(rigInstance, r.wawp.Code(rigInstance))
			r.clock.Set(t0.Add(5 * time.Second))
			if _, err := r.svc.Advance(r.t.Context()); err != nil {
				r.t.Fatal(err)
			}
		}, "✅ Linked", true},
		{"a New code replaced it", func(r *countdownRig, p pairing.Pairing, msgID string) {
			r.clock.Set(t0.Add(5 * time.Second))
			click := r.clickBy("U1", msgID, ActionNewCode, p.ID)
			if _, err := r.svc.Renew(r.t.Context(), pairing.Renewal{ID: p.ID, User: "U1", ResponseURL: click.ResponseURL, URLIssued: r.clock.Now()}); err != nil {
				r.t.Fatal(err)
			}
			// Recorded on the replaced pairing (watched until it says so):
			// a held update would otherwise leave the old code there.
		}, "This code was replaced by a newer one", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			msgID := r.start()
			p := r.watched()[0]
			unlock := r.bot.locks.lock(p.MessageID())
			cb := r.clickBy("U1", msgID, ActionShowWindow, p.ID)
			cb.TriggerID = r.slack.NewTrigger("U1")
			done := make(chan struct{})
			go func() {
				defer close(done)
				r.bot.interaction(context.Background(), cb)
			}()
			if !r.slack.WaitFor(time.Second, func() bool { _, open := r.slack.Modal("U1"); return open }) {
				unlock()
				t.Fatal("the window did not open while the message's lock was held")
			}
			v, _ := r.slack.Modal("U1")
			if code := r.wawp.Code(rigInstance); !strings.Contains(v.Shown(), code[:4]+"-"+code[4:]) {
				t.Errorf("the window opened without the live code:\n%s", v.Shown())
			}
			tc.meanwhile(r, p, msgID)
			select {
			case <-done:
				t.Fatal("the window was recorded while another writer held the message")
			default:
			}
			unlock()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("openWindow never finished")
			}
			r.bot.work.Wait()
			v, _ = r.slack.Modal("U1")
			if !strings.Contains(v.Shown(), tc.want) {
				t.Errorf("the window shows\n%s\nwant %q", v.Shown(), tc.want)
			}
			stored, err := r.svc.Pairing(t.Context(), p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := stored.Modal.ViewID == v.ID; got != tc.recorded {
				t.Errorf("window recorded as the pairing's: %v, want %v (%+v)", got, tc.recorded, stored.Modal)
			}
			if tc.recorded && stored.Modal.Hash != v.Hash {
				t.Errorf("stored hash %q, the view's %q", stored.Modal.Hash, v.Hash)
			}
		})
	}
}

// TestWindowOpenedDuringCancelIsFinished (review r9b): the same in one process (bbolt): a Cancel click holds the
// message's lock while Show code window opens the window; the Cancel's
// answer finishes the pairing's messages and unwatches it; openWindow then
// records the window on the ended, unwatched pairing and tries one update,
// which a running Retry-After refuses. No tick reads the pairing again.
func TestWindowOpenedDuringCancelIsFinished(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.start()
	p := r.watched()[0]
	code := r.wawp.Code(rigInstance)
	shown := code[:4] + "-" + code[4:]
	unlock := r.bot.locks.lock(p.MessageID()) // the Cancel click's
	cb := r.clickBy("U1", msgID, ActionShowWindow, p.ID)
	cb.TriggerID = r.slack.NewTrigger("U1")
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.bot.interaction(context.Background(), cb)
	}()
	if !r.slack.WaitFor(time.Second, func() bool { _, open := r.slack.Modal("U1"); return open }) {
		unlock()
		t.Fatal("the window did not open")
	}
	r.clock.Set(t0.Add(5 * time.Second))
	click := r.clickBy("U1", msgID, ActionCancel, p.ID)
	c, err := r.svc.Cancel(context.Background(), p.ID, "U1", pairing.Click{ResponseURL: click.ResponseURL, Issued: r.clock.Now(), TS: click.Container.MessageTs})
	if err != nil {
		unlock()
		t.Fatal(err)
	}
	r.bot.showLocked(context.Background(), c, showing{answer: onEphemeral})
	r.bot.edits.block(20 * time.Second) // a views 429 met meanwhile
	unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("openWindow never finished")
	}
	r.bot.work.Wait()
	for s := 10; s <= 400; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	for _, v := range r.slack.Modals("U1") {
		if strings.Contains(v.Shown(), shown) {
			t.Errorf("the window still shows the cancelled code %s (watched: %d):\n%s", shown, len(r.watched()), v.Shown())
		}
	}
}

// readHook runs onRead after a read of pairing id (once armed).
type readHook struct {
	pairing.Storage
	mu     sync.Mutex
	id     string
	onRead func()
}

func (s *readHook) Pairing(ctx context.Context, id string) (pairing.Pairing, error) {
	p, err := s.Storage.Pairing(ctx, id)
	s.mu.Lock()
	f := s.onRead
	if id != s.id {
		f = nil
	}
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return p, err
}

// TestWindowRecordedOnPairingCancelledElsewhere (review r9b): as above, but the other replica's click is Cancel, and it
// finishes the pairing's messages (unwatching it) before openWindow
// records the window. The window's one update after recording finds a
// Retry-After running; no tick ever reads an unwatched pairing again, so
// the cancelled code stays in the window.
func TestWindowRecordedOnPairingCancelledElsewhere(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	db, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hook := &readHook{Storage: db}
	r := newCountdownRigOn(t, t0, hook)
	r.db = db
	msgID := r.start()
	p := r.watched()[0]
	code := r.wawp.Code(rigInstance)
	shown := code[:4] + "-" + code[4:]
	reads := 0
	done := false
	other := r.replica()
	hook.mu.Lock()
	hook.id = p.ID
	hook.onRead = func() {
		reads++
		if reads != 2 || done {
			return
		}
		done = true
		r.clock.Set(t0.Add(5 * time.Second))
		click := r.clickBy("U1", msgID, ActionCancel, p.ID)
		c, err := other.cfg.Service.Cancel(context.Background(), p.ID, "U1", pairing.Click{ResponseURL: click.ResponseURL, Issued: r.clock.Now(), TS: click.Container.MessageTs})
		if err != nil {
			t.Error(err)
			return
		}
		other.show(context.Background(), c, showing{answer: onEphemeral})
		other.work.Wait()
		r.bot.edits.block(20 * time.Second) // a views 429 met meanwhile
	}
	hook.mu.Unlock()
	cb := r.clickBy("U1", msgID, ActionShowWindow, p.ID)
	cb.TriggerID = r.slack.NewTrigger("U1")
	r.bot.interaction(context.Background(), cb)
	r.bot.work.Wait()
	hook.mu.Lock()
	hook.onRead = nil
	hook.mu.Unlock()
	if !done {
		t.Fatal("the cancel never ran")
	}
	for s := 10; s <= 400; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	for _, v := range r.slack.Modals("U1") {
		if strings.Contains(v.Shown(), shown) {
			t.Errorf("the window still shows the cancelled code %s (watched: %d):\n%s", shown, len(r.watched()), v.Shown())
		}
	}
}

// TestWindowRecordedOnPairingRenewedElsewhere (review r9b): openWindow's message lock is this process's only; another
// replica's New code click is not kept out by it. If that renewal lands
// between openWindow's second read (live) and its RecordModal, the window
// is recorded on the superseded pairing (RecordModal accepts any state),
// the renewal carried the pairing's earlier Modal (none), and showLocked
// stops watching a superseded pairing at once: the window shows the old
// code for good.
func TestWindowRecordedOnPairingRenewedElsewhere(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	db, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hook := &readHook{Storage: db}
	r := newCountdownRigOn(t, t0, hook)
	r.db = db
	msgID := r.start()
	p := r.watched()[0]
	oldCode := r.wawp.Code(rigInstance)
	shown := oldCode[:4] + "-" + oldCode[4:]
	// Another replica renews it right after openWindow's second read.
	reads := 0
	renewed := false
	other := r.replica()
	hook.mu.Lock()
	hook.id = p.ID
	hook.onRead = func() {
		reads++
		if reads != 2 || renewed {
			return
		}
		renewed = true
		r.clock.Set(t0.Add(5 * time.Second))
		click := r.clickBy("U1", msgID, ActionNewCode, p.ID)
		if _, err := other.cfg.Service.Renew(context.Background(), pairing.Renewal{ID: p.ID, User: "U1", ResponseURL: click.ResponseURL, URLIssued: r.clock.Now()}); err != nil {
			t.Error(err)
		}
	}
	hook.mu.Unlock()
	cb := r.clickBy("U1", msgID, ActionShowWindow, p.ID)
	cb.TriggerID = r.slack.NewTrigger("U1")
	r.bot.interaction(context.Background(), cb)
	r.bot.work.Wait()
	hook.mu.Lock()
	hook.onRead = nil
	hook.mu.Unlock()
	if !renewed {
		t.Fatal("the renewal never ran")
	}
	for s := 10; s <= 400; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	for _, v := range r.slack.Modals("U1") {
		if strings.Contains(v.Shown(), shown) {
			t.Errorf("the window still shows the superseded code %s after the pairings ended:\n%s", shown, v.Shown())
		}
	}
}

// TestWindowReplacedDuringRetryAfterIsFinished (review r9b): a Show code window opened on a code that a New code click
// replaced while the window opened, at a moment the views methods are held
// by a Retry-After: openWindow's one try to draw "replaced" is refused
// (errBlocked), nothing records the window, and the superseded code stays
// in a modal the bot could still edit, for ever. It must be gone once the
// hold is over (issue 9: no code in a message the bot can edit after its
// pairing ended).
func TestWindowReplacedDuringRetryAfterIsFinished(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.start()
	p := r.watched()[0]
	oldCode := r.wawp.Code(rigInstance)
	shown := oldCode[:4] + "-" + oldCode[4:]
	unlock := r.bot.locks.lock(p.MessageID())
	cb := r.clickBy("U1", msgID, ActionShowWindow, p.ID)
	cb.TriggerID = r.slack.NewTrigger("U1")
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.bot.interaction(context.Background(), cb)
	}()
	if !r.slack.WaitFor(time.Second, func() bool { _, open := r.slack.Modal("U1"); return open }) {
		unlock()
		t.Fatal("the window did not open")
	}
	// Meanwhile: New code replaces the pairing, and a views 429's
	// Retry-After (20 s) is running.
	r.clock.Set(t0.Add(5 * time.Second))
	click := r.clickBy("U1", msgID, ActionNewCode, p.ID)
	if _, err := r.svc.Renew(r.t.Context(), pairing.Renewal{ID: p.ID, User: "U1", ResponseURL: click.ResponseURL, URLIssued: r.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	r.bot.edits.block(20 * time.Second)
	unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("openWindow never finished")
	}
	r.bot.work.Wait()
	// The hold runs out; ticks go on until the new code's end.
	for s := 30; s <= 400; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	for _, v := range r.slack.Modals("U1") {
		if strings.Contains(v.Shown(), shown) {
			t.Errorf("the window %s still shows the superseded code %s after the hold and the pairing's end:\n%s", v.ID, shown, v.Shown())
		}
	}
}

// TestShowWindowDeliveredTwiceOpensOnce (review r9b): a "Show code window" click Slack delivers twice (a Socket
// Mode redelivery, or the same envelope reaching two replicas) is not
// deduplicated as other clicks are (interaction returns to openWindow
// before any claim): the second views.open reuses the trigger
// (trigger_exchanged) and the requester is told, below the code message,
// that the window could not be opened, while it is open.
func TestShowWindowDeliveredTwiceOpensOnce(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.start()
	p := r.watched()[0]
	cb := r.clickBy("U1", msgID, ActionShowWindow, p.ID)
	cb.TriggerID = r.slack.NewTrigger("U1")
	cb.ActionCallback.BlockActions[0].ActionTs = "1795615200.000100"
	for range 2 {
		r.bot.interaction(context.Background(), cb)
		r.bot.work.Wait()
	}
	if _, open := r.slack.Modal("U1"); !open {
		t.Fatal("the window is not open")
	}
	for _, m := range r.slack.Screen("U1", "C0SUPPORT") {
		if strings.Contains(shownText(m.Latest()), "could not be opened") {
			t.Errorf("the requester is told the open window could not be opened:\n%s", screenText(r.slack.Screen("U1", "C0SUPPORT")))
			break
		}
	}
}

// reserveHook runs onRenewal after a renewal's Reserve (once armed).
type reserveHook struct {
	pairing.Storage
	mu        sync.Mutex
	onRenewal func()
}

func (s *reserveHook) Reserve(ctx context.Context, r pairing.Reservation) (pairing.Decision, error) {
	d, err := s.Storage.Reserve(ctx, r)
	s.mu.Lock()
	f := s.onRenewal
	if r.Replaces == "" {
		f = nil
	}
	s.onRenewal = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return d, err
}

// TestWindowRecordedWhileRenewalInFlight: a Show code window click
// answered while a New code (here, or on another replica) is between its
// Reserve and its Settle records the window on the pairing, still live
// (RecordModal accepts it), and the renewal, read before, does not carry
// it. Its settlement keeps the replaced pairing watched for that window,
// and the ticks tell it the code was replaced: the old code does not stay
// there.
func TestWindowRecordedWhileRenewalInFlight(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	db, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hook := &reserveHook{Storage: db}
	r := newCountdownRigOn(t, t0, hook)
	r.db = db
	msgID := r.start()
	p := r.watched()[0]
	oldCode := r.wawp.Code(rigInstance)
	shown := oldCode[:4] + "-" + oldCode[4:]
	opened := false
	hook.mu.Lock()
	hook.onRenewal = func() {
		opened = true
		cb := r.clickBy("U1", msgID, ActionShowWindow, p.ID)
		cb.TriggerID = r.slack.NewTrigger("U1")
		r.bot.interaction(context.Background(), cb)
		r.bot.work.Wait()
	}
	hook.mu.Unlock()
	r.clock.Set(t0.Add(5 * time.Second))
	click := r.clickBy("U1", msgID, ActionNewCode, p.ID)
	if _, err := r.svc.Renew(t.Context(), pairing.Renewal{ID: p.ID, User: "U1", ResponseURL: click.ResponseURL, URLIssued: r.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if !opened {
		t.Fatal("the window was never opened")
	}
	if _, open := r.slack.Modal("U1"); !open {
		t.Fatal("the window is not open")
	}
	for s := 10; s <= 400; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	for _, v := range r.slack.Modals("U1") {
		if strings.Contains(v.Shown(), shown) {
			t.Errorf("the window still shows the superseded code %s:\n%s", shown, v.Shown())
		}
		if !strings.Contains(v.Shown(), "replaced") {
			t.Errorf("the window does not say the code was replaced:\n%s", v.Shown())
		}
	}
}

// TestWindowRecordedThenPairingEndsBeforeRenewalSettles: a window drawn
// with the code is recorded on the pairing while a New code is between
// its Reserve and its Settle (as TestWindowRecordedWhileRenewalInFlight),
// and the pairing then ends on its own (here: the phone linked, seen by
// an Advance) before the renewal settles. The settlement finds the old
// pairing final (not superseded) and stops watching it although its own
// window still shows the code: the ticks must still take the code out of
// that window.
func TestWindowRecordedThenPairingEndsBeforeRenewalSettles(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	db, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hook := &reserveHook{Storage: db}
	r := newCountdownRigOn(t, t0, hook)
	r.db = db
	msgID := r.start()
	p := r.watched()[0]
	oldCode := r.wawp.Code(rigInstance)
	shown := oldCode[:4] + "-" + oldCode[4:]
	var viewID string
	hook.mu.Lock()
	hook.onRenewal = func() {
		// The window, drawn with the live code, recorded on the pairing.
		now := r.clock.Now()
		opened, err := r.bot.api.OpenView(r.slack.NewTrigger("U1"), windowOf(r.bot.render(context.Background(), p, now, onModal), p.ID))
		if err != nil {
			t.Fatal(err)
		}
		viewID = opened.ID
		m := pairing.ModalSurface{ViewID: opened.ID, Hash: opened.Hash, User: "U1"}
		drawn := p
		drawn.Modal = m
		m.LastView = modalKey(drawn, now)
		if _, err := r.svc.RecordModal(t.Context(), p.ID, m); err != nil {
			t.Fatal(err)
		}
		// The phone links with the old code; an Advance ends the pairing.
		if err := r.wawp.EnterCode(rigInstance, oldCode); err != nil {
			t.Fatal(err)
		}
		if _, err := r.svc.Advance(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	hook.mu.Unlock()
	r.clock.Set(t0.Add(5 * time.Second))
	click := r.clickBy("U1", msgID, ActionNewCode, p.ID)
	r.svc.Renew(t.Context(), pairing.Renewal{ID: p.ID, User: "U1", ResponseURL: click.ResponseURL, URLIssued: r.clock.Now()})
	if viewID == "" {
		t.Fatal("the window was never opened")
	}
	if got, err := r.svc.Pairing(t.Context(), p.ID); err == nil {
		t.Logf("old pairing after the renewal: state %s, window %+v", got.State, got.Modal)
		for _, w := range r.watched() {
			t.Logf("watched %s %s modal %+v", w.ID, w.State, w.Modal)
		}
	}
	for s := 10; s <= 400; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	for _, v := range r.slack.Modals("U1") {
		if v.ID == viewID && strings.Contains(v.Shown(), shown) {
			t.Errorf("the window still shows the old pairing's code %s after it ended:\n%s", shown, v.Shown())
		}
	}
}
