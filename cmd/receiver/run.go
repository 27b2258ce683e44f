package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/loopcast/loopcast/agent"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/release"
	"github.com/urfave/cli/v2"
)

// version is reported by STATUS; set at build time with -ldflags "-X main.version=...".
var version = "dev"

func runCommand() *cli.Command {
	host, _ := os.Hostname()
	return &cli.Command{
		Name:  "run",
		Usage: "run the agent: receive, stage and switch releases on the sender's signed word",
		Flags: []cli.Flag{
			storeRootFlag(),
			&cli.StringFlag{Name: "group", Value: "239.192.0.1:5000", EnvVars: []string{"LOOPCAST_GROUP"}, Usage: "multicast `ADDR:PORT` for data; control uses PORT+1"},
			&cli.StringFlag{Name: "iface", EnvVars: []string{"LOOPCAST_IFACE"}, Usage: "join the group on this network `INTERFACE`"},
			&cli.StringFlag{Name: "host-id", Value: host, EnvVars: []string{"LOOPCAST_HOST_ID"}, Usage: "this host's `ID` as the sender's --hosts names it"},
			&cli.StringSliceFlag{Name: "trust", EnvVars: []string{"LOOPCAST_TRUST"}, Usage: "release public key `FILE` whose signatures are accepted (repeatable)"},
			&cli.IntFlag{Name: "keep", Value: release.DefaultKeep, EnvVars: []string{"LOOPCAST_KEEP"}, Usage: "good releases kept mounted besides current and the rollback target"},
			&cli.DurationFlag{Name: "keep-for", Value: release.DefaultKeepFor, EnvVars: []string{"LOOPCAST_KEEP_FOR"}, Usage: "keep a release mounted this `LONG` after it stops being current (0: no time rule); releases in use are never retired"},
			&cli.Int64Flag{Name: "reserve", Value: release.DefaultReserve, EnvVars: []string{"LOOPCAST_RESERVE"}, Usage: "`BYTES` of disk staging must leave free"},
			&cli.BoolFlag{Name: "noexec", EnvVars: []string{"LOOPCAST_NOEXEC"}, Usage: "mount releases noexec"},
		},
		Action: func(c *cli.Context) error {
			keys, err := image.ReadTrustedKeys(c.StringSlice("trust"))
			if err != nil {
				return fmt.Errorf("run: --trust: %w", err)
			}
			group, err := cliutil.ParseGroup(c.String("group"))
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			if c.String("host-id") == "" {
				return fmt.Errorf("run: --host-id is empty")
			}
			log := agent.NewLogger(os.Stderr, slog.LevelInfo)
			slog.SetDefault(log)
			return agent.Run(c.Context, agent.RunConfig{
				Root: c.String("root"), Group: group, Iface: c.String("iface"),
				HostID: c.String("host-id"), Keys: keys, Version: version,
				Store:  release.Options{Keep: c.Int("keep"), KeepFor: keepFor(c.Duration("keep-for")), Reserve: c.Int64("reserve"), NoExec: c.Bool("noexec")},
				Logger: log,
			})
		},
	}
}

// keepFor maps --keep-for to the store's option, where zero means the
// default: a flag of 0 turns the time rule off.
func keepFor(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
