package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/loopcast/loopcast/internal/cliutil"

	"github.com/urfave/cli/v2"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/image"
)

func fleet(c *cli.Context) (*deploy.Fleet, *hostkey.Pins, error) {
	g, err := cliutil.ParseGroup(c.String("group"))
	if err != nil {
		return nil, nil, err
	}
	key, err := image.ReadPrivateKeyFile(c.String("key"))
	if err != nil {
		return nil, nil, err
	}
	inv, err := hostsFlag(c)
	if err != nil {
		return nil, nil, err
	}
	pins, err := openPins(c, inv)
	if err != nil {
		return nil, nil, err
	}
	addrs, err := openAddrs(c, inv)
	if err != nil {
		return nil, nil, err
	}
	// only replies signed by a host's pinned key count (a listed host is
	// pinned on first contact): made-up hosts cannot steer a rollback
	paths := deploy.StatePaths(c.String("state-dir"), g)
	return &deploy.Fleet{Group: g, Iface: c.String("iface"), TTL: c.Int("ttl"), Hosts: inv.ids, Key: key, GroupSize: pins.Len(),
		Audit: paths.Audit, PointerFile: paths.Pointer,
		Cmd: deploy.Commander{Timeout: c.Duration("timeout"), Unicast: addrs.Map(inv.ids), HostKeys: hostKeyPolicy(pins, inv.ids, c.Bool("allow-new-hosts")),
			Logger: consoleFor(c, c.App.Writer).Logger()}}, pins, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "ask every host what it serves (current, previous, staged, disk, version, last error)",
		Flags: append(groupFlags(), stateDirFlag(), allowNewHostsFlag()),
		Action: func(c *cli.Context) error {
			f, pins, err := fleet(c)
			if err != nil {
				return err
			}
			defer pins.Save()
			st, err := f.Status(c.Context)
			if err != nil {
				return err
			}
			ptr, perr := deploy.ReadPointer(f.PointerFile)
			if perr != nil {
				fmt.Fprintln(c.App.ErrWriter, "warning:", perr)
			}
			deploy.MarkLag(st, ptr, time.Now())
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				enc.Encode(st)
			} else {
				printStatus(c.App.Writer, st, ptr)
			}
			return statusExit(st)
		},
	}
}

// statusExit fails when hosts did not answer: 3 when none did, 2 when some.
func statusExit(st []deploy.HostStatus) error {
	silent := 0
	for _, s := range st {
		if s.Error != "" {
			silent++
		}
	}
	switch {
	case len(st) == 0 || silent == len(st):
		return &cliutil.ExitError{Code: exitNone, Err: fmt.Errorf("status: no host answered")}
	case silent > 0:
		return &cliutil.ExitError{Code: exitPartial, Err: fmt.Errorf("status: %d of %d hosts did not answer", silent, len(st))}
	}
	return nil
}

func stateDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "state-dir", Value: defaultStateDir, EnvVars: []string{"LOOPCAST_STATE_DIR"}, Usage: "`DIR` holding the deploy lock, the audit log (deploy history) and built images"}
}

func printStatus(w io.Writer, st []deploy.HostStatus, ptr *deploy.PointerRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCURRENT\tPREVIOUS\tSTAGED\tFREE\tAGENT\tFLEET\tERROR")
	for _, s := range st {
		cur := s.Current.Text()
		if s.OffMajor {
			cur += " *"
		}
		errText := s.Error
		if errText == "" {
			errText = s.LastErr
		}
		if errText == "" && s.LastRefusal != "" {
			errText = "last refused " + s.LastRefusal
		}
		fleet := "-"
		switch {
		case ptr == nil || s.Error != "":
		case s.Behind > 0:
			fleet = "behind " + s.Behind.Round(time.Second).String()
		default:
			fleet = "in sync"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, cur, s.Previous.Text(), cliutil.JoinIDs(s.Staged, ","),
			cliutil.HumanBytes(int64(s.Free)), s.Version, fleet, errText)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d hosts; majority on %s (* = not on it)\n", len(st), deploy.Majority(st).Text())
	if ptr != nil {
		fmt.Fprintf(w, "fleet pointer #%d names %s (issued %s); hosts not on it catch up on their own\n",
			ptr.Seq, ptr.Release, ptr.Issued.Local().Format(time.DateTime))
	}
}

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:  "rollback",
		Usage: "switch every host back, a symlink flip with no transfer: to the release deployed before the current one, or --to ID",
		Flags: append(groupFlags(), stateDirFlag(), allowNewHostsFlag(), &cli.StringFlag{Name: "to", Usage: "release `ID` to switch to"}),
		Action: func(c *cli.Context) error {
			var to image.ID // zero: the release deployed before the current one
			if c.String("to") != "" {
				var err error
				if to, err = cliutil.ParseRelease("rollback: --to", c.String("to")); err != nil {
					return err
				}
			}
			f, pins, err := fleet(c)
			if err != nil {
				return err
			}
			defer pins.Save()
			d, err := deploy.Open(c.String("state-dir"), f.Group)
			if err != nil {
				return err
			}
			defer d.Close()
			to, res, err := d.Rollback(c.Context, f, to)
			if res == nil {
				return err
			}
			printRollback(c.App.Writer, to, res)
			outcome, _ := deploy.OutcomeOf(res)
			return withOutcome(err, outcome, to)
		},
	}
}

func printRollback(w io.Writer, to image.ID, res []deploy.HostResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCURRENT\tERROR")
	for _, h := range res {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", h.ID, h.Current.Text(), h.Error)
	}
	tw.Flush()
	_, ok := deploy.OutcomeOf(res)
	fmt.Fprintf(w, "rollback to %s: %d/%d hosts\n", to, ok, len(res))
}
