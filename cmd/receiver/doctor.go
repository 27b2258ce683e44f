package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/loopcast/loopcast/doctor"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/release"
	"github.com/urfave/cli/v2"
)

// defaultEnvFile is where the packaged agent's settings live.
const defaultEnvFile = "/etc/loopcast/receiver.env"

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check this host: multicast plumbing, store, nginx and php-fpm; each problem with its fix (exit 1 on any)",
		Flags: []cli.Flag{
			storeRootFlag(),
			&cli.StringFlag{Name: "env-file", Value: defaultEnvFile, Usage: "the agent's settings `FILE` (LOOPCAST_* lines), read for what no flag or environment variable sets"},
			&cli.StringFlag{Name: "group", Value: "239.192.0.1:5000", EnvVars: []string{"LOOPCAST_GROUP"}, Usage: "the agent's multicast `ADDR:PORT`"},
			&cli.StringFlag{Name: "iface", EnvVars: []string{"LOOPCAST_IFACE"}, Usage: "the agent's `INTERFACE`"},
			&cli.StringSliceFlag{Name: "trust", EnvVars: []string{"LOOPCAST_TRUST"}, Usage: "trusted release key `FILE`s"},
			&cli.StringFlag{Name: "php-fpm", EnvVars: []string{"LOOPCAST_PHP_FPM"}, Usage: "the agent's php-fpm pool `SOCKET`"},
			&cli.Int64Flag{Name: "reserve", Value: release.DefaultReserve, EnvVars: []string{"LOOPCAST_RESERVE"}, Usage: "`BYTES` staging leaves free"},
			hostKeyFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(c *cli.Context) error {
			env, err := readEnvFile(c.String("env-file"), c.IsSet("env-file"))
			if err != nil {
				return err
			}
			get := func(flag, key string) string {
				if c.IsSet(flag) {
					return c.String(flag)
				}
				if v, ok := env[key]; ok {
					return v
				}
				return c.String(flag)
			}
			group, err := cliutil.ParseGroup(get("group", "LOOPCAST_GROUP"))
			if err != nil {
				return fmt.Errorf("doctor: %w", err)
			}
			trust := c.StringSlice("trust")
			if !c.IsSet("trust") && env["LOOPCAST_TRUST"] != "" {
				trust = strings.Split(env["LOOPCAST_TRUST"], ",")
			}
			root := get("root", "LOOPCAST_ROOT")
			findings := doctor.Run(c.Context, doctor.Config{
				Root: root, Group: group, Iface: get("iface", "LOOPCAST_IFACE"), Trust: trust,
				HostKey: get("host-key", "LOOPCAST_HOST_KEY"), PHPFPM: get("php-fpm", "LOOPCAST_PHP_FPM"), Reserve: c.Int64("reserve"),
			})
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				enc.Encode(findings)
			} else {
				tw := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
				for _, f := range findings {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Level, f.Check, f.Detail)
					if f.Fix != "" && f.Level != doctor.OK {
						fmt.Fprintf(tw, "\t\tfix: %s\n", f.Fix)
					}
				}
				tw.Flush()
			}
			if w := doctor.Worst(findings); w != doctor.OK {
				return cli.Exit(fmt.Sprintf("doctor: problems found (worst: %s)", w), 1)
			}
			return nil
		},
	}
}

// readEnvFile reads KEY=VALUE lines; a missing default file is no error.
func readEnvFile(path string, explicit bool) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) && !explicit {
			return nil, nil
		}
		return nil, fmt.Errorf("doctor: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return out, sc.Err()
}
