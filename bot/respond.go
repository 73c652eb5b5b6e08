package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// postOutcome is how a response_url post ended.
type postOutcome int

const (
	posted      postOutcome = iota
	budgetSpent             // no use left that this post may take
	urlGone                 // Slack answered 404/410: the message cannot be edited any more
	postFailed              // network trouble or repeated 429/5xx: try again later
	postDropped             // what the message should show changed before a retry
)

// maxPostTries bounds retries of one response_url post after a 429 or 5xx.
const maxPostTries = 3

// maxRetryWait caps how long one post waits for Slack's Retry-After, unless
// Config.MaxRetryWait says otherwise.
const maxRetryWait = 10 * time.Second

// respond replaces the ephemeral message behind url with m, within the
// url's budget (counted in the store; keep uses stay for later posts). A
// 429 or 5xx is retried after a pause in this goroutine only. Only a 429
// gives its use back: after a 5xx, a timeout or a broken connection Slack
// may have counted the post, and a use given back then would let the
// final state become a 6th post, which Slack refuses. Failures are
// logged, never shown, and the url itself is never logged (it is a
// credential for the message).
func (b *Bot) respond(ctx context.Context, log *slog.Logger, url string, issued time.Time, keep int, m Message) postOutcome {
	return b.post(ctx, log, url, issued, keep, m, nil, nil)
}

// answer posts the outcome of a request or click (Start, Renew, Refresh,
// Cancel) through url: its view (result), within the url's budget. When
// the database cannot be reached (pairing.ErrUnavailable) nothing was
// done, and the answer says so; it is posted without counting its use,
// since the database that counts uses is the one that cannot be reached.
// That is safe: it is the first post of a fresh response_url (a command's
// or a click's), which no pairing recorded, so the bot never posts
// through it again.
func (b *Bot) answer(ctx context.Context, log *slog.Logger, url string, issued time.Time, p pairing.Pairing, err error, instance, requestID string) {
	switch pairing.OutcomeOf(err) {
	case pairing.OutcomeUnavailable:
		b.log.Warn("the database cannot be reached; the person is asked to try again", "request", requestID, "err", err)
		b.postUncounted(ctx, log, url, UnavailableView())
		return
	case pairing.OutcomeCodeUnrecorded:
		// The database that counts the url's uses did not answer either.
		b.postUncounted(ctx, log, url, CodeUnrecordedView(instance))
		return
	}
	b.respond(ctx, log, url, issued, 0, b.result(p, err, instance, requestID))
}

// postUncounted posts m through url once, without taking a use of its
// budget (see answer), as a message of its own: through a click's url it
// is added below the clicked message, which keeps showing its code (still
// live: nothing was done).
func (b *Bot) postUncounted(ctx context.Context, log *slog.Logger, url string, m Message) {
	if url == "" {
		return
	}
	w := m.webhook()
	w.ReplaceOriginal = false
	if err := slack.PostWebhookCustomHTTPContext(ctx, url, b.cfg.HTTP, w); err != nil {
		log.Warn("response_url post failed", "reason", postFailure(err, 0))
		return
	}
	b.obs.ResponseURLUse()
}

// errClaimLost means an edit's claim was not won (another replica, or
// another writer here, holds it or already showed the view): the post is
// not made.
var errClaimLost = errors.New("the edit is claimed elsewhere")

