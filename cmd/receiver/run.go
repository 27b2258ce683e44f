package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/loopcast/loopcast/agent"
	"github.com/loopcast/loopcast/hostkey"
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
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, EnvVars: []string{"LOOPCAST_VERBOSE"}, Usage: "log the sessions' detail (debug records: chunks taken from kept images, repair requests, staging)"},
			&cli.StringSliceFlag{Name: "trust", EnvVars: []string{"LOOPCAST_TRUST"}, Usage: "release public key `FILE` whose signatures are accepted (repeatable)"},
			&cli.IntFlag{Name: "keep", Value: release.DefaultKeep, EnvVars: []string{"LOOPCAST_KEEP"}, Usage: "good releases kept mounted besides current and the rollback target"},
			&cli.DurationFlag{Name: "keep-for", Value: release.DefaultKeepFor, EnvVars: []string{"LOOPCAST_KEEP_FOR"}, Usage: "keep a release mounted this `LONG` after it stops being current (0: no time rule); releases in use are never retired"},
			&cli.Int64Flag{Name: "reserve", Value: release.DefaultReserve, EnvVars: []string{"LOOPCAST_RESERVE"}, Usage: "`BYTES` of disk staging must leave free"},
			&cli.BoolFlag{Name: "noexec", EnvVars: []string{"LOOPCAST_NOEXEC"}, Usage: "mount releases noexec"},
			&cli.StringFlag{Name: "php-fpm", EnvVars: []string{"LOOPCAST_PHP_FPM"}, Usage: "`SOCKET` of the php-fpm pool serving the releases: releases are served from a ring of slots and OPcache keeps the scripts of unchanged files across deploys"},
			&cli.IntFlag{Name: "slots", Value: release.DefaultSlots, EnvVars: []string{"LOOPCAST_SLOTS"}, Usage: "slots in the ring with --php-fpm (at most 26)"},
			&cli.BoolFlag{Name: "opcache-warm", EnvVars: []string{"LOOPCAST_OPCACHE_WARM"}, Usage: "with --php-fpm, compile a staged release's changed PHP files before the switch"},
			&cli.StringFlag{Name: "opcache-reload", EnvVars: []string{"LOOPCAST_OPCACHE_RELOAD"}, Usage: "with --php-fpm, shell `COMMAND` that reloads php-fpm (e.g. \"systemctl reload php8.2-fpm\"), run when OPcache nears full and the pool is quiet, at most once an hour"},
			&cli.StringFlag{Name: "metrics-addr", EnvVars: []string{"LOOPCAST_METRICS_ADDR"}, Usage: "serve Prometheus metrics on `ADDR` (e.g. :9172), path /metrics, and the load balancer's health check, /healthz (200 only when in sync with the fleet; ?lag=SECONDS tolerates that much lag)"},
			&cli.StringFlag{Name: "peer-addr", EnvVars: []string{"LOOPCAST_PEER_ADDR"}, Usage: "serve kept releases to peers catching up with the fleet on TCP `ADDR` (default: the control port, the group's port+1, on every address; \"off\": serve none); the same port on every agent of the group"},
			hostKeyFlag(),
			&cli.BoolFlag{Name: "relay", EnvVars: []string{"LOOPCAST_RELAY"}, Usage: "relay sessions to this host's subnet: join each as any agent, and when the sender grants it (sender --relays names this host) run it on the subnet for the hosts there"},
			&cli.StringFlag{Name: "relay-iface", EnvVars: []string{"LOOPCAST_RELAY_IFACE"}, Usage: "with --relay, send the subnet's sessions through this network `INTERFACE` (default: --iface)"},
			&cli.StringFlag{Name: "relay-group", EnvVars: []string{"LOOPCAST_RELAY_GROUP"}, Usage: "with --relay, the subnet's multicast `ADDR:PORT` (default: --group)"},
			&cli.StringFlag{Name: "relay-rate", EnvVars: []string{"LOOPCAST_RELAY_RATE"}, Usage: "with --relay, cap the subnet's sessions at `RATE`, in " + cliutil.RateUnits + " (default: the sender's rate)"},
		},
		Action: func(c *cli.Context) error {
			if err := hostkey.CheckID(c.String("host-id")); err != nil {
				return fmt.Errorf("run: --host-id: %w", err)
			}
			if n := c.Int("slots"); n < 2 || n > release.MaxSlots {
				return fmt.Errorf("run: --slots %d: want 2 to %d (current and the next release each need one)", n, release.MaxSlots)
			}
			if (c.Bool("opcache-warm") || c.String("opcache-reload") != "") && c.String("php-fpm") == "" {
				return errors.New("run: --opcache-warm and --opcache-reload need --php-fpm")
			}
			if c.Int("keep") < 0 {
				return fmt.Errorf("run: --keep %d: want 0 or more releases kept besides current and the rollback target", c.Int("keep"))
			}
			keys, err := image.ReadTrustedKeys(c.StringSlice("trust"))
			if err != nil {
				return fmt.Errorf("run: --trust: %w", err)
			}
			group, err := cliutil.ParseGroup(c.String("group"))
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			relay, err := relayConfig(c)
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			level := slog.LevelInfo
			if c.Bool("verbose") {
				level = slog.LevelDebug
			}
			log := agent.NewLogger(os.Stderr, level)
			slog.SetDefault(log)
			hk, err := loadHostKey(c, log)
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			return agent.Run(c.Context, agent.RunConfig{
				Root: c.String("root"), Group: group, Iface: c.String("iface"),
				HostID: c.String("host-id"), HostKey: hk, Keys: keys, Version: version,
				Store: release.Options{Keep: c.Int("keep"), KeepFor: keepFor(c.Duration("keep-for")), Reserve: c.Int64("reserve"), NoExec: c.Bool("noexec"),
					Slots: c.Int("slots"), Warm: c.Bool("opcache-warm")},
				Logger: log, PHPFPM: c.String("php-fpm"), OPcacheReload: c.String("opcache-reload"),
				MetricsAddr: c.String("metrics-addr"), PeerAddr: c.String("peer-addr"), Relay: relay,
			})
		},
	}
}

