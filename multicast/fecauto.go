package multicast

import (
	"time"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// AutoFEC, as SendOptions.FECOverhead, sizes proactive parity from the
// loss the hosts report, so a user who sets nothing gets close to the best
// hand-tuned figure.
const AutoFEC = -1

// Auto FEC tunables.
const (
	// autoFECFactor is the parity percent sent per percent of loss: the
	// figure tuned by hand for scripts/bench-transfer.sh (2.4 × the loss,
	// 12% parity at 5% loss), which leaves most blocks decodable after the
	// first pass, so few repair rounds follow.
	autoFECFactor = 2.4
	// maxAutoFEC caps auto parity: a host losing more is served by repair
	// rounds rather than every host paying its share.
	maxAutoFEC = 50
	// probeEvery is the loss probe period during the first pass: the first
	// answers arrive within a fifth of a second of the start, and each
	// probe costs every host one small NACK.
	probeEvery = 250 * time.Millisecond
	// probeRound numbers probes apart from repair rounds.
	probeRound = 1 << 31
)

// autoFEC tracks the loss hosts report and the parity each chunk got.
type autoFEC struct {
	pct  []uint8 // per chunk: the largest parity percent its blocks went with
	loss uint16  // per mille: the worst loss of the latest probe or round answered
	// before is the loss of the probe before the latest, once there was
	// one with answers: parity follows the lesser of the two, so one
	// interval's burst of loss (a receiver descheduled, a switch queue
	// overflowing once) does not size a quarter second of parity, while
	// loss that lasts two intervals does
	before    uint16
	hadBefore bool
	worst     uint16 // per mille: the worst loss any host reported in the session
	probes    uint32 // probes sent
	probeAt   time.Time
	fresh     bool     // loss is from the latest probe's answers
	samples   []uint16 // a quiet probe's answers so far
	quiet     bool     // the latest probe was quiet
}

// startRate begins the first pass's rate adaptation (a paced session).
func (s *sender) startRate(now time.Time) {
	if s.opts.Rate <= 0 {
		return
	}
	s.rate = newRateCtl(s.opts.Rate, s.opts.SlowStart, now)
	s.pacer.setRate(s.rate.rate)
}

// percent is the proactive parity to send now.
func (s *sender) fecPercent() int {
	if s.opts.FECOverhead != AutoFEC {
		return s.opts.FECOverhead
	}
	loss := s.fec.loss
	if s.fec.hadBefore {
		loss = min(loss, s.fec.before)
	}
	pct := int(float64(loss)*autoFECFactor/10 + 0.999)
	return min(maxAutoFEC, pct)
}

// parityFor is the proactive parity of a block of k data symbols at pct.
func parityFor(k, pct int) int { return min(wire.Shards(k)-k, (k*pct+99)/100) }

// probe queues a loss probe when one is due: during the first pass, with
// AutoFEC or a paced rate to adapt. Each probe closes a rate interval.
func (s *sender) probe(now time.Time) {
	if s.opts.FECOverhead != AutoFEC && s.rate == nil || s.phase != phaseSend || s.round != 0 || now.Before(s.fec.probeAt) {
		return
	}
	if s.rate != nil {
		s.pacer.setRate(s.rate.newInterval(now))
		s.log.Debug("multicast: rate", "probe", s.fec.probes, "worst_loss_permille", s.probeWorst, "closed_sent_bps", int64(s.rate.sentRate()*8),
			"estimate_bps", int64(s.rate.est*8), "startup", s.rate.startup, "gain", s.rate.gain, "pace_bps", s.pacer.bitsPerSec())
		s.probeWorst = 0
	}
	s.fec.probes++
	if s.fec.fresh { // the latest probe was answered: it becomes the one before
		s.fec.before, s.fec.hadBefore = s.fec.loss, true
	}
	s.fec.fresh, s.fec.samples, s.fbProbe = false, s.fec.samples[:0], 0
	quiet, hosts := s.quiet()
	s.fec.quiet = quiet
	s.queue = append(s.queue, s.encode(&wire.Status{Round: probeRound | s.fec.probes, Probe: true, Quiet: quiet, Hosts: hosts}))
	s.fec.probeAt = now.Add(probeEvery)
}

// heardLoss takes a host's answer to a probe: the latest probe's worst
// answer so far is the estimate, for the rate and for the parity. The
// parity takes no loss from an interval that sent above what the hosts
// were known to take: that loss is congestion, gone at the next rate.
func (s *sender) heardLoss(round uint32, loss uint16) {
	s.fec.worst = max(s.fec.worst, loss)
	if round != probeRound|s.fec.probes {
		return
	}
	if s.rate != nil {
		s.probeWorst = max(s.probeWorst, loss)
		s.pacer.setRate(s.rate.judge(s.probeWorst))
		if !s.rate.clean() {
			return
		}
	}
	if s.fec.quiet {
		s.quietLoss(loss)
		return
	}
	if !s.fec.fresh {
		s.fec.loss, s.fec.fresh = loss, true
		return
	}
	s.fec.loss = max(s.fec.loss, loss)
}
