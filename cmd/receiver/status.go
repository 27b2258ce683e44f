package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loopcast/loopcast/agent"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/opcache"

	"github.com/loopcast/loopcast/release"
	"github.com/urfave/cli/v2"
)

// storeRootFlag is the --root flag of the local commands.
func storeRootFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name: "root", Value: release.DefaultRoot, EnvVars: []string{"LOOPCAST_ROOT"},
		Usage: "the agent's store `DIR` (images/, releases/, current, state)",
	}
}

// openStore opens the store at --root, refusing to create one where none is.
func openStore(c *cli.Context, opts release.Options) (*release.Store, error) {
	root := c.String("root")
	if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no release store at %s (see --root)", c.Command.Name, root)
	}
	if opts.Logger == nil {
		// The command prints its outcome; the store's log is for the agent.
		opts.Logger = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return release.Open(root, opts)
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "print this host's releases: current, previous, staged, free disk, last error",
		Flags: []cli.Flag{
			storeRootFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.StringFlag{Name: "php-fpm", Usage: "report the OPcache of the php-fpm pool at `SOCKET` (default: the pool the agent serves)"},
		},
		Action: func(c *cli.Context) error {
			s, err := openStore(c, release.Options{})
			if err != nil {
				return err
			}
			st, err := s.Status()
			if err != nil {
				return err
			}
			if err := s.WithUsers(st); err != nil {
				return err
			}
			out := statusOut{Status: st}
			if fs, err := agent.ReadSync(s.Root(), st.Current, time.Now()); err == nil && fs.Pointer != nil {
				out.Fleet = &fs
			}
			if c.String("php-fpm") != "" {
				st.PHPFPM = c.String("php-fpm")
			}
			if st.PHPFPM != "" {
				out.OPcache, out.OPcacheError = poolStatus(c.Context, s.Root(), st.PHPFPM)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printStatus(c.App.Writer, out)
			return nil
		},
	}
}

// statusOut is what `receiver status` prints: the store's status and,
// when the agent serves a php-fpm pool, its OPcache.
type statusOut struct {
	*release.Status
	OPcache      *opcache.Status  `json:"opcache,omitempty"`
	OPcacheError string           `json:"opcache_error,omitempty"`
	Fleet        *agent.SyncState `json:"fleet,omitempty"`
}

// poolStatus asks the pool at socket for OPcache's state, through the
// helper the agent installs (installed here when missing).
func poolStatus(ctx context.Context, root, socket string) (*opcache.Status, string) {
	c := opcache.ForStore(root, socket)
	if _, err := os.Stat(c.Helper); err != nil { // an agent never run with --php-fpm
		if c, err = opcache.Install(opcache.HelperDir(root), socket); err != nil {
			return nil, err.Error()
		}
	}
	c.Timeout = 5 * time.Second
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err.Error()
	}
	return st, ""
}

func printStatus(w io.Writer, out statusOut) {
	st := out.Status
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "root\t%s\n", st.Root)
	fmt.Fprintf(tw, "current\t%s\n", cliutil.IDOrDash(st.Current))
	fmt.Fprintf(tw, "previous\t%s\n", cliutil.IDOrDash(st.Previous))
	fmt.Fprintf(tw, "staged\t%s\n", cliutil.OrDash(cliutil.JoinIDs(st.Staged, " ")))
	fmt.Fprintf(tw, "free disk\t%s\n", cliutil.HumanBytes(st.FreeBytes))
	fmt.Fprintf(tw, "last error\t%s\n", cliutil.OrDash(st.LastError))
	if st.LastRefusal != "" {
		fmt.Fprintf(tw, "last refusal\t%s (%s)\n", st.LastRefusal, st.LastRefusalAt.Local().Format(time.DateTime))
	} else {
		fmt.Fprintf(tw, "last refusal\t%s\n", cliutil.OrDash(""))
	}
	fmt.Fprintf(tw, "fleet\t%s\n", fleetLine(out.Fleet))
	if st.PHPFPM != "" {
		fmt.Fprintf(tw, "php-fpm\t%s\n", st.PHPFPM)
		fmt.Fprintf(tw, "opcache\t%s\n", opcacheLine(out.OPcache, out.OPcacheError))
	}
	tw.Flush()
	if len(st.Releases) > 0 {
		fmt.Fprintln(w)
		printReleases(w, st)
	}
	for _, f := range st.Failed {
		fmt.Fprintf(w, "failed %s at %s: %s\n", cliutil.IDOrDash(f.ID), f.At.Format("2006-01-02 15:04:05Z"), f.Error)
	}
}

// fleetLine says how the host stands against the fleet pointer.
func fleetLine(s *agent.SyncState) string {
	switch {
	case s == nil:
		return "no fleet pointer yet"
	case s.InSync && s.Superseded:
		return fmt.Sprintf("pointer #%d names %s; a newer command put this host on %s", s.Seq, s.Release, cliutil.IDOrDash(s.Current))
	case s.InSync:
		return fmt.Sprintf("in sync: pointer #%d names %s", s.Seq, s.Release)
	case s.Failed != "":
		return fmt.Sprintf("BEHIND: pointer #%d names %s, which failed here: %s", s.Seq, s.Release, s.Failed)
	}
	return fmt.Sprintf("BEHIND for %s: pointer #%d names %s (catching up)", s.Behind.Round(time.Second), s.Seq, s.Release)
}

// opcacheLine sums OPcache up in one line.
func opcacheLine(st *opcache.Status, errText string) string {
	switch {
	case st == nil:
		return "unreachable: " + errText
	case !st.Enabled:
		return "off"
	}
	line := fmt.Sprintf("%d scripts (of %d), %s used + %s wasted of %s, %d restarts",
		st.Scripts, st.MaxScripts, cliutil.HumanBytes(st.UsedMemory), cliutil.HumanBytes(st.WastedMemory),
		cliutil.HumanBytes(st.MemoryLimit), st.Restarts())
	if full := st.NearFull(); full != "" {
		line += "; WARNING: " + full
	}
	return line
}

func printReleases(w io.Writer, st *release.Status) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tSTATE\tMOUNTED\tSLOT\tSIZE\tSTAGED\tLABEL\tKEPT")
	for _, r := range st.Releases {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\n", r.ID, releaseState(st, r), r.Mounted, cliutil.OrDash(r.Slot),
			cliutil.HumanBytes(r.Size), r.StagedAt.Format("2006-01-02 15:04:05Z"), r.Label, r.Kept)
	}
	tw.Flush()
	for _, r := range st.Releases {
		if r.Quarantined != "" {
			fmt.Fprintf(w, "quarantined: %s at %s: %s\n", r.ID, r.QuarantinedAt.Format("2006-01-02 15:04:05Z"), r.Quarantined)
		}
		for _, p := range r.Users {
			fmt.Fprintf(w, "in use: %s by pid %d (%s): %s\n", r.ID, p.PID, strings.Join(p.Uses, ","), p.Command)
		}
	}
	if st.UsersHidden > 0 && os.Geteuid() != 0 {
		fmt.Fprintf(w, "(%d processes could not be inspected; run as root to see every user)\n", st.UsersHidden)
	}
}

func releaseState(st *release.Status, r release.ReleaseStatus) string {
	switch {
	case r.Quarantined != "" && r.ID == st.Current:
		return "current, CORRUPT"
	case r.Quarantined != "":
		return "quarantined"
	case r.ID == st.Current:
		return "current"
	case r.ID == st.Previous:
		return "previous"
	case r.Activated == 0:
		return "staged"
	}
	return "kept"
}
