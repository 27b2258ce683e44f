package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loopcast/loopcast/internal/cliutil"

	"github.com/urfave/cli/v2"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
)

// exitNone is the exit code of deploy and rollback when no host switched
// (exitPartial, 2, when only some did; 0 when all did); exitHalted when a
// rollout stopped on a health gate and switched its hosts back.
const (
	exitNone   = 3
	exitHalted = 4
)

// defaultStateDir holds the deploy lock, the audit log and built images.
const defaultStateDir = "/var/lib/loopcast"

// groupFlags are shared by deploy, status and rollback.
func groupFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "group", Value: "239.192.0.1:5000", EnvVars: []string{"LOOPCAST_GROUP"}, Usage: "the agents' multicast `ADDR:PORT` (control on PORT+1)"},
		&cli.StringFlag{Name: "iface", EnvVars: []string{"LOOPCAST_IFACE"}, Usage: "send through this network `INTERFACE`"},
		&cli.IntFlag{Name: "ttl", Value: multicast.DefaultTTL, Usage: "multicast TTL (1 stays on the local link)"},
		&cli.StringFlag{Name: "hosts", EnvVars: []string{"LOOPCAST_HOSTS"}, Usage: "host ids `a,b,...` or @FILE that must take part (default: whoever answers)"},
		&cli.StringFlag{Name: "key", Required: true, EnvVars: []string{"LOOPCAST_KEY"}, Usage: "release private key `FILE`: signs manifests and commands"},
		&cli.DurationFlag{Name: "timeout", Value: deploy.DefaultCommandTimeout, Usage: "how long a command waits for answers"},
		&cli.BoolFlag{Name: "json", Usage: "print a JSON report"},
	}
}

func deployCommand() *cli.Command {
	return &cli.Command{
		Name:      "deploy",
		Usage:     "build (from a directory) or take an image, ship it to every host, and switch them together",
		ArgsUsage: "SRC_DIR|IMAGE",
		Flags: append(groupFlags(),
			rateFlag(),
			&cli.DurationFlag{Name: "wait", Value: multicast.DefaultWait, Usage: "how long hosts may take to register"},
			&cli.IntFlag{Name: "min-hosts", Usage: "open group: start once `N` hosts registered"},
			&cli.IntFlag{Name: "fec-overhead", Usage: "proactive parity, `PCT` of each block (default: sized from the loss hosts report)"},
			&cli.StringFlag{Name: "require", Value: "all", Usage: "switch only if `all` hosts (or N%) staged the release"},
			&cli.DurationFlag{Name: "stage-timeout", Value: deploy.DefaultStageTimeout, Usage: "how long hosts may take to stage"},
			stateDirFlag(), allowNewHostsFlag(), encryptFlag(),
			&cli.BoolFlag{Name: "no-pointer", Usage: "publish no fleet pointer: hosts of the group this deploy did not reach stay where they are (by default they catch up with it on their own)"},
			&cli.StringFlag{Name: "label", Usage: "source label for a built image (default: SRC_DIR)"},
			&cli.StringFlag{Name: "epoch", Usage: "build timestamps: Unix time `N` (default $SOURCE_DATE_EPOCH, else the files')"},
			&cli.BoolFlag{Name: "dry-run", Usage: "build and show what would happen; send nothing"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print the session's detail: hosts registering, each repair round, retransmissions"},
			&cli.BoolFlag{Name: "json-events", Usage: "print one JSON object per event on stdout (logs, phases, progress each second, the report), for dashboards and scripts"},
			&cli.DurationFlag{Name: "host-timeout", Value: multicast.DefaultHostTimeout, Usage: "drop a host silent this long in the transfer"},
			&cli.IntFlag{Name: "canary", Usage: "switch `N` staged hosts first (the first by id), probe them, then the others"},
			&cli.StringFlag{Name: "waves", Usage: "after the canary, switch cumulative shares `PCT,...` of the hosts (e.g. 10%,50%), then all"},
			&cli.StringFlag{Name: "health", Usage: "probe every switched host with an HTTP GET of `PATH` on its address; a non-2xx stops the rollout and switches every switched host back"},
			&cli.IntFlag{Name: "health-port", Value: 80, Usage: "`PORT` of the --health probe"},
			&cli.StringFlag{Name: "health-host", Usage: "`NAME` the --health probe asks for (HTTP Host), so the site's own server block answers (default: the host's address)"},
			&cli.DurationFlag{Name: "soak", Usage: "how long each wave serves before the next (its hosts are probed again at the end)"},
			noUnicastFlag(), relaysFlag(),
			&cli.StringFlag{Name: "metrics-file", Usage: "write the report to `FILE` in Prometheus text format (for node_exporter's textfile collector), replaced atomically"},
		),
		Action: runDeploy,
	}
}

func runDeploy(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("deploy: want one source directory or image, got %d arguments", c.NArg())
	}
	group, err := cliutil.ParseGroup(c.String("group"))
	if err != nil {
		return err
	}
	opts, pins, addrs, err := deployOptions(c, group)
	if err != nil {
		return err
	}
	defer func() {
		if perr := errors.Join(pins.Save(), addrs.Save()); perr != nil {
			fmt.Fprintln(c.App.ErrWriter, "deploy:", perr)
		}
	}()
	d, err := deploy.Open(c.String("state-dir"), group)
	if err != nil {
		return err
	}
	defer d.Close()
	k := consoleFor(c, c.App.Writer)
	opts.Logger, opts.Watch = k.Logger(), k.Progress
	if err := prepareImage(c, d, &opts); err != nil {
		return err
	}
	if c.Bool("dry-run") {
		printDryRun(c.App.Writer, &opts, group)
		return nil
	}
	res, err := deployOver(c, d, group, opts)
	k.Close()
	if res == nil {
		return err
	}
	learnAddrs(addrs, res)
	k.Report(c.App.Writer, res, c.Bool("json"))
	if path := c.String("metrics-file"); path != "" {
		if merr := writeDeployMetrics(path, group.String(), opts.Manifest.Label, res, time.Now()); merr != nil {
			fmt.Fprintln(c.App.ErrWriter, merr)
		}
	}
	return deployExit(err, res)
}

