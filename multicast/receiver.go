package multicast

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/atomicfile"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Receiver tunables.
const (
	// DefaultSenderTimeout is how long a receiver waits for any packet of
	// its session before it decides the sender vanished and discards its
	// partial image. Longer than DefaultHostTimeout, so the sender gives
	// up on a host before the host gives up on it.
	DefaultSenderTimeout = 30 * time.Second
	// registerEvery limits REGISTER retries to one per period.
	registerEvery = 100 * time.Millisecond
	// completeEvery is the COMPLETE retry period until the sender echoes it.
	completeEvery = 300 * time.Millisecond
	// nackSpread spreads hosts' answers to a STATUS over this window
	// (NORM-style randomised backoff), so thousands of NACKs do not arrive
	// in one burst and overflow the sender's socket buffer. Well under
	// the sender's statusWait.
	nackSpread = 50 * time.Millisecond
	// completeLinger bounds how long a finished receiver waits for that
	// echo: the image is in place either way.
	completeLinger = 5 * time.Second
)

// Errors returned by Receive.
var (
	ErrSenderGone = errors.New("multicast: sender went silent")
	ErrAborted    = errors.New("multicast: sender aborted the session")
	ErrUntrusted  = errors.New("multicast: manifest refused")
	ErrNoSession  = errors.New("multicast: no session announced")
)

// ReceiveOptions configure Receive.
type ReceiveOptions struct {
	HostID        string              // this host's id, as the sender's --hosts names it
	HostKey       ed25519.PrivateKey  // this host's identity: signs REGISTER and REFUSE
	Out           string              // where the verified image goes
	Trusted       []ed25519.PublicKey // keys a manifest must be signed by
	Insecure      bool                // accept an unsigned or untrusted manifest
	Session       uint32              // join only this session; 0: the first announced
	SenderTimeout time.Duration       // default DefaultSenderTimeout
	// AnnounceTimeout bounds the wait for a trusted session to join; 0
	// waits until ctx ends. Untrusted sessions are ignored meanwhile.
	AnnounceTimeout time.Duration
	// Accept, if set, is asked about each verified manifest before the
	// receiver registers; an error refuses the session like an untrusted
	// one (an agent uses it to skip a release it already has, e.g. a
	// session still running for other hosts).
	Accept func(*image.Manifest) error
	// Room, if set, is asked for the disk the session may take before the
	// receiver registers: the image plus the most its spool can hold. An
	// error (a *Refusal with RefuseNoSpace, say) refuses the session
	// before a byte is written.
	Room func(bytes int64) error
	// Refused, if set, hears each session refused with a cause (the
	// REFUSE sent to its sender), e.g. to record it for the host's status.
	Refused func(session uint32, from net.Addr, rf *Refusal)
	// Probed, if set, hears the nonce of every doctor probe (AppendProbe)
	// that arrives on the session's socket.
	Probed func(nonce [16]byte, from net.Addr)
	// Skip lists sessions not to join: an agent that completed a session
	// calls Receive again while that session still runs for other hosts.
	Skip []uint32
	// Local, if set, names chunks the host already holds (e.g. in the
	// images it keeps). Once the manifest is accepted, every chunk it can
	// get there is copied into the partial image and checked against the
	// manifest, and REGISTER tells the sender not to send it.
	Local LocalFunc
	// BaseImage, if set, finds the image of a release the host holds (e.g.
	// its previous one) by release id. When a session announces a base the
	// host holds, REGISTER says so, and chunks sent as deltas are decoded
	// against that image's chunk at the same index, then checked against
	// the manifest like any other.
	BaseImage func(id image.ID) (path string, ok bool)
	// Stage, if set, is called with the result once the verified image is
	// at Out, before COMPLETE goes out, which then carries its outcome
	// (staged, or the error): the sender learns it without asking. Its
	// error is in Result.StageErr; Receive does not fail for it.
	Stage func(*Result) error
	// Logger hears the receiver: at Warn what the host's operator must
	// see (a session refused: untrusted key, not wanted; a sender of
	// another protocol version; the unicast path taken), at Debug the
	// detail (the session tried, chunks reused, bad chunks). Nil discards.
	Logger *slog.Logger
	// NoUnicast refuses the unicast path: a host that hears no multicast
	// waits for it rather than dial a sender's fetch port.
	NoUnicast bool
	// dial opens the unicast path (tests); nil dials TCP to the announcing
	// address at the fetch port.
	dial func(ctx context.Context, from net.Addr, port uint16) (net.Conn, error)
	// relay makes the receiver a relay's upstream side (Relay).
	relay *relayUp
	// shun lists relays given up on (relayStall).
	shun []shunned
}

