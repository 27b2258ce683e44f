package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/loopcast/loopcast/image"
	"github.com/urfave/cli/v2"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check an image against its manifest, every chunk (and its pack's frames, if there is one)",
		ArgsUsage: "IMAGE",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "trust", Usage: "also check the manifest's signature against this public key `FILE` (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("verify: want one image, got %d arguments", c.NArg())
			}
			img := c.Args().First()
			m, err := image.ReadManifestFile(img + ".manifest")
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if keys := c.StringSlice("trust"); len(keys) > 0 {
				trusted, err := image.ReadTrustedKeys(keys)
				if err != nil {
					return err
				}
				if err := m.Verify(trusted); err != nil {
					return fmt.Errorf("verify: %s.manifest: %w", img, err)
				}
			}
			if err := image.VerifyFile(c.Context, img, m); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "%s: release %s, %d chunks match the manifest\n", img, m.ID(), len(m.Chunks))
			p, err := image.OpenPack(img+image.PackSuffix, m)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			defer p.Close()
			n, err := p.Check()
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "%s%s: %d frames intact\n", img, image.PackSuffix, n)
			return nil
		},
	}
}