// relayConfig reads --relay and its options; nil without --relay.
func relayConfig(c *cli.Context) (*agent.RelayConfig, error) {
	if !c.Bool("relay") {
		for _, f := range []string{"relay-iface", "relay-group", "relay-rate"} {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s needs --relay", f)
			}
		}
		return nil, nil
	}
	r := &agent.RelayConfig{Iface: c.String("iface")}
	if c.IsSet("relay-iface") {
		r.Iface = c.String("relay-iface")
	}
	if s := c.String("relay-group"); s != "" {
		g, err := cliutil.ParseGroup(s)
		if err != nil {
			return nil, fmt.Errorf("--relay-group: %w", err)
		}
		r.Group = g
	}
	if s := c.String("relay-rate"); s != "" {
		rate, err := cliutil.ParseRate(s)
		if err != nil {
			return nil, fmt.Errorf("--relay-rate: %w", err)
		}
		r.Rate = rate
	}
	return r, nil
}

func hostKeyFlag() cli.Flag {
	return &cli.StringFlag{Name: "host-key", EnvVars: []string{"LOOPCAST_HOST_KEY"}, Usage: "this host's private key `FILE` (default ROOT/host.key, made on first start)"}
}

func hostKeyPath(c *cli.Context) string {
	if p := c.String("host-key"); p != "" {
		return p
	}
	return filepath.Join(c.String("root"), hostkey.FileName)
}

// loadHostKey reads the host key, making it on first start, and logs the
// inventory line that pins it.
func loadHostKey(c *cli.Context, log *slog.Logger) (ed25519.PrivateKey, error) {
	path := hostKeyPath(c)
	k, created, err := hostkey.LoadOrCreate(path)
	if err != nil {
		return nil, err
	}
	pub := k.Public().(ed25519.PublicKey)
	log.Info("agent: host key", "path", path, "created", created, "key_id", hostkey.KeyID(pub),
		"inventory_line", c.String("host-id")+" "+hostkey.Encode(pub))
	return k, nil
}

func keygenCommand() *cli.Command {
	host, _ := os.Hostname()
	return &cli.Command{
		Name:  "keygen",
		Usage: "make this host's key (if it has none) and print its inventory line for the sender's --hosts @FILE",
		Flags: []cli.Flag{storeRootFlag(), hostKeyFlag(),
			&cli.StringFlag{Name: "host-id", Value: host, EnvVars: []string{"LOOPCAST_HOST_ID"}, Usage: "this host's `ID` as the sender's --hosts names it"}},
		Action: func(c *cli.Context) error {
			if err := hostkey.CheckID(c.String("host-id")); err != nil {
				return fmt.Errorf("keygen: --host-id: %w", err)
			}
			k, created, err := hostkey.LoadOrCreate(hostKeyPath(c))
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if !created {
				fmt.Fprintf(c.App.ErrWriter, "keygen: %s exists: printing its key\n", hostKeyPath(c))
			}
			fmt.Fprintf(c.App.Writer, "%s %s\n", c.String("host-id"), hostkey.Encode(k.Public().(ed25519.PublicKey)))
			return nil
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
