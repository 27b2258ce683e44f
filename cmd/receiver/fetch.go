package main

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/internal/logline"
	"github.com/loopcast/loopcast/multicast"
	"github.com/urfave/cli/v2"
)

func fetchCommand() *cli.Command {
	host, _ := os.Hostname()
	return &cli.Command{
		Name:  "fetch",
		Usage: "receive one multicast session into a file, verify it, and exit",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "group", Required: true, Usage: "multicast `ADDR:PORT` to join"},
			&cli.StringFlag{Name: "iface", Usage: "join on this network `INTERFACE`"},
			&cli.StringSliceFlag{Name: "trust", Usage: "accept manifests signed by this public key `FILE` (repeatable)"},
			&cli.BoolFlag{Name: "insecure", Usage: "accept an unsigned or untrusted manifest (testing only)"},
			&cli.StringFlag{Name: "host-id", Value: host, Usage: "this host's `ID` as the sender's --hosts names it"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "write the verified image to `FILE`"},
			&cli.DurationFlag{Name: "sender-timeout", Value: multicast.DefaultSenderTimeout, Usage: "give up when the sender is silent this long"},
			&cli.DurationFlag{Name: "wait", Usage: "give up when no trusted session is joined this long (default: wait until interrupted)"},
			&cli.StringFlag{Name: "host-key", Usage: "this host's private key `FILE`, made when missing (default: host-ID.key in the user's config dir, loopcast/)"},
		},
		Action: runFetch,
	}
}

func runFetch(c *cli.Context) error {
	var trusted []ed25519.PublicKey
	if keys := c.StringSlice("trust"); len(keys) > 0 {
		var err error
		if trusted, err = image.ReadTrustedKeys(keys); err != nil {
			return err
		}
	} else if !c.Bool("insecure") {
		return fmt.Errorf("fetch: give --trust KEY.pub (or --insecure)")
	}
	if err := hostkey.CheckID(c.String("host-id")); err != nil {
		return fmt.Errorf("fetch: --host-id: %w", err)
	}
	group, err := cliutil.ParseGroup(c.String("group"))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	keyPath := c.String("host-key")
	if keyPath == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return fmt.Errorf("fetch: no --host-key and %w", err)
		}
		keyPath = filepath.Join(dir, "loopcast", "host-"+c.String("host-id")+".key")
	}
	hk, _, err := hostkey.LoadOrCreate(keyPath)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	conn, err := multicast.ListenGroup(group, c.String("iface"))
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := multicast.Receive(c.Context, conn, multicast.ReceiveOptions{
		HostID: c.String("host-id"), HostKey: hk, Out: c.String("out"), Trusted: trusted, Insecure: c.Bool("insecure"),
		SenderTimeout: c.Duration("sender-timeout"), AnnounceTimeout: c.Duration("wait"),
		Logger: slog.New(logline.New(slog.LevelDebug, func(level slog.Level, line string) {
			if level >= slog.LevelWarn {
				line = "warning: " + line
			}
			fmt.Fprintln(c.App.ErrWriter, line)
		})),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "release %s (session %08x) verified: %s (%d chunks resumed, %d asked again)\n",
		res.ReleaseID, res.Session, res.Path, res.Resumed, res.BadChunks)
	return nil
}
