package bot

import (
	"context"
	"errors"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// interaction handles a button click, after the ack.
func (b *Bot) interaction(ctx context.Context, cb slack.InteractionCallback) {
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
		return
	}
	action := cb.ActionCallback.BlockActions[0]
	ctx = withDedupeKey(ctx, clickKey(cb, action))
	now := b.cfg.Service.Now()
	log := b.log.With("action", action.ActionID, "user", cb.User.ID, "pairing", action.Value)
	inWindow := cb.Container.Type == "view" // a button in the code window: no response_url
	reply := func(m Message) {
		if inWindow {
			b.showRefusalInWindow(ctx, cb.View.ID, m, log)
			return
		}
		b.respond(ctx, log, cb.ResponseURL, now, 0, m)
	}
	if b.teamID != "" && cb.Team.ID != "" && cb.Team.ID != b.teamID {
		reply(ForeignTeamView())
		return
	}
	if action.ActionID == ActionShowWindow {
		b.openWindow(ctx, cb, action.Value, log)
		return
	}
	// Answers go to the message the click came from, in turn with its
	// other writers (a countdown edit of the same message may be in flight).
	// The click's change and its answer are one write: a tick that reads
	// the pairing after the change (a Cancel, a renewal's new code) waits
	// for the click's answer and then finds it shown, instead of posting
	// it first and having the click post it again.
	message, instance := action.Value, ""
	// A click on the pairing's DM message is answered there, with
	// chat.update; a click on an ephemeral message brings a response_url
	// that replaces that message, which becomes its editor (the service
	// keeps it as the pairing's ClickURL). The DM's click url is not kept:
	// the DM is edited by channel and ts.
	where, click := onEphemeral, pairing.Click{ResponseURL: cb.ResponseURL, Issued: now, TS: cb.Container.MessageTs}
	clicked, cerr := b.cfg.Service.Pairing(ctx, action.Value)
	if cerr == nil {
		message, instance = clicked.MessageID(), clicked.InstanceName
		switch {
		case inWindow:
			// Answered in the window, with views.update; it binds nothing.
			where, click = onModal, pairing.Click{}
		case !cb.Container.IsEphemeral && clicked.DM.Posted() && cb.Container.ChannelID == clicked.DM.Channel:
			where, click = onDM, pairing.Click{}
		}
	}
	unlock := b.locks.lock(message)
	defer unlock()
	show := func(p pairing.Pairing) {
		how := showing{answer: where}
		if p.MessageID() == message {
			b.showLocked(ctx, p, how)
			return
		}
		b.show(ctx, p, how)
	}
	answer := func(p pairing.Pairing, err error) {
		if p.InstanceName != "" {
			instance = p.InstanceName
		}
		// A renewal refused by a limit has no pairing of its own: its
		// refusal names the clicked pairing's instance.
		if !inWindow {
			// The database unreachable is answered below the clicked
			// message, uncounted (see answer).
			b.answer(ctx, log, cb.ResponseURL, now, p, err, instance, cb.TriggerID)
			return
		}
		reply(b.result(p, err, instance, cb.TriggerID))
	}
	// Each click brings a fresh response_url with a fresh budget: the
	// service makes it the one the message's later edits go through.
	var (
		p   pairing.Pairing
		err error
	)
	switch action.ActionID {
	case ActionRefresh, ActionCancel:
		// They reserve nothing: the click's key is claimed first.
		if !b.claim(ctx, log) {
			log.Info("duplicate click dropped")
			return
		}
	}
	switch action.ActionID {
	case ActionRefresh:
		p, err = b.cfg.Service.Refresh(ctx, action.Value, cb.User.ID, click)
	case ActionNewCode, ActionTryAgain:
		p, err = b.cfg.Service.Renew(ctx, pairing.Renewal{
			ID: action.Value, User: cb.User.ID, Team: cb.Team.ID, ResponseURL: click.ResponseURL, URLIssued: now, ClickTS: click.TS,
			Window: where == onModal,
			// Checked for the pairing's requester (a hand-off's recipient
			// clicks on their behalf), against the channel it was
			// requested in.
			Allowed:   func(user, instanceID, channel string) bool { return b.allowed(instanceID, user, channel) },
			DedupeKey: dedupeKey(ctx),
			// A hand-off's renewal runs its first request's checks again.
			Prepare: b.prepareHandoffRenewal,
		})
	case ActionCancel:
		p, err = b.cfg.Service.Cancel(ctx, action.Value, cb.User.ID, click)
	case ActionLinkByQR:
		p, err = b.linkByQR(ctx, clicked, cerr, cb, click, where == onModal)
		b.obs.Command(pairing.OutcomeOfQR(err))
	default:
		log.Warn("unknown action")
		return
	}
	if errors.Is(err, pairing.ErrDuplicate) {
		// Slack delivered the click twice (or again): the first delivery
		// answers it.
		log.Info("duplicate click dropped")
		return
	}
	log.Info("button handled", "err", err)
	if errors.Is(err, pairing.ErrNotAllowed) {
		log.Info("button refused by the access rules", "instance", p.InstanceName)
	}
	if errors.Is(err, pairing.ErrReplaced) {
		if p.ID == action.Value {
			// Its message shows the pairing that replaced it, which has
			// ended since: that view stays.
			return
		}
		if where == onEphemeral && click.TS != "" && p.ClickTS != "" && click.TS != p.ClickTS {
			// The click came from an older copy of the message (the code
			// as first posted, below which the final state and then the
			// newer code came): it still shows a code that is over. Its
			// own response_url takes that code off it; the newer code
			// stays where it is, the one message showing it.
			b.respond(ctx, log, cb.ResponseURL, now, 0, ReplacedView(p.InDM()))
			return
		}
		// The pairing that holds the message now is the answer, through
		// its editor: a double click's second half, from the same message.
		err = nil
	}
	if err != nil && p.ID != "" && p.ID != action.Value && p.State != pairing.StateRequesting {
		// A renewal that ended without a code: its stored view is the answer.
		show(p)
		return
	}
	if errors.Is(err, pairing.ErrEnded) && p.ID != "" {
		// Cancel after the end: show how it ended instead.
		err = nil
	}
	if err != nil {
		answer(p, err)
		return
	}
	show(p)
}
