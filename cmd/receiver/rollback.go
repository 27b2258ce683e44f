package main

import (
	"fmt"

	"github.com/loopcast/loopcast/agent"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/cliutil"

	"github.com/loopcast/loopcast/release"
	"github.com/urfave/cli/v2"
)

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:  "rollback",
		Usage: "switch this host back to the previous release (or --to one still kept), without the network",
		Flags: []cli.Flag{
			storeRootFlag(),
			&cli.StringFlag{Name: "to", Usage: "roll back to release `ID` instead of the previous one"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return fmt.Errorf("rollback: unexpected arguments %v (use --to ID)", c.Args().Slice())
			}
			var to image.ID // zero: the previous release
			if c.String("to") != "" {
				var err error
				if to, err = cliutil.ParseRelease("rollback: --to", c.String("to")); err != nil {
					return err
				}
			}
			s, err := openStore(c, release.Options{})
			if err != nil {
				return err
			}
			// first: the agent's catch-up must not switch the host back to
			// a fleet pointer issued before this decision
			if err := agent.NoteLocalCommand(s.Root()); err != nil {
				return fmt.Errorf("rollback: %w", err)
			}
			to, err = s.Rollback(to)
			if err != nil {
				return err
			}
			st, err := s.Status()
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "current %s (rolled back from %s)\n", to, cliutil.IDOrDash(st.Previous))
			fmt.Fprintln(c.App.Writer, "the agent will not switch this host to the fleet's release again until a newer deploy or rollback")
			return nil
		},
	}
}
