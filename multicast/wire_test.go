package multicast

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// samples are one valid message of each type, the seeds of the golden
// table, the truncation test and the fuzz corpus.
func samples() []Message {
	return []Message{
		&Announce{
			ReleaseID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ManifestDigest: [32]byte{0xaa, 31: 0xbb},
			ManifestSize: 1000, ImageSize: 3 << 20, ChunkSize: 1 << 20, ChunkCount: 3,
			SymbolSize: 1408, BlockSymbols: 64, Closed: true, Rate: 900e6,
			HostsTotal: 3, HostsFirst: 1, Hosts: []string{"web2", "web3"},
			SignedAt: 1700000000000, ReleaseKey: [32]byte{0x11}, SessionKey: [32]byte{0x22}, SessionDH: [32]byte{0x33},
		},
		&Register{Host: "web1", NeedManifest: true, Have: []Range{{First: 0, Count: 2}}, SignedAt: 1700000000000, HostKey: [32]byte{0x44}, Ephemeral: [32]byte{0x55}},
		&ManifestFrag{Offset: 1408, Total: 2000, Data: []byte("LCMF")},
		&Symbol{Chunk: 7, Compressed: 5000, Block: 1, Index: 3, Payload: []byte{9, 8, 7}},
		&Symbol{Repair: true, Chunk: 7, Compressed: 5000, Block: 1, Index: 70, Payload: []byte{1}},
		&Status{Round: 5},
		&Nack{Host: "web1", Round: 5, Loss: 12, Part: 0, Parts: 2,
			Chunks: []Range{{First: 4, Count: 3}}, Blocks: []BlockNeed{{Chunk: 2, Block: 1, Missing: 4}}},
		&Complete{Host: "web1", Status: CompleteFailed, Reason: "disk full"},
		&Abort{Reason: "cancelled"},
		&Register{Host: "web2", Have: []Range{{First: 0, Count: 5}, {First: 9, Count: 3}, {First: 12, Count: 1}}, SignedAt: 1700000000000, HostKey: [32]byte{0x44}, Ephemeral: [32]byte{0x55}},
		&Announce{
			ReleaseID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ManifestDigest: [32]byte{0xaa, 31: 0xbb},
			ManifestSize: 1000, ImageSize: 3 << 20, ChunkSize: 1 << 20, ChunkCount: 3,
			SymbolSize: 1408, BlockSymbols: 64, Rate: 900e6, BaseID: [8]byte{9, 9, 9, 9, 9, 9, 9, 9},
			SignedAt: 1700000000000, ReleaseKey: [32]byte{0x11}, SessionKey: [32]byte{0x22}, SessionDH: [32]byte{0x33},
		},
		&Register{Host: "web3", HasBase: true, Have: []Range{{First: 1, Count: 1}}, SignedAt: 1700000000000, HostKey: [32]byte{0x44}, Ephemeral: [32]byte{0x55}},
		&Symbol{Chunk: 7, Compressed: 500, Block: 0, Index: 2, Delta: true, Payload: []byte{5}},
		&Complete{Host: "web2", Status: CompleteStaged, StageMillis: 1234},
		&Complete{Host: "web3", Status: CompleteStageFailed, Reason: "no loop"},
		&Status{Round: probeRound | 2, Probe: true},
		&Refuse{Host: "web4", HostKey: [32]byte{0x66}, Code: RefuseNoSpace, Detail: "full"},
		&Announce{
			ReleaseID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ManifestDigest: [32]byte{0xaa, 31: 0xbb},
			ManifestSize: 1000, ImageSize: 3 << 20, ChunkSize: 1 << 20, ChunkCount: 3,
			SymbolSize: 1408, BlockSymbols: 64, Rate: 900e6, FetchPort: 5001,
			SignedAt: 1700000000000, ReleaseKey: [32]byte{0x11}, SessionKey: [32]byte{0x22}, SessionDH: [32]byte{0x33},
		},
		&Status{Round: 6, Quiet: true, Hosts: 2000, Summary: true, Chunks: []Range{{First: 4, Count: 2}}, Blocks: []BlockNeed{{Chunk: 2, Block: 1, Missing: 3}}},
	}
}

func encodeSample(t testing.TB, seq uint32, m Message) []byte {
	t.Helper()
	b, err := AppendPacket(nil, Header{Session: 0x01020304, Seq: seq}, m)
	if err != nil {
		t.Fatalf("encode %v: %v", m.Type(), err)
	}
	return b
}

