package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
	"github.com/linkbot/linkbot/pairing/wawp"
	"github.com/linkbot/linkbot/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time         { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)        { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Since(t0 time.Time) int { return int(c.Now().Sub(t0) / time.Second) }

type countdownRig struct {
	t     testing.TB
	clock *clock
	slack *fakeslack.Server
	wawp  *fakewawp.Server
	bot   *Bot
	svc   *pairing.Service
	db    *store.DB
}

const rigInstance = "INST00000001"

func newCountdownRig(t testing.TB, t0 time.Time) *countdownRig {
	db, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := newCountdownRigOn(t, t0, db)
	r.db = db
	return r
}

// newCountdownRigOn is a rig on the storage given (r.db stays nil).
func newCountdownRigOn(t testing.TB, t0 time.Time, db pairing.Storage) *countdownRig {
	r := &countdownRig{t: t, clock: &clock{t: t0}}
	r.slack = fakeslack.New(func(v string) { t.Errorf("%s", v) })
	t.Cleanup(r.slack.Close)
	r.slack.SetClock(r.clock.Now)
	r.wawp = fakewawp.New("tok")
	t.Cleanup(r.wawp.Close)
	r.wawp.SetClock(r.clock.Now)
	r.wawp.AddInstance(rigInstance, "")
	r.svc = pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), db, pairing.Config{Now: r.clock.Now})
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, ""), APIURL: r.slack.APIURL(), BotToken: fakeslack.BotToken})
	return r
}

// start requests a code as a /link would and shows it; it returns the message ID.
func (r *countdownRig) start() string {
	msgID, url := r.slack.OpenMessage("U1", "⏳ Requesting…")
	p, err := r.svc.Start(context.Background(), pairing.Request{
		Instance: pairing.Instance{ID: rigInstance, Name: "support"}, Phone: pairing.PhoneFromDigits("201112223333"),
		User: "U1", ResponseURL: url, URLIssued: r.clock.Now(),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.bot.show(context.Background(), p, showing{answer: onEphemeral})
	return msgID
}

// startRefreshed is start followed by a Refresh click on the code: the
// click's response_url is then the editor of the code message, and the
// countdown moves in place.
func (r *countdownRig) startRefreshed() string {
	msgID := r.start()
	r.click(msgID, ActionRefresh, r.watched()[0].ID)
	return msgID
}

// tick runs one countdown tick at the current time and waits for its edits.
func (r *countdownRig) tick() {
	r.bot.Tick(context.Background())
	r.bot.work.Wait()
}

// changes returns every change to the messages of thread (a command's
// ack message ID: the messages its response_url and clicks on them
// brought), in the order they happened, after the change numbered after;
// and the number of the last one.
func (r *countdownRig) changes(thread string, after int) ([]fakeslack.Version, int) {
	var got []fakeslack.Version
	for _, m := range r.slack.Thread(thread) {
		for _, v := range m.Versions {
			if v.Seq > after {
				got = append(got, v)
			}
		}
	}
	slices.SortFunc(got, func(a, b fakeslack.Version) int { return a.Seq - b.Seq })
	if len(got) > 0 {
		after = got[len(got)-1].Seq
	}
	return got, after
}

// latest is what changed last among thread's messages: what the requester
// just saw happen.
func (r *countdownRig) latest(thread string) fakeslack.Version {
	all, _ := r.changes(thread, 0)
	if len(all) == 0 {
		return fakeslack.Version{}
	}
	return all[len(all)-1]
}

// changeCount is how many changes thread's messages have had.
func (r *countdownRig) changeCount(thread string) int {
	all, _ := r.changes(thread, 0)
	return len(all)
}

// editableCode reports the messages of user's screen in C0SUPPORT and in
// their DM that the bot could still edit and that show code: after a
// pairing ends there must be none, and while it lives at most one.
func (r *countdownRig) editableCode(user, code string) []fakeslack.Message {
	var out []fakeslack.Message
	for _, m := range append(r.slack.Screen(user, "C0SUPPORT"), r.slack.DMScreen(user)...) {
		if m.Editable && shows(m.Latest(), code) {
			out = append(out, m)
		}
	}
	return out
}

// run ticks every 5 s from t0 to until seconds, calling at[s] first, and
// returns a label for each change to thread's messages: the second it
// happened at and what it showed.
func (r *countdownRig) run(t0 time.Time, msgID string, until int, at map[int]func()) []string {
	var got []string
	_, seen := r.changes(msgID, 0) // the ack and the code
	for s := 0; s <= until; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		if f := at[s]; f != nil {
			f()
		}
		r.tick()
		var vs []fakeslack.Version
		vs, seen = r.changes(msgID, seen)
		for _, v := range vs {
			got = append(got, label(s, v))
		}
	}
	return got
}

func label(s int, v fakeslack.Version) string {
	b := string(v.Blocks)
	switch {
	case strings.Contains(b, "Refresh shows the time left"):
		return secs(s) + " code"
	case strings.Contains(b, `"header"`):
		for _, bar := range []string{"▓▓▓▓▓▓▓▓▓▓", "▓▓▓▓▓░░░░░", "▓▓░░░░░░░░"} {
			if strings.Contains(b, bar) {
				return secs(s) + " code " + bar
			}
		}
		return secs(s) + " code ?"
	case strings.Contains(b, "Expired"):
		return secs(s) + " expired"
	case strings.Contains(b, "WRONG phone"):
		return secs(s) + " wrong phone"
	case strings.Contains(b, "Linked"):
		return secs(s) + " linked"
	}
	return secs(s) + " " + v.Text
}

func secs(s int) string { return (time.Duration(s) * time.Second).String() }

// TestCountdownSchedule: what the requester sees of a code's life, in
// order. Before any click, the slash command's response_url is all the bot
// has, and each post to it adds a message (Slack replaces nothing through
// it): the code once, with only its absolute expiry, then the final state
// once, below it. After a click (Refresh), the click's response_url
// replaces the message in place: the countdown moves in two steps and the
// final state takes the code off that message. (This test used to expect
// the countdown edits through the command's response_url: under Slack's
// documented rules each would have added one more message with the code.)
func TestCountdownSchedule(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		at        map[int]func(r *countdownRig)
		want      []string // no click
		refreshed []string // Refresh clicked right after the code arrived
	}{
		{
			name:      "expires unused",
			want:      []string{"0s code", "2m30s expired"},
			refreshed: []string{"0s code", "0s code ▓▓▓▓▓▓▓▓▓▓", "1m15s code ▓▓▓▓▓░░░░░", "2m10s code ▓▓░░░░░░░░", "2m30s expired"},
		},
		{
			name:      "phone enters the code",
			at:        map[int]func(r *countdownRig){90: func(r *countdownRig) { r.wawp.EnterCode(rigInstance, r.wawp.Code(rigInstance)) }},
			want:      []string{"0s code", "1m30s linked"},
			refreshed: []string{"0s code", "0s code ▓▓▓▓▓▓▓▓▓▓", "1m15s code ▓▓▓▓▓░░░░░", "1m30s linked"},
		},
		{
			name:      "wrong phone linked",
			at:        map[int]func(r *countdownRig){15: func(r *countdownRig) { r.wawp.SetStatus(rigInstance, "WORKING", "201009998888") }},
			want:      []string{"0s code", "15s wrong phone"},
			refreshed: []string{"0s code", "0s code ▓▓▓▓▓▓▓▓▓▓", "15s wrong phone"},
		},
		{
			name: "Wawp times out, then the phone links",
			at: map[int]func(r *countdownRig){
				10: func(r *countdownRig) {
					r.wawp.FailAlways(rigInstance, fakewawp.SessionInfo, &fakewawp.Failure{Status: 504, ContentType: "text/html", Body: "<html>timeout</html>"})
				},
				40: func(r *countdownRig) { r.wawp.EnterCode(rigInstance, r.wawp.Code(rigInstance)) },
				80: func(r *countdownRig) { r.wawp.FailAlways(rigInstance, fakewawp.SessionInfo, nil) },
			},
			want:      []string{"0s code", "1m20s linked"},
			refreshed: []string{"0s code", "0s code ▓▓▓▓▓▓▓▓▓▓", "1m15s code ▓▓▓▓▓░░░░░", "1m20s linked"},
		},
		{
			name: "STARTING blip never ends the pairing",
			at: map[int]func(r *countdownRig){
				20: func(r *countdownRig) { r.wawp.WarmUp(rigInstance, 10*time.Second) },
			},
			want:      []string{"0s code", "2m30s expired"},
			refreshed: []string{"0s code", "0s code ▓▓▓▓▓▓▓▓▓▓", "1m15s code ▓▓▓▓▓░░░░░", "2m10s code ▓▓░░░░░░░░", "2m30s expired"},
		},
	}
	for _, tt := range tests {
		for _, refresh := range []bool{false, true} {
			name := tt.name
			if refresh {
				name += ", refreshed"
			}
			t.Run(name, func(t *testing.T) {
				r := newCountdownRig(t, t0)
				msgID := r.start()
				code := r.wawp.Code(rigInstance)
				id := r.watched()[0].ID
				at := map[int]func(){}
				for s, f := range tt.at {
					at[s] = func() { f(r) }
				}
				want := tt.want
				if refresh {
					want = tt.refreshed
					before := at[0]
					at[0] = func() {
						if before != nil {
							before()
						}
						r.click(msgID, ActionRefresh, id)
					}
				}
				all, _ := r.changes(msgID, 0)
				got := append([]string{label(0, all[1])}, r.run(t0, msgID, 180, at)...)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("what U1 saw happen (-want +got):\n%s", diff)
				}
				// The screen: the ack, the code message (replaced in place once
				// clicked), and below it the final state unless the click's
				// url could show it in place.
				screen := r.slack.Screen("U1", "C0SUPPORT")
				wantMessages := 3
				if refresh {
					wantMessages = 2
				}
				if len(screen) != wantMessages {
					t.Errorf("U1 sees %d messages, want %d:\n%s", len(screen), wantMessages, screenText(screen))
				}
				if last := screen[len(screen)-1].Latest(); shows(last, code) || strings.Contains(string(last.Blocks), `"header"`) {
					t.Errorf("the last message still shows the code: %s", last.Blocks)
				}
				if m := r.editableCode("U1", code); len(m) != 0 {
					t.Errorf("after the end, messages the bot could still edit show the code:\n%s", screenText(m))
				}
				if live, _ := r.db.WatchedPairings(t.Context()); len(live) != 0 {
					t.Errorf("still watching %d pairings after the final state", len(live))
				}
			})
		}
	}
}

