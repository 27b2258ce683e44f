// Package wiretest holds the sample messages that the wire codec's golden,
// truncation and fuzz tests start from, for multicast's tests too.
package wiretest

import (
	"net/netip"
	"testing"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Samples are one valid message of each type, the seeds of the golden
// table, the truncation test and the fuzz corpus; multicast's tests send
// them as valid packets of a foreign session.
func Samples() []wire.Message {
	return []wire.Message{
		&wire.Announce{
			ReleaseID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ManifestDigest: [32]byte{0xaa, 31: 0xbb},
			ManifestSize: 1000, ImageSize: 3 << 20, ChunkSize: 1 << 20, ChunkCount: 3,
			SymbolSize: 1408, BlockSymbols: 64, Closed: true, Rate: 900e6,
			HostsTotal: 3, HostsFirst: 1, Hosts: []string{"web2", "web3"},
			SignedAt: 1700000000000, ReleaseKey: [32]byte{0x11}, SessionKey: [32]byte{0x22}, SessionDH: [32]byte{0x33},
		},
		&wire.Register{Host: "web1", NeedManifest: true, Have: []wire.Range{{First: 0, Count: 2}}, SignedAt: 1700000000000, HostKey: [32]byte{0x44}, Ephemeral: [32]byte{0x55}},
		&wire.ManifestFrag{Offset: 1408, Total: 2000, Data: []byte("LCMF")},
		&wire.Symbol{Chunk: 7, Compressed: 5000, Block: 1, Index: 3, Payload: []byte{9, 8, 7}},
		&wire.Symbol{Repair: true, Chunk: 7, Compressed: 5000, Block: 1, Index: 70, Payload: []byte{1}},
		&wire.Status{Round: 5},
		&wire.Nack{Host: "web1", Round: 5, Loss: 12, Part: 0, Parts: 2,
			Chunks: []wire.Range{{First: 4, Count: 3}}, Blocks: []wire.BlockNeed{{Chunk: 2, Block: 1, Missing: 4}}},
		&wire.Complete{Host: "web1", Status: wire.CompleteFailed, Reason: "disk full"},
		&wire.Abort{Reason: "cancelled"},
		&wire.Register{Host: "web2", Have: []wire.Range{{First: 0, Count: 5}, {First: 9, Count: 3}, {First: 12, Count: 1}}, SignedAt: 1700000000000, HostKey: [32]byte{0x44}, Ephemeral: [32]byte{0x55}},
		&wire.Announce{
			ReleaseID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ManifestDigest: [32]byte{0xaa, 31: 0xbb},
			ManifestSize: 1000, ImageSize: 3 << 20, ChunkSize: 1 << 20, ChunkCount: 3,
			SymbolSize: 1408, BlockSymbols: 64, Rate: 900e6, BaseID: [8]byte{9, 9, 9, 9, 9, 9, 9, 9},
			SignedAt: 1700000000000, ReleaseKey: [32]byte{0x11}, SessionKey: [32]byte{0x22}, SessionDH: [32]byte{0x33},
		},
		&wire.Register{Host: "web3", HasBase: true, Have: []wire.Range{{First: 1, Count: 1}}, SignedAt: 1700000000000, HostKey: [32]byte{0x44}, Ephemeral: [32]byte{0x55}},
		&wire.Symbol{Chunk: 7, Compressed: 500, Block: 0, Index: 2, Delta: true, Payload: []byte{5}},
		&wire.Complete{Host: "web2", Status: wire.CompleteStaged, StageMillis: 1234},
		&wire.Complete{Host: "web3", Status: wire.CompleteStageFailed, Reason: "no loop"},
		&wire.Status{Round: 1<<31 | 2, Probe: true}, // a probe round (multicast numbers probes from 1<<31)
		&wire.Refuse{Host: "web4", HostKey: [32]byte{0x66}, Code: wire.RefuseNoSpace, Detail: "full"},
		&wire.Announce{
			ReleaseID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ManifestDigest: [32]byte{0xaa, 31: 0xbb},
			ManifestSize: 1000, ImageSize: 3 << 20, ChunkSize: 1 << 20, ChunkCount: 3,
			SymbolSize: 1408, BlockSymbols: 64, Rate: 900e6, FetchPort: 5001,
			SignedAt: 1700000000000, ReleaseKey: [32]byte{0x11}, SessionKey: [32]byte{0x22}, SessionDH: [32]byte{0x33},
		},
		&wire.Status{Round: 6, Quiet: true, Hosts: 2000, Summary: true, Chunks: []wire.Range{{First: 4, Count: 2}}, Blocks: []wire.BlockNeed{{Chunk: 2, Block: 1, Missing: 3}}},
		&wire.Announce{
			ReleaseID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ManifestDigest: [32]byte{0xaa, 31: 0xbb},
			ManifestSize: 1000, ImageSize: 3 << 20, ChunkSize: 1 << 20, ChunkCount: 3,
			SymbolSize: 1408, BlockSymbols: 64, Rate: 900e6, Grant: Grant(),
			SignedAt: 1700000000000, ReleaseKey: [32]byte{0x11}, SessionKey: [32]byte{0x77}, SessionDH: [32]byte{0x88},
		},
		&wire.Register{Host: "rb", Relay: true, Have: []wire.Range{{First: 2, Count: 1}}, SignedAt: 1700000000000, HostKey: [32]byte{0x44}, Ephemeral: [32]byte{0x55}},
		&wire.Register{Host: "rb", Grant: sealedGrant()},
		&wire.RelayStatus{Relay: "rb", Seq: 9, DownBytes: 123456, DownPackets: 99, Rounds: 3, Hosts: []wire.RelayedHost{
			{Host: "b1", State: wire.RelayHostComplete, Addr: netip.MustParseAddrPort("10.77.2.11:5000")},
			{Host: "b2", State: wire.RelayHostDropped, Reason: "silent"},
		}},
	}
}

// Grant is a sample relay grant for session 0x01020304 (Samples'), for
// the relay "rb" (host key 0x44...).
func Grant() *wire.RelayGrant {
	return &wire.RelayGrant{Session: 0x01020304, ReleaseID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ManifestDigest: [32]byte{0xaa, 31: 0xbb},
		ManifestSize: 1000, ImageSize: 3 << 20, ChunkSize: 1 << 20, SymbolSize: 1408, BlockSymbols: 64,
		Issued: 1700000000000, Expires: 1700014400000, RelayHost: "rb", RelayKey: [32]byte{0x44}, UpstreamDH: [32]byte{0x33},
		ReleaseKey: [32]byte{0x11}, Sig: [64]byte{0x99, 63: 0x9a}}
}

// sealedGrant is a grant with every optional field: sealed, on a base.
func sealedGrant() *wire.RelayGrant {
	g := Grant()
	g.Sealed, g.BaseID = true, [8]byte{9, 9, 9, 9, 9, 9, 9, 9}
	return g
}

// Encode frames a sample as session 0x01020304 with sequence seq.
func Encode(t testing.TB, seq uint32, m wire.Message) []byte {
	t.Helper()
	b, err := wire.AppendPacket(nil, wire.Header{Session: 0x01020304, Seq: seq}, m)
	if err != nil {
		t.Fatalf("encode %v: %v", m.Type(), err)
	}
	return b
}
