package multicast

import "time"

// Pacing tunables.
const (
	// The burst bounds how many bytes may leave back to back: 10 ms at the
	// rate (burstTime), at least minBurst (~45 full packets, a timer
	// wake-up at 1 Gbit/s) and at most maxBurst (a switch port buffer).
	// The 10 ms make up for a sender descheduled that long on a loaded
	// host (measured: 8 receivers and the sender on 2 cores, 200 Mbit/s,
	// 5% loss: 64 KiB flat took 5.8 s, 10 ms of rate 5.1 s).
	burstTime = 10 * time.Millisecond
	minBurst  = 64 << 10
	maxBurst  = 256 << 10
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
	rate, max float64 // bytes per second; max is what recovery climbs back to
	burst     float64 // bytes
	tokens    float64 // may go negative: debt paid before the next send
	last      time.Time
}

// newPacer paces at bitsPerSec; 0 means unpaced.
func newPacer(bitsPerSec int64, now time.Time) *pacer {
	r := float64(bitsPerSec) / 8
	burst := min(maxBurst, max(minBurst, r*burstTime.Seconds()))
	return &pacer{rate: r, max: r, burst: burst, tokens: burst, last: now}
}

func (p *pacer) refill(now time.Time) {
	if dt := now.Sub(p.last).Seconds(); dt > 0 {
		p.tokens = min(p.burst, p.tokens+dt*p.rate)
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
		p.rate = max(p.floor(), p.rate*backoffFactor)
	case permille < lightLoss:
		p.rate = min(p.max, p.rate*recoverFactor)
	}
}

// setRate paces at r bytes/s from now on (r > 0), keeping the burst, and
// makes r the ceiling the repair rounds' recovery climbs back to (and so
// the base of their backoff's floor).
func (p *pacer) setRate(r float64) {
	if p.rate > 0 {
		p.rate, p.max = r, r
	}
}

// floor is the lowest rate a backoff goes to: max/8, and not under
// minFloor unless max itself is (a floor above max would make a backoff
// raise the rate).
func (p *pacer) floor() float64 { return max(p.max/pacerFloorDiv, min(p.max, minFloor)) }

// bitsPerSec returns the current rate.
func (p *pacer) bitsPerSec() int64 { return int64(p.rate * 8) }
