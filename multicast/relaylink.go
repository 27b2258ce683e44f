package multicast

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// maxForward bounds the host packets a relay holds to forward upstream:
// it keeps only the latest of each kind per host, so this is ~1,300 hosts
// each with a REGISTER, a COMPLETE and a REFUSE under way at once; beyond
// it a packet is dropped, and the host sends it again.
const maxForward = 4096

// relayLink is all a relay's two loops share: the upstream receiver's,
// which takes the session from the sender, and the downstream sender's,
// which runs it on the relay's subnet. Each loop owns its own state; they
// exchange only through the link, under its mutex, and wake each other by
// a channel of capacity 1.
type relayLink struct {
	mu sync.Mutex
	// set by the upstream loop
	sess    *relaySession // once set, the downstream session may start
	ready   chan struct{} // closed when sess is set, or the upstream ends
	started bool          // the sender's transfer began: downstream registration closes
	frames  chunkSet      // chunks whose frame is in the store
	upEnded bool
	// set by the downstream loop
	held     chunkSet // chunks every downstream registrant holds; nil: no registrant yet
	heldGen  int      // grows when held shrinks
	wanted   chunkSet // frames a downstream job waits for
	fwd      []forward
	fwdAt    map[string]int // index in fwd by key
	snap     relaySnapshot
	downDone bool

	upWake, downWake chan struct{}
}

// forward is a host's packet to pass upstream as it came.
type forward struct {
	key string // host id and type: a later packet of the same replaces it
	b   []byte
}

// relaySnapshot is what a RELAY-STATUS says.
type relaySnapshot struct {
	hosts                  []wire.RelayedHost
	bytes, packets, rounds int64
}

func newRelayLink() *relayLink {
	return &relayLink{ready: make(chan struct{}), upWake: make(chan struct{}, 1), downWake: make(chan struct{}, 1)}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// begin hands the downstream side its session (upstream, once).
func (l *relayLink) begin(sess *relaySession) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil || l.upEnded {
		return
	}
	l.sess, l.frames = sess, make(chunkSet, (len(sess.m.Chunks)+63)/64)
	close(l.ready)
}

// await waits for the session (downstream); nil when the upstream ended
// without one.
func (l *relayLink) await(ctx context.Context) *relaySession {
	select {
	case <-ctx.Done():
		return nil
	case <-l.ready:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess
}

// endUp says the upstream side is over.
func (l *relayLink) endUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.upEnded && l.sess == nil {
		close(l.ready)
	}
	l.upEnded = true
	wake(l.downWake)
}

// start says the sender's transfer began (upstream).
func (l *relayLink) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		l.started = true
		wake(l.downWake)
	}
}

func (l *relayLink) upStarted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.started || l.upEnded
}

// arrived says chunk i's frame is in the store (upstream).
func (l *relayLink) arrived(i uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.frames.addRange(i, i+1)
	if l.wanted != nil && l.wanted.has(i) {
		l.wanted.remove(i)
	}
	wake(l.downWake)
}

// framesReady reports whether the first job's frame is in the store
// (downstream); when not, every job's frame not there is wanted at once,
// and the upstream side asks for those of chunks it holds but never had
// the frame of. Once the upstream session has ended no frame can come:
// a missing one is an error (the subnet's session ends instead of
// waiting for ever, its hosts fetch from elsewhere or the next session).
func (l *relayLink) framesReady(jobs []repairJob) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frames.has(jobs[0].chunk) {
		return true, nil
	}
	if l.upEnded {
		return false, fmt.Errorf("multicast: relay: the sender's session ended before chunk %d's frame came, which this subnet's hosts lack", jobs[0].chunk)
	}
	if l.wanted == nil {
		l.wanted = make(chunkSet, len(l.frames))
	}
	for _, j := range jobs {
		if i := j.chunk; !l.frames.has(i) && !l.wanted.has(i) {
			l.wanted.addRange(i, i+1)
			wake(l.upWake)
		}
	}
	return false, nil
}

// takeWanted returns the frames wanted and not in the store (upstream).
func (l *relayLink) takeWanted() []uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wanted == nil {
		return nil
	}
	return l.wanted.list()
}

// registered takes a downstream host's REGISTER: what it holds narrows
// what every registrant holds, then the packet is forwarded (in this
// order, so the relay's own REGISTER with the narrower set reaches the
// sender first).
func (l *relayLink) registered(have []wire.Range, chunks int, b []byte, host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := make(chunkSet, (chunks+63)/64)
	for _, rg := range have {
		next.addRange(min(rg.First, uint32(chunks)), uint32(min(uint64(rg.First)+uint64(rg.Count), uint64(chunks))))
	}
	if l.held == nil {
		l.held, l.heldGen = next, l.heldGen+1
	} else if l.held.intersect(next) {
		l.heldGen++
	}
	l.queue("R"+host, b)
}

// queue adds a packet to forward, replacing one of the same key still
// queued.
func (l *relayLink) queue(key string, b []byte) {
	if i, ok := l.fwdAt[key]; ok {
		l.fwd[i].b = b
		return
	}
	if len(l.fwd) >= maxForward {
		return
	}
	if l.fwdAt == nil {
		l.fwdAt = map[string]int{}
	}
	l.fwdAt[key] = len(l.fwd)
	l.fwd = append(l.fwd, forward{key: key, b: b})
	wake(l.upWake)
}

// forwardPacket queues a downstream host's COMPLETE or REFUSE.
func (l *relayLink) forwardPacket(key string, b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queue(key, b)
}

// heldSet returns what every downstream registrant holds (nil: no
// registrant yet) and its generation.
func (l *relayLink) heldSet() (chunkSet, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.held), l.heldGen // a copy: registered narrows l.held in place
}

// takeForwards returns the packets to forward, oldest first.
func (l *relayLink) takeForwards() []forward {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fwd
	l.fwd, l.fwdAt = nil, nil
	return f
}

// publish sets the downstream side's snapshot.
func (l *relayLink) publish(s relaySnapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.snap = s
}

func (l *relayLink) snapshot() relaySnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap
}

// endDown says the downstream session is over, with its report.
func (l *relayLink) endDown(rep *Report) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.downDone = true
	if rep != nil {
		l.snap = snapshotOf(rep)
	}
	wake(l.upWake)
}

// holding reports whether the downstream session runs (its COMPLETE
// waits); false once it ended, or when there is none.
func (l *relayLink) holding() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess != nil && !l.downDone
}

// snapshotOf is a finished downstream session's last RELAY-STATUS.
func snapshotOf(r *Report) relaySnapshot {
	s := relaySnapshot{bytes: r.Bytes, packets: r.Packets, rounds: int64(r.Rounds)}
	for _, h := range r.Hosts {
		e := wire.RelayedHost{Host: h.ID, State: wire.RelayHostReceiving, Reason: h.Reason}
		switch h.State {
		case HostComplete:
			e.State = wire.RelayHostComplete
		case HostFailed:
			e.State = wire.RelayHostFailed
		case HostDropped, HostMissing, HostRefused:
			e.State = wire.RelayHostDropped
		}
		if ap, err := netip.ParseAddrPort(h.Addr); err == nil {
			e.Addr = ap
		}
		s.hosts = append(s.hosts, e)
	}
	return s
}
