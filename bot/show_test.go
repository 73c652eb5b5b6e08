package bot

import (
	"context"
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
}
