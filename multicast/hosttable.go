package multicast

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"iter"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// host is the sender's view of one receiver.
type host struct {
	id          string
	addr        net.Addr
	member      bool // closed group: listed; open group: registered
	registered  bool
	have        []wire.Range // chunks it held when it registered (ascending, disjoint)
	hasBase     bool         // it holds the announced base image
	complete    bool
	staged      bool          // its COMPLETE said it staged the image
	stageErr    string        // its COMPLETE said staging failed, and why
	doneAt      time.Duration // when its COMPLETE arrived, from the start
	failed      string        // the host's own reason for giving up
	dropped     string        // why the sender gave up on it
	asked       time.Time     // first STATUS it has not answered; zero when none pending
	parts       map[uint8]bool
	partsWant   uint8
	round       uint32            // round its parts belong to
	key         ed25519.PublicKey // its host key, once a signed packet proved it
	keyErr      string            // why its key was refused (not pinned, changed)
	keys        *pairKeys         // MAC keys of its latest REGISTER
	eph         [32]byte          // the X25519 key they came from
	regAt       int64             // signing time of that REGISTER
	refused     *Refusal          // its latest REFUSE
	need        int64             // what its latest round's NACKs asked for
	best        int64             // the least it ever asked for; -1: not yet
	stalled     int               // rounds since it last asked for less than best
	progressAt  time.Time         // when it last did
	needed      int64             // image bytes of the chunks it lacked when the transfer began
	stageTime   time.Duration     // how long its staging took, as its COMPLETE says
	stream      *stream           // its unicast connection, once it registered over one
	everStream  bool              // it took the unicast path
	streamBytes int64             // bytes written to its closed connections
	uniTold     bool              // it was sent a unicast ANNOUNCE (logged once)
	brokeAt     time.Time         // when its unicast connection broke before it completed
	feedback    int64             // NACK packets taken from it by UDP
	via         *host             // the relay it registered through (relay.go); nil: none
	viaAt       time.Time         // when it did
	viaTold     time.Time         // when it was last sent the unicast ANNOUNCE, relayed
	ownAddr     netip.AddrPort    // a relayed host's own address, as its relay reports it
	relay       *relayState       // its grant to relay the session, once issued
}

// counts reports whether h takes part in the group's decisions (which
// chunks every host holds, whether all hold the delta base, who is still
// expected): a member still in the session. A guest (a host not listed in
// a closed group, or a forged REGISTER) decides nothing.
func (h *host) counts() bool { return h.member && h.active() && h.onGroup() }

// onGroup reports whether h receives the sender's own multicast: neither
// over a unicast connection nor through a relay.
func (h *host) onGroup() bool { return h.stream == nil && h.via == nil }

func (h *host) active() bool { return h.registered && !h.complete && h.failed == "" && h.dropped == "" }

// decided reports whether a member's registration is settled: it
// registered, completed, or refused the session (or its key was refused).
// A busy host is not settled: it may register once its other session ends.
func (h *host) decided() bool {
	return h.registered || h.complete || h.refused != nil && h.refused.Code != RefuseBusy || h.keyErr != ""
}

func newHost(id string, member bool) *host { return &host{id: id, member: member, best: -1} }

// maxHosts bounds the sender's host table against a flood of made-up ids.
const maxHosts = 1<<16 - 1 // ANNOUNCE counts hosts in a u16

// maxGuests bounds the hosts that are not members the sender tracks (a
// closed group's strangers, refused keys), against a flood of made-up ids.
const maxGuests = 256

// hostTable is the sender's hosts by id: the closed group's members from
// the start, and every host whose signed packet the sender took since,
// bounded by maxHosts (and maxGuests for hosts that are not members). It
// answers the questions the session asks of the group as a whole.
type hostTable struct {
	byID   map[string]*host
	list   []string // the closed group's members, in order, for ANNOUNCE pages
	page   int      // the next ANNOUNCE page
	guests int      // hosts tracked that are not members
}

func newHostTable(members []string) *hostTable {
	t := &hostTable{byID: map[string]*host{}, list: slices.Clone(members)}
	for _, id := range members {
		t.byID[id] = newHost(id, true)
	}
	return t
}

// get returns the host of id, or nil.
func (t *hostTable) get(id string) *host { return t.byID[id] }

// all yields every host, in no order.
func (t *hostTable) all() iter.Seq[*host] { return maps.Values(t.byID) }

// admit adds a host the table does not hold yet; nil when the table is
// full (maxHosts, or maxGuests for one that is not a member).
func (t *hostTable) admit(id string, member bool) *host {
	if len(t.byID) >= maxHosts || !member && t.guests >= maxGuests {
		return nil
	}
	h := newHost(id, member)
	t.byID[id] = h
	if !member {
		t.guests++
	}
	return h
}

