package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
	"github.com/loopcast/loopcast/opcache"
	"github.com/loopcast/loopcast/release"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// retryPause spaces out receive attempts after a failed session, so a
// hostile or broken sender cannot make the agent spin.
const retryPause = time.Second

// maxControlPacket is the largest control datagram read: a UDP payload's
// maximum, which bounds every control message.
const maxControlPacket = 64 << 10

// RunConfig configures the agent.
type RunConfig struct {
	Store   release.Options
	Root    string
	Group   *net.UDPAddr // multicast ADDR:PORT for data; control is on port+1
	Iface   string
	HostID  string
	HostKey ed25519.PrivateKey // signs what the agent tells the sender
	Keys    []ed25519.PublicKey
	Version string
	Logger  *slog.Logger
	// PHPFPM is the socket of the php-fpm pool serving the releases: when
	// set, releases are placed in slots and OPcache is kept across
	// deploys (see release.ScriptCache); "" serves each release from its
	// own path.
	PHPFPM string
	// OPcacheReload, when set, is a shell command that reloads the pool
	// (e.g. "systemctl reload php8.2-fpm"): the agent runs it when OPcache
	// nears full and the pool is quiet, at most once an hour.
	OPcacheReload string
	// MetricsAddr, when set, is the TCP address the agent serves
	// Prometheus metrics on (/metrics).
	MetricsAddr string
	// PeerAddr is the TCP address the agent serves its kept releases to
	// peers on, for hosts catching up with the fleet: "" means the control
	// port (the group's port+1) on every address; "off" serves none. Every
	// agent of a group must use the same port.
	PeerAddr string
	// Relay, when set, makes the agent its subnet's relay (receiver run
	// --relay): it joins each session as any agent does and, when the
	// sender grants it (its --relays names this host), runs the session
	// on its own subnet too, for the hosts there (multicast.Relay).
	Relay     *RelayConfig
	relayDown multicast.Conn
	metrics   *Metrics
	fleet     *Fleet
	doctor    *doctorState
	receiving *atomic.Bool // in a session: catch-up does not switch meanwhile
}

// RelayConfig is where a relay agent runs its subnet's sessions.
type RelayConfig struct {
	Iface string       // the interface to its subnet ("": the kernel's choice)
	Group *net.UDPAddr // the group there (nil: the agent's own)
	Rate  int64        // bit/s cap there (0: the sender's announced rate)
}

