// Command linkbot is a Slack bot that links a WhatsApp number to a Wawp
// instance with a pairing code. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "linkbot:", err)
		var cerr *configError
		if errors.As(err, &cerr) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
