package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"text/tabwriter"

	"github.com/loopcast/loopcast/internal/cliutil"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
	"github.com/urfave/cli/v2"
)

// exitPartial is the exit code when some but not all hosts completed.
const exitPartial = 2

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:      "send",
		Usage:     "multicast one image (and IMAGE.manifest) to every host at once",
		ArgsUsage: "IMAGE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "group", Required: true, Usage: "multicast `ADDR:PORT`, e.g. 239.192.0.1:5000"},
			&cli.StringFlag{Name: "iface", Usage: "send through this network `INTERFACE`"},
			&cli.IntFlag{Name: "ttl", Value: multicast.DefaultTTL, Usage: "multicast TTL (1 stays on the local link)"},
			rateFlag(),
			&cli.StringFlag{Name: "hosts", Usage: "closed group: host ids `a,b,...` or @FILE (one per line) that must complete"},
			&cli.DurationFlag{Name: "wait", Value: multicast.DefaultWait, Usage: "how long hosts may take to register"},
			&cli.IntFlag{Name: "min-hosts", Usage: "open group: start as soon as `N` hosts registered"},
			&cli.IntFlag{Name: "fec-overhead", Usage: "proactive parity, `PCT` of each block's data packets (default: sized from the loss hosts report)"},
			&cli.DurationFlag{Name: "host-timeout", Value: multicast.DefaultHostTimeout, Usage: "drop a host silent this long"},
			&cli.StringFlag{Name: "key", Required: true, EnvVars: []string{"LOOPCAST_KEY"}, Usage: "release private key `FILE`: signs the session (the manifest must be signed by it)"},
			allowNewHostsFlag(), stateDirFlag(), encryptFlag(), noUnicastFlag(), relaysFlag(),
		},
		Action: runSend,
	}
}

func runSend(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("send: want one image file, got %d arguments", c.NArg())
	}
	opts, closer, err := sendOptions(c)
	if err != nil {
		return err
	}
	defer closer.Close()
	group := opts.Group.(*net.UDPAddr)
	conn, err := multicast.DialGroup(group, c.String("iface"), c.Int("ttl"))
	if err != nil {
		return err
	}
	defer conn.Close()
	k := consoleFor(c, c.App.Writer)
	k.verbose = true // send has no -v: it always printed the session's detail
	opts.Logger = k.Logger()
	rep, err := multicast.Send(c.Context, conn, opts)
	if rep != nil {
		printReport(c.App.Writer, rep)
		for _, h := range rep.Hosts {
			closer.addrs.Learn(h.ID, h.Addr)
		}
	}
	if err != nil {
		return err
	}
	return reportExit(rep)
}

// sendOptions reads the image, its manifest and the flags.
func sendOptions(c *cli.Context) (multicast.SendOptions, *closers, error) {
	path := c.Args().First()
	var o multicast.SendOptions
	m, err := image.ReadManifestFile(path + ".manifest")
	if err != nil {
		return o, nil, err
	}
	if m.PublicKey == nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s.manifest is unsigned; receivers will refuse it unless insecure\n", path)
	}
	group, err := cliutil.ParseGroup(c.String("group"))
	if err != nil {
		return o, nil, fmt.Errorf("send: %w", err)
	}
	rate, slow, err := rateOption(c)
	if err != nil {
		return o, nil, fmt.Errorf("send: %w", err)
	}
	inv, err := parseHosts(c.String("hosts"))
	if err != nil {
		return o, nil, err
	}
	rl, err := relays(c, inv)
	if err != nil {
		return o, nil, fmt.Errorf("send: %w", err)
	}
	key, err := image.ReadPrivateKeyFile(c.String("key"))
	if err != nil {
		return o, nil, err
	}
	pins, err := openPins(c, inv)
	if err != nil {
		return o, nil, err
	}
	addrs, err := openAddrs(c, inv)
	if err != nil {
		return o, nil, err
	}
	p, made, err := image.OpenOrMakePack(c.Context, path, m)
	if err != nil {
		return o, nil, fmt.Errorf("send: %w", err)
	}
	if made {
		fmt.Fprintf(c.App.ErrWriter, "send: %s had no pack: made %s%s\n", path, path, image.PackSuffix)
	}
	o = multicast.SendOptions{Group: group, Manifest: m, Pack: p, BaseID: p.BaseID, Rate: rate, SlowStart: slow, Hosts: inv.ids,
		Wait: c.Duration("wait"), MinHosts: c.Int("min-hosts"), FECOverhead: fecOverhead(c),
		HostTimeout: c.Duration("host-timeout"), Key: key, HostKeys: hostKeyPolicy(pins, inv.ids, c.Bool("allow-new-hosts")),
		Encrypt: c.Bool("encrypt"), Relays: rl}
	cl := &closers{c: p, pins: pins, addrs: addrs}
	if !c.Bool("no-unicast") {
		if o.Unicast, err = net.Listen("tcp4", ":0"); err != nil {
			p.Close()
			return o, nil, fmt.Errorf("send: the unicast path's TCP port (--no-unicast goes without it): %w", err)
		}
		o.HostAddrs, cl.ln = multicast.UnicastAddrs(addrs.Map(inv.ids), group.Port), o.Unicast
	}
	return o, cl, nil
}

