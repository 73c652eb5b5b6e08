package bot

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// maxSockets is how many Socket Mode connections Slack allows one app
// (https://api.slack.com/apis/socket-mode: up to 10).
const maxSockets = 10

// dispatch handles one Socket Mode event. It never does network I/O before
// the ack and never blocks: slow work runs in goroutines, so pings and
// other envelopes are never held up.
func (b *Bot) dispatch(ctx context.Context, evt socketmode.Event) error {
	if r := evt.Request; r != nil && r.RetryAttempt > 0 {
		// Slack sends an envelope again when no ack reached it (a replica
		// that died or stopped with it unacked): handled once all the
		// same (see dedupe.go).
		b.log.Info("slack redelivered an envelope", "envelope", r.EnvelopeID, "retry_attempt", r.RetryAttempt, "retry_reason", r.RetryReason)
	}
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		b.obs.Connected(false)
		b.log.Info("slack socket connecting")
	case socketmode.EventTypeConnected:
		b.log.Info("slack socket connected")
	case socketmode.EventTypeHello:
		n := 0
		if evt.Request != nil {
			n = evt.Request.NumConnections
		}
		// Slack spreads commands over up to 10 connections per app: on a
		// storage of its own, a second process on the same token steals
		// commands from this one; replicas sharing a database are meant to
		// (issue 11), but near the ceiling of 10 a deploy's new sockets are
		// refused (too_many_websockets).
		level := slog.LevelInfo
		if n > 1 && !b.cfg.Shared || n >= maxSockets-1 {
			level = slog.LevelWarn
		}
		b.log.Log(ctx, level, "slack socket ready", "num_connections", n)
		b.obs.Connected(true)
	case socketmode.EventTypeConnectionError:
		b.log.Warn("slack socket connection failed; retrying")
	case socketmode.EventTypeInvalidAuth:
		return fmt.Errorf("SLACK_APP_TOKEN: %w (apps.connections.open answered 404)", ErrAuth)
	case socketmode.EventTypeDisconnect:
		b.obs.Connected(false)
		b.log.Info("slack asked to reconnect")
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || evt.Request == nil {
			return nil
		}
		b.command(ctx, evt.Request.EnvelopeID, cmd)
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		switch {
		case ok && cb.Type == slack.InteractionTypeViewSubmission:
			// Answered in the ack (response_action), decided without I/O.
			payload, after := b.safeSubmission(cb)
			b.ack(ctx, evt.Request, payload)
			if after != nil {
				// Handled once, as a command (see dedupe.go): its
				// trigger_id is its identity (see commandKey).
				envelopeID := ""
				if evt.Request != nil {
					envelopeID = evt.Request.EnvelopeID
				}
				key := submitKey(cb.TriggerID, envelopeID)
				b.goWork(ctx, func(ctx context.Context) { after(withDedupeKey(ctx, key)) })
			}
			return nil
		case ok && cb.Type == slack.InteractionTypeBlockSuggestion:
			b.ack(ctx, evt.Request, b.suggestions(cb))
			return nil
		case ok && cb.Type == slack.InteractionTypeViewClosed:
			b.ack(ctx, evt.Request, nil)
			b.goWork(ctx, func(ctx context.Context) { b.windowClosed(ctx, cb) })
			return nil
		}
		b.ack(ctx, evt.Request, nil)
		if ok {
			b.goWork(ctx, func(ctx context.Context) { b.interaction(ctx, cb) })
		}
	default:
		b.ack(ctx, evt.Request, nil)
	}
	return nil
}

func (b *Bot) ack(ctx context.Context, req *socketmode.Request, payload any) {
	if req == nil || req.EnvelopeID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := b.sm.AckCtx(ctx, req.EnvelopeID, payload); err != nil {
		b.log.Error("ack failed", "envelope", req.EnvelopeID, "err", err)
	}
}
