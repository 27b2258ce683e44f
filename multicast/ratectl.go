package multicast

import "time"

// Rate adaptation tunables. The controller follows the slowest host's
// delivery rate (BBR-like, on the loss the hosts report for each probe
// interval): what a host received is what the sender sent in the interval
// times (1 - its loss). Random loss is told from a slower link by the
// loss floor: the least loss any recent interval saw, which random loss
// keeps up at every rate while a slower link's loss falls away whenever
// the rate drops below it (every cycle drains at 0.85); the estimate is
// what got through scaled back by the floor, so random loss of a few
// percent does not slow the session and a host behind a slower link
// shows that link's rate.
const (
	// startDiv: with SlowStart the first interval goes at the cap /
	// startDiv, then the rate doubles each interval while every host
	// keeps up: a 200 Mbit/s link under a 900 Mbit/s cap is found after
	// two intervals (112, 225), losing one interval's excess (~11%)
	// instead of flooding at the cap.
	startDiv = 8
	// startupExitLoss ends the doubling: a host losing this much (per
	// mille) more than the floor in an interval is behind a link slower
	// than the rate.
	startupExitLoss = 50
	// rateWindow is how many intervals the estimate remembers (their
	// best delivery, their least loss): 2 s at the 250 ms probe period,
	// one gain cycle, so one interval of cross traffic or a descheduled
	// receiver does not slow the session.
	rateWindow = 8
	// congestedLoss (per mille) in an interval not spent probing upward
	// means the estimate may be stale (a link got slower): it is reset to
	// what got through, the rate halved at most, and the startup's
	// doubling finds the path's rate again.
	congestedLoss = 200
	// minInterval is the shortest interval judged: a probe sooner after
	// the last one (the first, at the transfer's start) measures a
	// burst, not a rate.
	minInterval = probeEvery / 2
	// appLimitedShare: an interval that sent less than this share of its
	// pace was held back by the sender, not the path; unless the hosts
	// lost more than the floor, it neither lowers the estimate nor ramps
	// the startup.
	appLimitedShare = 0.8
	// minRateFloor bounds the rate below (bytes/s, 1 Mbit/s): a session
	// never stalls on a host that reports nothing got through.
	minRateFloor = 125_000
)

// gainCycle is the pacing gain per interval in cruise: one interval above
// the estimate finds capacity that appeared (or that random loss hid),
// the next below drains the queue it built, then six at the estimate.
var gainCycle = [...]float64{1.25, 0.85, 1, 1, 1, 1, 1, 1}

// rateCtl chooses the pacing rate (bytes/s) under a cap from the worst
// delivery the hosts report per probe interval. It never reads the clock.
type rateCtl struct {
	rateState
	sent  int64     // bytes sent since the interval began
	begun time.Time // when it began
	// pre is the state as the last interval closed: answers to its probe
	// arrive one by one, and each judges the interval afresh from pre with
	// the worst loss so far, so the verdict is the same in whatever order
	// they come.
	pre rateState
}

// sample is one judged interval: what got through to the worst host, and
// its loss.
type sample struct {
	got  float64 // bytes/s
	loss float64 // 0 to 1
	set  bool
}

// rateState is what judging an interval changes.
type rateState struct {
	cap     float64 // bytes/s: --rate
	rate    float64 // bytes/s: what the pacer gets now
	startup bool
	est     float64 // bytes/s: the bottleneck estimate (0 until known)
	window  [rateWindow]sample
	next    int // index into window
	cycle   int // index into gainCycle
	gain    float64
	// the interval being judged (the one the last probe closed)
	closedSent float64 // bytes/s actually sent in it
	closedPace float64 // bytes/s it was paced at
	closedGain float64
	closedUp   bool // it sent above what the hosts were known to take: its loss is no measure of the path's
}

// newRateCtl paces at the cap, or from cap/startDiv up with slowStart;
// capBits is the cap in bit/s (> 0).
func newRateCtl(capBits int64, slowStart bool, now time.Time) *rateCtl {
	c := &rateCtl{rateState: rateState{cap: float64(capBits) / 8, gain: 1}, begun: now}
	c.rate = c.cap
	if slowStart {
		c.startup, c.rate = true, max(min(c.cap, minRateFloor), c.cap/startDiv)
	} else {
		// the cap is the link's known speed until the hosts say otherwise:
		// it is remembered as a delivery seen, so an interval with some
		// loss while the sender could not keep its pace (the only kind
		// judged when the sender is the bottleneck) does not replace it
		// as the best delivery; only intervals at the pace age it out
		c.est = c.cap
		c.remember(c.cap, 0)
	}
	c.pre = c.rateState
	return c
}