// Run is the agent: it reconciles the store and reports ready, then
// receives sessions and stages what they carry, and obeys the sender's
// signed commands, until ctx ends.
func Run(ctx context.Context, cfg RunConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Store.TrustedKeys, cfg.Store.Logger = cfg.Keys, log
	var pool *opcache.Client
	if cfg.PHPFPM != "" {
		var err error
		if pool, err = opcache.Install(opcache.HelperDir(cfg.Root), cfg.PHPFPM); err != nil {
			return err
		}
		cfg.Store.Cache = pool
	}
	store, err := release.Open(cfg.Root, cfg.Store)
	if err != nil {
		return err
	}
	started := time.Now()
	if len(cfg.HostKey) != ed25519.PrivateKeySize {
		return errors.New("agent: no host key")
	}
	if cfg.fleet, err = LoadFleet(store.Root(), cfg.Keys, cfg.Group.String(), log); err != nil {
		return err
	}
	cfg.doctor, cfg.receiving = &doctorState{iface: cfg.Iface}, &atomic.Bool{}
	h, err := NewControl(ControlConfig{Store: store, Keys: cfg.Keys, Host: cfg.HostID,
		Group: cfg.Group.String(), Version: cfg.Version, Logger: log, Fleet: cfg.fleet, doctor: cfg.doctor}, started)
	if err != nil {
		return err
	}
	// Serve first: remount the kept releases and repair current, then tell
	// systemd, whatever the network does; nginx waits for this.
	if err := Start(ctx, store); err != nil {
		return err
	}
	if err := store.RecordPool(cfg.PHPFPM); err != nil {
		log.Warn("agent: cannot record the php-fpm pool", "err", err)
	}
	defer Stopping()
	data, err := listen(ctx, cfg.Group, cfg.Iface, log)
	if err != nil {
		return err
	}
	defer data.Close()
	if cfg.Relay != nil {
		down, err := openRelay(&cfg)
		if err != nil {
			return err
		}
		defer down.Close()
	}
	ctl, err := listen(ctx, control.Addr(cfg.Group), cfg.Iface, log)
	if err != nil {
		return err
	}
	defer ctl.Close()
	log.Info("agent: running", "host", cfg.HostID, "group", cfg.Group.String(), "root", store.Root())
	g, ctx := errgroup.WithContext(ctx)
	if cfg.MetricsAddr != "" {
		cfg.metrics = NewMetrics(store, pool)
		cfg.metrics.health = healthHandler(store, cfg.fleet)
		g.Go(func() error { return cfg.metrics.Serve(ctx, cfg.MetricsAddr, log) })
	}
	cu := &catchUp{fleet: cfg.fleet, store: store, conn: ctl, group: control.Addr(cfg.Group), cfg: cfg, log: log,
		certs: loadCerts(store.Root(), cfg.Keys, cfg.Group.String()), receiving: cfg.receiving,
		answers: rate.NewLimiter(answerRate, answerRate)}
	g.Go(func() error {
		return cu.certs.saveLoop(ctx, func(err error) { log.Warn("agent: cannot save host certificates", "err", err) })
	})
	if cfg.PeerAddr != "off" {
		addr := cfg.PeerAddr
		if addr == "" {
			addr = fmt.Sprintf(":%d", control.Addr(cfg.Group).Port)
		}
		_, port, err := net.SplitHostPort(addr)
		if cu.peerPort, _ = strconv.Atoi(port); err != nil || cu.peerPort == 0 {
			return fmt.Errorf("agent: peer address %q: want [HOST]:PORT or off", cfg.PeerAddr)
		}
		g.Go(func() error { return cu.servePeers(ctx, addr) })
	}
	g.Go(func() error { return cu.run(ctx) })
	g.Go(func() error { return receiveLoop(ctx, data, store, cfg, log) })
	g.Go(func() error { return controlLoop(ctx, ctl, h, cu, cfg.HostKey, log) })
	g.Go(func() error { return retireLoop(ctx, store, log) })
	g.Go(func() error { return scrubLoop(ctx, store, cfg.metrics, log) })
	if pool != nil {
		g.Go(func() error { return opcacheLoop(ctx, pool, cfg.OPcacheReload, log) })
	}
	g.Go(func() error { // unblock the readers when the agent stops
		<-ctx.Done()
		data.Close()
		ctl.Close()
		return nil
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// recentSessions is how many completed sessions the agent will not join
// again: a session keeps running for slower hosts after this one is done.
const recentSessions = 8

// listenRetry spaces attempts to join the group while the interface is
// not up yet (at boot): the agent keeps serving current meanwhile.
const listenRetry = 2 * time.Second

// listen joins group on iface, retrying until it works or ctx ends.
func listen(ctx context.Context, group *net.UDPAddr, iface string, log *slog.Logger) (*multicast.UDPConn, error) {
	for {
		c, err := multicast.ListenGroup(group, iface)
		if err == nil {
			return c, nil
		}
		log.Warn("agent: cannot join the group yet, retrying", "group", group.String(), "iface", iface, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(listenRetry):
		}
	}
}

// openRelay opens a relay agent's socket to its subnet (multicast loopback
// off: the agent's own listener must not hear what it relays).
func openRelay(cfg *RunConfig) (*multicast.UDPConn, error) {
	if cfg.Relay.Group == nil {
		cfg.Relay.Group = cfg.Group
	}
	down, err := multicast.DialRelay(cfg.Relay.Group, cfg.Relay.Iface, multicast.DefaultTTL)
	if err != nil {
		return nil, fmt.Errorf("agent: relay: %w", err)
	}
	cfg.relayDown = down
	return down, nil
}

// receiveLoop takes one session after another and stages each image.
func receiveLoop(ctx context.Context, conn multicast.Conn, store *release.Store, cfg RunConfig, log *slog.Logger) error {
	in := store.IncomingPath()
	var done []uint32
	for ctx.Err() == nil {
		session, err := receiveOne(ctx, conn, store, cfg, in, done, log)
		if session != 0 {
			done = append(done, session)
			done = done[max(0, len(done)-recentSessions):]
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			log.Error("agent: session failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(retryPause):
			}
		}
	}
	return ctx.Err()
}

// receiveOne receives and stages one session's image; it returns the
// session once the image is received, whether staging works or not.
func receiveOne(ctx context.Context, conn multicast.Conn, store *release.Store, cfg RunConfig, in string, skip []uint32, log *slog.Logger) (uint32, error) {
	img := in + ".img"
	defer os.Remove(img) // staging renamed it, or it is not wanted
	cleanPartials(img, time.Now(), log)
	local, bases := localImages(store, log)
	res, err := receive(ctx, conn, cfg, in, multicast.ReceiveOptions{
		HostID: cfg.HostID, HostKey: cfg.HostKey, Out: img, Trusted: cfg.Keys, Skip: skip, Local: local.Lookup,
		// a live release's image serves as the base of delta chunks; the
		// receiver checks every chunk decoded against it like any other
		BaseImage: func(id image.ID) (string, bool) {
			p, ok := bases[id]
			return p, ok
		},
		// refuse, before receiving anything, an image the disk cannot hold
		// (retiring releases kept only by --keep-for if the disk needs it)
		// the image and the most the session's spool can take
		Room: func(n int64) error {
			cfg.receiving.Store(true) // joining a session: cleared when Receive returns
			return refusal(store.MakeRoom(n))
		},
		Refused: func(session uint32, from net.Addr, rf *multicast.Refusal) {
			cfg.metrics.refused(rf)
			if err := store.NoteRefusal(fmt.Sprintf("session %08x from %v: %v", session, from, rf)); err != nil {
				log.Warn("agent: record refusal", "err", err)
			}
		},
		// stage as soon as the image is whole, so COMPLETE tells the sender
		// the outcome: every chunk was verified as it arrived (or came from
		// a kept, verified image), so nothing is hashed again
		Stage: func(res *multicast.Result) error {
			_, err := store.Adopt(ctx, res.Path, res.Manifest)
			return err
		},
		Probed: func(nonce [16]byte, _ net.Addr) { cfg.doctor.heard(nonce) },
		Logger: log,
	}, log)
	cfg.receiving.Store(false)
	cfg.metrics.received(res, err)
	if err != nil {
		return 0, err
	}
	path := multicast.PathMulticast
	if res.Unicast {
		path = multicast.PathUnicast
	}
	rel := res.Manifest.ID() // once: it hashes the manifest
	log.Info("agent: received", "release", rel, "session", res.Session, "path", path,
		"reused_chunks", res.Reused, "reflinked_bytes", res.Reflinked, "resumed_chunks", res.Resumed, "bad_chunks", res.BadChunks)
	if res.StageErr != nil {
		return res.Session, fmt.Errorf("agent: stage %s: %w", rel, res.StageErr)
	}
	if !res.Encrypted { // a sealed release's chunks are for the hosts the sender chose
		cfg.fleet.NoteServable(rel)
	}
	log.Info("agent: staged", "release", rel)
	return res.Session, nil
}

// receive receives one session, and relays it too when the agent is a
// relay (and the sender grants it).
func receive(ctx context.Context, conn multicast.Conn, cfg RunConfig, in string, o multicast.ReceiveOptions, log *slog.Logger) (*multicast.Result, error) {
	if cfg.relayDown == nil {
		return multicast.Receive(ctx, conn, o)
	}
	res, rep, err := multicast.Relay(ctx, conn, multicast.RelayOptions{ReceiveOptions: o, Down: cfg.relayDown,
		DownGroup: cfg.Relay.Group, Rate: cfg.Relay.Rate, Frames: in + ".frames"})
	if rep != nil {
		done, all := rep.Completed()
		log.Info("agent: relayed", "session", rep.Session, "hosts", all, "complete", done, "bytes", rep.Bytes, "rounds", rep.Rounds)
	}
	return res, err
}

// partialMaxAge bounds how long a partial image left by a killed agent is
// kept to resume: a deploy retried within a day resumes it.
const partialMaxAge = 24 * time.Hour

// cleanPartials removes the partial images beside img (img.RELEASE.partial)
// older than partialMaxAge, and all but the newest: one resumable partial
// at most, so killed agents cannot fill the disk with them.
func cleanPartials(img string, now time.Time, log *slog.Logger) {
	paths, _ := filepath.Glob(img + ".*.partial")
	type partial struct {
		path string
		mod  time.Time
	}
	var ps []partial
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			ps = append(ps, partial{p, fi.ModTime()})
		}
	}
	slices.SortFunc(ps, func(a, b partial) int { return b.mod.Compare(a.mod) })
	for i, p := range ps {
		if i == 0 && now.Sub(p.mod) < partialMaxAge {
			continue
		}
		if err := os.Remove(p.path); err == nil {
			log.Info("agent: removed a partial image", "path", p.path, "modified", p.mod)
		}
	}
}

// refusal gives a store's refusal of a release the cause the sender's
// report names (no-space), so the operator sees a full disk for what it is.
func refusal(err error) error {
	if errors.Is(err, release.ErrNoSpace) { // the cause is in the code: the detail keeps the figures
		return &multicast.Refusal{Code: multicast.RefuseNoSpace, Detail: strings.TrimPrefix(err.Error(), release.ErrNoSpace.Error()+" ")}
	}
	return err
}

// localImages indexes the chunks of the images the store keeps (each live
// release's images/<id>.img, described by images/<id>.manifest), newest
// first, so a session sends this host only the chunks it lacks, and
// returns each indexed image's path by release (the delta bases it holds).
// It reads only manifests (33 bytes per chunk), so it is built afresh per
// session. It need not be trusted: the receiver checks every chunk it
// copies against the new, signed manifest; an unreadable release is skipped.
func localImages(store *release.Store, log *slog.Logger) (multicast.ChunkIndex, map[image.ID]string) {
	x, bases := multicast.ChunkIndex{}, map[image.ID]string{}
	kept, err := store.KeptImages()
	if err != nil {
		log.Warn("agent: no local chunks to reuse", "err", err)
		return x, bases
	}
	for _, k := range kept {
		m, err := image.ReadManifestFile(k.Manifest)
		if err == nil {
			_, err = os.Stat(k.Image)
		}
		if err != nil {
			log.Debug("agent: release not indexed for reuse", "release", k.ID, "err", err)
			continue
		}
		x.Add(k.Image, m)
		bases[m.ID()] = k.Image
	}
	return x, bases
}

// retireEvery is how often the agent applies retention between deploys: a
// release kept by a script is retired within this long of the script's
// end, and --keep-for ends this late at most. A scan of /proc per minute
// costs the host nothing it would notice.
const retireEvery = time.Minute

// retireLoop applies retention every retireEvery until ctx ends.
func retireLoop(ctx context.Context, store *release.Store, log *slog.Logger) error {
	t := time.NewTicker(retireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := store.Retire(); err != nil {
				log.Warn("agent: retention", "err", err)
			}
		}
	}
}

// controlLoop answers the sender's commands, and hands the fleet's
// pointer messages to catch-up; it alone owns the handler.
func controlLoop(ctx context.Context, conn multicast.Conn, h *Handler, cu *catchUp, key ed25519.PrivateKey, log *slog.Logger) error {
	buf := make([]byte, maxControlPacket)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("agent: control socket: %w", err)
		}
		if cu.takeControl(buf[:n], from, time.Now()) {
			continue
		}
		r, _ := h.Handle(buf[:n], time.Now())
		if r == nil {
			continue
		}
		b, err := control.SignReply(r, key)
		if err != nil {
			log.Error("agent: encode reply", "err", err)
			continue
		}
		if _, err := conn.WriteTo(b, from); err != nil {
			log.Warn("agent: reply", "to", from.String(), "err", err)
		}
	}
}
