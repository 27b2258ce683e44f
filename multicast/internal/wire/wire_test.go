package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/loopcast/loopcast/multicast/internal/wire"
	"github.com/loopcast/loopcast/multicast/internal/wire/wiretest"
)

// samples and encodeSample are the shared samples (wiretest).
var (
	samples      = wiretest.Samples
	encodeSample = wiretest.Encode
)

// cmpAddr compares the addresses of RELAY-STATUS (netip keeps its
// fields to itself).
var cmpAddr = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

// golden is the encoding of samples(), made by this package and checked by
// hand against the layouts in doc.go and multicast's doc.go; a change here is a protocol change.
var golden = []string{
	"4c434d43060100000102030400000001" + "0102030405060708" + "aa" + strings.Repeat("00", 30) + "bb" +
		"000003e8" + "0000000000300000" + "00100000" + "00000003" + "0580" + "0040" + "01" +
		"0000000035a4e900" + "0003" + "0001" + "02" + "0477656232" + "0477656233" + "0000018bcfe56800" + "11" + strings.Repeat("00", 31) + "22" + strings.Repeat("00", 31) + "33" + strings.Repeat("00", 31),
	"4c434d43060200000102030400000002" + "0477656231" + "01" + "0000018bcfe56800" + "44" + strings.Repeat("00", 31) + "55" + strings.Repeat("00", 31) + "0001" + "0000000000000002",
	"4c434d43060300000102030400000003" + "00000580000007d00004" + "4c434d46",
	"4c434d43060400000102030400000004" + "00000007000013880001000300" + "0003090807",
	"4c434d43060700000102030400000005" + "00000007000013880001004600" + "000101",
	"4c434d43060500000102030400000006" + "00000005" + "00",
	"4c434d43060600000102030400000007" + "0477656231" + "00000005000c0002" + "01" + "0000000400000003" + "0001" + "0000000200010004",
	"4c434d43060800000102030400000008" + "0477656231" + "01" + "096469736b2066756c6c" + "00000000",
	"4c434d43060900000102030400000009" + "0963616e63656c6c6564",
	"4c434d4306020000010203040000000a" + "0477656232" + "00" + "0000018bcfe56800" + "44" + strings.Repeat("00", 31) + "55" + strings.Repeat("00", 31) + "0003" + "0000000000000005" + "0000000900000003" + "0000000c00000001",
	"4c434d4306010000010203040000000b" + "0102030405060708" + "aa" + strings.Repeat("00", 30) + "bb" +
		"000003e8" + "0000000000300000" + "00100000" + "00000003" + "0580" + "0040" + "02" +
		"0000000035a4e900" + "0000" + "0000" + "00" + "0909090909090909" + "0000018bcfe56800" + "11" + strings.Repeat("00", 31) + "22" + strings.Repeat("00", 31) + "33" + strings.Repeat("00", 31),
	"4c434d4306020000010203040000000c" + "0477656233" + "02" + "0000018bcfe56800" + "44" + strings.Repeat("00", 31) + "55" + strings.Repeat("00", 31) + "0001" + "0000000100000001",
	"4c434d4306040000010203040000000d" + "00000007000001f40000000201" + "000105",
	"4c434d4306080000010203040000000e" + "0477656232" + "02" + "00" + "000004d2",
	"4c434d4306080000010203040000000f" + "0477656233" + "03" + "076e6f206c6f6f70" + "00000000",
	"4c434d43060500000102030400000010" + "80000002" + "01",
	"4c434d43060a00000102030400000011" + "0477656234" + "66" + strings.Repeat("00", 31) + "02" + "0466756c6c",
	"4c434d43060100000102030400000012" + "0102030405060708" + "aa" + strings.Repeat("00", 30) + "bb" +
		"000003e8" + "0000000000300000" + "00100000" + "00000003" + "0580" + "0040" + "08" +
		"0000000035a4e900" + "0000" + "0000" + "00" + "1389" + "0000018bcfe56800" + "11" + strings.Repeat("00", 31) + "22" + strings.Repeat("00", 31) + "33" + strings.Repeat("00", 31),
	"4c434d43060500000102030400000013" + "00000006" + "06" + "07d0" + "01" + "0000000400000002" + "0001" + "0000000200010003",
	"4c434d43060100000102030400000014" + "0102030405060708" + "aa" + strings.Repeat("00", 30) + "bb" +
		"000003e8" + "0000000000300000" + "00100000" + "00000003" + "0580" + "0040" + "10" +
		"0000000035a4e900" + "0000" + "0000" + "00" + "00f9" + grantHex("00", "") + "0000018bcfe56800" + "11" + strings.Repeat("00", 31) + "77" + strings.Repeat("00", 31) + "88" + strings.Repeat("00", 31),
	"4c434d43060200000102030400000015" + "027262" + "10" + "0000018bcfe56800" + "44" + strings.Repeat("00", 31) + "55" + strings.Repeat("00", 31) + "0001" + "0000000200000001",
	"4c434d43060200000102030400000016" + "027262" + "20" + "0000000000000000" + strings.Repeat("00", 64) + "0101" + grantHex("03", "0909090909090909") + "0000",
	"4c434d4306" + "0b" + "0000010203040000" + "0017" + "027262" + "00000009" + "000000000001e240" + "0000000000000063" + "00000003" + "02" +
		"026231" + "02" + strings.Repeat("00", 10) + "ffff" + "0a4d020b" + "1388" + "00" +
		"026232" + "04" + strings.Repeat("00", 16) + "0000" + "0673696c656e74",
}