// Result describes a received image.
type Result struct {
	Session   uint32
	ReleaseID image.ID
	Manifest  *image.Manifest // verified against Trusted (unless Insecure)
	Path      string          // Out: the verified image
	Resumed   int             // chunks already held by a partial file from an earlier attempt
	Reused    int             // chunks copied from Local (trusted as Local vouches for them)
	Reflinked int64           // bytes of those shared by reflink: no data copied
	BadChunks int             // chunks that failed their check and were asked again
	Spilled   int             // chunks whose symbols waited in the spool file (memory budget full)
	Packets   int64           // packets of the session received
	Ignored   int64           // packets malformed, foreign or out of place
	Staged    bool            // ReceiveOptions.Stage ran and succeeded
	StageTime time.Duration   // how long ReceiveOptions.Stage took
	Encrypted bool            // the session's frames were sealed; this host had the key
	StageErr  error           // what ReceiveOptions.Stage returned
	Unicast   bool            // the session ran over the sender's TCP fetch port: no multicast was heard
	// Suppressed counts the quiet rounds this host did not answer because
	// a summary of the others' NACKs covered what it lacked.
	Suppressed int
}

// Receive joins one session announced on conn, receives its image into
// opts.Out, verifies it, and reports COMPLETE. On failure it removes its
// partial files and leaves opts.Out untouched; when ctx is cancelled it
// keeps the partial image (Out.<release>.partial), which a later Receive
// of the same release resumes, as it does one left by a killed receiver:
// its verified chunks are not asked for again. conn stays open for the caller when it supports
// read deadlines.
func Receive(ctx context.Context, conn Conn, opts ReceiveOptions) (*Result, error) {
	if err := hostkey.CheckID(opts.HostID); err != nil || opts.Out == "" || len(opts.HostKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("multicast: receive needs a valid host id (%v), its host key and an output path", err)
	}
	if len(opts.Trusted) == 0 && !opts.Insecure {
		return nil, fmt.Errorf("%w: no trusted keys given (and not insecure)", ErrUntrusted)
	}
	opts.SenderTimeout = cmp.Or(opts.SenderTimeout, DefaultSenderTimeout)
	opts.Logger = orDiscard(opts.Logger)
	res, err := receiveShunning(ctx, conn, opts)
	var to *streamTarget
	if errors.As(err, &to) {
		return receiveStream(ctx, opts, to)
	}
	return res, err
}

// receive runs one receiver over conn (a stream: the unicast path).
func receive(ctx context.Context, conn Conn, opts ReceiveOptions, onStream bool) (*Result, error) {
	r := &receiver{opts: opts, log: opts.Logger, conn: conn, begin: time.Now(), eph: newDH(), onStream: onStream,
		hostPub: pub32(opts.HostKey.Public().(ed25519.PublicKey))}
	err := serve(ctx, conn, r.run)
	if err != nil {
		var st *errRelayStalled
		if ctx.Err() == nil && !errors.As(err, &st) { // cancelled, or a relay given up on: keep the partial file to resume
			r.discard()
		}
		return nil, err
	}
	r.res.Unicast = onStream
	return &r.res, nil
}

// streamTarget is a session announced to this host by unicast that it
// hears nothing of by multicast: it runs the session over the sender's
// fetch port instead (stream.go).
type streamTarget struct {
	session uint32
	from    net.Addr
	port    uint16
}