// watched is the store's watch list.
func (r *countdownRig) watched() []pairing.Pairing {
	w, err := r.db.WatchedPairings(r.t.Context())
	if err != nil {
		r.t.Fatal(err)
	}
	return w
}

// screenText is a screen as text, for failure messages.
func screenText(ms []fakeslack.Message) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "  [%s %s editable=%v] %s\n", m.ID, m.Via, m.Editable, strings.ReplaceAll(shownText(m.Latest()), "\n", " | "))
	}
	return b.String()
}

// The budget is shared with whatever else used the url: with only two uses
// left of the click's url, the countdown edits nothing (they are the final
// state's) and the final state still arrives.
func TestCountdownKeepsTwoUsesForFinalState(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed()
	p, _ := r.db.WatchedPairings(t.Context())
	for range 2 {
		if err := r.db.UseResponseURL(t.Context(), p[0].ClickURL, t0, t0, 0); err != nil {
			t.Fatal(err)
		}
	}
	got := r.run(t0, msgID, 180, nil)
	if diff := cmp.Diff([]string{"2m30s expired"}, got); diff != "" {
		t.Errorf("edits (-want +got):\n%s", diff)
	}
}

// The final state has two uses of the response_url, not one: when its
// first post is lost (the connection breaks before Slack takes it) or
// answered 5xx, it is posted again, and the expired code leaves the message.
func TestFinalStateSurvivesOneLostPost(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		fault func(r *countdownRig)
	}{
		{"connection lost before Slack took it", func(r *countdownRig) { r.slack.DropNextResponse() }},
		{"Slack answered 500", func(r *countdownRig) { r.slack.FailNextResponse(http.StatusInternalServerError) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			msgID := r.start()
			code := r.wawp.Code(rigInstance)
			got := r.run(t0, msgID, 200, map[int]func(){150: func() { tt.fault(r) }})
			if last := r.latest(msgID); shows(last, code) || !strings.Contains(shownText(last), "Expired") {
				t.Errorf("the pairing expired, but after a lost final post the message shows:\n%s\n(edits %v, %d still watched)",
					shownText(last), got, r.db.WatchedCount())
			}
			if n := r.db.WatchedCount(); n != 0 {
				t.Errorf("%d pairings still watched after the final state was shown", n)
			}
		})
	}
}

