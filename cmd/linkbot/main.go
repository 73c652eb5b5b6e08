// Command linkbot is a Slack bot that links a WhatsApp number to a Wawp
// instance with a pairing code. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/linkbot/linkbot/bot"
)

// Exit statuses, from sysexits.h. Go itself exits 2 on a panic or a fatal
// runtime error, so 2 must not mean anything here: the systemd unit
// restarts every failure except exitConfig.
const (
	exitFailure = 1
	exitUsage   = 64 // EX_USAGE: a mistyped command line
	exitConfig  = 78 // EX_CONFIG: a bad setting or a token Slack rejects; restarting will not fix it
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitStatus(err, os.Stderr))
}

// exitStatus prints err once and says how the process exits.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "linkbot:", err)
	var (
		uerr *usageError
		cerr *configError
	)
	switch {
	case errors.As(err, &uerr):
		return exitUsage
	case errors.As(err, &cerr), errors.Is(err, bot.ErrAuth):
		return exitConfig
	}
	return exitFailure
}