func (t *streamTarget) Error() string {
	return fmt.Sprintf("multicast: session %08x: no multicast heard; taking the unicast path to %v port %d", t.session, t.from, t.port)
}

// receiveStream dials the sender's fetch port and runs the session over
// that connection.
func receiveStream(ctx context.Context, opts ReceiveOptions, to *streamTarget) (*Result, error) {
	dial := opts.dial
	if dial == nil {
		dial = dialFetch
	}
	c, err := dial(ctx, to.from, to.port)
	if err != nil {
		return nil, fmt.Errorf("multicast: session %08x from %v: this host hears no multicast, and the unicast path failed: %w", to.session, to.from, err)
	}
	defer c.Close()
	opts.Logger.Warn("multicast: no multicast heard: receiving over TCP", sessionAttr(to.session), "from", to.from, "addr", c.RemoteAddr())
	opts.Session = to.session
	res, err := receive(ctx, newStreamConn(c), opts, true)
	if err != nil {
		return nil, fmt.Errorf("multicast: session %08x over TCP from %v: %w", to.session, c.RemoteAddr(), err)
	}
	return res, nil
}

// dialFetch connects to the fetch port at the announcing host's address.
func dialFetch(ctx context.Context, from net.Addr, port uint16) (net.Conn, error) {
	host, _, err := net.SplitHostPort(from.String())
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
	return d.DialContext(ctx, "tcp", net.JoinHostPort(host, fmt.Sprint(port)))
}

type receiver struct {
	ctx        context.Context
	begin      time.Time
	join       joinState
	opts       ReceiveOptions
	log        *slog.Logger // opts.Logger
	conn       Conn
	res        Result
	sender     net.Addr
	ann        *wire.Announce
	heard      time.Time // last packet of the session
	man        manifestBuf
	st         *store
	partial    string
	phase      recvPhase    // changed only by on (recvphase.go)
	have       []wire.Range // chunks held, told to the sender in REGISTER
	lastReg    time.Time
	doneAt     time.Time // when the image was in place
	lastDone   time.Time
	acked      bool
	seq        seqStats
	foreign    versionNotes
	probeAt    time.Time // when to answer the pending probe; zero: none
	probeRound uint32
	nackAt     time.Time     // when to answer the pending STATUS; zero: none
	hbAfter    time.Duration // silence after which a silenced host sends a heartbeat (heartbeatDue)
	nackRound  uint32
	jobs       chan decodeJob // to the decoders; nil until the manifest is in
	results    chan decodeResult
	decoders   errgroup.Group
	stopDecode context.CancelFunc
	wb         *writeback       // the decoders' writes' writeback
	eph        *ecdh.PrivateKey // this session's X25519 key
	hostPub    [32]byte         // this host's public key
	keys       *pairKeys        // MAC keys with the followed session's sender
	lens       [][2]uint32      // frame lengths from the session descriptor
	onStream   bool             // the session runs over the unicast path
	goStream   *streamTarget    // take the unicast path to this session
	mcSession  uint32           // the last session heard by multicast
	mcAt       time.Time        // and when
	lastAnswer time.Time        // the last NACK sent
	nackDone   uint32           // the last round answered (or silenced by a summary)
	progressAt time.Time        // the last chunk verified (or the manifest accepted)
}

// run is the session loop; it alone touches the receiver's state.
func (r *receiver) run(ctx context.Context, inbox <-chan packet) error {
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	defer r.closeFiles()
	defer r.stopDecoders()
	r.ctx = ctx
	for {
		now := time.Now()
		if err := r.tick(now); err != nil || r.finished(now) {
			return err
		}
		resetTimer(timer, r.wakeIn(now))
		jobs, next := r.nextJob()
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case p := <-inbox:
			err = r.handleBatch(p, inbox)
		case jobs <- next:
			r.st.ready = r.st.ready[1:]
		case res := <-r.results:
			err = r.onDecoded(res)
		case <-r.relayWake():
			r.relayTurn(time.Now())
		case <-timer.C:
		}
		if err != nil {
			return err
		}
	}
}