func printReport(w io.Writer, r *multicast.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tADDRESS\tPATH\tREASON")
	for _, h := range r.Hosts {
		path := "-"
		if h.State == multicast.HostComplete {
			path = pathText(h.Path, h.Via)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.ID, h.State, h.Addr, path, h.Reason)
	}
	tw.Flush()
	done, all := r.Completed()
	ratio := 0.0
	if r.PayloadBytes > 0 {
		ratio = float64(r.Bytes) / float64(r.PayloadBytes)
	}
	fmt.Fprintf(w, "release %s session %08x: %d/%d hosts complete in %v; %d packets (%d data, %d repair), %s on the wire, %.3f× the compressed payload, %d rounds\n",
		r.ReleaseID, r.Session, done, all, r.Duration.Round(1e6), r.Packets, r.DataPackets, r.RepairPackets, cliutil.HumanBytes(r.Bytes), ratio, r.Rounds)
	if r.Rate > 0 {
		fmt.Fprintf(w, "rate: the first pass ended at %s (the slowest host's delivery, within --rate)\n", cliutil.HumanRate(float64(r.Rate)))
	}
	if r.UnicastBytes > 0 {
		fmt.Fprintf(w, "unicast: %s over TCP to the hosts that heard no multicast\n", cliutil.HumanBytes(r.UnicastBytes))
	}
	printRelays(w, r.Relays)
}

// printRelays says what each relay sent on its subnet.
func printRelays(w io.Writer, relays []multicast.RelayReport) {
	for _, rl := range relays {
		fmt.Fprintf(w, "relay %s: %s to %d hosts on its subnet, %d rounds\n", rl.ID, cliutil.HumanBytes(rl.DownBytes), rl.Hosts, rl.Rounds)
	}
}

// reportExit maps the outcome to the exit code: all, partial or none.
func reportExit(r *multicast.Report) error {
	done, all := r.Completed()
	switch {
	case done == all && all > 0:
		return nil
	case done > 0:
		return &cliutil.ExitError{Code: exitPartial, Err: fmt.Errorf("send: %d of %d hosts did not complete", all-done, all)}
	}
	return errors.New("send: no host completed")
}

// fecOverhead reads --fec-overhead: a fixed percent when given, else
// parity sized from the loss the hosts report.
func fecOverhead(c *cli.Context) int {
	if c.IsSet("fec-overhead") {
		return c.Int("fec-overhead")
	}
	return multicast.AutoFEC
}

// defaultRate caps a session given no --rate: the first pass starts at an
// eighth of it and climbs while every host keeps up, so the slowest link
// sets the pace (a gigabit link's payload is ~950 Mbit/s).
const defaultRate = "900M"

// rateFlag is --rate, shared by send and deploy.
func rateFlag() cli.Flag {
	return &cli.StringFlag{Name: "rate", Usage: "cap the sending rate at `RATE`, in " + cliutil.RateUnits +
		"; the transfer starts there and follows the slowest host below it (default: start low and climb to " + defaultRate + "); 0: unpaced"}
}

// rateOption reads --rate: the cap in bit/s, and whether the first pass
// starts low (no --rate: the cap is a default, not the link's speed).
func rateOption(c *cli.Context) (int64, bool, error) {
	if !c.IsSet("rate") {
		r, err := cliutil.ParseRate(defaultRate)
		return r, true, err
	}
	r, err := cliutil.ParseRate(c.String("rate"))
	if err != nil {
		return 0, false, fmt.Errorf("--rate: %w", err)
	}
	return r, false, nil
}