// deployOver opens the group's sockets and deploys over them; a deploy
// whose sockets did not open is in the audit log too.
func deployOver(c *cli.Context, d *deploy.Deployer, group *net.UDPAddr, o deploy.Options) (*deploy.Result, error) {
	conns, err := deploy.Dial(group, c.String("iface"), c.Int("ttl"), !c.Bool("no-unicast"))
	if err != nil {
		d.Fail(o, err)
		return nil, err
	}
	defer conns.Close()
	return d.Deploy(c.Context, conns, o)
}

// deployExit is the exit error of a deploy that sent its image.
func deployExit(err error, res *deploy.Result) error {
	if res.Halted != "" {
		back := "the hosts it switched went back"
		if len(res.NotBack) > 0 {
			back = fmt.Sprintf("NOT confirmed back: %s (they may serve %s)", strings.Join(res.NotBack, ", "), res.ReleaseID)
		}
		return &cliutil.ExitError{Code: exitHalted, Err: errors.Join(err, fmt.Errorf("release %s: rollout halted (%s): %s", res.ReleaseID, res.Halted, back))}
	}
	return withOutcome(err, res.Outcome(), res.ReleaseID)
}

// withOutcome gives err the exit code of the outcome: a deploy interrupted
// after it switched some hosts still exits "partial".
func withOutcome(err error, o deploy.Outcome, id image.ID) error {
	oerr := outcomeExit(o, id)
	if oerr == nil {
		return err
	}
	if err != nil {
		oerr.Err = errors.Join(err, oerr.Err)
	}
	return oerr
}

func deployOptions(c *cli.Context, group *net.UDPAddr) (o deploy.Options, pins *hostkey.Pins, addrs *hostkey.Addrs, err error) {
	if o.Key, err = image.ReadPrivateKeyFile(c.String("key")); err != nil {
		return o, nil, nil, err
	}
	inv, err := hostsFlag(c)
	if err != nil {
		return o, nil, nil, err
	}
	o.Hosts = inv.ids
	if o.Relays, err = relays(c, inv); err != nil {
		return o, nil, nil, fmt.Errorf("deploy: %w", err)
	}
	if pins, err = openPins(c, inv); err != nil {
		return o, nil, nil, err
	}
	if addrs, err = openAddrs(c, inv); err != nil {
		return o, nil, nil, err
	}
	o.HostAddrs = multicast.UnicastAddrs(addrs.Map(inv.ids), group.Port)
	o.HostKeys = hostKeyPolicy(pins, inv.ids, c.Bool("allow-new-hosts"))
	o.Encrypt, o.NoPointer = c.Bool("encrypt"), c.Bool("no-pointer")
	o.HostPub, o.GroupSize = pins.Known, pins.Len()
	o.HostTimeout = c.Duration("host-timeout")
	if o.Rate, o.SlowStart, err = rateOption(c); err != nil {
		return o, nil, nil, fmt.Errorf("deploy: %w", err)
	}
	if o.RequirePct, err = parseRequire(c.String("require")); err != nil {
		return o, nil, nil, err
	}
	o.Wait, o.MinHosts = c.Duration("wait"), c.Int("min-hosts")
	o.FECOverhead, o.StageTimeout, o.CommandTimeout = fecOverhead(c), c.Duration("stage-timeout"), c.Duration("timeout")
	if o.Rollout, err = rolloutFlags(c); err != nil {
		return o, nil, nil, err
	}
	return o, pins, addrs, nil
}