// drainBatch bounds how many queued packets one loop turn handles, so
// timers and decoder results are still looked at under a flood.
const drainBatch = 64

// handleBatch handles p and whatever else is already queued, boundedly
// (every packet it takes from the inbox is handled).
func (r *receiver) handleBatch(p packet, inbox <-chan packet) error {
	now := time.Now()
	for i := 1; ; i++ {
		if err := r.handle(p, now); err != nil {
			return err
		}
		if i == drainBatch {
			return nil
		}
		select {
		case p = <-inbox:
		default:
			return nil
		}
	}
}

// nextJob returns the decoders' channel and the next ready chunk, or a
// nil channel (never ready in a select) when there is none.
func (r *receiver) nextJob() (chan<- decodeJob, decodeJob) {
	if !r.phase.joined() || len(r.st.ready) == 0 || r.ann.Encrypted && r.st.cipher == nil {
		return nil, decodeJob{} // (sealed frames wait for the key)
	}
	return r.jobs, r.st.job(r.st.ready[0])
}

// startDecoders runs the chunk decoders beside the loop.
func (r *receiver) startDecoders() error {
	ctx, cancel := context.WithCancel(r.ctx)
	n := decoders()
	r.jobs, r.results, r.stopDecode = make(chan decodeJob), make(chan decodeResult, n), cancel
	r.wb = startWritebacks(r.st.file)
	for range n {
		d, err := newDecoder(r.st, r.wb)
		if err != nil {
			return err
		}
		r.decoders.Go(func() error { return d.run(ctx, r.jobs, r.results) })
	}
	return nil
}

// stopDecoders ends the decoders and waits for them.
func (r *receiver) stopDecoders() {
	if r.jobs == nil {
		return
	}
	r.stopDecode()
	close(r.jobs)
	r.decoders.Wait()
	r.wb.stop()
}

// onDecoded takes a decoder's verdict; the last chunk finishes the image.
func (r *receiver) onDecoded(res decodeResult) error {
	if err := r.st.decoded(res.chunk, res.err); err != nil {
		return err
	}
	if res.err != nil {
		r.log.Debug("multicast: chunk failed its check", sessionAttr(r.res.Session), "err", res.err)
		r.res.BadChunks = r.st.bad
	} else {
		r.progressAt = time.Now()
		r.relayArrived(res)
	}
	if r.st.remaining == 0 && !r.phase.inPlace() {
		return r.finish(time.Now())
	}
	return nil
}

// tick runs the timers: sender liveness and COMPLETE retries.
func (r *receiver) tick(now time.Time) error {
	if err := r.tickJoin(now); err != nil {
		return err
	}
	if r.phase.transferring() && now.Sub(r.heard) > r.opts.SenderTimeout {
		return fmt.Errorf("%w: nothing from %v for %v (session %08x)", ErrSenderGone, r.sender, r.opts.SenderTimeout, r.res.Session)
	}
	if err := r.checkStall(now); err != nil {
		return err
	}
	r.relayTurn(now)
	if r.phase.registering() {
		r.register(now) // retried until acknowledged; rate-limited inside
	}
	r.answerStatus(now)
	r.answerProbe(now)
	r.heartbeat(now)
	if r.settled() && !r.acked && now.Sub(r.lastDone) >= completeEvery {
		r.sendComplete(now)
	}
	return nil
}

// settled reports whether the image is in place and nothing holds the
// host's COMPLETE back (a relay holds it while its subnet's session
// wants frames): the host then says COMPLETE and answers nothing else.
func (r *receiver) settled() bool { return r.phase.inPlace() && !r.relayHolding() }

func (r *receiver) finished(now time.Time) bool {
	return r.settled() && ((r.acked && r.phase == recvDone) || now.Sub(r.doneAt) > completeLinger)
}