// golden is the encoding of samples(), made by this package and checked by
// hand against the layouts in doc.go; a change here is a protocol change.
var golden = []string{
	"4c434d43040100000102030400000001" + "0102030405060708" + "aa" + strings.Repeat("00", 30) + "bb" +
		"000003e8" + "0000000000300000" + "00100000" + "00000003" + "0580" + "40" + "01" +
		"0000000035a4e900" + "0003" + "0001" + "02" + "0477656232" + "0477656233" + "0000018bcfe56800" + "11" + strings.Repeat("00", 31) + "22" + strings.Repeat("00", 31) + "33" + strings.Repeat("00", 31),
	"4c434d43040200000102030400000002" + "0477656231" + "01" + "0000018bcfe56800" + "44" + strings.Repeat("00", 31) + "55" + strings.Repeat("00", 31) + "0001" + "0000000000000002",
	"4c434d43040300000102030400000003" + "00000580000007d00004" + "4c434d46",
	"4c434d43040400000102030400000004" + "000000070000138800010300" + "0003090807",
	"4c434d43040700000102030400000005" + "000000070000138800014600" + "000101",
	"4c434d43040500000102030400000006" + "00000005" + "00",
	"4c434d43040600000102030400000007" + "0477656231" + "00000005000c0002" + "01" + "0000000400000003" + "0001" + "00000002000104",
	"4c434d43040800000102030400000008" + "0477656231" + "01" + "096469736b2066756c6c" + "00000000",
	"4c434d43040900000102030400000009" + "0963616e63656c6c6564",
	"4c434d4304020000010203040000000a" + "0477656232" + "00" + "0000018bcfe56800" + "44" + strings.Repeat("00", 31) + "55" + strings.Repeat("00", 31) + "0003" + "0000000000000005" + "0000000900000003" + "0000000c00000001",
	"4c434d4304010000010203040000000b" + "0102030405060708" + "aa" + strings.Repeat("00", 30) + "bb" +
		"000003e8" + "0000000000300000" + "00100000" + "00000003" + "0580" + "40" + "02" +
		"0000000035a4e900" + "0000" + "0000" + "00" + "0909090909090909" + "0000018bcfe56800" + "11" + strings.Repeat("00", 31) + "22" + strings.Repeat("00", 31) + "33" + strings.Repeat("00", 31),
	"4c434d4304020000010203040000000c" + "0477656233" + "02" + "0000018bcfe56800" + "44" + strings.Repeat("00", 31) + "55" + strings.Repeat("00", 31) + "0001" + "0000000100000001",
	"4c434d4304040000010203040000000d" + "00000007000001f400000201" + "000105",
	"4c434d4304080000010203040000000e" + "0477656232" + "02" + "00" + "000004d2",
	"4c434d4304080000010203040000000f" + "0477656233" + "03" + "076e6f206c6f6f70" + "00000000",
	"4c434d43040500000102030400000010" + "80000002" + "01",
	"4c434d43040a00000102030400000011" + "0477656234" + "66" + strings.Repeat("00", 31) + "02" + "0466756c6c",
	"4c434d43040100000102030400000012" + "0102030405060708" + "aa" + strings.Repeat("00", 30) + "bb" +
		"000003e8" + "0000000000300000" + "00100000" + "00000003" + "0580" + "40" + "08" +
		"0000000035a4e900" + "0000" + "0000" + "00" + "1389" + "0000018bcfe56800" + "11" + strings.Repeat("00", 31) + "22" + strings.Repeat("00", 31) + "33" + strings.Repeat("00", 31),
	"4c434d43040500000102030400000013" + "00000006" + "06" + "07d0" + "01" + "0000000400000002" + "0001" + "00000002000103",
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
			h, back, err := Parse(want)
			if err != nil {
				t.Fatalf("parse golden: %v", err)
			}
			if h.Type != m.Type() || h.Seq != uint32(i+1) || h.Session != 0x01020304 {
				t.Errorf("header %+v", h)
			}
			if d := cmp.Diff(m, back); d != "" {
				t.Errorf("round trip (-sent +parsed):\n%s", d)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	for i, m := range samples() {
		b := encodeSample(t, uint32(i), m)
		for n := range len(b) {
			if _, _, err := Parse(b[:n]); err == nil {
				t.Errorf("%v truncated to %d of %d bytes: parsed without error", m.Type(), n, len(b))
			}
		}
		if _, _, err := Parse(append(b, 0)); err == nil {
			t.Errorf("%v with a trailing byte: parsed without error", m.Type())
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := encodeSample(t, 1, &Status{Round: 1})
	bad := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"magic":       {bad(func(b []byte) { b[0] = 'X' }), ErrMagic},
		"version":     {bad(func(b []byte) { b[4] = 9 }), ErrVersion},
		"type":        {bad(func(b []byte) { b[5] = 200 }), ErrType},
		"flags":       {bad(func(b []byte) { b[7] = 3 }), ErrMalformed},
		"short tag":   {bad(func(b []byte) { b[7] = 1 }), ErrShort},
		"nack count":  {encodeRaw(t, TypeNack, "0161"+"00000001"+"0000"+"0001"+"00"+"00a1"), ErrMalformed},
		"host len":    {encodeRaw(t, TypeRegister, "41"+strings.Repeat("61", 65)+"00"+"0000"), ErrMalformed},
		"reg overlap": {encodeRaw(t, TypeRegister, "0161"+"00"+"0000018bcfe56800"+strings.Repeat("00", 64)+"0002"+"0000000000000005"+"0000000400000001"), ErrMalformed},
		"reg order":   {encodeRaw(t, TypeRegister, "0161"+"00"+"0000018bcfe56800"+strings.Repeat("00", 64)+"0002"+"0000000900000001"+"0000000000000001"), ErrMalformed},
		"reg count":   {encodeRaw(t, TypeRegister, "0161"+"00"+"0000018bcfe56800"+strings.Repeat("00", 64)+"0097"), ErrMalformed},
		"announce k":  {encodeRaw(t, TypeAnnounce, hex.EncodeToString(mustBody(t, func(a *Announce) { a.BlockSymbols = 0 }))), ErrMalformed},
	} {
		if _, _, err := Parse(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

// encodeRaw frames a hand-made body.
func encodeRaw(t *testing.T, typ Type, body string) []byte {
	t.Helper()
	h, _ := Header{Type: typ, Session: 1, Seq: 1}.AppendBinary(nil)
	b, err := hex.DecodeString(body)
	if err != nil {
		t.Fatal(err)
	}
	return append(h, b...)
}

// mustBody encodes a valid ANNOUNCE body with checks bypassed, after f.
func mustBody(t *testing.T, f func(*Announce)) []byte {
	a := *samples()[0].(*Announce)
	b, err := a.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	f(&a)
	b[62] = a.BlockSymbols
	return b
}

func TestTypeString(t *testing.T) {
	if got := TypeRepair.String(); got != "REPAIR" {
		t.Errorf("got %q, want REPAIR", got)
	}
	if got := Type(99).String(); got != "Type(99)" {
		t.Errorf("got %q, want Type(99)", got)
	}
}

func FuzzParse(f *testing.F) {
	for i, m := range samples() {
		f.Add(encodeSample(f, uint32(i), m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, m, err := Parse(b)
		if err != nil {
			return
		}
		enc, err := AppendPacket(nil, h, m)
		if err != nil {
			t.Fatalf("parsed %v does not encode: %v", h.Type, err)
		}
		h2, m2, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-encoded %v does not parse: %v", h.Type, err)
		}
		if d := cmp.Diff(m, m2); d != "" || h.Type != h2.Type || h.Session != h2.Session || h.Seq != h2.Seq {
			t.Fatalf("parse → append → parse unstable:\n%s", d)
		}
		in := bytes.Clone(h.covered) // the packet without its tag, flags cleared
		in[6], in[7] = 0, 0
		if !bytes.Equal(enc, in) && h.Version == Version {
			t.Fatalf("encoding not canonical:\n in %x\nout %x", in, enc)
		}
	})
}

// A REGISTER with the longest host id fits one packet with the most held
// ranges, and with the largest bitmap; a parsed bitmap beyond
// MaxRegisterBitmap is refused.
func TestRegisterFits(t *testing.T) {
	m := &Register{Host: strings.Repeat("h", MaxHostID)}
	for i := range MaxRegisterRanges {
		m.Have = append(m.Have, Range{First: uint32(2 * i), Count: 1})
	}
	b := encodeSample(t, 1, m)
	if len(b) > MaxPacket {
		t.Errorf("register of %d bytes, more than %d", len(b), MaxPacket)
	}
	if _, back, err := Parse(b); err != nil || len(back.(*Register).Have) != MaxRegisterRanges {
		t.Errorf("parse: %v", err)
	}
	m.Have = nil
	for c := uint32(0); c < MaxRegisterBitmap; c += 2 {
		m.Have = append(m.Have, Range{First: c, Count: 1})
	}
	b = encodeSample(t, 1, m)
	if len(b) > MaxPacket || b[HeaderLen+1+MaxHostID]&registerBitmap == 0 {
		t.Errorf("bitmap register of %d bytes (flags %#x), want a bitmap within %d", len(b), b[HeaderLen+1+MaxHostID], MaxPacket)
	}
	if _, back, err := Parse(b); err != nil || len(back.(*Register).Have) != len(m.Have) {
		t.Errorf("parse bitmap: %v", err)
	}
	i := HeaderLen + 1 + MaxHostID + 1 // the bit count
	binary.BigEndian.PutUint32(b[i:], MaxRegisterBitmap+8)
	if _, _, err := Parse(append(b, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("bitmap beyond the bound: %v, want %v", err, ErrMalformed)
	}
}
