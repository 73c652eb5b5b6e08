package bot

import (
	"context"
	"errors"
	"log/slog"

	"github.com/slack-go/slack"

	"github.com/linkbot/linkbot/pairing"
)

// Each Slack command is handled once across every replica and every
// redelivery (issue 11): Socket Mode redelivers an envelope it got no ack
// for, and has been seen to deliver one twice
// (https://api.slack.com/apis/socket-mode: retry_attempt, retry_reason).
// A command's and a submission's identity is their trigger_id, not the
// envelope's ID, which a redelivery may not keep (see commandKey); a
// click's is its action_ts (clickKey).
// The ack comes first, always (no database I/O before it); the work after
// it records the command's key (pairing.Dedupe) in the same transaction as
// its first write, and a duplicate does nothing more.

type dedupeKeyCtx struct{}

// withDedupeKey is ctx carrying a command's dedupe key, for the work after
// its ack.
func withDedupeKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, dedupeKeyCtx{}, key)
}

// dedupeKey is the dedupe key ctx carries ("" for none).
func dedupeKey(ctx context.Context) string {
	k, _ := ctx.Value(dedupeKeyCtx{}).(string)
	return k
}

// clickKey is a click's dedupe key: the clicked pairing, the button, who
// clicked and the action's own action_ts. A redelivered envelope of one
// click keeps all four; a second click (a double click included) has a
// new action_ts, so it is a command of its own.
func clickKey(cb slack.InteractionCallback, a *slack.BlockAction) string {
	if a.ActionTs == "" {
		return "" // no identity to dedupe by
	}
	return "click:" + a.Value + ":" + a.ActionID + ":" + cb.User.ID + ":" + a.ActionTs
}

// submitKey is a view submission's dedupe key: its trigger_id (Slack
// makes one per submission, and a redelivery carries it unchanged), else
// its envelope ID, as commandKey.
func submitKey(triggerID, envelopeID string) string {
	switch {
	case triggerID != "":
		return "submit:" + triggerID
	case envelopeID != "":
		return "submit:env:" + envelopeID
	}
	return ""
}

// claim claims ctx's dedupe key for work that reserves nothing (a
// refusal's audit, a history lookup, a Refresh or Cancel): false when the
// command was handled before, and it must do nothing. A key that cannot be
// claimed (the database unreachable) lets the work go on: it changes
// nothing that a second run would double.
func (b *Bot) claim(ctx context.Context, log *slog.Logger) bool {
	err := b.cfg.Service.ClaimCommand(ctx, dedupeKey(ctx))
	switch {
	case errors.Is(err, pairing.ErrDuplicate):
		b.obs.Command(pairing.OutcomeDuplicate)
		return false
	case err != nil:
		log.Warn("claiming a command's dedupe key", "err", err)
	}
	return true
}