// When Slack allows no more posts to a message that still shows a code
// (every use spent, e.g. final posts lost again and again), nothing more can
// be done: the bot says so in its log at warn level, naming the pairing.
func TestNoUseLeftForTheFinalStateIsLogged(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	var logs syncBuffer
	r.bot.log = slog.New(slog.NewTextHandler(&logs, nil))
	msgID := r.start()
	w, _ := r.db.WatchedPairings(t.Context())
	for range pairing.ResponseURLUses - 1 { // whatever else used the url took the rest
		if err := r.db.UseResponseURL(t.Context(), w[0].ResponseURL, t0, t0, 0); err != nil {
			t.Fatal(err)
		}
	}
	r.run(t0, msgID, 160, nil)
	if n := r.db.WatchedCount(); n != 0 {
		t.Errorf("%d pairings still watched with no use left", n)
	}
	var warned bool
	for _, line := range strings.Split(logs.String(), "\n") {
		warned = warned || strings.Contains(line, "level=WARN") && strings.Contains(line, "pairing="+w[0].ID) && strings.Contains(line, "still shows")
	}
	if !warned {
		t.Errorf("no warning that the message still shows a code:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the bot's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// A 429 on an edit is retried (after Retry-After) without spending the
// budget twice; a 500 is retried too, but Slack may have counted it, so it
// costs a use: the countdown skips its last step and the final state keeps
// its two uses. A 404 ends editing for that message.
func TestCountdownSlackFaults(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed()
	r.slack.RateLimitNext(time.Second)
	r.slack.FailNextResponse(http.StatusInternalServerError)
	got := r.run(t0, msgID, 180, nil)
	want := []string{"1m15s code ▓▓▓▓▓░░░░░", "2m30s expired"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("edits (-want +got):\n%s", diff)
	}

	r2 := newCountdownRig(t, t0)
	msgID = r2.startRefreshed()
	r2.slack.FailNextResponse(http.StatusNotFound)
	if got := r2.run(t0, msgID, 180, nil); len(got) != 0 {
		t.Errorf("edits after the url was gone: %v", got)
	}
	if live, _ := r2.db.WatchedPairings(t.Context()); len(live) != 0 {
		t.Errorf("still watching a message whose url is gone")
	}
}

// Slack did not count a post it answered 429, whatever its Retry-After
// says: none, an HTTP date, or garbage (slack-go turns only a whole number
// of seconds into *slack.RateLimitedError). The use is given back and the
// post retried after a pause (1 s when Retry-After gives no number).
func TestRateLimitWithoutRetryAfterGivesTheUseBack(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name       string
		retryAfter func() string
		always     bool // every post answered 429
	}{
		{"no Retry-After", func() string { return "" }, false},
		{"Retry-After as an HTTP date", func() string { return time.Now().UTC().Format(http.TimeFormat) }, false},
		{"Retry-After garbage", func() string { return "soon" }, false},
		{"no Retry-After, every time", func() string { return "" }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newCountdownRig(t, t0)
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if hits.Add(1) == 1 || tt.always {
					if ra := tt.retryAfter(); ra != "" {
						w.Header().Set("Retry-After", ra)
					}
					http.Error(w, "rate_limited", http.StatusTooManyRequests)
					return
				}
				w.Write([]byte("ok"))
			}))
			defer srv.Close()
			url := srv.URL + "/response/x"
			got := r.bot.respond(context.Background(), r.bot.log, url, t0, 0, EndedView())
			left := usesLeft(t, r.db, url, t0)
			wantOutcome, wantHits, wantLeft := posted, int32(2), pairing.ResponseURLUses-1
			if tt.always {
				wantOutcome, wantHits, wantLeft = postFailed, maxPostTries, pairing.ResponseURLUses
			}
			if got != wantOutcome || hits.Load() != wantHits || left != wantLeft {
				t.Errorf("post outcome %d after %d tries, %d uses left; want outcome %d after %d tries, %d uses left (Slack counted no 429)",
					got, hits.Load(), left, wantOutcome, wantHits, wantLeft)
			}
		})
	}
}

// usesLeft is how many posts url still allows at now, found by taking
// them all.
func usesLeft(t *testing.T, db pairing.Storage, url string, now time.Time) int {
	t.Helper()
	for n := 0; ; n++ {
		switch err := db.UseResponseURL(t.Context(), url, now, now, 0); {
		case errors.Is(err, pairing.ErrBudgetSpent):
			return n
		case err != nil:
			t.Fatal(err)
		}
	}
}

// A 404 on a countdown edit (the agent dismissed the ephemeral message
// after reading the code out) ends the posts to that message, not the
// pairing: when the phone then links, the link is recorded and audited, the
// code is wiped from the store, and nothing stays watched.
func TestDismissedMessageStillAdvancesThePairing(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed()
	w, _ := r.db.WatchedPairings(t.Context())
	id := w[0].ID
	code := r.wawp.Code(rigInstance)
	r.run(t0, msgID, 90, map[int]func(){75: func() { r.slack.FailNextResponse(http.StatusNotFound) }})
	versions := r.changeCount(msgID)
	if err := r.wawp.EnterCode(rigInstance, code); err != nil {
		t.Fatal(err)
	}
	r.run(t0.Add(95*time.Second), msgID, 20, nil)
	p, _ := r.db.Pairing(t.Context(), id)
	if p.State != pairing.StateLinked || p.Code != "" {
		t.Errorf("the phone linked after the message went away: state %q, code in store %q", p.State, p.Code)
	}
	if diff := cmp.Diff([]string{"requested", "code_issued", "linked"}, r.auditKinds(id)); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	if n := r.changeCount(msgID) - versions; n != 0 {
		t.Errorf("%d posts to a message whose url is gone", n)
	}
	if n := r.db.WatchedCount(); n != 0 {
		t.Errorf("%d pairings still watched after the link", n)
	}
}

// flakyBudget fails the next fail uses of a response_url as a database
// that cannot be reached would, before taking anything.
type flakyBudget struct {
	pairing.Storage
	fail atomic.Int32
}

func (s *flakyBudget) UseResponseURL(ctx context.Context, url string, issued, now time.Time, keep int) error {
	if s.fail.Add(-1) >= 0 {
		return fmt.Errorf("response_url %q: %w", "…", pairing.ErrUnavailable)
	}
	return s.Storage.UseResponseURL(ctx, url, issued, now, keep)
}

// ClaimView takes a claimed edit's use with its claim: it fails alike.
func (s *flakyBudget) ClaimView(ctx context.Context, c pairing.ViewClaim) (bool, error) {
	if c.URL != "" && s.fail.Add(-1) >= 0 {
		return false, fmt.Errorf("claim view: %w", pairing.ErrUnavailable)
	}
	return s.Storage.ClaimView(ctx, c)
}

// A storage failure while taking a response_url use is not a spent
// budget: the final view (here: linked) is posted by the next tick, and
// the code leaves the message. (Before, any error counted as "spent",
// and for a final view that stopped editing for good: the message kept
// showing the code.)
func TestStorageFailureTakingAUseIsNotASpentBudget(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	db := &flakyBudget{Storage: r.db}
	r.svc = pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), db, pairing.Config{Now: r.clock.Now})
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, "")})
	msgID := r.start()
	code := r.wawp.Code(rigInstance)
	if err := r.wawp.EnterCode(rigInstance, code); err != nil {
		t.Fatal(err)
	}
	db.fail.Store(1)
	r.clock.Set(t0.Add(5 * time.Second))
	r.tick() // the pairing ends as linked; its post cannot take a use
	if last := r.latest(msgID); !shows(last, code) {
		t.Fatalf("the storage failed, yet the message changed:\n%s", shownText(last))
	}
	r.clock.Set(t0.Add(10 * time.Second))
	r.tick()
	if m := shownText(r.latest(msgID)); !strings.Contains(m, "is now connected") {
		t.Errorf("after the storage recovered the message shows:\n%s\nwant Linked", m)
	}
	if n := r.db.WatchedCount(); n != 0 {
		t.Errorf("%d pairings still watched after the link was shown", n)
	}
}

