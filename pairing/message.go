package pairing

import (
	"context"
	"fmt"
	"time"
)

// What the Slack edge asks of the service about a pairing's message: the
// stored pairing, a Refresh click, the views it shows, when the phone's
// next code is allowed, and the response_url budget it is edited through.

// Pairing returns pairing id as stored (ErrNotFound when there is none).
func (s *Service) Pairing(ctx context.Context, id string) (Pairing, error) {
	return s.db.Pairing(ctx, id)
}

// Refresh is a Refresh click by user on pairing id's message. Only the
// requester, or the person it was handed to, may (ErrNotYours, with no
// pairing: see ErrNotYours). A click on an ephemeral message brought a
// fresh response_url with a fresh budget of posts that replaces that
// message: its later edits go through it (click.ResponseURL is empty for
// a click on the DM, edited with chat.update).
func (s *Service) Refresh(ctx context.Context, id, user string, click Click) (Pairing, error) {
	p, err := s.db.Pairing(ctx, id)
	if err != nil {
		return p, err
	}
	if !p.MayUse(user) {
		return Pairing{}, ErrNotYours
	}
	return s.rebind(ctx, p, click)
}

// rebind makes the click's response_url the editor of p's ephemeral
// message (Pairing.ClickURL), unless it already is or the click brought
// none (a click on the DM).
func (s *Service) rebind(ctx context.Context, p Pairing, click Click) (Pairing, error) {
	if click.ResponseURL == "" || p.ClickURL == click.ResponseURL {
		return p, nil
	}
	return s.db.UpdatePairing(ctx, p.ID, click.Issued, func(p *Pairing) error {
		p.ClickURL, p.ClickIssued, p.ClickTS = click.ResponseURL, click.Issued, click.TS
		return nil
	})
}

// RecordView remembers that pairing id's ephemeral message now shows the
// view named key, so it is edited only when that changes; unwatch stops
// editing the pairing's messages for good.
func (s *Service) RecordView(ctx context.Context, id, key string, unwatch bool) error {
	if unwatch {
		// A QR pairing stays watched until its link is revoked.
		if kept, err := s.keepForRevocation(ctx, id, func(q *Pairing) { q.LastView = key }); kept || err != nil {
			return err
		}
	}
	return s.db.RecordView(ctx, id, key, unwatch)
}

// RecordDM stores pairing id's DM surface as the bot last left it (the
// channel and ts chat.postMessage returned, the view it shows, or why it
// could not be posted), so later edits, a restart's included, go to that
// message; unwatch then stops editing the pairing's messages for good.
func (s *Service) RecordDM(ctx context.Context, id string, dm Surface, unwatch bool) (Pairing, error) {
	p, err := s.db.UpdatePairing(ctx, id, s.cfg.Now(), func(p *Pairing) error {
		p.DM = dm
		return nil
	})
	if err != nil || !unwatch {
		return p, err
	}
	return p, s.RecordView(ctx, id, p.LastView, true) // a QR pairing stays watched until its link is revoked
}

// RecordCard stores pairing id's status card as the bot last left it (the
// channel and ts chat.postMessage returned, the view it shows, or why it
// could not be posted), so later edits, a restart's included, go to that
// message.
func (s *Service) RecordCard(ctx context.Context, id string, card Surface) (Pairing, error) {
	return s.db.UpdatePairing(ctx, id, s.cfg.Now(), func(p *Pairing) error {
		p.Card = card
		return nil
	})
}

// RecordModal stores pairing id's live code window as the bot last left
// it (the view ID and hash views.update returned, the view it shows, or
// that it was closed), so later updates, a restart's included, go to that
// modal. A pairing that ended keeps it: its final state is still shown
// there, and the pairing is watched until it is (Storage.RecordModal).
// ErrReplaced: the pairing was superseded (here or on another replica)
// and nothing was recorded; RecordReplacedModal records it anyway.
func (s *Service) RecordModal(ctx context.Context, id string, m ModalSurface) (Pairing, error) {
	return s.db.RecordModal(ctx, id, m, s.cfg.Now(), false)
}

// RecordReplacedModal records m on pairing id, which a renewal superseded
// while the window opened: the pairing is watched until the window says
// the code was replaced.
func (s *Service) RecordReplacedModal(ctx context.Context, id string, m ModalSurface) (Pairing, error) {
	return s.db.RecordModal(ctx, id, m, s.cfg.Now(), true)
}

// NextCodeAt is when phone's limit next allows a code: now (or earlier)
// when it already does. If the count cannot be read it answers a whole
// window from now, so a message never offers a code the limit may refuse.
func (s *Service) NextCodeAt(ctx context.Context, phone string, now time.Time) time.Time {
	at, _, err := s.db.NextAllowed(ctx, phone, now, s.cfg.PhoneLimit)
	if err != nil {
		return now.Add(s.cfg.PhoneLimit.Period)
	}
	return at
}

// LimitError is the refusal of stored request p by a limit, as Start
// reported it, for drawing its message again: the window in force and, for
// the instance limit, the pairing holding the instance (without its code).
func (s *Service) LimitError(ctx context.Context, p Pairing) *LimitError {
	e := &LimitError{Limit: p.RefusedBy(), Phone: qrPhone(p.Phone), Count: p.Attempt, RetryAt: p.RetryAt, Window: s.window(p.RefusedBy())}
	if e.Limit == LimitInstance {
		if holder, err := s.db.Pairing(ctx, p.HeldBy); err == nil {
			holder.WipeCredentials()
			e.Holder = holder
		}
	}
	return e
}

// window is the window of limit (zero for the instance limit, which has none).
func (s *Service) window(limit Limit) Window {
	switch limit {
	case LimitPhone:
		return s.cfg.PhoneLimit
	case LimitUser:
		return s.cfg.UserLimit
	case LimitQR:
		return s.cfg.QRLimit
	}
	return Window{}
}

// UseResponseURL takes one use of url's budget (Slack allows
// ResponseURLUses posts within ResponseURLLifetime of issued), leaving keep
// uses for later, more important posts: the final state keeps the last
// two. ErrBudgetSpent when this post may not take one.
func (s *Service) UseResponseURL(ctx context.Context, url string, issued time.Time, keep int) error {
	return s.db.UseResponseURL(ctx, url, issued, s.cfg.Now(), keep)
}

// RefundResponseURL gives back a use Slack certainly did not count: it
// answered 429. After a 5xx, a timeout or a dropped connection the post may
// have counted, so the caller keeps the use spent.
func (s *Service) RefundResponseURL(ctx context.Context, url string) error {
	return s.db.RefundResponseURL(ctx, url)
}

// SetHold records a Slack Retry-After (see Storage.SetHold): the calls
// named key wait until until, in this process and after a restart.
func (s *Service) SetHold(ctx context.Context, key string, until time.Time) error {
	if err := s.db.SetHold(ctx, key, until); err != nil {
		return fmt.Errorf("set hold %s: %w", key, err)
	}
	return nil
}

// Holds returns the Slack Retry-Afters still running now, by key (see
// Storage.Holds): a starting bot waits them out.
func (s *Service) Holds(ctx context.Context) (map[string]time.Time, error) {
	h, err := s.db.Holds(ctx, s.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", err)
	}
	return h, nil
}
