package multicast

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// ErrAllRefused is a closed group's session every host refused (each
// host's cause is in the report).
var ErrAllRefused = errors.New("multicast: no host will take the session")

// Sender tunables.
const (
	// DefaultSymbolSize fits a DATA packet (16+15+1408 = 1439 bytes) in a
	// 1500-byte MTU with room for IP options; a multiple of 64 suits the
	// SIMD Reed-Solomon kernels.
	DefaultSymbolSize = 1408
	// DefaultBlockSymbols is the FEC block size of a small group: 64 data
	// symbols, coded over GF(2^8), decode at ~8 GB/s a core; with few hosts
	// the most any one lacks in a block is close to the mean anyway.
	DefaultBlockSymbols = 64
	// LargeGroupBlockSymbols is the block size of a group of more than
	// quietHosts hosts: a whole compressed chunk (up to 1,024 symbols,
	// Leopard GF(2^16)). A block's repair is the most any host lacks in it,
	// and over 2,000 hosts at 1% loss that is ~9% of a 64-symbol block but
	// ~2.5% of a 745-symbol one (BenchmarkScale); decoding costs a host
	// ~1 ms a chunk with losses instead of ~0.1 ms.
	LargeGroupBlockSymbols = wire.MaxBlockSymbols
	// DefaultWait is how long the sender waits for hosts to register.
	DefaultWait = 10 * time.Second
	// DefaultHostTimeout is how long a host may leave STATUS requests
	// unanswered before it is dropped and reported.
	DefaultHostTimeout = 15 * time.Second
	// announceEvery is the ANNOUNCE period while hosts register; fast so
	// a session starts promptly once every host is in.
	announceEvery = 200 * time.Millisecond
	// announceEveryLate is the period during the transfer, for hosts that
	// join late or restart: slow, because every host hears it.
	announceEveryLate = time.Second
	// manifestEvery limits manifest resends, however many hosts ask.
	manifestEvery = 100 * time.Millisecond
	// statusWait is how long a round collects NACKs before repairing with
	// what it has; hosts that did not answer are asked again next round.
	// It covers the receivers' answer spread (nackSpread) with margin.
	statusWait = 150 * time.Millisecond
	// statusCopies is how many times STATUS is sent back to back: a host
	// that misses it makes the round wait the whole statusWait, and two
	// copies cut that from p to p² at loss p for 28 bytes.
	statusCopies = 2
	// sendBatch is how many packets go per system call and loop turn,
	// so feedback is read between batches.
	sendBatch = 32
)

// defaultBlockSymbols sizes FEC blocks by the group the sender expects:
// the hosts listed, or at least MinHosts.
func defaultBlockSymbols(o *SendOptions) int {
	if max(len(o.Hosts), o.MinHosts) > quietHosts && o.SymbolSize%wire.LeopardAlign == 0 {
		return LargeGroupBlockSymbols
	}
	return DefaultBlockSymbols
}

