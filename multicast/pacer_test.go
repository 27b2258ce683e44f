package multicast

import (
	"testing"
	"time"
)

func TestPacerRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(8_000_000, t0) // 1 MB/s
	now, sent := t0, 0
	// Send 1,000-byte packets whenever allowed, for one simulated second.
	for now.Before(t0.Add(time.Second)) {
		if d := p.delay(now); d > 0 {
			now = now.Add(d)
			continue
		}
		p.sent(now, 1000)
		sent += 1000
	}
	// One second at 1 MB/s plus the initial burst, give or take a packet.
	want := 1_000_000 + minBurst // 10 ms of 1 MB/s is under the minimum burst
	if sent < want-2000 || sent > want+2000 {
		t.Errorf("sent %d bytes in 1s at 1 MB/s, want ~%d", sent, want)
	}
}

func TestPacerDelay(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(8_000_000, t0)
	p.sent(t0, minBurst+10_000) // 10 kB of debt at 1 MB/s: 10 ms
	if d := p.delay(t0); d != 10*time.Millisecond {
		t.Errorf("delay %v, want 10ms", d)
	}
	if d := p.delay(t0.Add(10 * time.Millisecond)); d != 0 {
		t.Errorf("after waiting: delay %v, want 0", d)
	}
}

func TestPacerBurstCap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(8_000_000, t0)
	p.delay(t0.Add(time.Hour)) // idle: tokens must not pile up past the burst
	if p.tokens != minBurst {
		t.Errorf("tokens %v after idling, want the burst %d", p.tokens, minBurst)
	}
	// the burst is 10 ms of the rate, within [minBurst, maxBurst]
	for _, tc := range []struct {
		bits int64
		want float64
	}{{8_000_000, minBurst}, {200_000_000, 250_000}, {10_000_000_000, maxBurst}} {
		if b := newPacer(tc.bits, t0).burst; b != tc.want {
			t.Errorf("burst at %d bit/s = %v, want %v", tc.bits, b, tc.want)
		}
	}
}

func TestPacerBackoffFloor(t *testing.T) {
	p := newPacer(800_000_000, time.Unix(0, 0))
	for range 50 {
		p.reportLoss(500)
	}
	if got, want := p.bitsPerSec(), int64(100_000_000); got != want {
		t.Errorf("after heavy loss: %d bit/s, want the floor %d", got, want)
	}
	p.reportLoss(50) // moderate loss: hold
	if got := p.bitsPerSec(); got != 100_000_000 {
		t.Errorf("moderate loss changed the rate to %d", got)
	}
	for range 100 {
		p.reportLoss(0)
	}
	if got := p.bitsPerSec(); got != 800_000_000 {
		t.Errorf("after recovery: %d bit/s, want the configured 800000000", got)
	}
}

func TestPacerUnpaced(t *testing.T) {
	p := newPacer(0, time.Unix(0, 0))
	p.sent(time.Unix(0, 0), 1<<30)
	if d := p.delay(time.Unix(0, 0)); d != 0 {
		t.Errorf("unpaced delay %v, want 0", d)
	}
}

// The controller hands the repair rounds its rate through setRate; a
// repair round with heavy loss then backs off below that rate, never up
// to the floor of the cap it started at.
func TestPacerBackoffBelowSetRate(t *testing.T) {
	p := newPacer(900e6, time.Unix(1000, 0))
	p.setRate(50e6 / 8) // the controller found a 50 Mbit/s path
	p.reportLoss(500)   // a repair round with 50% loss
	if got := p.bitsPerSec(); got >= 50e6 || got < 50e6/pacerFloorDiv {
		t.Errorf("paced at 50 Mbit/s, a round with 50%% loss: backoff moves the rate to %d bit/s, want below 50 Mbit/s and not under its eighth", got)
	}
}
