package main

import (
	"fmt"

	"github.com/loopcast/loopcast/image"
	"github.com/urfave/cli/v2"
)

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "write a new ed25519 release key pair (KEY and KEY.pub)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "release.key", Usage: "private key `FILE` (mode 0600); the public key goes beside it as .pub"},
		},
		Action: func(c *cli.Context) error {
			out := c.String("out")
			pub, err := image.GenerateKeyFiles(out)
			if err != nil {
				return err
			}
			k, err := image.ReadPublicKeyFile(pub)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "private key: %s (keep it secret)\npublic key:  %s (install on receivers)\nkey id:      %s\n", out, pub, image.KeyID(k))
			return nil
		},
	}
}