func (r *receiver) wakeIn(now time.Time) time.Duration {
	if !r.probeAt.IsZero() && (r.nackAt.IsZero() || r.probeAt.Before(r.nackAt)) {
		return r.probeAt.Sub(now)
	}
	if !r.nackAt.IsZero() {
		return r.nackAt.Sub(now)
	}
	if r.phase == recvReceiving && r.res.Suppressed > 0 && r.hbAfter > 0 && !r.res.Unicast {
		last := r.lastAnswer
		if last.IsZero() {
			last = r.begin
		}
		return min(max(last.Add(r.hbAfter).Sub(now), 0), r.heard.Add(r.opts.SenderTimeout).Sub(now)+time.Millisecond)
	}
	if r.phase.inPlace() {
		return completeEvery
	}
	if !r.phase.registered() {
		return joinCheckEvery
	}
	return r.heard.Add(r.opts.SenderTimeout).Sub(now) + time.Millisecond
}

// handle processes one datagram; only a fatal condition (abort, refused
// manifest, disk error) is returned.
func (r *receiver) handle(p packet, now time.Time) error {
	if p.err != nil {
		return r.streamEnded(p.err)
	}
	if nonce, ok := wire.ParseProbe(p.b); ok {
		if r.opts.Probed != nil {
			r.opts.Probed(nonce, p.from)
		}
		return nil
	}
	h, m, err := wire.Parse(p.b)
	if err != nil {
		r.foreign.note(err, p.from, r.log.Warn)
		r.refuseVersion(h, err, p.from, now)
	} else if h.Seq != 0 && (r.opts.shun == nil || !r.shunsAddr(h.Session, p.from)) {
		r.mcSession, r.mcAt = h.Session, now
	}
	if err != nil || !r.accept(&h, m, p.from, now) || !r.authentic(&h, m, now) {
		r.res.Ignored++
		if r.goStream != nil {
			return r.goStream
		}
		return nil
	}
	r.heard = now
	r.res.Packets++
	r.seq.saw(h.Seq, seqMark(m))
	switch m := m.(type) {
	case *wire.Announce:
		return r.onAnnounce(m, now)
	case *wire.ManifestFrag:
		return r.onManifest(m, now)
	case *wire.Symbol:
		r.relayStarted()
		return r.onSymbol(m)
	case *wire.Status:
		r.relayStarted()
		return r.onStatus(m, now)
	case *wire.Register:
		if m.Host == r.opts.HostID && r.phase.joined() && r.takeKey(m) {
			r.takeGrant(m)
			r.on(evAcked, now)
		}
		r.join.acked = true
	case *wire.Complete:
		r.acked = r.acked || (m.Host == r.opts.HostID && r.phase.inPlace())
	case *wire.Abort:
		if !r.phase.joined() { // a candidate not yet joined: wait for another
			r.refuse(fmt.Errorf("%w %08x: %s", ErrAborted, h.Session, m.Reason))
			return nil
		}
		if !r.phase.inPlace() { // once the image is in place, nothing to abort
			return fmt.Errorf("%w %08x: %s", ErrAborted, h.Session, m.Reason)
		}
	}
	return nil
}

// streamEnded ends a session on the unicast path whose connection closed:
// fine once the image is in place (the sender ends the session once every
// host completed), a failure before.
func (r *receiver) streamEnded(err error) error {
	if r.phase.inPlace() {
		r.relayUpstreamEnded()
		r.acked = true // nothing more can come, and nothing more is needed
		r.on(evAcked, time.Now())
		return nil
	}
	return fmt.Errorf("multicast: session %08x: the sender's unicast connection ended: %w", r.res.Session, err)
}

func (r *receiver) onAnnounce(a *wire.Announce, now time.Time) error {
	if a.ManifestDigest != r.ann.ManifestDigest {
		return nil // the same session id cannot change its manifest
	}
	r.register(now)
	return nil
}

// register asks to join, saying which chunks it holds, or asks for the
// manifest while it lacks one. A host that held every chunk registers
// too, so the sender counts it.
func (r *receiver) register(now time.Time) {
	if r.phase.registered() || now.Sub(r.lastReg) < registerEvery {
		return
	}
	r.lastReg = now
	r.send(&wire.Register{Host: r.opts.HostID, NeedManifest: !r.phase.joined(), HasBase: r.phase.joined() && r.st.base != nil,
		Have: r.upHave(), Relay: r.relaying()})
}

