package main

import (
	"log/slog"
	"os"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/urfave/cli/v2"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name: "serve",
		Usage: "run until stopped as the fleet's source of last resort: answer agents asking for the fleet pointer, " +
			"and serve the pointer's release (the image this sender built) to hosts catching up that no peer can serve",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "group", Value: "239.192.0.1:5000", EnvVars: []string{"LOOPCAST_GROUP"}, Usage: "the agents' multicast `ADDR:PORT` (queries and releases on PORT+1)"},
			&cli.StringFlag{Name: "iface", EnvVars: []string{"LOOPCAST_IFACE"}, Usage: "join the group on this network `INTERFACE`"},
			stateDirFlag(),
		},
		Action: func(c *cli.Context) error {
			g, err := cliutil.ParseGroup(c.String("group"))
			if err != nil {
				return err
			}
			paths := deploy.StatePaths(c.String("state-dir"), g)
			return deploy.Serve(c.Context, deploy.ServeOptions{Group: g, Iface: c.String("iface"),
				PointerFile: paths.Pointer, CertFile: paths.Certs, Images: paths.Images,
				Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
		},
	}
}
