package bot

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/wawp"
)

// TestRunWaitsForItsSocket: when Run returns, the goroutine it ran Socket
// Mode in has returned too (before, Run cancelled it and left).
func TestRunWaitsForItsSocket(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	b := New(Config{
		AppToken: fakeslack.AppToken, BotToken: fakeslack.BotToken, APIURL: r.slack.APIURL(),
		Service: r.svc, Directory: pairing.NewDirectory(nil, ""),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	if !r.slack.WaitConnected(5 * time.Second) {
		t.Fatal("the bot never connected")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, "socketmode.(*Client).RunContext(") {
		t.Errorf("Run returned while its Socket Mode goroutine still runs:\n%s", stacks)
	}
}

// slowWawp answers the session check at once and holds request-code until
// release is closed, whatever its context says: work that takes its time
// to stop after a shutdown cut it short.
type slowWawp struct {
	asked   chan struct{}
	release chan struct{}
}

func (w *slowWawp) SessionInfo(context.Context, string) (pairing.Session, error) {
	return pairing.Session{Status: pairing.StatusScanQR}, nil
}

func (w *slowWawp) RequestCode(context.Context, string, string) (string, error) {
	close(w.asked)
	<-w.release
	return "ABCD1234", nil
}

// closingStorage stands for a database that closes: after close, every
// call is counted (and fails), as a closed file would fail it.
type closingStorage struct {
	pairing.Storage
	closed atomic.Bool
	after  atomic.Int32
}

var errClosed = errors.New("database closed")

func (s *closingStorage) check() error {
	if s.closed.Load() {
		s.after.Add(1)
		return errClosed
	}
	return nil
}

func (s *closingStorage) Settle(ctx context.Context, st pairing.Settlement) (pairing.Pairing, error) {
	if err := s.check(); err != nil {
		return pairing.Pairing{}, err
	}
	return s.Storage.Settle(ctx, st)
}

func (s *closingStorage) Pairing(ctx context.Context, id string) (pairing.Pairing, error) {
	if err := s.check(); err != nil {
		return pairing.Pairing{}, err
	}
	return s.Storage.Pairing(ctx, id)
}

func (s *closingStorage) RecordView(ctx context.Context, id, key string, unwatch bool) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Storage.RecordView(ctx, id, key, unwatch)
}

func (s *closingStorage) UseResponseURL(ctx context.Context, url string, issued, now time.Time, keep int) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Storage.UseResponseURL(ctx, url, issued, now, keep)
}

func (s *closingStorage) AppendAudit(ctx context.Context, e pairing.Event) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Storage.AppendAudit(ctx, e)
}

func (s *closingStorage) NextAllowed(ctx context.Context, phone string, now time.Time, limit pairing.Window) (time.Time, int, error) {
	if err := s.check(); err != nil {
		return time.Time{}, 0, err
	}
	return s.Storage.NextAllowed(ctx, phone, now, limit)
}

// syncLog is a log buffer safe for the bot's goroutines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestCutWorkReturnsBeforeTheDatabaseCloses: a request still in flight when
// the shutdown grace runs out is cut short, and the shutdown waits for it
// to return, however long it takes, before Run returns and the database is
// closed: the request never touches a closed database. (Before, the
// shutdown waited 5 s for cut work and then left it running.)
func TestCutWorkReturnsBeforeTheDatabaseCloses(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	stub := &slowWawp{asked: make(chan struct{}), release: make(chan struct{})}
	db := &closingStorage{Storage: r.db}
	logs := &syncLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	r.svc = pairing.NewService(stub, db, pairing.Config{Now: r.clock.Now, Log: log})
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, ""), Log: log, ShutdownGrace: 20 * time.Millisecond})
	_, url := r.slack.OpenMessage("U1", "⏳ Requesting a pairing code…")
	cmd := slack.SlashCommand{UserID: "U1", ChannelID: "C0SUPPORT", Command: "/link", Text: rigInstance + " +201112223333", ResponseURL: url}
	reply := r.bot.prepare(cmd, t0)
	r.bot.goWork(context.Background(), func(ctx context.Context) { reply.after(ctx, ctx, r.bot.log) })
	select {
	case <-stub.asked:
	case <-time.After(5 * time.Second):
		t.Fatal("request-code was never called")
	}
	drained := make(chan struct{})
	go func() { r.bot.drain(); close(drained) }()
	// Let the request go once the shutdown has cut it short and waits for
	// it (or has given up waiting: then it runs on after the close).
	if !poll(10*time.Second, func() bool {
		select {
		case <-drained:
			return true
		default:
			return strings.Contains(logs.String(), "waiting for the work cut short")
		}
	}) {
		t.Fatal("the shutdown neither waited for the request nor returned")
	}
	close(stub.release)
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not return after the request did")
	}
	db.closed.Store(true) // what serve does once Run has returned
	r.bot.work.Wait()
	if n := db.after.Load(); n != 0 {
		t.Errorf("the request used the database %d times after it closed", n)
	}
}

