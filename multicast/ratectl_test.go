package multicast

import (
	"testing"
	"time"
)

// linkSim runs the controller against a path of capacity capBps (bytes/s)
// with random loss p for n intervals of 250 ms, the sender pacing exactly
// at the rate the controller gives; it returns the mean rate sent and
// the mean delivered over the last half.
func linkSim(c *rateCtl, capBps func(i int) float64, p float64, n int) (sent, got []float64) {
	now := time.Unix(1000, 0)
	rate := c.rate
	for i := range n {
		c.charge(int(rate * probeEvery.Seconds()))
		now = now.Add(probeEvery)
		delivered := min(rate, capBps(i)) * (1 - p)
		loss := uint16((1 - delivered/rate) * 1000)
		sent, got = append(sent, rate), append(got, delivered)
		c.newInterval(now)
		rate = c.judge(loss)
	}
	return sent, got
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func TestRateFindsSlowerLink(t *testing.T) {
	const mbit = 1e6 / 8
	for _, tc := range []struct {
		name string
		p    float64
	}{{"no loss", 0}, {"2% random loss", 0.02}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRateCtl(900e6, true, time.Unix(1000, 0))
			sent, got := linkSim(c, func(int) float64 { return 200 * mbit }, tc.p, 40)
			use := mean(got[8:]) / (200 * mbit * (1 - tc.p))
			over := mean(sent[8:]) / (200 * mbit)
			if use < 0.9 {
				t.Errorf("the 200 Mbit/s link is used at %.0f%% of what it carries, want ≥ 90%%", 100*use)
			}
			if over > 1.06 {
				t.Errorf("the sender sends %.0f%% of the link's rate on average, want ≤ 106%% (flooding)", 100*over)
			}
			if sent[0] > 900*mbit/startDiv {
				t.Errorf("the first interval went at %.0f Mbit/s, want the cap / %d", sent[0]/mbit, startDiv)
			}
		})
	}
}

func TestRateStaysAtCap(t *testing.T) {
	const mbit = 1e6 / 8
	c := newRateCtl(400e6, true, time.Unix(1000, 0))
	sent, _ := linkSim(c, func(int) float64 { return 10000 * mbit }, 0.02, 40)
	for i, r := range sent {
		if r > 400*mbit+1 {
			t.Fatalf("interval %d sent %.0f Mbit/s, above the 400 Mbit/s cap", i, r/mbit)
		}
	}
	if m := mean(sent[10:]); m < 0.95*400*mbit {
		t.Errorf("a path faster than the cap with 2%% random loss: %.0f Mbit/s on average, want ≥ 95%% of the cap", m/mbit)
	}
}

func TestRateFollowsSlowerPath(t *testing.T) {
	const mbit = 1e6 / 8
	c := newRateCtl(900e6, true, time.Unix(1000, 0))
	capAt := func(i int) float64 {
		if i < 20 {
			return 400 * mbit
		}
		return 100 * mbit // another flow takes most of the link
	}
	sent, _ := linkSim(c, capAt, 0, 40)
	for i := 23; i < 40; i++ {
		if sent[i] > 1.3*100*mbit {
			t.Fatalf("interval %d (3+ after the path slowed to 100 Mbit/s) sent %.0f Mbit/s", i, sent[i]/mbit)
		}
	}
	if m := mean(sent[25:]); m < 0.85*100*mbit {
		t.Errorf("after the path slowed: %.0f Mbit/s on average, want ≥ 85 of its 100", m/mbit)
	}
}

// A cap given as the link's speed is where the first pass starts; a link
// slower than it is found all the same.
func TestRateCapAboveLink(t *testing.T) {
	const mbit = 1e6 / 8
	c := newRateCtl(900e6, false, time.Unix(1000, 0))
	sent, _ := linkSim(c, func(int) float64 { return 200 * mbit }, 0.02, 40)
	if sent[0] != 900*mbit {
		t.Errorf("the first interval went at %.0f Mbit/s, want the 900 Mbit/s cap", sent[0]/mbit)
	}
	if over := mean(sent[4:]) / (200 * mbit); over > 1.06 || over < 0.9 {
		t.Errorf("from the fifth interval on the sender sends %.0f%% of the 200 Mbit/s link, want 90-106%%", 100*over)
	}
}