// nextPage returns the next page of the closed group's list for an
// ANNOUNCE (first index, ids), cycling; nothing for an open group.
func (t *hostTable) nextPage() (int, []string) {
	n := len(t.list)
	if n == 0 {
		return 0, nil
	}
	first := t.page * wire.MaxAnnounceHosts
	t.page = (t.page + 1) % ((n + wire.MaxAnnounceHosts - 1) / wire.MaxAnnounceHosts)
	return first, t.list[first:min(n, first+wire.MaxAnnounceHosts)]
}

// registration counts the members, those registered (or complete: a host
// that held every chunk may complete first) and those decided.
func (t *hostTable) registration() (members, reg, decided int) {
	for h := range t.all() {
		if h.member {
			members++
			if h.registered || h.complete {
				reg++
			}
			if h.decided() {
				decided++
			}
		}
	}
	return members, reg, decided
}

// refusals lists the hosts that refused, and why, sorted.
func (t *hostTable) refusals() string {
	var out []string
	for h := range t.all() {
		switch {
		case h.registered || h.complete:
		case h.keyErr != "":
			out = append(out, h.keyErr)
		case h.refused != nil:
			out = append(out, fmt.Sprintf("%s: %s: %s", h.id, h.refused.Code, hostkey.Printable(h.refused.Detail)))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// closeRegistration marks the members that never registered as dropped.
func (t *hostTable) closeRegistration() {
	for h := range t.all() {
		if h.member && !h.decided() {
			h.dropped = "never registered"
		}
	}
}

// allHoldBase reports whether every registered host still expected to
// finish holds the base, and there is one such host: one host lacking it
// means plain chunks for the whole group.
func (t *hostTable) allHoldBase() bool {
	n := 0
	for h := range t.all() {
		if h.counts() {
			if !h.hasBase {
				return false
			}
			n++
		}
	}
	return n > 0
}

// live counts members still expected to finish.
func (t *hostTable) live() int {
	n := 0
	for h := range t.all() {
		if h.member && h.active() {
			n++
		}
	}
	return n
}

// mcLive counts hosts still receiving by the sender's multicast: the
// repair rounds are theirs.
func (t *hostTable) mcLive() int {
	n := 0
	for h := range t.all() {
		if h.active() && h.onGroup() {
			n++
		}
	}
	return n
}

// redialing reports whether a host whose unicast connection broke may
// still dial again (its agent retries): the session waits timeout for it.
func (t *hostTable) redialing(now time.Time, timeout time.Duration) bool {
	for h := range t.all() {
		if h.dropped != "" && !h.brokeAt.IsZero() && now.Sub(h.brokeAt) < timeout {
			return true
		}
	}
	return false
}

// unfinished reports whether a host registered and neither completed nor
// gave up: it may still be listening when the session ends.
func (t *hostTable) unfinished() bool {
	for h := range t.all() {
		if h.registered && !h.complete && h.failed == "" {
			return true
		}
	}
	return false
}

// dropSilent gives up on multicast hosts that have left STATUS unanswered
// longer than timeout, and returns them.
func (t *hostTable) dropSilent(now time.Time, timeout time.Duration) []*host {
	var out []*host
	for h := range t.all() {
		if h.active() && h.onGroup() && !h.asked.IsZero() && now.Sub(h.asked) > timeout {
			h.dropped = fmt.Sprintf("silent for %v (no answer to status requests)", now.Sub(h.asked).Round(time.Millisecond))
			out = append(out, h)
		}
	}
	return out
}

// ask marks a STATUS sent to every multicast host not already asked.
func (t *hostTable) ask(now time.Time) {
	for h := range t.all() {
		if h.active() && h.onGroup() && h.asked.IsZero() {
			h.asked = now
		}
	}
}

// answered reports whether every multicast host still receiving sent its
// whole answer to round.
func (t *hostTable) answered(round uint32) bool {
	for h := range t.all() {
		if h.active() && h.onGroup() && (h.round != round || len(h.parts) < int(h.partsWant) || h.partsWant == 0) {
			return false
		}
	}
	return true
}

// checkStalls drops hosts whose NACKs for round stopped getting smaller
// (MaxStallRounds and stallTime), and returns them.
func (t *hostTable) checkStalls(now time.Time, round uint32) []*host {
	var out []*host
	for h := range t.all() {
		if !h.active() || h.round != round {
			continue
		}
		switch {
		case h.best < 0 || h.need < h.best || h.need == 0:
			h.best, h.stalled, h.progressAt = h.need, 0, now
		default:
			h.stalled++
		}
		if h.stalled >= MaxStallRounds && now.Sub(h.progressAt) >= stallTime {
			h.dropped = fmt.Sprintf("no repair progress in %d rounds and %v (still asking for %d symbols)", h.stalled, now.Sub(h.progressAt).Round(time.Second), h.need)
			out = append(out, h)
		}
	}
	return out
}

// members counts the members, those registered (or complete) and those
// complete, for SendProgress.
func (t *hostTable) members() (hosts, registered, complete int) {
	for h := range t.all() {
		if h.member {
			hosts++
			if h.registered || h.complete {
				registered++
			}
			if h.complete {
				complete++
			}
		}
	}
	return hosts, registered, complete
}

// slowest picks the members furthest from done, for the progress display:
// firstPass is how much of the first pass is queued, totalSym its data
// symbols.
func (t *hostTable) slowest(firstPass float64, totalSym int64) []HostProgress {
	var out []HostProgress
	for h := range t.all() {
		if !h.member || h.complete || h.keyErr != "" || h.refused != nil && h.refused.Code != RefuseBusy {
			continue
		}
		hp := HostProgress{ID: h.id, Phase: "registering", Needed: h.needed}
		switch {
		case h.failed != "" || h.dropped != "":
			hp.Phase = "dropped"
		case h.registered:
			hp.Phase, hp.Done = "receiving", firstPass
			if h.best >= 0 && totalSym > 0 {
				hp.Done = min(firstPass, max(0, 1-float64(h.need)/float64(totalSym)))
			}
		}
		out = append(out, hp)
	}
	slices.SortFunc(out, func(a, b HostProgress) int {
		return cmp.Or(cmp.Compare(a.Done, b.Done), strings.Compare(a.ID, b.ID))
	})
	return out[:min(len(out), SlowestHosts)]
}

// recordNeeds records, for each registered host, the image bytes of the
// chunks of m it lacked when the transfer began (what crossed the wire
// for it).
func (t *hostTable) recordNeeds(m *image.Manifest) {
	var total int64
	for i, c := range m.Chunks {
		if !c.Zero {
			_, n := m.ChunkRange(i)
			total += int64(n)
		}
	}
	for h := range t.all() {
		if !h.registered {
			continue
		}
		h.needed = total
		for _, rg := range h.have {
			for c := rg.First; c < rg.First+rg.Count && int(c) < len(m.Chunks); c++ {
				if !m.Chunks[c].Zero {
					_, n := m.ChunkRange(int(c))
					h.needed -= int64(n)
				}
			}
		}
	}
}

// lacking marks, of n chunks, those that some registered host still
// needs: it counts each chunk's holders over the hosts' held ranges
// (ascending and disjoint, so in work bounded by hosts × ranges + chunks)
// and keeps those not held by all. A host that already completed needs
// nothing.
func (t *hostTable) lacking(n uint64) []bool {
	holders := make([]int32, n+1) // a difference array: +1 at a range's start, -1 past its end
	hosts := int32(0)
	for h := range t.all() {
		if !h.counts() {
			continue
		}
		hosts++
		for _, rg := range h.have {
			first := min(uint64(rg.First), n)
			end := min(first+uint64(rg.Count), n)
			holders[first]++
			holders[end]--
		}
	}
	lack := make([]bool, n)
	sum := int32(0)
	for i := range lack {
		sum += holders[i]
		lack[i] = sum < hosts
	}
	return lack
}

// reports lists every host and how it ended, by id.
func (t *hostTable) reports() []HostReport {
	var out []HostReport
	for h := range t.all() {
		out = append(out, h.report())
	}
	slices.SortFunc(out, func(a, b HostReport) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// report says how h ended.
func (h *host) report() HostReport {
	hr := HostReport{ID: h.id, Member: h.member, Needed: h.needed, Path: PathMulticast, Feedback: h.feedback}
	if h.addr != nil {
		hr.Addr = h.addr.String()
	}
	switch {
	case h.via != nil: // its own address, as its relay reports it
		hr.Path, hr.Via, hr.Addr = PathRelay, h.via.id, ""
		if h.ownAddr.IsValid() {
			hr.Addr = h.ownAddr.String()
		}
	case h.everStream:
		hr.Path, hr.UnicastBytes = PathUnicast, h.streamBytes
		if h.stream != nil {
			hr.UnicastBytes += h.stream.bytes.Load()
		}
	}
	switch {
	case h.complete:
		hr.State, hr.Staged, hr.StageError, hr.Done = HostComplete, h.staged, hostkey.Printable(h.stageErr), h.doneAt
		hr.StageTime = h.stageTime
	case h.failed != "":
		hr.State, hr.Reason = HostFailed, hostkey.Printable(h.failed)
	case h.keyErr != "" && !h.registered:
		hr.State, hr.Reason, hr.Cause = HostRefused, h.keyErr, "host-key"
	case h.refused != nil && !h.registered:
		hr.State, hr.Reason, hr.Cause = HostRefused, hostkey.Printable(h.refused.Detail), h.refused.Code.String()
	case !h.registered:
		hr.State, hr.Reason = HostMissing, cmp.Or(h.dropped, "never registered")
	default:
		hr.State, hr.Reason = HostDropped, cmp.Or(h.dropped, "session ended before it completed")
	}
	return hr
}