// rolloutFlags reads --canary, --waves, --health, --health-port, --soak.
func rolloutFlags(c *cli.Context) (r deploy.Rollout, err error) {
	if r.Canary = c.Int("canary"); r.Canary < 0 {
		return r, fmt.Errorf("deploy: --canary %d: want 0 or more hosts", r.Canary)
	}
	if r.Waves, err = deploy.ParseWaves(c.String("waves")); err != nil {
		return r, fmt.Errorf("deploy: --waves: %w", err)
	}
	if r.Soak = c.Duration("soak"); r.Soak < 0 {
		return r, fmt.Errorf("deploy: --soak %s: want 0 or more", r.Soak)
	}
	if p := c.Int("health-port"); p < 1 || p > 65535 {
		return r, fmt.Errorf("deploy: --health-port %d: want 1 to 65535", p)
	}
	if path := c.String("health"); path != "" {
		r.Health = deploy.HTTPHealth(path, c.Int("health-port"), c.String("health-host"))
	} else if r.Canary > 0 || len(r.Waves) > 0 {
		return r, errors.New("deploy: --canary and --waves need --health: a wave is switched only when the hosts before it are healthy")
	}
	return r, nil
}

// hostsFlag reads --hosts; no ids means an open group. A --hosts that
// names no host is an error, not an open group.
func hostsFlag(c *cli.Context) (inventory, error) {
	if !c.IsSet("hosts") {
		return inventory{}, nil
	}
	inv, err := parseHosts(c.String("hosts"))
	if err != nil {
		return inv, err
	}
	if len(inv.ids) == 0 {
		return inv, fmt.Errorf("--hosts %q names no host", c.String("hosts"))
	}
	if len(inv.ids) > control.MaxTargets {
		return inv, fmt.Errorf("--hosts names %d hosts, more than %d", len(inv.ids), control.MaxTargets)
	}
	return inv, nil
}