// SendOptions configure Send.
type SendOptions struct {
	Group    net.Addr        // destination of multicast packets
	Session  uint32          // session id; 0 picks one at random
	Manifest *image.Manifest // the signed manifest of the image
	// Key is the release key: it signs every ANNOUNCE, which names the
	// session's own keys (one signs STATUS and ABORT, one agrees each
	// host's MAC keys).
	Key ed25519.PrivateKey
	// HostKeys, if set, is asked about each host's key the first time the
	// session sees the host (a hostkey.Pins check): an error refuses the
	// host, and the report says why. Nil accepts any key, binding each
	// host id to the first key it shows for the rest of the session.
	HostKeys func(host string, key ed25519.PublicKey) error
	// Encrypt seals every chunk frame under a content key drawn for the
	// session, which only the hosts whose REGISTER it accepts receive
	// (seal.go): a listener that is not a recipient learns nothing of the
	// tree's bytes.
	Encrypt bool
	// Pack holds the image's chunks compressed (an [image.Pack] opened
	// with Manifest, which checks it belongs to it).
	Pack ChunkSource
	// Rate caps the sending rate, in bit/s (0 sends unpaced). Within it
	// the first pass follows the slowest host's delivery (ratectl.go):
	// probes of the hosts' loss every 250 ms set the rate to what got
	// through, so a slower link is used, not flooded.
	Rate int64
	// SlowStart starts the first pass at Rate/8 and doubles the rate
	// each probe interval while every host keeps up: for a Rate that is a
	// default rather than the link's known speed. Without it the first
	// pass starts at Rate.
	SlowStart bool
	Hosts     []string      // closed group: hosts that must complete; empty: open group
	Wait      time.Duration // registration window (default DefaultWait)
	MinHosts  int           // open group: start once this many registered
	// FECOverhead is the proactive parity, percent of each block's data
	// symbols; AutoFEC sizes it from the loss hosts report (probes during
	// the first pass, then each round's NACKs).
	FECOverhead  int
	HostTimeout  time.Duration // drop a host silent this long (default DefaultHostTimeout)
	SymbolSize   int           // default DefaultSymbolSize
	BlockSymbols int           // default DefaultBlockSymbols
	// BaseID is the release the pack's delta frames are against (the
	// hosts' previous image), if any. The ANNOUNCE names it; when every
	// registered host holds it, each chunk with a delta frame goes as that
	// frame.
	BaseID image.ID
	// Logger hears the session, each record with its id ("session"): at
	// Warn what the operator must see (a host refusing the session,
	// refused by HostKeys, or dropped), at Debug the detail (hosts
	// registering and completing, each repair round). Nil discards.
	Logger *slog.Logger
	// Progress, if set, is called by the session goroutine at phase
	// changes and at most every progressEvery between them; it must
	// return quickly.
	Progress func(SendProgress)
	// Unicast, if set, offers the session over TCP on this listener to
	// hosts that hear no multicast (stream.go); its port is in every
	// ANNOUNCE. Send closes it when the session ends.
	Unicast net.Listener
	// HostAddrs gives the unicast address (the group's port) of listed
	// hosts: one that has not registered after unicastAfter is sent the
	// ANNOUNCE there too, so it can take the unicast path.
	HostAddrs map[string]net.Addr
	// Relays names listed hosts that may relay the session to their own
	// subnets (relay.go; they run receiver run --relay): each is sent the
	// unicast ANNOUNCE at once, takes the session over the unicast path,
	// and gets a grant, signed by Key, to announce it on its subnet; the
	// other hosts wait relayGrace longer for theirs. Not with Encrypt:
	// a sealed session is not relayed (the relays take part as hosts).
	Relays []string
	// down makes the session a relay's, on its subnet (relay.go).
	down *downSide
}

func (o *SendOptions) defaults() error {
	if o.Manifest == nil || o.Pack == nil || o.Group == nil || len(o.Key) != ed25519.PrivateKeySize {
		return errors.New("multicast: send needs a manifest, its pack, a group and the release key")
	}
	if o.BaseID == o.Manifest.ID() {
		o.BaseID = image.ID{} // the same release again: nothing differs from the base
	}
	o.Wait = cmp.Or(o.Wait, DefaultWait)
	o.HostTimeout = cmp.Or(o.HostTimeout, DefaultHostTimeout)
	o.SymbolSize = cmp.Or(o.SymbolSize, DefaultSymbolSize)
	o.BlockSymbols = cmp.Or(o.BlockSymbols, defaultBlockSymbols(o))
	if o.BlockSymbols < 1 || o.BlockSymbols > wire.MaxBlockSymbols ||
		o.BlockSymbols > wire.GF8MaxData && o.SymbolSize%wire.LeopardAlign != 0 {
		return fmt.Errorf("multicast: blocks of %d symbols of %d bytes: want 1 to %d symbols, of a multiple of %d bytes above %d",
			o.BlockSymbols, o.SymbolSize, wire.MaxBlockSymbols, wire.LeopardAlign, wire.GF8MaxData)
	}
	if o.Session == 0 {
		var b [4]byte
		rand.Read(b[:])
		o.Session = binary.BigEndian.Uint32(b[:]) | 1
	}
	if (o.FECOverhead < 0 && o.FECOverhead != AutoFEC) || o.FECOverhead > 100 {
		return fmt.Errorf("multicast: fec overhead %d%% out of range [0, 100]", o.FECOverhead)
	}
	if len(o.Hosts) > maxHosts {
		return fmt.Errorf("multicast: %d hosts, more than %d", len(o.Hosts), maxHosts)
	}
	for _, h := range o.Hosts {
		if err := hostkey.CheckID(h); err != nil {
			return fmt.Errorf("multicast: %w", err)
		}
	}
	for _, h := range o.Relays {
		if !slices.Contains(o.Hosts, h) {
			return fmt.Errorf("multicast: relay %q is not a listed host (a relay needs a closed group that names it)", h)
		}
	}
	return nil
}

// Send runs one session: it announces the manifest, waits for hosts to
// register, multicasts every non-zero chunk, then repairs round by round
// until every host has completed or been dropped. The report says how
// each host ended; the error is for the session itself failing.
func Send(ctx context.Context, conn Conn, opts SendOptions) (*Report, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	s, err := newSender(conn, opts)
	if err != nil {
		return nil, err
	}
	err = serve(ctx, conn, s.run)
	return s.finalReport(), err
}