// ctxWawp answers the session check at once and holds request-code until
// its context ends, as the real client does.
type ctxWawp struct{ asked chan struct{} }

func (w *ctxWawp) SessionInfo(context.Context, string) (pairing.Session, error) {
	return pairing.Session{Status: pairing.StatusScanQR}, nil
}

func (w *ctxWawp) RequestCode(ctx context.Context, _, _ string) (string, error) {
	close(w.asked)
	<-ctx.Done()
	return "", &pairing.APIError{Endpoint: "/v2/auth/request-code", Kind: pairing.ErrTimeout, Sent: true}
}

// outcomes records the outcomes the bot reports for metrics, and with
// onPost set runs it after each post that reached Slack.
type outcomes struct {
	nopObserver
	mu     sync.Mutex
	got    []pairing.Outcome
	onPost func()
}

func (o *outcomes) Command(x pairing.Outcome) { o.mu.Lock(); o.got = append(o.got, x); o.mu.Unlock() }
func (o *outcomes) list() []pairing.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]pairing.Outcome(nil), o.got...)
}

func (o *outcomes) ResponseURLUse() {
	if o.onPost != nil {
		o.onPost()
	}
}

// TestCutRequestIsCountedInterrupted: a shutdown that cuts a request short
// interrupts it first (Service.Interrupt, with a context of its own), then
// cancels it. The request's own settlement, which meets a done ctx, is
// still written (pairing.RecordContext): it finds the request interrupted,
// the metrics count it as interrupted, and nothing is logged at ERROR.
// (Before, the storage refused the settlement: "ending pairing" was logged
// at ERROR and the request counted as wawp_error.)
func TestCutRequestIsCountedInterrupted(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	stub := &ctxWawp{asked: make(chan struct{})}
	logs := &syncLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	r.svc = pairing.NewService(stub, r.db, pairing.Config{Now: r.clock.Now, Log: log})
	obs := &outcomes{}
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, ""), Log: log, ShutdownGrace: 20 * time.Millisecond, Observer: obs})
	msgID, url := r.slack.OpenMessage("U1", "⏳ Requesting a pairing code…")
	cmd := slack.SlashCommand{UserID: "U1", ChannelID: "C0SUPPORT", Command: "/link", Text: rigInstance + " +201112223333", ResponseURL: url}
	reply := r.bot.prepare(cmd, t0)
	r.bot.goWork(context.Background(), func(ctx context.Context) { reply.after(ctx, ctx, r.bot.log) })
	select {
	case <-stub.asked:
	case <-time.After(5 * time.Second):
		t.Fatal("request-code was never called")
	}
	r.bot.drain()
	if got := obs.list(); len(got) != 1 || got[0] != pairing.OutcomeInterrupted {
		t.Errorf("metrics counted the cut request as %q, want [interrupted]", got)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a shutdown that cut a request short logged errors:\n%s", logs.String())
	}
	if m := shownText(r.latest(msgID)); !strings.Contains(m, "Interrupted") {
		t.Errorf("the message shows:\n%s\nwant the interruption", m)
	}
}