// post is respond for a message that follows stored state: before every
// retry, again (when set) says what the message should show now, or false
// when that changed, and the retry is dropped. A pause for Retry-After can
// outlast the state it was rendered from (a New code click lands in it),
// and a retry must never post a view that is no longer true.
//
// take, when set, takes the first try's use instead of UseResponseURL: a
// claimed edit (ClaimView takes the use with the claim), which returns
// errClaimLost when the claim was not won (postDropped, nothing posted).
// Its retries take their uses as any post does, while the claim holds.
//
// A 429's Retry-After is honoured whatever its length: one up to
// MaxRetryWait is waited out here; a longer one (or one still due after
// the last try) holds the url (urlHolds, stored with the other holds so a
// restart waits it out too), and every post to it fails at once until it
// runs out: the tick that next shows the pairing posts what is due then.
func (b *Bot) post(ctx context.Context, log *slog.Logger, url string, issued time.Time, keep int, m Message, again func() (Message, bool), take func() error) postOutcome {
	held := b.urlHolds.on(urlHoldID(url))
	b.refreshHolds(ctx) // a Retry-After another replica met on url holds this one too
	for try := 1; ; try++ {
		if ctx.Err() != nil {
			return postFailed // shutting down: keep the use for the next start
		}
		if held.blocked() {
			log.Info("response_url held by Slack's Retry-After: a later tick posts what is due then")
			return postFailed
		}
		if try > 1 && again != nil {
			var ok bool
			if m, ok = again(); !ok {
				log.Info("response_url retry dropped: the message has moved on")
				return postDropped
			}
		}
		use := func() error { return b.cfg.Service.UseResponseURL(ctx, url, issued, keep) }
		if try == 1 && take != nil {
			use = take
		}
		if err := use(); err != nil {
			if errors.Is(err, errClaimLost) {
				return postDropped
			}
			if !errors.Is(err, pairing.ErrBudgetSpent) {
				// The storage failed, not the budget: nothing was posted or
				// taken, and the next tick (or the next start) tries again.
				// Read as "spent", a final view would stop editing for good.
				if ctx.Err() == nil {
					log.Error("taking a response_url use", "err", err)
				}
				return postFailed
			}
			log.Warn("response_url not used", "reason", err)
			return budgetSpent
		}
		client, answer := recordAnswer(b.cfg.HTTP)
		err := slack.PostWebhookCustomHTTPContext(ctx, url, client, m.webhook())
		if err == nil {
			b.obs.ResponseURLUse()
			return posted
		}
		var (
			code slack.StatusCodeError
			wait time.Duration
		)
		switch {
		case answer.status == http.StatusTooManyRequests:
			// Any 429, whatever its Retry-After (slack-go reports only a
			// whole number of seconds as *slack.RateLimitedError; without
			// one, or with an HTTP date, its error no longer says 429).
			wait = max(retryAfter(answer.retryAfter, time.Now()), time.Second)
			// Slack refused the post before counting it: the use is ours again.
			if rerr := b.cfg.Service.RefundResponseURL(ctx, url); rerr != nil {
				log.Error("refund response_url use", "err", rerr)
			}
		case errors.As(err, &code) && code.Code >= 500:
			wait = time.Second
		case errors.As(err, &code) && (code.Code == http.StatusNotFound || code.Code == http.StatusGone):
			log.Warn("response_url gone; no more edits to this message", "status", code.Code)
			return urlGone
		}
		if answer.status != http.StatusTooManyRequests {
			wait = min(wait, b.cfg.MaxRetryWait)
		} else if wait > b.cfg.MaxRetryWait || try >= maxPostTries {
			b.holdURL(url, wait)
		}
		if wait == 0 || wait > b.cfg.MaxRetryWait || try >= maxPostTries {
			log.Warn("response_url post failed", "reason", postFailure(err, answer.status), "try", try)
			return postFailed
		}
		select {
		case <-ctx.Done():
			return postFailed
		case <-time.After(wait):
		}
	}
}

// urlHoldPrefix starts the storage key of a response_url's hold; a hash
// of the url follows (urlHoldID): the url is a credential for its
// message, and hold keys are logged.
const urlHoldPrefix = "response_url "

// urlHoldID names url's hold: a hash of it, never the url itself.
func urlHoldID(url string) string {
	sum := sha256.Sum256([]byte(url))
	return hex.EncodeToString(sum[:16])
}

// holdURL holds posts to url for d (Slack's Retry-After), and stores the
// hold so that a restarted bot waits it out too.
func (b *Bot) holdURL(url string, d time.Duration) {
	id := urlHoldID(url)
	until := b.urlHolds.on(id).block(d)
	rctx, cancel := pairing.RecordContext(b.workCtx)
	defer cancel()
	if err := b.cfg.Service.SetHold(rctx, urlHoldPrefix+id, until); err != nil {
		b.log.Error("recording Slack's Retry-After", "hold", urlHoldPrefix+id, "err", err)
	}
}

// answer is what a response_url post got back: status 0 when no answer
// arrived (a broken connection, a timeout).
type answer struct {
	status     int
	retryAfter string
}

// answerRecorder is a transport that keeps the status and Retry-After of
// the answer to the one post it carries, which slack-go's error does not
// always keep (see post).
type answerRecorder struct {
	next http.RoundTripper
	answer
}

func (a *answerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err == nil {
		a.status, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	}
	return resp, err
}

// recordAnswer returns a copy of c (sharing its connections) that records
// the answer to one post in *answer, readable once the post has returned.
func recordAnswer(c *http.Client) (*http.Client, *answer) {
	rec := &answerRecorder{next: c.Transport}
	if rec.next == nil {
		rec.next = http.DefaultTransport
	}
	cc := *c
	cc.Transport = rec
	return &cc, &rec.answer
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date; zero
// when it says neither.
func retryAfter(h string, now time.Time) time.Duration {
	if secs, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(h); err == nil {
		return at.Sub(now)
	}
	return 0
}

// postFailure describes a webhook error without the URL it went to.
func postFailure(err error, status int) string {
	var code slack.StatusCodeError
	var rl *slack.RateLimitedError
	switch {
	case errors.As(err, &rl):
		return fmt.Sprintf("rate limited, retry after %s", rl.RetryAfter)
	case status == http.StatusTooManyRequests:
		return "rate limited"
	case errors.As(err, &code):
		return fmt.Sprintf("HTTP %d", code.Code)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timed out"
	}
	return "network error"
}
