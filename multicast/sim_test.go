package multicast

import (
	"math/rand/v2"
	"testing"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// simulateRepair runs the repair logic — NACK counts, per-round max
// aggregation, fresh parity from the scheduler — for hosts receivers that
// each lose every packet (data, repair, STATUS and NACK alike)
// independently with probability loss. No sockets, no clock. It returns
// the repair symbols sent as a share of the data symbols, and the rounds.
func simulateRepair(hosts, blocks, k int, loss float64, seed uint64) (overhead float64, rounds int) {
	r := rand.New(rand.NewPCG(seed, seed))
	lost := func() bool { return r.Float64() < loss }
	// need[h][b]: symbols host h still lacks to decode block b.
	need := make([][]uint8, hosts)
	for h := range need {
		need[h] = make([]uint8, blocks)
		for b := range blocks {
			for range k {
				if lost() {
					need[h][b]++
				}
			}
		}
	}
	var sched scheduler
	info := func(uint32, uint16) (int, int, bool) { return k, k, true }
	repair := 0
	for rounds = 1; rounds < 100; rounds++ {
		agg := newRoundAgg(uint32(rounds), uint32(blocks))
		pending := false
		for h := range need {
			for _, n := range simNacks(need[h], uint32(rounds)) {
				pending = true
				statusArrived, nackArrived := !lost(), !lost() // two independent losses
				if statusArrived && nackArrived {
					agg.add(n)
				}
			}
		}
		if !pending {
			break
		}
		for _, j := range sched.plan(agg, info) {
			for range j.to - j.from {
				repair++
				for h := range need {
					if need[h][j.chunk] > 0 && !lost() {
						need[h][j.chunk]--
					}
				}
			}
		}
	}
	return float64(repair) / float64(blocks*k), rounds - 1
}

// simNacks packs one host's needs the way a receiver does: one block per
// chunk here, chunk index = block index.
func simNacks(need []uint8, round uint32) []*wire.Nack {
	var out []*wire.Nack
	var cur *wire.Nack
	for b, n := range need {
		if n == 0 {
			continue
		}
		if cur == nil || len(cur.Blocks) == wire.MaxNackBlocks {
			cur = &wire.Nack{Host: "h", Round: round, Parts: 1}
			out = append(out, cur)
		}
		cur.Blocks = append(cur.Blocks, wire.BlockNeed{Chunk: uint32(b), Missing: uint16(n)})
	}
	return out
}

// TestRepairSimulation prints the repair overhead for the fleet the design
// targets (2,000 hosts, 1% independent loss, 64-symbol blocks; goal ≤10%)
// and asserts that every host completes within a few rounds.
func TestRepairSimulation(t *testing.T) {
	hosts, blocks := 2000, 100
	if testing.Short() {
		hosts = 200
	}
	overhead, rounds := simulateRepair(hosts, blocks, DefaultBlockSymbols, 0.01, 1)
	t.Logf("%d hosts, 1%% loss, %d blocks of %d: repair overhead %.1f%% of the payload in %d rounds",
		hosts, blocks, DefaultBlockSymbols, 100*overhead, rounds)
	if rounds > 10 {
		t.Errorf("hosts still incomplete after %d rounds", rounds)
	}
}

func BenchmarkRepairSimulation(b *testing.B) {
	for b.Loop() {
		overhead, rounds := simulateRepair(2000, 50, DefaultBlockSymbols, 0.01, 2)
		b.ReportMetric(100*overhead, "repair-%")
		b.ReportMetric(float64(rounds), "rounds")
	}
}