// TestPostLandingAsTheShutdownCutsIsRecorded: a countdown edit that
// reaches Slack just as the shutdown cuts the work short is recorded
// (pairing.RecordContext), so the next start does not post it again, and
// nothing is logged at ERROR. (Before, RecordView met the done ctx:
// "recording view" at ERROR, and the view was not recorded.)
func TestPostLandingAsTheShutdownCutsIsRecorded(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	r := newCountdownRig(t, t0)
	msgID := r.startRefreshed() // the click's url edits the countdown in place
	logs := &syncLog{}
	obs := &outcomes{}
	db := &postCtxStorage{Storage: r.db}
	r.svc = pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), db, pairing.Config{Now: r.clock.Now})
	r.bot = New(Config{Service: r.svc, Directory: pairing.NewDirectory(nil, ""), Log: slog.New(slog.NewTextHandler(logs, nil)), Observer: obs})
	obs.onPost = func() { // the cut lands once the post has
		r.bot.stopWork()
		<-db.ctx.Done()
	}
	r.clock.Set(t0.Add(75 * time.Second)) // a countdown step is due
	versions := r.changeCount(msgID)
	r.tick()
	if n := r.changeCount(msgID) - versions; n != 1 {
		t.Fatalf("the tick posted %d versions, want 1", n)
	}
	w, _ := r.db.WatchedPairings(t.Context())
	if len(w) != 1 || w[0].LastView != "live:1" {
		t.Errorf("recorded view %+v, want live:1 (the post landed)", w)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("logged errors:\n%s", logs.String())
	}
}

// postCtxStorage keeps the ctx of the last response_url use: the edit's.
type postCtxStorage struct {
	pairing.Storage
	ctx context.Context
}

func (s *postCtxStorage) UseResponseURL(ctx context.Context, url string, issued, now time.Time, keep int) error {
	s.ctx = ctx
	return s.Storage.UseResponseURL(ctx, url, issued, now, keep)
}

// ClaimView takes a claimed edit's use with its claim.
func (s *postCtxStorage) ClaimView(ctx context.Context, c pairing.ViewClaim) (bool, error) {
	if c.URL != "" {
		s.ctx = ctx
	}
	return s.Storage.ClaimView(ctx, c)
}

// cancelAfterWatch is a storage that cancels the tick's context right
// after the watch list is read: the shutdown landing while a tick polls
// Wawp (the tick's first storage call succeeded, the rest are refused
// because its ctx is done).
type cancelAfterWatch struct {
	pairing.Storage
	cancel context.CancelFunc
}

func (s *cancelAfterWatch) WatchedPairings(ctx context.Context) ([]pairing.Pairing, error) {
	w, err := s.Storage.WatchedPairings(ctx)
	s.cancel()
	return w, err
}

// TestTickDuringShutdownLogsNoError: a tick that the shutdown catches (its
// context done: the storage does nothing) is a requested stop, not an
// error in the log — the bot's or the service's, which share the logger in
// production — whether the stop comes before the tick or while it polls
// Wawp, with a code to end as expired and a lapsed request to interrupt.
// (Before, a stop during the poll logged "ending pairing" and
// "interrupting request" at ERROR.)
func TestTickDuringShutdownLogsNoError(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	for _, when := range []string{"before the tick", "while it polls Wawp"} {
		t.Run(when, func(t *testing.T) {
			r := newCountdownRig(t, t0)
			r.start() // a live code on rigInstance
			// A second request, never settled, whose lease will have run out.
			if _, err := r.db.Reserve(context.Background(), pairing.Reservation{
				Pairing:    pairing.Pairing{ID: "stuck", Instance: "INST00000002", InstanceName: "other", Phone: "201009998888", RequestedBy: "U2"},
				PhoneLimit: pairing.DefaultPhoneLimit, UserLimit: pairing.DefaultUserLimit, Now: t0, Hold: time.Second,
			}); err != nil {
				t.Fatal(err)
			}
			logs := &syncLog{}
			log := slog.New(slog.NewTextHandler(logs, nil))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var db pairing.Storage = r.db
			if when == "before the tick" {
				cancel()
			} else {
				db = &cancelAfterWatch{Storage: r.db, cancel: cancel}
			}
			svc := pairing.NewService(wawp.NewClient(r.wawp.URL, "tok", nil), db, pairing.Config{Now: r.clock.Now, Log: log})
			b := New(Config{Service: svc, Directory: pairing.NewDirectory(nil, ""), Log: log})
			r.clock.Set(t0.Add(10 * time.Minute)) // the code expired, the lease ran out
			b.Tick(ctx)
			b.work.Wait()
			if strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("a tick cut short by the shutdown logged an error:\n%s", logs.String())
			}
		})
	}
}
