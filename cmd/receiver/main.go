// Command receiver is the loopcast agent on each web server: it receives
// images, stages them as read-only loop mounts and switches `current`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newApp().RunContext(ctx, os.Args)
	stop()
	os.Exit(exitCode(err))
}

// exitCode is the one place where errors become exit codes.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "receiver:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:            "receiver",
		Usage:           "the loopcast agent: receive, stage and switch releases",
		Commands:        []*cli.Command{runCommand(), statusCommand(), rollbackCommand(), fetchCommand()},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
	}
}