type phase int

const (
	phaseRegister phase = iota
	phaseSend
	phaseCollect
	phaseIdle // only unicast hosts are left: no repair rounds
	phaseDone
)

type sender struct {
	opts        SendOptions
	log         *slog.Logger // opts.Logger, with the session
	conn        Conn
	seq         uint32
	manifest    []byte
	ann         wire.Announce
	src         *source
	pacer       *pacer
	rate        *rateCtl // the first pass's rate adaptation; nil unpaced
	probeWorst  uint16   // the worst loss the answers to the latest probe reported
	coder       coder
	sched       scheduler
	hosts       *hostTable
	phase       phase
	queue       [][]byte
	jobs        []repairJob
	round       uint32
	agg         *roundAgg
	started     time.Time
	deadline    time.Time // registration deadline, then round deadline
	announce    time.Time // next ANNOUNCE
	lastMan     time.Time
	wantMan     bool
	err         error
	stats       Report
	sent        chunkSet // chunks whose data went out at least once
	fec         autoFEC  // proactive parity sizing from reported loss
	foreign     versionNotes
	prog        SendProgress
	progAt      time.Time          // last Progress call
	sessKey     ed25519.PrivateKey // signs STATUS and ABORT
	dh          *ecdh.PrivateKey   // agrees each host's MAC keys
	content     []byte             // the content key of an encrypted session
	totalSym    int64              // data symbols of the first pass, for host progress
	lastRound   *roundSummary      // the last round summary logged; nil: none yet
	sameRounds  int                // identical rounds since it
	uni         *streams           // the unicast path; nil: none
	uniAnnounce time.Time          // next unicast ANNOUNCE
	fbRound     int                // NACK packets answering the current round
	fbProbe     int                // and the current probe
	roundQuiet  bool               // the current round is quiet (quiet.go)
	roundHosts  uint16             // the members it was sent to
	lastSummary time.Time          // the last summary of a quiet round
	gated       bool               // a relay's next job waits for its frame
}

// descriptorOf is the session descriptor: made from the manifest and
// frame lengths, or a relay's, the sender's as it came.
func descriptorOf(o *SendOptions, lens wire.FrameLens) ([]byte, error) {
	if o.down != nil {
		return o.down.sess.desc, nil
	}
	return wire.AppendDescriptor(nil, o.Manifest, lens)
}

// sealedLens gives the frame lengths of an encrypted session: each frame
// sealed, a tag longer.
type sealedLens struct{ lens wire.FrameLens }

func (s sealedLens) FrameLens(i int) (plain, delta uint32) {
	p, d := s.lens.FrameLens(i)
	if p > 0 {
		p += sealOverhead
	}
	if d > 0 {
		d += sealOverhead
	}
	return p, d
}

func newSender(conn Conn, o SendOptions) (*sender, error) {
	var lens wire.FrameLens = o.Pack
	var content []byte
	var cc *contentCipher
	if o.Encrypt {
		content = newContentKey()
		var err error
		if cc, err = newContentCipher(content); err != nil {
			return nil, err
		}
		lens = sealedLens{o.Pack}
	}
	mb, err := descriptorOf(&o, lens)
	if err != nil {
		return nil, err
	}
	_, sk, _ := ed25519.GenerateKey(rand.Reader)
	s := &sender{opts: o, log: orDiscard(o.Logger).With(sessionAttr(o.Session)), conn: conn, manifest: mb, src: newSource(o.Pack, o.Manifest), hosts: newHostTable(o.Hosts),
		sessKey: sk, dh: newDH(), content: content}
	s.src.cipher = cc
	s.ann = s.baseAnnounce()
	s.src.release = s.ann.ReleaseID // the id once: it hashes the whole manifest
	s.stats.Session = o.Session
	s.stats.ReleaseID = s.ann.ReleaseID
	s.stats.ChunksTotal = len(o.Manifest.Chunks)
	s.sent = make(chunkSet, (len(o.Manifest.Chunks)+63)/64)
	s.fec.pct = make([]uint8, len(o.Manifest.Chunks))
	return s, s.ann.Check()
}