// A pairing that ended before the Reason vocabulary was one (stored as
// "wawp:timeout", "internal", "status:WORKING", "status:OPENING") is still
// drawn with its own view after an upgrade: its Reason reads in today's
// spelling.
func TestOldReasonsKeepTheirViews(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		state  pairing.State
		reason string
		want   string
	}{
		{pairing.StateFailed, "wawp:timeout", "Wawp did not answer in time"},
		{pairing.StateFailed, "internal", "Something went wrong inside the bot"},
		{pairing.StateRefused, "status:WORKING", "is already linked and working"},
		{pairing.StateRefused, "status:OPENING", "reports status `OPENING`"},
	} {
		t.Run(tt.reason, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			msgID, url := r.slack.OpenMessage("U1", "⏳ Requesting…")
			var p pairing.Pairing
			raw := fmt.Sprintf(`{"id":"old1","instance":%q,"instance_name":"support","phone":"201112223333","requested_by":"U1","response_url":%q,"url_issued":%q,"state":%q,"reason":%q}`,
				rigInstance, url, t0.Format(time.RFC3339), tt.state, tt.reason)
			if err := json.Unmarshal([]byte(raw), &p); err != nil {
				t.Fatal(err)
			}
			if err := r.db.Restore([]pairing.Pairing{p}); err != nil {
				t.Fatal(err)
			}
			r.bot.show(context.Background(), pairing.Pairing{ID: "old1"}, showing{answer: onEphemeral})
			if m := shownText(r.latest(msgID)); !strings.Contains(m, tt.want) {
				t.Errorf("shows:\n%s\nwant %q", m, tt.want)
			}
		})
	}
}

// An edit whose answer is lost (the client timed out, but Slack took the
// post) keeps its use: giving it back would let the countdown take one of
// the final state's uses, and the final state could become Slack's 6th
// post, which fails, leaving the code on the message.
func TestLostAnswerKeepsItsUse(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed()
	r.bot.cfg.HTTP = &http.Client{Timeout: time.Second}
	r.slack.SlowNextResponse(3 * time.Second) // the first countdown edit
	got := r.run(t0, msgID, 180, nil)
	// The lost edit showed; the bot, not knowing, posts that step again
	// and then skips the last step to keep the final state's two uses.
	want := []string{"1m15s code ▓▓▓▓▓░░░░░", "1m20s code ▓▓▓▓▓░░░░░", "2m30s expired"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("edits (-want +got):\n%s", diff)
	}
	if p, _ := r.db.WatchedPairings(t.Context()); len(p) != 0 {
		t.Errorf("still watching %d pairings", len(p))
	}
}

func TestCountdownStep(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	p := pairing.Pairing{IssuedAt: t0, ExpiresAt: t0.Add(150 * time.Second)}
	for _, tt := range []struct {
		at, step int
		drawn    int
	}{{0, 0, 0}, {74, 0, 0}, {75, 1, 75}, {129, 1, 75}, {130, 2, 130}, {149, 2, 130}, {150, 2, 130}} {
		step, drawn := countdownStep(p, t0.Add(time.Duration(tt.at)*time.Second))
		if step != tt.step || drawn != t0.Add(time.Duration(tt.drawn)*time.Second) {
			t.Errorf("at %ds: step %d drawn %s, want %d and +%ds", tt.at, step, drawn.Sub(t0), tt.step, tt.drawn)
		}
	}
}

// click presses a button of msgID's message as U1, the way Slack delivers
// it, and waits for every edit in flight.
func (r *countdownRig) click(msgID, action, pairingID string) {
	r.press(msgID, action, pairingID)
	r.bot.work.Wait()
}

// press is click without waiting for edits other than the click's own.
func (r *countdownRig) press(msgID, action, pairingID string) {
	r.pressCtx(context.Background(), msgID, action, pairingID)
}

// pressCtx is press with the context the bot handles the click in. The
// button is the one in thread msgID's newest message that shows it (the
// newest message of the thread when none does: a stale copy's button).
func (r *countdownRig) pressCtx(ctx context.Context, msgID, action, pairingID string) {
	r.bot.interaction(ctx, r.clickBy("U1", msgID, action, pairingID))
}

// clickBy is the callback Slack sends when user presses action's button
// in thread msgID (see pressCtx).
func (r *countdownRig) clickBy(user, msgID, action, pairingID string) slack.InteractionCallback {
	target := r.target(msgID, action)
	var cb slack.InteractionCallback
	cb.Type = slack.InteractionTypeBlockActions
	cb.User.ID = user
	cb.ResponseURL = r.slack.NewResponseURL(target.ID)
	cb.Container = slack.Container{Type: "message", IsEphemeral: target.Ephemeral, ChannelID: target.Channel, MessageTs: target.TS}
	cb.ActionCallback.BlockActions = []*slack.BlockAction{{ActionID: action, Value: pairingID}}
	return cb
}

// target is the message of thread msgID a click on action lands on.
func (r *countdownRig) target(msgID, action string) fakeslack.Message {
	thread := r.slack.Thread(msgID)
	for i := len(thread) - 1; i >= 0; i-- {
		if strings.Contains(string(thread[i].Latest().Blocks), `"action_id":"`+action+`"`) {
			return thread[i]
		}
	}
	if len(thread) < 2 {
		r.t.Fatalf("no message to click %s on in thread %s", action, msgID)
	}
	return thread[len(thread)-1]
}

// A Cancel pressed on a stale copy of the message, after the phone linked,
// shows how the pairing ended rather than a generic notice.
func TestCancelAfterTheEndShowsTheEnd(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.start()
	watched, _ := r.db.WatchedPairings(t.Context())
	r.wawp.EnterCode(rigInstance, r.wawp.Code(rigInstance))
	r.clock.Set(t0.Add(5 * time.Second))
	r.tick()
	r.click(msgID, ActionCancel, watched[0].ID)
	if last := r.latest(msgID); !strings.Contains(string(last.Blocks), "Linked —") {
		t.Errorf("cancel after the link shows: %s", last.Blocks)
	}
}

// A Cancel racing a countdown edit that is stuck behind a 429 must still
// end with the cancelled message: the code never reappears.
func TestCancelRacingAnEdit(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed()
	watched, _ := r.db.WatchedPairings(t.Context())
	id := watched[0].ID
	r.clock.Set(t0.Add(75 * time.Second)) // a countdown step is due
	r.slack.RateLimitNext(time.Second)
	r.bot.Tick(context.Background())
	if !r.slack.WaitFor(5*time.Second, func() bool { return r.slack.RateLimited() == 1 }) {
		t.Fatal("the countdown edit never reached Slack")
	}
	// The edit now waits out its 429 while the agent clicks Cancel.
	r.click(msgID, ActionCancel, id)
	last := r.latest(msgID)
	if !strings.Contains(string(last.Blocks), "Cancelled") || strings.Contains(string(last.Blocks), `"header"`) {
		t.Errorf("after cancel the message shows: %s", last.Blocks)
	}
}

