package cliutil

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// ManCommand is a hidden command that prints the app's man page (roff,
// made by urfave/cli from the commands and flags), for the packages.
func ManCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Hidden: true,
		Usage:  "print the man page",
		Action: func(c *cli.Context) error {
			page, err := c.App.ToMan()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}