// charge counts n bytes sent; a nil controller ignores it.
func (c *rateCtl) charge(n int) {
	if c != nil {
		c.sent += int64(n)
	}
}

// newInterval closes the interval that began at the last probe (its rate
// actually sent is what the next answers are judged against) and starts
// another. It returns the rate to pace at from now.
func (c *rateCtl) newInterval(now time.Time) float64 {
	dt := now.Sub(c.begun)
	if dt < minInterval {
		// too short to measure (the first probe, at the transfer's start):
		// nothing is judged, the interval goes on
		c.closedSent = 0
		c.pre = c.rateState
		return c.rate
	}
	c.closedSent, c.closedPace, c.closedGain = float64(c.sent)/dt.Seconds(), c.rate, c.gain
	c.closedUp = (c.gain > 1 || c.startup) && c.closedSent > 0
	c.sent, c.begun = 0, now
	if !c.startup && c.est > 0 {
		c.cycle = (c.cycle + 1) % len(gainCycle)
		c.gain = gainCycle[c.cycle]
		c.rate = c.clamp(c.est * c.gain)
	}
	c.pre = c.rateState
	return c.rate
}

// sentRate is what the interval that closed last sent, in bytes/s.
func (c *rateCtl) sentRate() float64 { return c.closedSent }

// clean reports whether the closed interval's loss measures the path, for
// the parity sized from it: not when it sent above what the hosts were
// known to take (probing upward, or ramping up), when loss is congestion.
func (c *rateCtl) clean() bool { return !c.closedUp }

// judge takes the worst loss (per mille) the hosts reported so far for
// the closed interval and returns the rate to pace at from now.
func (c *rateCtl) judge(worst uint16) float64 {
	c.rateState = c.pre
	if c.closedSent <= 0 {
		return c.rate
	}
	loss := float64(min(worst, 1000)) / 1000
	got := c.closedSent * (1 - loss)
	if c.appLimited() && loss-c.knownFloor() < startupExitLoss/1000.0 {
		// the sender, not the path, held the interval back (descheduled,
		// reading the pack, few chunks left): what got through says
		// nothing of what the path takes, unless the hosts lost more
		return c.rate
	}
	switch {
	case c.startup && loss-c.floor() < startupExitLoss/1000.0 && worst < congestedLoss:
		c.remember(got, loss)
		c.rate = c.clamp(c.rate * 2)
		return c.rate
	case c.startup:
		c.startup = false
	case worst >= congestedLoss && c.closedGain <= 1:
		// perhaps a slower path than remembered: forget what got through
		// before, not the random loss the path was known to have (this
		// interval's loss is congestion, no floor). One interval proves
		// little (a receiver descheduled for it, a burst of cross
		// traffic), so the rate falls by half at most and grows again as
		// at the start: a slower path ends that growth within an interval
		// or two, a passing fault costs about one interval.
		floor := min(c.knownFloor(), loss) // none known: take none
		c.window = [rateWindow]sample{}
		c.remember(got, floor)
		c.startup = true
		c.rate = c.clamp(max(got/(1-floor), c.est/2))
		c.est = c.rate
		return c.rate
	}
	c.remember(got, loss)
	c.est = c.estimate()
	c.rate = c.clamp(c.est * c.gain)
	return c.rate
}

// appLimited reports whether the closed interval sent well below its pace.
func (c *rateState) appLimited() bool { return c.closedSent < appLimitedShare*c.closedPace }

func (c *rateState) remember(got, loss float64) {
	c.window[c.next] = sample{got: got, loss: loss, set: true}
	c.next = (c.next + 1) % rateWindow
}

// floor is the least loss of the remembered intervals (1 when none).
func (c *rateState) floor() float64 {
	f := 1.0
	for _, s := range c.window {
		if s.set {
			f = min(f, s.loss)
		}
	}
	return f
}

// knownFloor is the floor, or no loss when no interval is remembered.
func (c *rateState) knownFloor() float64 {
	if f := c.floor(); f < 1 {
		return f
	}
	return 0
}

// estimate is the best delivery remembered, scaled back by the loss floor
// (what random loss takes at any rate).
func (c *rateState) estimate() float64 {
	best := 0.0
	for _, s := range c.window {
		best = max(best, s.got)
	}
	if f := c.floor(); f < 1 {
		best /= 1 - f
	}
	return best
}

func (c *rateState) clamp(r float64) float64 {
	return max(min(c.cap, minRateFloor), min(c.cap, r))
}
