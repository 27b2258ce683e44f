package control

import (
	"container/heap"
	"fmt"
	"time"
)

// replayCache remembers the nonces of accepted commands while they could
// still pass the time check, in bounded memory. Every nonce it forgets
// raises a floor: a command issued at or before the floor is refused as a
// possible replay. So nothing forgotten can be replayed, whether it was
// forgotten because it aged out, because the cache was full, or because
// the agent's clock later stepped back.
type replayCache struct {
	max   int
	floor int64 // Unix ms
	seen  map[[NonceLen]byte]struct{}
	order nonceHeap // oldest issue time first
}

type seenNonce struct {
	issued int64
	nonce  [NonceLen]byte
}

func newReplayCache(max int, floor int64) *replayCache {
	return &replayCache{max: max, floor: floor, seen: make(map[[NonceLen]byte]struct{})}
}

// check returns ErrReplay unless a command with this nonce and issue time
// may be new.
func (c *replayCache) check(nonce [NonceLen]byte, issued int64) error {
	if _, dup := c.seen[nonce]; dup {
		return fmt.Errorf("%w: nonce %x seen before", ErrReplay, nonce)
	}
	if issued <= c.floor {
		return fmt.Errorf("%w: issued %s, not after %s, so it cannot be told from a replay (nonce %x)",
			ErrReplay, stamp(issued), stamp(c.floor), nonce)
	}
	return nil
}

func stamp(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// add remembers a nonce, first forgetting those issued before oldest and,
// when full, the oldest ones.
func (c *replayCache) add(nonce [NonceLen]byte, issued, oldest int64) {
	for len(c.order) > 0 && (c.order[0].issued < oldest || len(c.order) >= c.max) {
		c.forget()
	}
	c.seen[nonce] = struct{}{}
	heap.Push(&c.order, seenNonce{issued, nonce})
}

func (c *replayCache) forget() {
	n := heap.Pop(&c.order).(seenNonce)
	delete(c.seen, n.nonce)
	c.floor = max(c.floor, n.issued)
}

type nonceHeap []seenNonce

func (h nonceHeap) Len() int           { return len(h) }
func (h nonceHeap) Less(i, j int) bool { return h[i].issued < h[j].issued }
func (h nonceHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nonceHeap) Push(x any)        { *h = append(*h, x.(seenNonce)) }
func (h *nonceHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}
