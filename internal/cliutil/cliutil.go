// Package cliutil is what loopcast's two commands share: the one place
// where errors become exit codes, signal handling, and number formatting.
package cliutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// ExitError carries a specific exit code out of a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Main runs app with a context that Ctrl-C or SIGTERM cancels, so deferred
// cleanup runs; a second signal ends the process at once. It exits with
// ExitCode of the result.
func Main(app *cli.App) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }() // a second signal kills
	err := app.RunContext(ctx, os.Args)
	stop()
	os.Exit(ExitCode(app.Name, err))
}

// ExitCode is the one place where errors become exit codes: 0 for
// success, the code an ExitError carries, 1 otherwise. It prints the
// error, prefixed by the command's name.
func ExitCode(name string, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// HumanBytes formats n with a binary unit, e.g. "1.5 GiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ParseGroup reads a --group flag: a multicast IPv4 ADDR:PORT.
func ParseGroup(s string) (*net.UDPAddr, error) {
	g, err := net.ResolveUDPAddr("udp4", s)
	if err != nil || g.IP == nil || !g.IP.IsMulticast() {
		return nil, fmt.Errorf("--group %q is not a multicast ADDR:PORT", s)
	}
	return g, nil
}