// send sends m to the followed session's sender: REGISTER signed by the
// host key, NACK and COMPLETE under the session's MAC key (COMPLETE
// signed by the host key in a relayed session: the relay forwards it to
// the sender as it is).
func (r *receiver) send(m wire.Message) {
	var b []byte
	var err error
	h := wire.Header{Session: r.res.Session}
	switch m := m.(type) {
	case *wire.Register:
		b, err = r.signRegister(h, m)
	case *wire.Complete:
		if r.relayed() {
			b, err = appendSigned(nil, h, m, r.opts.HostKey)
			break
		}
		b, err = r.appendUp(h, m)
	default:
		b, err = r.appendUp(h, m)
	}
	if err == nil && b != nil {
		r.conn.WriteTo(b, r.sender)
	}
}

// appendUp frames m under the session's MAC key to the sender; nothing
// before the keys are agreed.
func (r *receiver) appendUp(h wire.Header, m wire.Message) ([]byte, error) {
	if r.keys == nil {
		return nil, nil
	}
	return appendMAC(nil, h, m, &r.keys.up)
}

// signRegister completes and signs a REGISTER.
func (r *receiver) signRegister(h wire.Header, m *wire.Register) ([]byte, error) {
	m.SignedAt, m.HostKey, m.Ephemeral = time.Now().UnixMilli(), r.hostPub, pub32(r.eph.PublicKey().Bytes())
	return appendSigned(nil, h, m, r.opts.HostKey)
}

// takeKey takes the content key of an encrypted session from the
// sender's acknowledgement; it reports whether the acknowledgement will do
// (a plain session's always does).
func (r *receiver) takeKey(m *wire.Register) bool {
	if !r.ann.Encrypted {
		return true
	}
	if r.st.cipher != nil {
		return true
	}
	key, err := unwrapKey(m.WrappedKey, &r.keys.wrap)
	if err == nil {
		r.st.cipher, err = newContentCipher(key)
	}
	if err != nil {
		r.log.Warn("multicast: no content key", sessionAttr(r.res.Session), "err", err)
		return false
	}
	r.res.Encrypted = true
	return true
}

// authentic checks a packet of the followed session: ANNOUNCE signed by
// its release key and fresh, STATUS and ABORT by the session key, the
// acknowledgements under the session's MAC key. MANIFEST, DATA and REPAIR
// carry no tag: the descriptor's digest and the chunk hashes check them.
func (r *receiver) authentic(h *wire.Header, m wire.Message, now time.Time) bool {
	switch m := m.(type) {
	case *wire.Announce: // the same announcer: the same session keys
		return m.ReleaseKey == r.ann.ReleaseKey && m.SessionDH == r.ann.SessionDH && fresh(m.SignedAt, now) && r.verifyAnnounce(h, m, now)
	case *wire.Status, *wire.Abort:
		return signedBy(h, r.ann.SessionKey[:])
	case *wire.Register, *wire.Complete:
		return macBy(h, r.keysDown())
	case *wire.ManifestFrag, *wire.Symbol:
		return true
	}
	return false
}

// seqMark says whether m's sequence number marks where the sender's
// counter stood when it left: a STATUS or ABORT does (signed by the
// session key, so authentic checked it; queued in order); an ANNOUNCE
// (signed too) only as the first mark, before the transfer starts: later
// ones jump the queue.
func seqMark(m wire.Message) markKind {
	switch m.(type) {
	case *wire.Status, *wire.Abort:
		return seqMarks
	case *wire.Announce:
		return seqStarts
	}
	return seqCounts
}

func (r *receiver) keysDown() *macKey {
	if r.keys == nil {
		return nil
	}
	return &r.keys.down
}

