package main

import (
	"errors"
	"fmt"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/release"
	"github.com/urfave/cli/v2"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check kept images against their manifests, every chunk; quarantine a corrupt one",
		ArgsUsage: "[ID...]",
		Flags:     []cli.Flag{storeRootFlag()},
		Action: func(c *cli.Context) error {
			s, err := openStore(c, release.Options{})
			if err != nil {
				return err
			}
			var ids []image.ID
			for _, a := range c.Args().Slice() {
				id, err := cliutil.ParseRelease("verify:", a)
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			if len(ids) == 0 {
				kept, err := s.KeptImages()
				if err != nil {
					return err
				}
				for _, k := range kept {
					ids = append(ids, k.ID)
				}
			}
			var errs []error
			for _, id := range ids {
				if err := s.Verify(c.Context, id, 0); err != nil {
					fmt.Fprintf(c.App.Writer, "%s: CORRUPT, quarantined: %v\n", id, err)
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(c.App.Writer, "%s: ok\n", id)
			}
			if len(errs) > 0 {
				return fmt.Errorf("verify: %d of %d releases corrupt: %w", len(errs), len(ids), errors.Join(errs...))
			}
			return nil
		},
	}
}
