// Package cliutil is what loopcast's two commands share: the one place
// where errors become exit codes, signal handling, and the units flags
// are read in and sizes printed in (units.go).
package cliutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/loopcast/loopcast/image"
)

// ExitError carries a specific exit code out of a command; it is a
// cli.ExitCoder, so urfave/cli and ExitCode read its code the same way.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }
func (e *ExitError) ExitCode() int { return e.Code }

var _ cli.ExitCoder = (*ExitError)(nil)

// Main runs app with a context that Ctrl-C or SIGTERM cancels, so deferred
// cleanup runs; a second signal ends the process at once. It exits with
// ExitCode of the result. With LOOPCAST_CPUPROFILE=FILE set it writes a
// CPU profile of the whole run to FILE.PID (for `go tool pprof`; the
// benchmarks in docs/BENCHMARKS.md read where the time goes from it).
func Main(app *cli.App) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }() // a second signal kills
	endProfile := startProfile(app.Name)
	err := app.RunContext(ctx, os.Args)
	stop()
	endProfile()
	os.Exit(ExitCode(app.Name, err))
}

// startProfile starts the CPU profile LOOPCAST_CPUPROFILE asks for, if
// any, and returns what ends it.
func startProfile(name string) func() {
	path := os.Getenv("LOOPCAST_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: LOOPCAST_CPUPROFILE: %v\n", name, err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// ExitCode is the one place where errors become exit codes: 0 for
// success, the code an ExitError carries, 1 otherwise. It prints the
// error, prefixed by the command's name.
func ExitCode(name string, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	var ec cli.ExitCoder // ours, or one a library made with cli.Exit
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// OrDash returns s, or "-" when s is empty: what the commands print for a
// field that holds nothing (no current release, no path).
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// IDOrDash returns a release id's 16 digits, or "-" for the zero id (no
// release).
func IDOrDash(id image.ID) string {
	if id.IsZero() {
		return "-"
	}
	return id.String()
}

// JoinIDs joins release ids' digits with sep ("" for none).
func JoinIDs(ids []image.ID, sep string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, sep)
}

// ParseRelease reads a release id given on the command line (what names
// the flag or argument, "--to" say): 16 lowercase hex digits, as the
// commands print ids. The zero id names no release and is refused.
func ParseRelease(what, s string) (image.ID, error) {
	id, err := image.ParseRelease(s)
	if err != nil {
		return image.ID{}, fmt.Errorf("%s %q is not a release id (16 lowercase hex digits, as status prints them): %w", what, s, err)
	}
	return id, nil
}

// ParseGroup reads a --group flag: a multicast IPv4 ADDR:PORT.
func ParseGroup(s string) (*net.UDPAddr, error) {
	g, err := net.ResolveUDPAddr("udp4", s)
	if err != nil || g.IP == nil || !g.IP.IsMulticast() {
		return nil, fmt.Errorf("--group %q is not a multicast ADDR:PORT", s)
	}
	return g, nil
}

// forwarded are the signals RunForwarding passes on to its child: those a
// service manager or `kill` sends to one pid. SIGINT and SIGQUIT are only
// caught: a terminal sends them to the whole foreground process group, the
// child included, and a second copy would be one too many.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}

// RunForwarding runs cmd with this process's stdin, stdout and stderr,
// passes signals on to it, and returns its exit code (128+N when signal N
// ended it). This process outlives every signal but SIGKILL until the
// child exits, so what it holds for the child is held to the end.
func RunForwarding(cmd *exec.Cmd) (int, error) {
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, append([]os.Signal{os.Interrupt, syscall.SIGQUIT}, forwarded...)...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			if slices.Contains(forwarded, sig) {
				cmd.Process.Signal(sig) // our own child, by its pid
			}
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			}
			return 0, err
		}
	}
}
