package multicast

import (
	"fmt"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// wireOverhead is charged to the pacer per datagram on top of its payload:
// IPv4 (20) + UDP (8) + Ethernet framing (38), so --rate is link rate.
const wireOverhead = 66

// flush sends up to sendBatch packets the pacer allows now, refilling the
// queue from the job list as it drains.
func (s *sender) flush(now time.Time) error {
	var batch [][]byte
	for len(batch) < sendBatch && s.err == nil {
		if len(s.queue) == 0 && !s.refill(now) {
			break
		}
		if len(s.queue) == 0 || s.pacer.delay(now) > 0 {
			break
		}
		b := s.queue[0]
		s.queue = s.queue[1:]
		s.pacer.sent(now, len(b)+wireOverhead)
		s.rate.charge(len(b) + wireOverhead)
		batch = append(batch, b)
	}
	if s.err != nil {
		return s.err
	}
	return s.write(batch)
}

// refill expands the next job into packets, or starts a status round when
// the jobs are done. It reports whether it queued anything.
func (s *sender) refill(now time.Time) bool {
	s.gated = false
	if s.phase != phaseSend {
		return false
	}
	if len(s.jobs) == 0 && s.hosts.mcLive() == 0 && s.uni != nil && len(s.uni.live) > 0 {
		s.phase, s.deadline = phaseIdle, now.Add(time.Hour) // the rest is the streams'
		return false
	}
	if len(s.jobs) == 0 {
		s.startRound(now)
		return true
	}
	if s.opts.down != nil {
		ready, err := s.opts.down.ready(s.jobs)
		if err != nil {
			s.err = err
			return false
		}
		if !ready {
			s.gated = true // the link wakes the loop when the frame arrives
			return false
		}
	}
	j := s.jobs[0]
	s.jobs = s.jobs[1:]
	s.src.readAhead(s.jobs)
	if err := s.expand(j); err != nil {
		s.err = err
		return false
	}
	return true
}

// expand queues the DATA or REPAIR packets of one job.
func (s *sender) expand(j repairJob) error {
	if j.whole && s.round > 0 && s.src.isDelta(j.chunk) {
		s.src.forcePlain(j.chunk) // asked for whole again: a host cannot use the delta
	}
	e, err := s.chunk(j)
	if err != nil {
		return err
	}
	data := e.data
	l := newLayout(len(data), s.opts.SymbolSize, s.opts.BlockSymbols)
	if !j.whole {
		return s.queueParity(j.chunk, e, l, j.block, j.from, j.to)
	}
	if s.round == 0 {
		s.stats.PayloadBytes += int64(len(data))
		if e.delta {
			s.stats.DeltaChunks++
		}
		_, n := s.opts.Manifest.ChunkRange(int(j.chunk))
		s.prog.DataQueued += int64(n)
	}
	if !s.sent.has(j.chunk) {
		s.sent.addRange(j.chunk, j.chunk+1)
		s.stats.ChunksSent++
	}
	pct := s.fecPercent()
	s.fec.pct[j.chunk] = max(s.fec.pct[j.chunk], uint8(pct))
	for b := range l.blocks {
		shards := symbols(data, l, b, s.opts.SymbolSize)
		for i, sh := range shards {
			s.queueSymbol(&wire.Symbol{Chunk: j.chunk, Compressed: uint32(len(data)), Block: uint16(b), Index: uint16(i), Delta: e.delta, Payload: sh})
		}
		if p := parityFor(len(shards), pct); p > 0 {
			s.stats.Proactive += int64(p)
			if err := s.queueParity(j.chunk, e, l, uint16(b), len(shards), len(shards)+p); err != nil {
				return err
			}
		}
	}
	return nil
}

// chunk returns a job's compressed chunk, from the pack (or the cache).
func (s *sender) chunk(j repairJob) (encoded, error) { return s.src.chunk(j.chunk) }

func (s *sender) queueParity(chunk uint32, e encoded, l layout, block uint16, from, to int) error {
	if int(block) >= l.blocks {
		return fmt.Errorf("multicast: chunk %d has no block %d", chunk, block)
	}
	data := e.data
	par, err := s.coder.parity(symbols(data, l, int(block), s.opts.SymbolSize), from, to)
	if err != nil {
		return fmt.Errorf("multicast: chunk %d block %d: %w", chunk, block, err)
	}
	for i, sh := range par {
		s.queueSymbol(&wire.Symbol{Repair: true, Chunk: chunk, Compressed: uint32(len(data)), Block: block, Index: uint16(from + i), Delta: e.delta, Payload: sh})
	}
	return nil
}

func (s *sender) queueSymbol(sym *wire.Symbol) {
	if sym.Repair {
		s.stats.RepairPackets++
	} else {
		s.stats.DataPackets++
	}
	s.queue = append(s.queue, s.encode(sym))
}

// write sends a batch to the group, in one system call where the conn
// supports it.
func (s *sender) write(batch [][]byte) error {
	if len(batch) == 0 {
		return nil
	}
	for _, b := range batch {
		s.stats.Packets++
		s.stats.Bytes += int64(len(b))
	}
	if bw, ok := s.conn.(batchWriter); ok {
		return s.writeBatch(bw, batch)
	}
	for _, b := range batch {
		if _, err := s.conn.WriteTo(b, s.opts.Group); err != nil {
			return fmt.Errorf("multicast: send to %v: %w", s.opts.Group, err)
		}
	}
	return nil
}

func (s *sender) writeBatch(bw batchWriter, batch [][]byte) error {
	ms := make([]ipv4.Message, len(batch))
	for i, b := range batch {
		ms[i] = ipv4.Message{Buffers: [][]byte{b}, Addr: s.opts.Group}
	}
	for len(ms) > 0 {
		n, err := bw.WriteBatch(ms, 0)
		if err != nil {
			return fmt.Errorf("multicast: send to %v: %w", s.opts.Group, err)
		}
		ms = ms[n:]
	}
	return nil
}
