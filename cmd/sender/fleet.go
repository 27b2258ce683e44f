package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/image"
	"github.com/urfave/cli/v2"
)

func fleet(c *cli.Context) (*deploy.Fleet, error) {
	g, err := parseGroup(c.String("group"))
	if err != nil {
		return nil, err
	}
	key, err := image.ReadPrivateKeyFile(c.String("key"))
	if err != nil {
		return nil, err
	}
	hosts, err := hostsFlag(c)
	if err != nil {
		return nil, err
	}
	return &deploy.Fleet{Group: g, Iface: c.String("iface"), TTL: c.Int("ttl"), Hosts: hosts, Key: key,
		Cmd: deploy.Commander{Timeout: c.Duration("timeout")}}, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "ask every host what it serves (current, previous, staged, disk, version, last error)",
		Flags: groupFlags(),
		Action: func(c *cli.Context) error {
			f, err := fleet(c)
			if err != nil {
				return err
			}
			st, err := f.Status(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(c.App.Writer, st)
			return nil
		},
	}
}

func printStatus(w io.Writer, st []deploy.HostStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCURRENT\tPREVIOUS\tSTAGED\tFREE\tAGENT\tERROR")
	for _, s := range st {
		cur := s.Current
		if s.OffMajor {
			cur += " *"
		}
		errText := s.Error
		if errText == "" {
			errText = s.LastErr
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, cur, s.Previous, strings.Join(s.Staged, ","),
			humanBytes(int64(s.Free)), s.Version, errText)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d hosts; majority on %s (* = not on it)\n", len(st), deploy.Majority(st))
}

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:  "rollback",
		Usage: "switch every host back: to the majority's previous release, or --to ID (a symlink flip, no transfer)",
		Flags: append(groupFlags(), &cli.StringFlag{Name: "to", Usage: "release `ID` to switch to"}),
		Action: func(c *cli.Context) error {
			f, err := fleet(c)
			if err != nil {
				return err
			}
			to, res, err := f.Rollback(c.Context, c.String("to"))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tCURRENT\tERROR")
			ok := 0
			for _, h := range res {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", h.ID, h.Current, h.Error)
				if h.Error == "" {
					ok++
				}
			}
			tw.Flush()
			fmt.Fprintf(c.App.Writer, "rollback to %s: %d/%d hosts\n", to, ok, len(res))
			switch {
			case len(res) == 0 || ok == 0:
				return outcomeExit(deploy.OutcomeNone, to)
			case ok < len(res):
				return outcomeExit(deploy.OutcomePartial, to)
			}
			return nil
		},
	}
}