// "New code" that Wawp turns away before WhatsApp sees it leaves the first
// code working: the bot keeps tracking it (and reports its link), and a
// later "Try again" replaces it.
func TestNewCodeRefusedKeepsTheOldCode(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	t.Run("the old code links", func(t *testing.T) {
		r := newCountdownRig(t, t0)
		msgID := r.start()
		first, _ := r.db.WatchedPairings(t.Context())
		code := r.wawp.Code(rigInstance)
		r.wawp.WarmUp(rigInstance, 10*time.Second)
		r.click(msgID, ActionNewCode, first[0].ID)
		if last := r.latest(msgID); !strings.Contains(string(last.Blocks), "still starting up") {
			t.Fatalf("new code during warm-up shows: %s", last.Blocks)
		}
		r.wawp.WarmUp(rigInstance, 0)
		if err := r.wawp.EnterCode(rigInstance, code); err != nil {
			t.Fatalf("the first code no longer works at Wawp: %v", err)
		}
		r.clock.Set(t0.Add(5 * time.Second))
		r.tick()
		if last := r.latest(msgID); !strings.Contains(string(last.Blocks), "Linked —") {
			t.Errorf("the first code's link was not reported: %s", last.Blocks)
		}
	})
	t.Run("try again replaces it", func(t *testing.T) {
		r := newCountdownRig(t, t0)
		msgID := r.start()
		first, _ := r.db.WatchedPairings(t.Context())
		r.wawp.WarmUp(rigInstance, 10*time.Second)
		r.click(msgID, ActionNewCode, first[0].ID)
		var warming string
		for _, line := range strings.Split(string(r.latest(msgID).Blocks), `"value":"`)[1:] {
			warming = line[:strings.Index(line, `"`)]
		}
		r.clock.Set(t0.Add(11 * time.Second))
		r.click(msgID, ActionTryAgain, warming)
		if last := r.latest(msgID); !strings.Contains(string(last.Blocks), "Code 2 of 3") {
			t.Fatalf("try again shows: %s", last.Blocks)
		}
		if p, _ := r.db.Pairing(t.Context(), first[0].ID); p.State != pairing.StateSuperseded {
			t.Errorf("first pairing is %s, want superseded", p.State)
		}
	})
}