func (r *receiver) onSymbol(s *wire.Symbol) error {
	if !r.phase.transferring() && !(r.phase.inPlace() && r.relayHolding()) { // a relay in place still takes frames it wants
		return nil
	}
	err := r.st.add(s)
	if errors.Is(err, errBadSymbol) {
		if r.log.Enabled(r.ctx, slog.LevelDebug) { // one record per bad packet: no work when unheard
			r.log.Debug("multicast: symbol ignored", sessionAttr(r.res.Session), "err", err)
		}
		return nil
	}
	return err
}

func (r *receiver) onStatus(s *wire.Status, now time.Time) error {
	switch {
	case r.settled():
		r.sendComplete(now)
	case !r.phase.registered():
		r.register(now)
	case s.Quiet:
		r.onQuietStatus(s, now)
	case s.Probe:
		if r.probeAt.IsZero() {
			r.probeAt, r.probeRound = now.Add(rand.N(nackSpread)), s.Round
		}
	case r.nackAt.IsZero() || r.nackRound != s.Round:
		r.nackAt, r.nackRound = now.Add(rand.N(nackSpread)), s.Round
	}
	return nil
}

// answerProbe sends the loss seen since the last answer, once the probe's
// jitter has passed: one NACK that lists nothing.
func (r *receiver) answerProbe(now time.Time) {
	if r.probeAt.IsZero() || now.Before(r.probeAt) {
		return
	}
	r.probeAt, r.lastAnswer = time.Time{}, now
	if !r.phase.inPlace() {
		r.send(&wire.Nack{Host: r.opts.HostID, Round: r.probeRound, Loss: r.seq.lossPermille(), Parts: 1})
	}
}

// answerStatus sends the NACKs for the pending STATUS once its jitter
// has passed.
func (r *receiver) answerStatus(now time.Time) {
	if r.nackAt.IsZero() || now.Before(r.nackAt) || r.settled() {
		return
	}
	r.nackAt, r.lastAnswer, r.nackDone = time.Time{}, now, r.nackRound
	for _, n := range r.nacks(r.nackRound) {
		r.send(n)
	}
}

func (r *receiver) sendComplete(now time.Time) {
	r.lastDone = now
	c := &wire.Complete{Host: r.opts.HostID, Status: wire.CompleteOK, StageMillis: uint32(min(r.res.StageTime.Milliseconds(), 1<<32-1))}
	switch {
	case r.res.StageErr != nil:
		c.Status, c.Reason = wire.CompleteStageFailed, wire.Truncate(r.res.StageErr.Error(), wire.MaxReason)
	case r.res.Staged:
		c.Status = wire.CompleteStaged
	}
	r.send(c)
}

// finish moves the image into place and says so. Every chunk was checked
// against the manifest before it was written (or, when reused, by the
// verified manifest of the image it came from), and the manifest's image
// digest is over those chunk hashes: the image is verified, with no pass
// over it.
func (r *receiver) finish(now time.Time) error {
	if r.st.remaining != 0 {
		return fmt.Errorf("multicast: finishing %s with %d chunks missing", r.partial, r.st.remaining)
	}
	if err := r.st.file.Sync(); err != nil {
		return fmt.Errorf("multicast: sync %s: %w", r.partial, err)
	}
	if err := os.Rename(r.partial, r.opts.Out); err != nil {
		return fmt.Errorf("multicast: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(r.opts.Out)); err != nil {
		return err // renamed, but not durably: the caller must not stage it
	}
	r.res.Path, r.res.BadChunks, r.res.Spilled = r.opts.Out, r.st.bad, r.st.spilled
	r.log.Debug("multicast: image verified", sessionAttr(r.res.Session), "path", r.opts.Out)
	if r.opts.Stage != nil {
		t := time.Now()
		r.res.StageErr = r.opts.Stage(&r.res)
		r.res.Staged, r.res.StageTime = r.res.StageErr == nil, time.Since(t)
	}
	r.on(evInPlace, time.Now())
	if !r.relayHolding() {
		r.sendComplete(r.doneAt)
	}
	return nil
}
