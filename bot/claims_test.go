package bot

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/wawp"
)

// replica is a second bot (another process) on r's storage and Slack.
func (r *countdownRig) replica() *Bot {
	svc := pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), r.db, pairing.Config{Now: r.clock.Now, LeaderID: "replica-2"})
	return New(Config{Service: svc, Directory: pairing.NewDirectory(nil, ""), APIURL: r.slack.APIURL(), BotToken: fakeslack.BotToken})
}

// TestClaimedEditsArePostedOnce: a lease is not a mutex, so two replicas
// may both decide the same edit (both believe they lead, or a tick races
// a click elsewhere). Each edit is claimed in the database first, and only
// the claim's winner posts: racing shows of one pairing, on two replicas,
// post each view once — one countdown step through the click's
// response_url (one use of its budget), one chat.update of the DM.
func TestClaimedEditsArePostedOnce(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		setup func(r *countdownRig) (id string, count func() int)
	}{
		{"ephemeral through the click's response_url", func(r *countdownRig) (string, func() int) {
			msgID := r.startRefreshed()
			return r.watched()[0].ID, func() int { return r.changeCount(msgID) }
		}},
		{"DM with chat.update", func(r *countdownRig) (string, func() int) {
			r.slack.SetMessagesTab(true)
			p := r.startDM("pdm", "U7", "INST00000007", t0)
			// Every version of every message in U7's DM.
			return p.ID, func() int {
				n := 0
				for _, m := range r.slack.DMScreen("U7") {
					n += len(m.Versions)
				}
				return n
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			other := r.replica()
			id, count := tt.setup(r)
			before := count()
			r.clock.Set(t0.Add(80 * time.Second)) // one step of the countdown is due on each surface
			p, err := r.db.Pairing(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for _, b := range []*Bot{r.bot, other, r.bot, other} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b.show(context.Background(), p, showing{answer: onNone, edit: editIfBudget})
				}()
			}
			wg.Wait()
			if got := count() - before; got != 1 {
				t.Errorf("the step was posted %d times by racing replicas, want 1", got)
			}
			if p.ClickURL != "" {
				// The click's answer took one, the step one.
				if left := usesLeft(t, r.db, p.ClickURL, t0); left != fakeslack.ResponseURLUses-2 {
					t.Errorf("response_url uses left %d, want %d (one post, one use)", left, fakeslack.ResponseURLUses-2)
				}
			}
			stored, err := r.db.Pairing(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if stored.LastView == p.LastView && stored.DM.LastView == p.DM.LastView {
				t.Errorf("the post was not recorded: %q / %q", stored.LastView, stored.DM.LastView)
			}
		})
	}
}

// TestEditBudgetSharedByReplicas: Slack counts chat.update per workspace,
// so two replicas together make at most Slack's 50 edits in a minute,
// however much each one's own budget would allow; the next minute gives
// 50 again.
func TestEditBudgetSharedByReplicas(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	other := r.replica()
	calls := 0
	for _, b := range []*Bot{r.bot, other} {
		b.edits = newEditBudget(6000, r.clock.Now) // each replica's own budget: far more than Slack's
	}
	attempt := func(from, to int) {
		for s := from; s < to; s++ {
			r.clock.Set(t0.Add(time.Duration(s) * time.Second))
			for range 5 {
				for _, b := range []*Bot{r.bot, other} {
					b.editLimited(context.Background(), func() error { calls++; return nil })
				}
			}
		}
	}
	attempt(0, 60)
	if calls != slackEditsPerMinute {
		t.Errorf("two replicas made %d edits in one minute; want Slack's %d", calls, slackEditsPerMinute)
	}
	calls = 0
	attempt(60, 61)
	if calls == 0 {
		t.Error("no edit in the next minute")
	}
}

// stalledClaims is storage whose claimer is held up right after each
// claim it wins (a pause, a slow network): the clock moves on by stall.
type stalledClaims struct {
	pairing.Storage
	clock *clock
	stall time.Duration
}

func (s stalledClaims) ClaimView(ctx context.Context, c pairing.ViewClaim) (bool, error) {
	won, err := s.Storage.ClaimView(ctx, c)
	if won {
		s.clock.Set(s.clock.Now().Add(s.stall))
	}
	return won, err
}

// TestNoPostAfterClaimRanOut (issue 11 review: "never the same edit
// twice"): a claimer held up past its claim's time (DefaultEditClaim)
// after winning it must not make the Slack call: by then another replica
// may have claimed the same view and posted it, and two DMs (or windows)
// would show the code twice. HoldsAt is asked, by the clock, right before
// every Slack call made under a claim: the DM's chat.update and the code
// window's views.update are not made, and the views stay due.
func TestNoPostAfterClaimRanOut(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	r.slack.SetMessagesTab(true)
	p := r.startWindow("a", "U1", "INSTAAAAAAAA", t0)
	dmVersions := func() int {
		n := 0
		for _, m := range r.slack.DMScreen("U1") {
			n += len(m.Versions)
		}
		return n
	}
	windowVersions := func() int { v, _ := r.slack.ViewByID(p.Modal.ViewID); return len(v.Versions) }
	dm, window := dmVersions(), windowVersions()

	svc := pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), stalledClaims{Storage: r.db, clock: r.clock, stall: pairing.DefaultEditClaim},
		pairing.Config{Now: r.clock.Now, LeaderID: "replica-2"})
	stalled := New(Config{Service: svc, Directory: pairing.NewDirectory(nil, ""), APIURL: r.slack.APIURL(), BotToken: fakeslack.BotToken})
	r.clock.Set(t0.Add(80 * time.Second)) // a step of the countdown is due on the DM and the window
	p, err := r.db.Pairing(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	stalled.show(context.Background(), p, showing{answer: onNone, edit: editIfBudget})
	if got := dmVersions() - dm; got != 0 {
		t.Errorf("the DM was edited %d times after its claim ran out", got)
	}
	if got := windowVersions() - window; got != 0 {
		t.Errorf("the window was updated %d times after its claim ran out", got)
	}
	stored, err := r.db.Pairing(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if stored.DM.LastView != p.DM.LastView || stored.Modal.LastView != p.Modal.LastView {
		t.Errorf("views recorded as shown: DM %q (was %q), window %q (was %q); want unchanged, the steps still due",
			stored.DM.LastView, p.DM.LastView, stored.Modal.LastView, p.Modal.LastView)
	}

	// A claimer on time posts them (the test can fail).
	r.bot.show(context.Background(), stored, showing{answer: onNone, edit: editIfBudget})
	if dmVersions() == dm || windowVersions() == window {
		t.Errorf("a claimer on time did not post the due steps (DM %d→%d, window %d→%d)", dm, dmVersions(), window, windowVersions())
	}
}
