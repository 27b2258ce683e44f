package multicast

import "time"

// Pacing tunables.
const (
	// pacerBurst is how many bytes may leave back to back: ~45 full
	// packets, enough to amortise a timer wake-up at 1 Gbit/s (~0.5 ms)
	// without overrunning a switch port buffer.
	pacerBurst = 64 << 10
	// pacerFloorDiv sets the floor: backoff never goes below rate/8, so a
	// few lossy hosts slow the session but cannot stall it.
	pacerFloorDiv = 8
	// minFloor is an absolute floor in bytes/s (1 Mbit/s).
	minFloor = 125_000
	// heavyLoss is the reported loss (per mille) taken as congestion: random
	// loss of a few percent is repaired by parity, not by slowing down.
	heavyLoss = 200
	// lightLoss is the loss under which the rate climbs back.
	lightLoss = 20
	// backoffFactor and recoverFactor are the multiplicative steps.
	backoffFactor = 0.75
	recoverFactor = 1.1
)

// pacer is a token bucket in bytes. It never reads the clock: callers pass
// now, so it is tested without sleeping.
type pacer struct {
	rate, max, floor float64 // bytes per second
	tokens           float64 // may go negative: debt paid before the next send
	last             time.Time
}

// newPacer paces at bitsPerSec; 0 means unpaced.
func newPacer(bitsPerSec int64, now time.Time) *pacer {
	r := float64(bitsPerSec) / 8
	return &pacer{rate: r, max: r, floor: max(r/pacerFloorDiv, min(r, minFloor)), tokens: pacerBurst, last: now}
}

func (p *pacer) refill(now time.Time) {
	if dt := now.Sub(p.last).Seconds(); dt > 0 {
		p.tokens = min(pacerBurst, p.tokens+dt*p.rate)
		p.last = now
	}
}

// delay returns how long to wait before the next packet may be sent.
func (p *pacer) delay(now time.Time) time.Duration {
	if p.rate <= 0 {
		return 0
	}
	p.refill(now)
	if p.tokens >= 0 {
		return 0
	}
	return time.Duration(-p.tokens / p.rate * float64(time.Second))
}

// sent charges n bytes sent at now.
func (p *pacer) sent(now time.Time, n int) {
	if p.rate <= 0 {
		return
	}
	p.refill(now)
	p.tokens -= float64(n)
}

// reportLoss adapts the rate to the worst loss (per mille) hosts reported
// in a round: back off on heavy loss, never below the floor; recover when
// loss is light.
func (p *pacer) reportLoss(permille int) {
	switch {
	case p.rate <= 0:
	case permille >= heavyLoss:
		p.rate = max(p.floor, p.rate*backoffFactor)
	case permille < lightLoss:
		p.rate = min(p.max, p.rate*recoverFactor)
	}
}

// bitsPerSec returns the current rate.
func (p *pacer) bitsPerSec() int64 { return int64(p.rate * 8) }