// parseRequire reads --require: "all" or a whole percentage like "90%".
func parseRequire(s string) (int, error) {
	if s == "all" {
		return 100, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if err != nil || !strings.HasSuffix(s, "%") || n < 1 || n > 100 {
		return 0, fmt.Errorf("deploy: --require %q: want all or a whole percentage from 1%% to 100%%", s)
	}
	return n, nil
}

// prepareImage builds SRC_DIR into the state dir, or takes IMAGE and its
// manifest; either way the manifest ends up signed by --key.
func prepareImage(c *cli.Context, d *deploy.Deployer, o *deploy.Options) error {
	src := c.Args().First()
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	if fi.IsDir() {
		return buildForDeploy(c, d, o, src)
	}
	m, err := image.ReadManifestFile(src + ".manifest")
	if err != nil {
		return err
	}
	pub := o.Key.Public().(ed25519.PublicKey)
	if err := m.Verify([]ed25519.PublicKey{pub}); err != nil { // the signature, not just the key's name
		return fmt.Errorf("deploy: %s.manifest is not signed by --key %s (key %s): %w; rebuild it with sender build --key",
			src, c.String("key"), image.KeyID(pub), err)
	}
	o.ImagePath, o.Manifest = src, m
	return nil
}

// buildForDeploy builds src for the group (Deployer.Build) and says how.
func buildForDeploy(c *cli.Context, d *deploy.Deployer, o *deploy.Options, src string) error {
	epoch, err := epochOption(c.String("epoch"))
	if err != nil {
		return err
	}
	label := c.String("label")
	if label == "" {
		label = src
	}
	b, err := d.Build(c.Context, src, image.Options{Epoch: epoch, Key: o.Key, Label: label, HeadroomPct: image.DefaultHeadroomPct})
	if err != nil {
		return err
	}
	for _, p := range b.Removed {
		o.Logger.Info("deploy: removed an old build", "path", p)
	}
	o.Logger.Info("deploy: built release", "release", b.ID, "src", src,
		"size", cliutil.HumanBytes(b.Manifest.ImageSize), "files", b.Files, "took", b.Time.Round(time.Millisecond))
	if b.Base != nil {
		o.Logger.Info("deploy: built on a base", "base", b.BaseImage, "layout", describeBase(b.Base))
	}
	o.ImagePath, o.Manifest, o.BuildTime = b.Path, b.Manifest, b.Time
	return nil
}

// pathText is a host's path as the report prints it: the relay named.
func pathText(path, via string) string {
	if via != "" {
		return path + " " + via
	}
	return cliutil.OrDash(path)
}

// outcomeExit is the exit error of an outcome, nil when every host switched.
func outcomeExit(o deploy.Outcome, id image.ID) *cliutil.ExitError {
	switch o {
	case deploy.OutcomePartial:
		return &cliutil.ExitError{Code: exitPartial, Err: fmt.Errorf("release %s: only some hosts switched", id)}
	case deploy.OutcomeNone:
		return &cliutil.ExitError{Code: exitNone, Err: fmt.Errorf("release %s: no host switched", id)}
	}
	return nil
}

func printDryRun(w io.Writer, o *deploy.Options, group *net.UDPAddr) {
	hosts := "whoever registers (open group)"
	if o.Hosts != nil {
		hosts = strings.Join(o.Hosts, ", ")
	}
	zero := 0
	for _, ch := range o.Manifest.Chunks {
		if ch.Zero {
			zero++
		}
	}
	fmt.Fprintf(w, "dry run: would deploy release %s (%s, %d chunks, %d all-zero not sent)\n", o.Manifest.ID(),
		cliutil.HumanBytes(o.Manifest.ImageSize), len(o.Manifest.Chunks), zero)
	rate := "unpaced"
	switch {
	case o.Rate > 0 && o.SlowStart:
		rate = "up to " + cliutil.HumanRate(float64(o.Rate)) + ", as fast as the slowest host takes"
	case o.Rate > 0:
		rate = "at most " + cliutil.HumanRate(float64(o.Rate))
	}
	fmt.Fprintf(w, "  to      %s on %s (control %s:%d), %s\n", hosts, group, group.IP, control.Addr(group).Port, rate)
	if p, err := image.OpenPack(o.ImagePath+image.PackSuffix, o.Manifest); err == nil {
		if plain, delta := p.Sizes(); !p.BaseID.IsZero() {
			fmt.Fprintf(w, "  pack    %s plain, %s of deltas against release %s (if every host holds it)\n",
				cliutil.HumanBytes(plain), cliutil.HumanBytes(delta), p.BaseID)
		} else {
			fmt.Fprintf(w, "  pack    %s\n", cliutil.HumanBytes(plain))
		}
		p.Close()
	}
	fmt.Fprintf(w, "  switch  when %d%% of hosts staged it\n  nothing was sent\n", o.RequirePct)
}

func printDeploy(w io.Writer, r *deploy.Result, asJSON, color bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(r)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDR\tPHASE\tCURRENT\tHAD IT AT\tSTAGED IN\tNEEDED\tPATH\tERROR")
	width := 0
	for _, h := range r.Hosts {
		width = max(width, len(h.Phase))
	}
	for _, h := range r.Hosts {
		at, stage := "-", "-"
		if h.Done > 0 {
			at = h.Done.Round(time.Millisecond).String()
		}
		if h.StageTime > 0 {
			stage = h.StageTime.Round(time.Millisecond).String()
		}
		phase := h.Phase
		if color {
			phase = padPaint(phase, width, phaseColor(phase))
		}
		recv := "-"
		if h.Path != "" {
			recv = cliutil.HumanBytes(h.Needed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Addr, phase, h.Current.Text(), at, stage, recv, pathText(h.Path, h.Via), h.Error)
	}
	tw.Flush()
	outcome, active := deploy.OutcomeOf(r.Hosts)
	fmt.Fprintf(w, "release %s: %s (%d/%d hosts active)\n", r.ReleaseID, outcome, active, len(r.Hosts))
	switch {
	case r.Halted != "" && len(r.NotBack) > 0:
		fmt.Fprintf(w, "rollout halted: %s; NOT confirmed back on their earlier release: %s\n", r.Halted, strings.Join(r.NotBack, ", "))
	case r.Halted != "":
		fmt.Fprintf(w, "rollout halted: %s; the hosts it had switched went back\n", r.Halted)
	}
	t := r.TransferReport()
	fmt.Fprintf(w, "chunks %d: %d all-zero, %d reused from the hosts' own images, %d sent (%d as deltas)\n",
		t.ChunksTotal, t.ChunksZero, t.ChunksReused, t.ChunksSent, t.DeltaChunks)
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	wire := cliutil.HumanBytes(t.Bytes)
	if t.UnicastBytes > 0 {
		n := 0
		for _, h := range r.Hosts {
			if h.Path == multicast.PathUnicast {
				n++
			}
		}
		hosts := "hosts"
		if n == 1 {
			hosts = "host"
		}
		wire = fmt.Sprintf("%s multicast + %s unicast to %d %s that heard no multicast (receiver doctor on them says why)", wire, cliutil.HumanBytes(t.UnicastBytes), n, hosts)
	}
	if t.Rate > 0 {
		wire += ", paced at " + cliutil.HumanRate(float64(t.Rate))
	}
	fmt.Fprintf(w, "wire %s; build %s, register %s, transfer %s (staged on arrival), stage %s, switch %s\n",
		wire, ms(r.BuildTime), ms(r.RegisterTime()), ms(r.TransferTime()), ms(r.StageTime), ms(r.SwitchTime))
	printRelays(w, t.Relays)
}
