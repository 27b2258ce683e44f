// Command sender is the release engineer's side of loopcast: it makes keys,
// builds and inspects images, and ships them to the fleet.
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

// exitError carries a specific exit code out of a command.
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

// exitCode is the one place where errors become exit codes: 0 success,
// 1 failure, or the code an exitError carries.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "sender:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "sender",
		Usage: "build, sign and multicast release images to a fleet",
		Commands: []*cli.Command{
			keygenCommand(),
			buildCommand(),
			inspectCommand(),
			sendCommand(),
			deployCommand(),
			statusCommand(),
			rollbackCommand(),
		},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // main prints and exits
	}
}