func (s *sender) baseAnnounce() wire.Announce {
	m := s.opts.Manifest
	a := wire.Announce{
		ManifestDigest: sha256.Sum256(s.manifest), ManifestSize: uint32(len(s.manifest)),
		ImageSize: uint64(m.ImageSize), ChunkSize: m.ChunkSize, ChunkCount: uint32(len(m.Chunks)),
		SymbolSize: uint16(s.opts.SymbolSize), BlockSymbols: uint16(s.opts.BlockSymbols),
		Closed: len(s.opts.Hosts) > 0, Rate: uint64(s.opts.Rate), HostsTotal: uint16(len(s.opts.Hosts)),
		ReleaseKey: pub32(s.opts.Key.Public().(ed25519.PublicKey)),
		SessionKey: pub32(s.sessKey.Public().(ed25519.PublicKey)), SessionDH: pub32(s.dh.PublicKey().Bytes()),
		Encrypted: s.opts.Encrypt, FetchPort: fetchPort(&s.opts),
	}
	if s.opts.down != nil {
		s.opts.down.announce(&a, s.manifest)
		return a
	}
	a.ReleaseID = m.ID()
	if !s.opts.BaseID.IsZero() {
		a.BaseID = s.opts.BaseID
	}
	return a
}

// run is the session loop; it alone touches the sender's state.
func (s *sender) run(ctx context.Context, inbox <-chan packet) error {
	now := time.Now()
	s.started, s.deadline, s.announce = now, now.Add(s.opts.Wait), now
	s.pacer = newPacer(s.opts.Rate, now)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var opened <-chan *stream
	var streamIn <-chan packet
	var gone <-chan *stream
	var frames <-chan struct{} // a relay's: a frame arrived, or the sender's transfer began
	if s.opts.down != nil {
		frames = s.opts.down.link.downWake
	}
	if s.opts.Unicast != nil {
		uctx, cancel := context.WithCancel(ctx)
		s.uni = startStreams(uctx, s.opts.Unicast, s.streamSourceOf())
		defer s.uni.stop(cancel)
		opened, streamIn, gone = s.uni.opened, s.uni.in, s.uni.gone
	}
	for {
		now = time.Now()
		s.step(now)
		s.progress(now, false)
		if s.phase == phaseDone || s.err != nil {
			return s.end(now)
		}
		if err := s.flush(now); err != nil {
			s.err = err
			return s.end(now)
		}
		resetTimer(timer, s.wakeIn(time.Now()))
		select {
		case <-ctx.Done():
			s.err = fmt.Errorf("multicast: session %08x cancelled: %w", s.opts.Session, ctx.Err())
			return s.end(time.Now())
		case p := <-inbox:
			s.handle(p, time.Now())
			s.drain(inbox)
		case p := <-streamIn:
			s.handle(p, time.Now())
		case st := <-opened:
			s.streamOpened(st)
		case st := <-gone:
			s.streamGone(st)
		case <-frames:
		case <-timer.C:
		}
	}
}

// drain handles what else is already queued, boundedly.
func (s *sender) drain(inbox <-chan packet) {
	for range inboxDepth {
		select {
		case p := <-inbox:
			s.handle(p, time.Now())
		default:
			return
		}
	}
}

// wakeIn is the time until the loop has something to do.
func (s *sender) wakeIn(now time.Time) time.Duration {
	if len(s.queue) > 0 || s.phase == phaseSend && !s.gated {
		return s.pacer.delay(now)
	}
	d := min(s.deadline.Sub(now), s.announce.Sub(now), hostCheckEvery)
	if due, ok := s.summaryDue(now); ok {
		d = min(d, due)
	}
	return d
}

// hostCheckEvery bounds how late a silent host is noticed.
const hostCheckEvery = 100 * time.Millisecond

// step advances timers and phases.
func (s *sender) step(now time.Time) {
	if !now.Before(s.announce) {
		s.queueAnnounce(now)
	}
	if s.wantMan && now.Sub(s.lastMan) >= manifestEvery {
		s.queueManifest(now)
	}
	s.probe(now)
	s.unicastAnnounce(now)
	if s.opts.down != nil {
		s.opts.down.publish(s, now)
	}
	s.stepStreams(now)
	switch s.phase {
	case phaseRegister:
		s.stepRegister(now)
	case phaseIdle:
		if s.hosts.mcLive() > 0 { // a multicast host registered late
			s.phase = phaseSend
		}
	case phaseCollect:
		if s.roundAnswered() || !now.Before(s.deadline) {
			s.finishRound(now)
		} else {
			s.summarize(now)
		}
	}
	if s.phase != phaseRegister {
		s.dropSilent(now)
		s.dropUnrelayed(now)
		if s.allDone(now) {
			s.phase = phaseDone
		}
	}
}