// Heavy random loss (15%, at every rate) is no slower link: the ramp-up
// does not stop at the first interval, and the rate reaches the cap.
func TestRateRandomLossIsNoLink(t *testing.T) {
	const mbit = 1e6 / 8
	c := newRateCtl(400e6, true, time.Unix(1000, 0))
	sent, _ := linkSim(c, func(int) float64 { return 10000 * mbit }, 0.15, 24)
	if m := mean(sent[8:]); m < 0.95*400*mbit {
		t.Errorf("15%% random loss on a fast path: %.0f Mbit/s on average after 2 s, want ≥ 95%% of the 400 Mbit/s cap", m/mbit)
	}
}

// Answers to one probe arrive one by one; the verdict is the same in any
// order and depends on the worst.
func TestRateJudgedAfresh(t *testing.T) {
	c := newRateCtl(800e6, false, time.Unix(1000, 0))
	c.charge(25_000_000) // 800 Mbit/s for 250 ms
	c.newInterval(time.Unix(1000, 250e6))
	c.judge(10)
	c.judge(300)
	after := c.judge(300) // the same worst again: no second step
	d := newRateCtl(800e6, false, time.Unix(1000, 0))
	d.charge(25_000_000)
	d.newInterval(time.Unix(1000, 250e6))
	if want := d.judge(300); after != want {
		t.Errorf("rate %.0f after answers 10, 300, 300‰; %.0f after 300‰ alone", after*8/1e6, want*8/1e6)
	}
}

// An interval the sender itself held back (it sent a tenth of its pace,
// the hosts lost nothing) says nothing of the path: the rate stays; a
// probe right after the transfer's start closes no interval.
func TestRateAppLimited(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newRateCtl(800e6, false, t0)
	c.charge(1000)
	if r := c.newInterval(t0.Add(time.Millisecond)); r != 100e6 || c.sentRate() != 0 {
		t.Fatalf("a probe 1 ms after the start: rate %.0f, closed %.0f B/s; want the cap and nothing closed", r, c.sentRate())
	}
	c.charge(2_500_000) // 80 Mbit/s for 250 ms under a pace of 800
	c.newInterval(t0.Add(251 * time.Millisecond))
	if c.judge(0); c.est != 100e6 {
		t.Errorf("after an interval held back by the sender: estimate %.0f Mbit/s, want the 800 it was", c.est*8/1e6)
	}
	if c.judge(300); c.est >= 100e6 {
		t.Errorf("the same interval with 30%% loss: estimate %.0f Mbit/s, want lower", c.est*8/1e6)
	}
}

// One interval in which one host reports near-total loss (a receiver
// descheduled for it) halves the rate at most, and the rate is back
// within a few intervals: the next 10 s average well above half the path.
func TestRateOneBadInterval(t *testing.T) {
	const mbit = 1e6 / 8
	for bad := 16; bad < 24; bad++ { // every step of the gain cycle
		now := time.Unix(1000, 0)
		c := newRateCtl(900e6, false, now)
		rate := c.rate
		var sent []float64
		for i := range 240 { // 60 s
			c.charge(int(rate * probeEvery.Seconds()))
			now = now.Add(probeEvery)
			loss := uint16(0)
			if i == bad {
				loss = 999
			}
			c.newInterval(now)
			rate = c.judge(loss)
			sent = append(sent, rate)
		}
		if sent[bad] < 0.5*900*mbit {
			t.Errorf("interval %d: one interval of 99.9%% loss: the rate fell to %.1f Mbit/s, want at most a halving of 900", bad, sent[bad]/mbit)
		}
		if m := mean(sent[bad+1 : bad+41]); m < 0.8*900*mbit {
			t.Errorf("interval %d: one interval of 99.9%% loss at one host: the next 10 s average %.1f Mbit/s of the 900 Mbit/s the path takes", bad, m/mbit)
		}
	}
}

// A sender that cannot keep its pace (the CPU, not the path, bounds it:
// ~400 of 900 Mbit/s) and an interval with 6% loss: the loss is below
// congestion, so the rate stays at the cap the sender was told, not at
// what got through in that one interval (it fell to ~200 Mbit/s for the
// rest of a full deploy before).
func TestRateAppLimitedLoss(t *testing.T) {
	const mbit = 1e6 / 8
	now := time.Unix(1000, 0)
	c := newRateCtl(900e6, false, now)
	rate := c.rate
	for i := range 40 {
		c.charge(int(400 * mbit * probeEvery.Seconds()))
		now = now.Add(probeEvery)
		c.newInterval(now)
		loss := uint16(0)
		if i == 20 {
			loss = 60
		}
		rate = c.judge(loss)
		if rate < 0.8*900*mbit {
			t.Fatalf("interval %d (loss %d‰, the sender at 400 Mbit/s of its 900): paced at %.0f Mbit/s", i, loss, rate/mbit)
		}
	}
}