// grantHex is the sample grant's encoding (wiretest.Grant), with flags
// and the base id that follows them.
func grantHex(flags, base string) string {
	return "4c435247" + "06" + "01020304" + "0102030405060708" + "aa" + strings.Repeat("00", 30) + "bb" +
		"000003e8" + "0000000000300000" + "00100000" + "0580" + "0040" + flags + base +
		"0000018bcfe56800" + "0000018bd0c12200" + "027262" + "44" + strings.Repeat("00", 31) + "33" + strings.Repeat("00", 31) +
		"11" + strings.Repeat("00", 31) + "99" + strings.Repeat("00", 62) + "9a"
}

func TestGolden(t *testing.T) {
	for i, m := range samples() {
		t.Run(m.Type().String(), func(t *testing.T) {
			got := encodeSample(t, uint32(i+1), m)
			want, err := hex.DecodeString(strings.ReplaceAll(golden[i], " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoding:\n got %x\nwant %x", got, want)
			}
			h, back, err := wire.Parse(want)
			if err != nil {
				t.Fatalf("parse golden: %v", err)
			}
			if h.Type != m.Type() || h.Seq != uint32(i+1) || h.Session != 0x01020304 {
				t.Errorf("header %+v", h)
			}
			if d := cmp.Diff(m, back, cmpAddr); d != "" {
				t.Errorf("round trip (-sent +parsed):\n%s", d)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	for i, m := range samples() {
		b := encodeSample(t, uint32(i), m)
		for n := range len(b) {
			if _, _, err := wire.Parse(b[:n]); err == nil {
				t.Errorf("%v truncated to %d of %d bytes: parsed without error", m.Type(), n, len(b))
			}
		}
		if _, _, err := wire.Parse(append(b, 0)); err == nil {
			t.Errorf("%v with a trailing byte: parsed without error", m.Type())
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := encodeSample(t, 1, &wire.Status{Round: 1})
	bad := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"magic":       {bad(func(b []byte) { b[0] = 'X' }), wire.ErrMagic},
		"version":     {bad(func(b []byte) { b[4] = 9 }), wire.ErrVersion},
		"type":        {bad(func(b []byte) { b[5] = 200 }), wire.ErrType},
		"flags":       {bad(func(b []byte) { b[7] = 3 }), wire.ErrMalformed},
		"short tag":   {bad(func(b []byte) { b[7] = 1 }), wire.ErrShort},
		"nack count":  {encodeRaw(t, wire.TypeNack, "0161"+"00000001"+"0000"+"0001"+"00"+"00a1"), wire.ErrMalformed},
		"host len":    {encodeRaw(t, wire.TypeRegister, "41"+strings.Repeat("61", 65)+"00"+"0000"), wire.ErrMalformed},
		"reg overlap": {encodeRaw(t, wire.TypeRegister, "0161"+"00"+"0000018bcfe56800"+strings.Repeat("00", 64)+"0002"+"0000000000000005"+"0000000400000001"), wire.ErrMalformed},
		"reg order":   {encodeRaw(t, wire.TypeRegister, "0161"+"00"+"0000018bcfe56800"+strings.Repeat("00", 64)+"0002"+"0000000900000001"+"0000000000000001"), wire.ErrMalformed},
		"reg count":   {encodeRaw(t, wire.TypeRegister, "0161"+"00"+"0000018bcfe56800"+strings.Repeat("00", 64)+"0097"), wire.ErrMalformed},
		"announce k":  {encodeRaw(t, wire.TypeAnnounce, hex.EncodeToString(mustBody(t, func(a *wire.Announce) { a.BlockSymbols = 0 }))), wire.ErrMalformed},
	} {
		if _, _, err := wire.Parse(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

// encodeRaw frames a hand-made body.
func encodeRaw(t *testing.T, typ wire.Type, body string) []byte {
	t.Helper()
	h, _ := wire.Header{Type: typ, Session: 1, Seq: 1}.AppendBinary(nil)
	b, err := hex.DecodeString(body)
	if err != nil {
		t.Fatal(err)
	}
	return append(h, b...)
}

// mustBody encodes a valid ANNOUNCE body with checks bypassed, after f.
func mustBody(t *testing.T, f func(*wire.Announce)) []byte {
	a := *samples()[0].(*wire.Announce)
	b, err := a.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	f(&a)
	binary.BigEndian.PutUint16(b[62:], a.BlockSymbols)
	return b
}

func TestTypeString(t *testing.T) {
	if got := wire.TypeRepair.String(); got != "REPAIR" {
		t.Errorf("got %q, want REPAIR", got)
	}
	if got := wire.Type(99).String(); got != "Type(99)" {
		t.Errorf("got %q, want Type(99)", got)
	}
}

func FuzzParse(f *testing.F) {
	for i, m := range samples() {
		f.Add(encodeSample(f, uint32(i), m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, m, err := wire.Parse(b)
		if err != nil {
			return
		}
		enc, err := wire.AppendPacket(nil, h, m)
		if err != nil {
			t.Fatalf("parsed %v does not encode: %v", h.Type, err)
		}
		h2, m2, err := wire.Parse(enc)
		if err != nil {
			t.Fatalf("re-encoded %v does not parse: %v", h.Type, err)
		}
		if d := cmp.Diff(m, m2, cmpAddr); d != "" || h.Type != h2.Type || h.Session != h2.Session || h.Seq != h2.Seq {
			t.Fatalf("parse → append → parse unstable:\n%s", d)
		}
		in := bytes.Clone(h.Covered()) // the packet without its tag, flags cleared
		in[6], in[7] = 0, 0
		if !bytes.Equal(enc, in) && h.Version == wire.Version {
			t.Fatalf("encoding not canonical:\n in %x\nout %x", in, enc)
		}
	})
}

// A REGISTER with the longest host id fits one packet with the most held
// ranges, and with the largest bitmap; a parsed bitmap beyond
// MaxRegisterBitmap is refused.
func TestRegisterFits(t *testing.T) {
	m := &wire.Register{Host: strings.Repeat("h", wire.MaxHostID)}
	for i := range wire.MaxRegisterRanges {
		m.Have = append(m.Have, wire.Range{First: uint32(2 * i), Count: 1})
	}
	b := encodeSample(t, 1, m)
	if len(b) > wire.MaxPacket {
		t.Errorf("register of %d bytes, more than %d", len(b), wire.MaxPacket)
	}
	if _, back, err := wire.Parse(b); err != nil || len(back.(*wire.Register).Have) != wire.MaxRegisterRanges {
		t.Errorf("parse: %v", err)
	}
	m.Have = nil
	for c := uint32(0); c < wire.MaxRegisterBitmap; c += 2 {
		m.Have = append(m.Have, wire.Range{First: c, Count: 1})
	}
	b = encodeSample(t, 1, m)
	if len(b) > wire.MaxPacket || b[wire.HeaderLen+1+wire.MaxHostID]&wire.RegisterBitmapFlag == 0 {
		t.Errorf("bitmap register of %d bytes (flags %#x), want a bitmap within %d", len(b), b[wire.HeaderLen+1+wire.MaxHostID], wire.MaxPacket)
	}
	if _, back, err := wire.Parse(b); err != nil || len(back.(*wire.Register).Have) != len(m.Have) {
		t.Errorf("parse bitmap: %v", err)
	}
	i := wire.HeaderLen + 1 + wire.MaxHostID + 1 // the bit count
	binary.BigEndian.PutUint32(b[i:], wire.MaxRegisterBitmap+8)
	if _, _, err := wire.Parse(append(b, 0)); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("bitmap beyond the bound: %v, want %v", err, wire.ErrMalformed)
	}
}

// TestRegisterEncodings: a held set of few runs goes as ranges; one more
// scattered than MaxRegisterRanges goes as a bitmap and arrives exact; one
// beyond the bitmap's reach keeps its largest runs.
func TestRegisterEncodings(t *testing.T) {
	var scattered []wire.Range // every other chunk: 300 runs over 600 chunks
	for c := uint32(0); c < 600; c += 2 {
		scattered = append(scattered, wire.Range{First: c, Count: 1})
	}
	far := append(slices.Clone(scattered), wire.Range{First: wire.MaxRegisterBitmap + 5, Count: 10})
	for _, tc := range []struct {
		name string
		have []wire.Range
		want []wire.Range
	}{
		{"ranges", []wire.Range{{0, 4}, {9, 3}}, []wire.Range{{0, 4}, {9, 3}}},
		{"bitmap", scattered, scattered},
		{"largest runs", far, wire.LargestRuns(far, wire.MaxRegisterRanges)},
	} {
		b, err := wire.AppendPacket(nil, wire.Header{Session: 1}, &wire.Register{Host: "h", HasBase: true, Have: tc.have})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(b) > wire.MaxPacket {
			t.Errorf("%s: %d bytes, more than a packet", tc.name, len(b))
		}
		_, m, err := wire.Parse(b)
		if err != nil {
			t.Fatalf("%s: parse: %v", tc.name, err)
		}
		got := m.(*wire.Register)
		if d := cmp.Diff(tc.want, got.Have); d != "" || !got.HasBase {
			t.Errorf("%s: held (-want +got):\n%s", tc.name, d)
		}
	}
	if got := wire.LargestRuns(far, wire.MaxRegisterRanges); len(got) != wire.MaxRegisterRanges || got[len(got)-1] != (wire.Range{First: wire.MaxRegisterBitmap + 5, Count: 10}) {
		t.Errorf("largest runs kept %d ranges ending %v; want %d with the 10-chunk run", len(got), got[len(got)-1], wire.MaxRegisterRanges)
	}
}

// BenchmarkParse measures the parse of the packets that arrive per packet
// of data: DATA and REPAIR at every receiver (~100k packets/s), NACK at the
// sender (a full one: 16 ranges, 160 blocks), and a STATUS summary.
func BenchmarkParse(b *testing.B) {
	nack := &wire.Nack{Host: "web-0001", Round: 7, Parts: 1, Chunks: make([]wire.Range, wire.MaxNackRanges), Blocks: make([]wire.BlockNeed, wire.MaxNackBlocks)}
	for i := range nack.Chunks {
		nack.Chunks[i] = wire.Range{First: uint32(10 * i), Count: 2}
	}
	for i := range nack.Blocks {
		nack.Blocks[i] = wire.BlockNeed{Chunk: uint32(i), Missing: 1}
	}
	for _, m := range []wire.Message{
		&wire.Symbol{Chunk: 7, Compressed: 90000, Block: 1, Index: 3, Payload: make([]byte, 1408)},
		&wire.Symbol{Repair: true, Chunk: 7, Compressed: 90000, Block: 1, Index: 70, Payload: make([]byte, 1408)},
		nack,
		&wire.Status{Round: 6, Quiet: true, Hosts: 2000, Summary: true, Chunks: nack.Chunks, Blocks: nack.Blocks},
	} {
		p := encodeSample(b, 1, m)
		b.Run(m.Type().String(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, _, err := wire.Parse(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A truncated packet's error names the packet and the field it ran out in.
func TestShortNamesField(t *testing.T) {
	b := encodeSample(t, 4, samples()[3]) // DATA with a 3-byte payload
	_, _, err := wire.Parse(b[:len(b)-1])
	want := "DATA packet seq 4: multicast: packet truncated: symbol payload at offset 15, 2 bytes left"
	if !errors.Is(err, wire.ErrShort) || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// The largest NACK (a maximal host id, every range and block) with its MAC,
// and the largest STATUS summary with its signature, fit one packet.
func TestLargestFeedbackFits(t *testing.T) {
	nack := &wire.Nack{Host: strings.Repeat("h", wire.MaxHostID), Round: 7, Parts: 1,
		Chunks: make([]wire.Range, wire.MaxNackRanges), Blocks: make([]wire.BlockNeed, wire.MaxNackBlocks)}
	for i := range nack.Chunks {
		nack.Chunks[i] = wire.Range{First: uint32(10 * i), Count: 2}
	}
	for i := range nack.Blocks {
		nack.Blocks[i] = wire.BlockNeed{Chunk: uint32(i), Missing: wire.MaxBlockSymbols}
	}
	status := &wire.Status{Round: 6, Quiet: true, Hosts: 2000, Summary: true, Chunks: nack.Chunks, Blocks: nack.Blocks}
	for _, tc := range []struct {
		m wire.Message
		a wire.Auth
		n int
	}{{nack, wire.AuthMAC, wire.MACLen}, {status, wire.AuthSig, wire.SigLen}} {
		b, err := wire.AppendTagged(nil, wire.Header{Type: tc.m.Type(), Session: 1, Seq: 1}, tc.m, tc.a,
			func([]byte) []byte { return make([]byte, tc.n) })
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > wire.MaxPacket {
			t.Errorf("the largest %v is %d bytes with its tag, more than MaxPacket %d", tc.m.Type(), len(b), wire.MaxPacket)
		}
		if _, _, err := wire.Parse(b); err != nil {
			t.Errorf("the largest %v does not parse: %v", tc.m.Type(), err)
		}
	}
}

// A grant parses back from its every byte and from none fewer or more;
// relay fields out of their bounds are refused on both sides.
func TestRelayGrantBounds(t *testing.T) {
	g := wiretest.Grant()
	b, err := g.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := wire.ParseGrant(b); err != nil || *back != *g {
		t.Fatalf("grant round trip: %v\n got %+v\nwant %+v", err, back, g)
	}
	for n := range len(b) {
		if _, err := wire.ParseGrant(b[:n]); err == nil {
			t.Errorf("grant truncated to %d of %d bytes: parsed", n, len(b))
		}
	}
	if _, err := wire.ParseGrant(append(b, 0)); err == nil {
		t.Error("grant with a trailing byte: parsed")
	}
	bad := *g
	bad.Expires = bad.Issued
	if _, err := bad.AppendBinary(nil); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("grant expiring when issued: %v, want %v", err, wire.ErrMalformed)
	}
	for name, m := range map[string]wire.Message{
		"relayed announce with hosts": func() wire.Message {
			a := *samples()[19].(*wire.Announce)
			a.HostsTotal, a.Hosts = 1, []string{"b1"}
			return &a
		}(),
		"grant with held chunks":  &wire.Register{Host: "rb", Grant: g, Have: []wire.Range{{First: 0, Count: 1}}},
		"relay status of 9 hosts": &wire.RelayStatus{Relay: "rb", Hosts: make([]wire.RelayedHost, 9)},
		"relayed host state 0":    &wire.RelayStatus{Relay: "rb", Hosts: []wire.RelayedHost{{Host: "b1"}}},
		"relayed host port alone": &wire.RelayStatus{Relay: "rb", Hosts: []wire.RelayedHost{{Host: "b1", State: wire.RelayHostReceiving, Addr: netip.AddrPortFrom(netip.Addr{}, 5)}}},
	} {
		if _, err := m.AppendBinary(nil); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: encoded (%v), want %v", name, err, wire.ErrMalformed)
		}
	}
}

// The largest relay packets fit one packet with their tags: a relayed
// ANNOUNCE with a maximal relay id, a base and a fetch port, signed; the
// acknowledgement carrying a grant and a wrapped key; a full RELAY-STATUS
// with its MAC.
func TestLargestRelayFits(t *testing.T) {
	long := strings.Repeat("h", wire.MaxHostID)
	g := wiretest.Grant()
	g.RelayHost, g.BaseID, g.Sealed = long, [8]byte{9}, true
	a := *samples()[19].(*wire.Announce)
	a.Grant, a.BaseID, a.FetchPort, a.Encrypted = g, [8]byte{9}, 5001, true
	st := &wire.RelayStatus{Relay: long}
	for range wire.MaxRelayStatusHosts {
		st.Hosts = append(st.Hosts, wire.RelayedHost{Host: long, State: wire.RelayHostDropped, Reason: strings.Repeat("r", 100),
			Addr: netip.MustParseAddrPort("[2001:db8::1]:5000")})
	}
	for _, tc := range []struct {
		m wire.Message
		a wire.Auth
		n int
	}{
		{&a, wire.AuthSig, wire.SigLen},
		{&wire.Register{Host: long, Grant: g, WrappedKey: make([]byte, wire.WrappedKeyLen)}, wire.AuthMAC, wire.MACLen},
		{st, wire.AuthMAC, wire.MACLen},
	} {
		b, err := wire.AppendTagged(nil, wire.Header{Session: 1, Seq: 1}, tc.m, tc.a, func([]byte) []byte { return make([]byte, tc.n) })
		if err != nil {
			t.Fatalf("the largest %v: %v", tc.m.Type(), err)
		}
		if _, _, err := wire.Parse(b); err != nil {
			t.Errorf("the largest %v (%d bytes) does not parse: %v", tc.m.Type(), len(b), err)
		}
		t.Logf("the largest %v: %d bytes", tc.m.Type(), len(b))
	}
}