func (s *sender) queueAnnounce(now time.Time) {
	a := s.ann
	if first, page := s.hosts.nextPage(); page != nil {
		a.HostsFirst, a.Hosts = uint16(first), page
	}
	s.queue = append([][]byte{s.encode(&a)}, s.queue...)
	every := announceEveryLate
	if s.phase == phaseRegister {
		every = announceEvery
	}
	s.announce = now.Add(every)
}

func (s *sender) queueManifest(now time.Time) {
	var pk [][]byte
	for off := 0; off < len(s.manifest); off += s.opts.SymbolSize {
		end := min(len(s.manifest), off+s.opts.SymbolSize)
		pk = append(pk, s.encode(&wire.ManifestFrag{Offset: uint32(off), Total: uint32(len(s.manifest)), Data: s.manifest[off:end]}))
	}
	s.queue = append(pk, s.queue...)
	s.wantMan, s.lastMan = false, now
	s.queueAnnounce(now) // ahead of the manifest: a late host may lack it too
}

func (s *sender) stepRegister(now time.Time) {
	if s.opts.down != nil { // a relay's: until the sender's transfer begins, with no host too
		if s.opts.down.link.upStarted() {
			s.startTransfer(now)
		}
		return
	}
	members, reg, decided := s.hosts.registration()
	closed := len(s.opts.Hosts) > 0
	switch {
	case closed && reg > 0 && decided == members, !closed && s.opts.MinHosts > 0 && reg >= s.opts.MinHosts:
	case closed && decided == members: // every host refused: say why at once
		s.err = fmt.Errorf("%w: session %08x: %s", ErrAllRefused, s.opts.Session, s.hosts.refusals())
		return
	case now.Before(s.deadline):
		return
	case reg == 0 || reg < s.opts.MinHosts:
		s.err = fmt.Errorf("multicast: session %08x: %d hosts registered in %v, need %d%s", s.opts.Session, reg, s.opts.Wait, max(1, s.opts.MinHosts), s.refusalNote())
		return
	}
	s.startTransfer(now)
}

func (s *sender) refusalNote() string {
	if r := s.hosts.refusals(); r != "" {
		return "; refused: " + r
	}
	return ""
}

func (s *sender) startTransfer(now time.Time) {
	s.hosts.closeRegistration()
	m := s.opts.Manifest
	lack := s.hosts.lacking(uint64(len(m.Chunks)))
	s.hosts.recordNeeds(m)
	for i, c := range m.Chunks {
		switch {
		case c.Zero:
			s.stats.ChunksZero++
		case !lack[i]:
			s.stats.ChunksReused++
		default:
			s.jobs = append(s.jobs, repairJob{chunk: uint32(i), whole: true})
			_, n := m.ChunkRange(i)
			s.prog.DataBytes += int64(n)
			if p, _ := s.opts.Pack.FrameLens(i); p > 0 {
				s.totalSym += int64(newLayout(int(p), s.opts.SymbolSize, s.opts.BlockSymbols).symbols)
			}
		}
	}
	s.phase = phaseSend
	s.stats.Registration = now.Sub(s.started)
	s.startRate(now)
	s.src.deltas = s.allHoldBase()
	for h := range s.hosts.all() {
		if h.stream != nil && h.active() {
			s.pushLacking(h)
		}
	}
	s.log.Debug("multicast: sending", "chunks", len(s.jobs), "hosts", s.hosts.live(), "held_by_all", s.stats.ChunksReused,
		"zero", s.stats.ChunksZero, "deltas", s.src.deltas)
}

// allHoldBase reports whether there is a base and every registered host
// still expected to finish holds it.
func (s *sender) allHoldBase() bool { return !s.opts.BaseID.IsZero() && s.hosts.allHoldBase() }

func (s *sender) allDone(now time.Time) bool {
	return s.hosts.live() == 0 && !s.hosts.redialing(now, s.opts.HostTimeout)
}

// encode frames a message with the next sequence number: ANNOUNCE signed
// by the release key, STATUS and ABORT by the session key.
func (s *sender) encode(m wire.Message) []byte {
	s.seq++
	h, buf := wire.Header{Session: s.opts.Session, Seq: s.seq}, make([]byte, 0, MaxPacket)
	var b []byte
	var err error
	switch m := m.(type) {
	case *wire.Announce:
		m.SignedAt = time.Now().UnixMilli()
		b, err = appendSigned(buf, h, m, s.opts.Key)
	case *wire.Status, *wire.Abort:
		b, err = appendSigned(buf, h, m, s.sessKey)
	default:
		b, err = wire.AppendPacket(buf, h, m)
	}
	if err != nil {
		panic(fmt.Sprintf("multicast: encode %v: %v", m.Type(), err)) // our own message: a bug
	}
	return b
}
