package main

import (
	"fmt"

	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/release"
	"github.com/urfave/cli/v2"
)

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command in the current release and keep that release mounted until it exits",
		ArgsUsage: "-- CMD [ARG...]",
		Description: "CMD starts in the real path of the release `current` points at, with LOOPCAST_RELEASE\n" +
			"(its id) and LOOPCAST_RELEASE_DIR (that path) set, and sees that one release to the end,\n" +
			"whatever deploys happen meanwhile: receiver exec holds it (an open directory in its mount)\n" +
			"until CMD exits, and exits with CMD's status. SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are\n" +
			"passed on to CMD. For cron jobs, queue workers and systemd units that run for hours.",
		Flags: []cli.Flag{storeRootFlag()},
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) == 0 {
				return fmt.Errorf("exec: no command (receiver exec [--root DIR] -- CMD [ARG...])")
			}
			l, err := release.LeaseCurrent(c.String("root"))
			if err != nil {
				return fmt.Errorf("exec: %w", err)
			}
			defer l.Close()
			code, err := cliutil.RunForwarding(l.Command(args[0], args[1:]...))
			if err != nil {
				return fmt.Errorf("exec: %s in release %s: %w", args[0], l.ID, err)
			}
			if code != 0 {
				return &cliutil.ExitError{Code: code, Err: fmt.Errorf("exec: %s exited with status %d (release %s)", args[0], code, l.ID)}
			}
			return nil
		},
	}
}