// A New code click on a code just past its expiry (before a tick marked it
// expired) whose request Wawp turns away before WhatsApp sees it (warm-up:
// not counted) ends the old pairing as expired: its code is wiped from the
// store and the end is audited, although nothing watches it any more (the
// renewal's answer now holds the message).
func TestNewCodeRefusedAfterExpiryEndsTheOldPairing(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.start()
	w, _ := r.db.WatchedPairings(t.Context())
	a := w[0]
	r.clock.Set(t0.Add(151 * time.Second)) // just past expiry, no tick yet
	r.wawp.WarmUp(rigInstance, time.Minute)
	r.click(msgID, ActionNewCode, a.ID)
	if last := shownText(r.latest(msgID)); !strings.Contains(last, "still starting up") {
		t.Errorf("New code during warm-up shows:\n%s", last)
	}
	for s := 155; s <= 175; s += 5 {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	got, err := r.db.Pairing(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Code != "" || got.State != pairing.StateExpired {
		t.Errorf("old pairing after its expiry: state %q, code in store %q, want it expired with the code wiped", got.State, got.Code)
	}
	if diff := cmp.Diff([]string{"requested", "code_issued", "expired"}, r.auditKinds(a.ID)); diff != "" {
		t.Errorf("audit of the old pairing (-want +got):\n%s", diff)
	}
}

// A double click on New code: the second click comes from the message as
// it was, carrying the first pairing's ID, and arrives after the first
// click showed the new code. It renews nothing (no request, no refusal
// audited) and the message goes on showing the new, live code.
func TestDoubleClickNewCodeKeepsTheNewCode(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, action := range []string{ActionNewCode, ActionTryAgain} {
		t.Run(action, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			msgID := r.start()
			w, _ := r.db.WatchedPairings(t.Context())
			a := w[0]
			clicked := a.ID
			if action == ActionTryAgain { // a New code turned away by a warm-up, then Try again twice
				r.wawp.WarmUp(rigInstance, 10*time.Second)
				r.click(msgID, ActionNewCode, a.ID)
				r.clock.Set(t0.Add(11 * time.Second))
				w, _ := r.db.WatchedPairings(t.Context())
				for _, p := range w {
					if p.ID != a.ID {
						t.Fatalf("watched %+v besides the first pairing", p)
					}
				}
				m := shownText(r.latest(msgID))
				if !strings.Contains(m, "still starting up") {
					t.Fatalf("New code during the warm-up shows:\n%s", m)
				}
				events, _ := r.db.AuditEvents(t.Context(), time.Time{}, func(e pairing.Event) bool {
					return e.Kind == pairing.EventError && e.Outcome == pairing.OutcomeStatusStarting
				})
				if len(events) != 1 {
					t.Fatalf("warm-up events %+v", events)
				}
				clicked = events[0].Pairing
			}
			r.click(msgID, action, clicked)
			second := r.wawp.Code(rigInstance)
			if !shows(r.latest(msgID), second) {
				t.Fatalf("the first click did not show the new code:\n%s", shownText(r.latest(msgID)))
			}
			calls := len(r.wawp.Calls(fakewawp.RequestCode))
			r.click(msgID, action, clicked) // the double click's second half
			last := r.latest(msgID)
			if !shows(last, second) {
				t.Errorf("after a double click on %s the live code %s is gone; the message shows:\n%s", action, formatCode(second), shownText(last))
			}
			if n := len(r.wawp.Calls(fakewawp.RequestCode)) - calls; n != 0 {
				t.Errorf("the second click asked Wawp for %d more codes", n)
			}
			if refusals, _ := r.db.AuditEvents(t.Context(), time.Time{}, func(e pairing.Event) bool { return e.Kind == "refused" }); len(refusals) != 0 {
				t.Errorf("the second click was audited as refused: %+v", refusals)
			}
		})
	}
}

// The second half of a double click on New code is answered with the
// renewal its first half asked for, through the second click's fresh
// response_url, and the message's later edits go through that url too
// (each click brings a fresh budget of posts): the holder is rebound to it.
func TestDoubleClickRebindsToTheFreshURL(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.start()
	w, _ := r.db.WatchedPairings(t.Context())
	a := w[0]
	r.click(msgID, ActionNewCode, a.ID)
	versions := r.changeCount(msgID)
	// The double click's second half, on the same message (the one the
	// first half's answer replaced).
	cb := r.clickBy("U1", msgID, ActionNewCode, a.ID)
	r.bot.interaction(context.Background(), cb)
	r.bot.work.Wait()
	holder, err := r.db.Holder(t.Context(), rigInstance, r.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if holder.ClickURL != cb.ResponseURL {
		t.Errorf("the pairing holding the message is edited through %s, want the second click's fresh %s", holder.ClickURL, cb.ResponseURL)
	}
	last := r.latest(msgID)
	if n := r.changeCount(msgID) - versions; n != 1 || last.Via != fakeslack.ViaClickURL || !shows(last, r.wawp.Code(rigInstance)) {
		t.Errorf("the second click posted %d versions, the last (via %s) showing:\n%s\nwant one, the live code", n, last.Via, shownText(last))
	}
	if th := r.slack.Thread(msgID); len(th) != 2 {
		t.Errorf("the thread has %d messages, want the ack and the code message:\n%v", len(th), th)
	}
}

// A New code refused because another pairing holds the instance names the
// instance it was asked for (the refusal of a renewal has no stored
// pairing of its own to draw the name from).
func TestNewCodeRefusedByInstanceLimitNamesTheInstance(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.start()
	w, _ := r.db.WatchedPairings(t.Context())
	r.run(t0, msgID, 155, nil) // the first code expires
	if _, err := r.svc.Start(context.Background(), pairing.Request{
		Instance: pairing.Instance{ID: rigInstance, Name: "support"}, Phone: pairing.PhoneFromDigits("201009998888"),
		User: "U2", ResponseURL: r.slack.NewResponseURL(msgID), URLIssued: r.clock.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	r.click(msgID, ActionNewCode, w[0].ID)
	if got := shownText(r.latest(msgID)); !strings.Contains(got, "support already has a live code, requested by <@U2>") {
		t.Errorf("the refusal shows:\n%s", got)
	}
}

// shows reports whether a message version shows code (as XXXX-XXXX).
func shows(v fakeslack.Version, code string) bool {
	return code != "" && strings.Contains(string(v.Blocks), formatCode(code))
}

// A New code click while a countdown edit waits out a 429: the retry is
// re-rendered from the stored pairing, and dropped since that pairing was
// replaced; the dead first code never covers the new one.
func TestRetryAfterNewCodeKeepsTheNewCode(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed()
	first := r.wawp.Code(rigInstance)
	watched, _ := r.db.WatchedPairings(t.Context())
	r.clock.Set(t0.Add(75 * time.Second)) // a countdown step is due
	r.slack.RateLimitNext(time.Second)
	r.bot.Tick(context.Background())
	if !r.slack.WaitFor(5*time.Second, func() bool { return r.slack.RateLimited() == 1 }) {
		t.Fatal("the countdown edit never reached Slack")
	}
	// The edit now waits out its 429 while the agent clicks New code.
	r.click(msgID, ActionNewCode, watched[0].ID)
	second := r.wawp.Code(rigInstance)
	last := r.latest(msgID)
	if shows(last, first) || !shows(last, second) {
		t.Errorf("after New code the message shows %s, want the new code %s (the first was %s)", last.Blocks, second, first)
	}
}

// A tick edit decided for the first pairing that runs only after a New
// code click showed the second one posts nothing: the first pairing was
// superseded, and a superseded pairing never writes over its successor
// (the two share one message).
func TestTickEditAfterNewCodeIsSilent(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed()
	watched, _ := r.db.WatchedPairings(t.Context())
	r.clock.Set(t0.Add(75 * time.Second)) // a countdown step is due
	// The tick decides to edit; its edit waits until the click is done.
	clicked := make(chan struct{})
	r.bot.beforeEdit = func() { <-clicked }
	r.bot.Tick(context.Background())
	r.press(msgID, ActionNewCode, watched[0].ID)
	second := r.wawp.Code(rigInstance)
	versions := r.changeCount(msgID)
	close(clicked)
	r.bot.work.Wait()
	if last := r.latest(msgID); !shows(last, second) {
		t.Errorf("after New code the message shows %s %s, want the new code", last.Text, last.Blocks)
	}
	if n := r.changeCount(msgID) - versions; n != 0 {
		t.Errorf("the superseded pairing posted %d more versions", n)
	}
	if p, _ := r.db.Pairing(t.Context(), watched[0].ID); p.State != pairing.StateSuperseded {
		t.Errorf("first pairing is %s, want superseded", p.State)
	}
	if w, _ := r.db.WatchedPairings(t.Context()); len(w) != 1 || w[0].ID == watched[0].ID {
		t.Errorf("watched %+v, want only the new pairing", w)
	}
}

// A countdown edit still on its way to Slack when New code is clicked
// lands before the new code is shown, never after it: a pairing and its
// renewal share one message, and a message has one writer at a time.
func TestEditInFlightLandsBeforeTheNewCode(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed()
	watched, _ := r.db.WatchedPairings(t.Context())
	first := r.wawp.Code(rigInstance)
	r.clock.Set(t0.Add(75 * time.Second)) // a countdown step is due
	release := r.slack.HoldNextResponse()
	r.bot.Tick(context.Background())
	if !r.slack.WaitFor(5*time.Second, func() bool { return r.slack.HeldResponses() == 1 }) {
		t.Fatal("the countdown edit never reached Slack")
	}
	clicked := make(chan struct{})
	go func() {
		defer close(clicked)
		r.press(msgID, ActionNewCode, watched[0].ID)
	}()
	// The click's post must wait for the edit in flight: either it queues
	// behind it, or (the bug) it reaches Slack first.
	waiting := func() bool {
		return r.bot.locks.queued(watched[0].ID) == 2 || shows(r.latest(msgID), r.wawp.Code(rigInstance)) && r.wawp.Code(rigInstance) != first
	}
	if !poll(5*time.Second, waiting) {
		t.Fatal("the New code click neither posted nor waited")
	}
	release()
	select {
	case <-clicked:
	case <-time.After(5 * time.Second):
		t.Fatal("the click never finished")
	}
	r.bot.work.Wait()
	if last := r.latest(msgID); shows(last, first) || !shows(last, r.wawp.Code(rigInstance)) {
		t.Errorf("after New code the message shows %s, want the new code (the first was %s)", last.Blocks, first)
	}
}

// A message's lock exists only while someone holds or waits for it: after
// a whole countdown, none is left.
func TestMessageLocksReleasedAfterEdits(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.start()
	r.run(t0, msgID, 200, nil)
	r.bot.locks.mu.Lock()
	n := len(r.bot.locks.m)
	r.bot.locks.mu.Unlock()
	if n != 0 {
		t.Errorf("%d message locks left", n)
	}
}

// Clicks (New code, Refresh, Cancel), a tick and pruning at once, under
// -race: whatever the interleaving, once nothing is live the message shows
// no code, and nothing stays watched.
func TestConcurrentClicksTicksAndPruningEndWithoutCode(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for i := range 15 {
		r := newCountdownRig(t, t0)
		msgID := r.start()
		w, _ := r.db.WatchedPairings(t.Context())
		id := w[0].ID
		r.clock.Set(t0.Add(75 * time.Second)) // a countdown step is due
		done := make(chan struct{})
		go func() {
			defer close(done)
			var wg sync.WaitGroup
			wg.Go(func() { r.press(msgID, ActionNewCode, id) })
			wg.Go(func() { r.bot.Tick(context.Background()) })
			wg.Go(func() { r.press(msgID, ActionRefresh, id) })
			if i%2 == 0 {
				wg.Go(func() { r.press(msgID, ActionCancel, id) })
			}
			wg.Go(func() { r.svc.Prune(t.Context()) })
			wg.Wait()
			r.bot.work.Wait()
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("stuck")
		}
		for s := 80; s <= 400; s += 5 {
			r.clock.Set(t0.Add(time.Duration(s) * time.Second))
			r.tick()
		}
		if last := r.latest(msgID); strings.Contains(string(last.Blocks), `"header"`) {
			t.Errorf("iteration %d: message still shows a code after everything ended:\n%s", i, shownText(last))
		}
		if n := r.db.WatchedCount(); n != 0 {
			t.Errorf("iteration %d: %d still watched", i, n)
		}
	}
}

// poll checks cond every millisecond until it holds or timeout passes, for
// conditions nothing signals (the bot's own locks, the store).
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.After(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// A click on a code just past its expiry, before a tick marked it expired,
// shows the expired view; the tick that then ends the pairing must still
// stop watching it, although the view it would show is already there.
func TestClickJustPastExpiryStopsWatching(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, action := range []string{ActionRefresh, ActionCancel} {
		t.Run(action, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			msgID := r.start()
			watched, _ := r.db.WatchedPairings(t.Context())
			r.clock.Set(t0.Add(151 * time.Second))
			r.click(msgID, action, watched[0].ID)
			if last := r.latest(msgID); !strings.Contains(string(last.Blocks), "Expired") {
				t.Fatalf("click past expiry shows %s", last.Blocks)
			}
			versions := r.changeCount(msgID)
			for s := 155; s <= 165; s += 5 {
				r.clock.Set(t0.Add(time.Duration(s) * time.Second))
				r.tick()
			}
			if w, _ := r.db.WatchedPairings(t.Context()); len(w) != 0 {
				t.Errorf("still watching %d pairings after they expired", len(w))
			}
			if p, _ := r.db.Pairing(t.Context(), watched[0].ID); p.State != pairing.StateExpired {
				t.Errorf("state %s, want expired", p.State)
			}
			if n := r.changeCount(msgID) - versions; n != 0 {
				t.Errorf("%d more posts of the view already shown", n)
			}
		})
	}
}

// command runs /link text as U1 the way the bot does after the ack, and
// returns the message's ID.
func (r *countdownRig) command(text string) string {
	msgID, url := r.slack.OpenMessage("U1", "⏳ Requesting a pairing code…")
	cmd := slack.SlashCommand{UserID: "U1", ChannelID: "C0SUPPORT", Command: "/link", Text: text, ResponseURL: url, TriggerID: "T1"}
	reply := r.bot.prepare(cmd, r.clock.Now())
	if reply.after == nil {
		r.t.Fatalf("/link %s was answered in the ack: %s", text, reply.msg.Text)
	}
	ctx := context.Background()
	reply.after(ctx, ctx, r.bot.log)
	return msgID
}

// seedDeadRequest stores what a process killed mid-request leaves in its
// file: a reserved pairing whose request never settled.
func (r *countdownRig) seedDeadRequest(id string) (msgID string) {
	msgID, url := r.slack.OpenMessage("U1", "⏳ Requesting a pairing code for +20 11 12223333 on support…")
	now := r.clock.Now()
	d, err := r.db.Reserve(r.t.Context(), pairing.Reservation{
		Pairing: pairing.Pairing{
			ID: id, Instance: rigInstance, InstanceName: "support", Phone: "201112223333", RequestedBy: "U1",
			Channel: "C0SUPPORT", ResponseURL: url, URLIssued: now,
		},
		PhoneLimit: pairing.DefaultPhoneLimit, UserLimit: pairing.DefaultUserLimit, Now: now, Hold: r.svc.RequestLease(),
	})
	if err != nil || d.Refused != pairing.LimitNone {
		r.t.Fatalf("reserve: %+v %v", d, err)
	}
	return msgID
}

// A request cut off by a crash (kill -9, power loss) is watched from the
// moment it was reserved: when its lease runs out unsettled it ends as
// interrupted, its message says so (it counted; run /link again), the
// instance is free, and nothing is watched any more.
func TestCrashMidRequestEndsInterrupted(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.seedDeadRequest("dead")
	// Within the lease the request may still settle: its message is left alone.
	r.clock.Set(t0.Add(10 * time.Second))
	r.tick()
	if n := r.changeCount(msgID); n != 1 {
		t.Fatalf("message edited %d times within the lease", n-1)
	}
	r.clock.Set(t0.Add(r.svc.RequestLease()))
	r.tick()
	got := shownText(r.latest(msgID))
	for _, want := range []string{"Interrupted", "+20 11 12223333", "support", "counts", "1 of 3", "/link support +20 11 12223333"} {
		if !strings.Contains(got, want) {
			t.Errorf("interrupted message lacks %q:\n%s", want, got)
		}
	}
	if p, _ := r.db.Pairing(t.Context(), "dead"); p.State != pairing.StateInterrupted {
		t.Errorf("state %s, want interrupted", p.State)
	}
	if w, _ := r.db.WatchedPairings(t.Context()); len(w) != 0 {
		t.Errorf("still watching %d pairings", len(w))
	}
	events, _ := r.db.AuditEvents(t.Context(), time.Time{}, func(e pairing.Event) bool { return e.Kind == "interrupted" })
	if len(events) != 1 || events[0].Pairing != "dead" || events[0].Phone != "+20 11 ••• 333" {
		t.Errorf("audit interrupted events = %+v", events)
	}
	// The instance is free, and the interrupted request counted.
	next := r.start()
	if got := shownText(r.latest(next)); !strings.Contains(got, "Code 2 of 3") {
		t.Errorf("next code shows %s", got)
	}
}

// shownText is a message version's fallback and the text of its blocks,
// for substring checks.
func shownText(v fakeslack.Version) string {
	var blocks []struct {
		Text     *struct{ Text string } `json:"text"`
		Elements []struct{ Text any }   `json:"elements"`
	}
	json.Unmarshal(v.Blocks, &blocks)
	lines := []string{v.Text}
	for _, b := range blocks {
		if b.Text != nil {
			lines = append(lines, b.Text.Text)
		}
		for _, e := range b.Elements {
			switch t := e.Text.(type) {
			case string:
				lines = append(lines, t)
			case map[string]any:
				lines = append(lines, fmt.Sprint(t["text"]))
			}
		}
	}
	return strings.Join(lines, "\n")
}

// The answer to a /link that ends without a code (a refusal, a warm-up, a
// Wawp error) is rendered from the stored pairing; when its post is lost,
// the next tick posts it again, so the message never stays at "Requesting…".
func TestLostAnswerIsPostedAgain(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		setup func(*countdownRig)
		want  string
	}{
		{"already linked", func(r *countdownRig) { r.wawp.SetStatus(rigInstance, "WORKING", "201009998888") },
			"is already linked and working (to +20 10 09998888)"},
		{"warming up", func(r *countdownRig) { r.wawp.WarmUp(rigInstance, time.Minute) },
			"is still starting up. Try again in 5 s"},
		{"Wawp error", func(r *countdownRig) {
			r.wawp.FailNext(rigInstance, fakewawp.RequestCode, fakewawp.Failure{Status: 500, Body: `{"message":"boom"}`})
		}, "Wawp had an internal error"},
		{"phone limit", func(r *countdownRig) {
			for i := range 3 { // three codes for the phone on other instances
				d, err := r.db.Reserve(t.Context(), pairing.Reservation{
					Pairing:    pairing.Pairing{ID: fmt.Sprint("earlier", i), Instance: fmt.Sprint("OTHER", i), Phone: "201112223333", RequestedBy: "U2"},
					PhoneLimit: pairing.DefaultPhoneLimit, UserLimit: pairing.DefaultUserLimit, Now: t0.Add(-time.Duration(3-i) * time.Minute), Hold: time.Second,
				})
				if err != nil || d.Refused != pairing.LimitNone {
					r.t.Fatal(d, err)
				}
			}
		}, "already had 3 codes in the last 15 min. WhatsApp blocks pairing for hours after a few more, so the next code is allowed at <!date^1795615920^{time}|14:12 UTC> (in 12 min)"},
		{"instance held", func(r *countdownRig) {
			d, err := r.db.Reserve(t.Context(), pairing.Reservation{
				Pairing:    pairing.Pairing{ID: "holder", Instance: rigInstance, Phone: "201009998888", RequestedBy: "U2"},
				PhoneLimit: pairing.DefaultPhoneLimit, UserLimit: pairing.DefaultUserLimit, Now: t0, Hold: time.Minute,
			})
			if err != nil || d.Refused != pairing.LimitNone {
				r.t.Fatal(d, err)
			}
		}, "already has a live code, requested by <@U2> for +20 10 ••• 888"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			tt.setup(r)
			r.slack.DropNextResponse() // the answer never reaches Slack
			msgID := r.command(rigInstance + " +201112223333")
			if got := shownText(r.latest(msgID)); !strings.Contains(got, "Requesting") {
				t.Fatalf("the lost answer arrived: %s", got)
			}
			r.clock.Set(t0.Add(5 * time.Second))
			r.tick()
			if got := shownText(r.latest(msgID)); !strings.Contains(got, tt.want) {
				t.Errorf("after the next tick the message shows\n%s\nwant %q", got, tt.want)
			}
			watched, _ := r.db.WatchedPairings(t.Context())
			for _, w := range watched {
				if w.RequestedBy == "U1" {
					t.Errorf("still watching %+v after its answer was shown", w)
				}
			}
		})
	}
}

// A shutdown waits for a code request as long as one can take (its lease);
// a request still stuck after the grace is ended as interrupted, and its
// message says so before the bot exits.
func TestShutdownInterruptsAStuckRequest(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	if r.bot.cfg.ShutdownGrace < r.svc.RequestLease() {
		t.Errorf("default shutdown grace %s is shorter than a request's lease %s", r.bot.cfg.ShutdownGrace, r.svc.RequestLease())
	}
	r.bot.cfg.ShutdownGrace = 50 * time.Millisecond
	r.wawp.FailNext(rigInstance, fakewawp.RequestCode, fakewawp.Failure{Hang: true})
	msgID, url := r.slack.OpenMessage("U1", "⏳ Requesting a pairing code…")
	cmd := slack.SlashCommand{UserID: "U1", ChannelID: "C0SUPPORT", Command: "/link", Text: rigInstance + " +201112223333", ResponseURL: url}
	reply := r.bot.prepare(cmd, t0)
	r.bot.goWork(context.Background(), func(ctx context.Context) { reply.after(ctx, ctx, r.bot.log) })
	if !poll(5*time.Second, func() bool { return len(r.wawp.Calls(fakewawp.RequestCode)) == 1 }) {
		t.Fatal("request-code was never called")
	}
	r.bot.drain()
	got := shownText(r.latest(msgID))
	if !strings.Contains(got, "Interrupted") || !strings.Contains(got, "1 of 3") {
		t.Errorf("after shutdown the message shows\n%s\nwant it interrupted", got)
	}
	r.bot.work.Wait()
	if n := r.changeCount(msgID); n != 2 {
		t.Errorf("message has %d versions, want 2 (requesting, interrupted)", n)
	}
	if w, _ := r.db.WatchedPairings(t.Context()); len(w) != 0 {
		t.Errorf("still watching %+v", w)
	}
}

// auditKinds lists, oldest first, the kinds of pairing id's audit events.
func (r *countdownRig) auditKinds(id string) []string {
	events, err := r.db.AuditEvents(r.t.Context(), time.Time{}, func(e pairing.Event) bool { return e.Pairing == id })
	if err != nil {
		r.t.Fatal(err)
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, string(e.Kind))
	}
	return kinds
}

// A pairing replaced by New code ends as superseded, and the audit log says
// so like every other end: whether New code got its code, or was cut off
// mid-request by a shutdown (WhatsApp may have seen it, so the first code
// is void either way).
func TestSupersededPairingIsAudited(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	t.Run("new code issued", func(t *testing.T) {
		r := newCountdownRig(t, t0)
		msgID := r.start()
		first, _ := r.db.WatchedPairings(t.Context())
		r.click(msgID, ActionNewCode, first[0].ID)
		if diff := cmp.Diff([]string{"requested", "code_issued", "superseded"}, r.auditKinds(first[0].ID)); diff != "" {
			t.Errorf("audit of the replaced pairing (-want +got):\n%s", diff)
		}
	})
	t.Run("new code interrupted", func(t *testing.T) {
		r := newCountdownRig(t, t0)
		msgID := r.start()
		first, _ := r.db.WatchedPairings(t.Context())
		r.bot.cfg.ShutdownGrace = 50 * time.Millisecond
		r.wawp.FailNext(rigInstance, fakewawp.RequestCode, fakewawp.Failure{Hang: true})
		r.bot.goWork(context.Background(), func(ctx context.Context) { r.pressCtx(ctx, msgID, ActionNewCode, first[0].ID) })
		if !poll(5*time.Second, func() bool { return len(r.wawp.Calls(fakewawp.RequestCode)) == 2 }) {
			t.Fatal("request-code was never called for New code")
		}
		r.bot.drain()
		r.bot.work.Wait()
		if p, _ := r.db.Pairing(t.Context(), first[0].ID); p.State != pairing.StateSuperseded {
			t.Errorf("first pairing is %s, want superseded", p.State)
		}
		if diff := cmp.Diff([]string{"requested", "code_issued", "superseded"}, r.auditKinds(first[0].ID)); diff != "" {
			t.Errorf("audit of the replaced pairing (-want +got):\n%s", diff)
		}
	})
}

// postClock records, on the rig's clock, when each response_url post went
// out.
type postClock struct {
	mu    sync.Mutex
	now   func() time.Time
	times []time.Time
	next  http.RoundTripper
}

func (p *postClock) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, "/response/") {
		p.mu.Lock()
		p.times = append(p.times, p.now())
		p.mu.Unlock()
	}
	return p.next.RoundTrip(req)
}

