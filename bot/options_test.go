package bot

import (
	"testing"
	"time"
)

// TestTickSchedule: the countdown ticks at the configured interval, also
// below a second (tests run the bot with millisecond ticks), where cron's
// @every would round up to a whole second; whole seconds keep @every's
// schedule, on the second.
func TestTickSchedule(t *testing.T) {
	at := time.Date(2026, 11, 25, 14, 0, 0, 300_000_000, time.UTC)
	tests := []struct {
		interval time.Duration
		want     time.Time
	}{
		{50 * time.Millisecond, at.Add(50 * time.Millisecond)},
		{1500 * time.Millisecond, at.Add(1500 * time.Millisecond)},
		{time.Second, time.Date(2026, 11, 25, 14, 0, 1, 0, time.UTC)},
		{5 * time.Second, time.Date(2026, 11, 25, 14, 0, 5, 0, time.UTC)},
	}
	for _, tt := range tests {
		b := New(Config{TickInterval: tt.interval})
		if b.cfg.TickInterval != tt.interval {
			t.Errorf("TickInterval %s became %s", tt.interval, b.cfg.TickInterval)
		}
		if got := tickSchedule(b.cfg.TickInterval).Next(at); !got.Equal(tt.want) {
			t.Errorf("tick every %s: next after %s is %s, want %s", tt.interval, at.Format(time.StampMilli), got.Format(time.StampMilli), tt.want.Format(time.StampMilli))
		}
	}
	if got := New(Config{}).cfg.TickInterval; got != 5*time.Second {
		t.Errorf("default TickInterval = %s, want 5s", got)
	}
}

// TestMaxRetryWaitDefault: a post waits up to 10 s for Slack's Retry-After
// unless the bot is told otherwise (the end-to-end tests pause less).
func TestMaxRetryWaitDefault(t *testing.T) {
	if got := New(Config{}).cfg.MaxRetryWait; got != 10*time.Second {
		t.Errorf("default MaxRetryWait = %s, want 10s", got)
	}
	if got := New(Config{MaxRetryWait: 20 * time.Millisecond}).cfg.MaxRetryWait; got != 20*time.Millisecond {
		t.Errorf("MaxRetryWait 20ms became %s", got)
	}
}