// A response_url post answered 429 with a Retry-After longer than the bot
// waits in one call (MaxRetryWait) holds that url: nothing is posted to it
// until the Retry-After has run out (the fake fails the test on a post
// before), then the tick posts what is due by then. The hold is stored: a
// restarted bot waits it out too.
func TestResponseURLRetryAfterIsHonoured(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	rec := &postClock{now: r.clock.Now, next: http.DefaultTransport}
	r.bot.cfg.HTTP = &http.Client{Timeout: 10 * time.Second, Transport: rec}
	msgID := r.startRefreshed() // the click's response_url edits the message in place
	const retryAfter = 30 * time.Second
	r.slack.RateLimitNext(retryAfter)
	r.clock.Set(t0.Add(75 * time.Second)) // the countdown step at half time
	r.tick()
	if r.slack.RateLimited() != 1 {
		t.Fatalf("%d 429s, want 1", r.slack.RateLimited())
	}
	// A restart in the middle of it.
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, ""), APIURL: r.slack.APIURL(), BotToken: fakeslack.BotToken,
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: rec}})
	r.bot.loadHolds(t.Context())
	for _, s := range []int{80, 90, 100, 106} {
		r.clock.Set(t0.Add(time.Duration(s) * time.Second))
		r.tick()
	}
	rec.mu.Lock()
	times := slices.Clone(rec.times)
	rec.mu.Unlock()
	n := len(times)
	if n < 2 {
		t.Fatalf("%d response_url posts, want the one answered 429 and the one after its Retry-After", n)
	}
	limited, retried := times[n-2], times[n-1]
	if gap := retried.Sub(limited); gap < retryAfter {
		t.Errorf("the post Slack answered 429 with Retry-After %s was posted again %s later", retryAfter, gap)
	}
	if got := shownText(r.latest(msgID)); !strings.Contains(got, "▓▓▓▓▓░░░░░") {
		t.Errorf("after the Retry-After the message shows\n%s\nwant the step due then", got)
	}
}
