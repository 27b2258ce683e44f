package control

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
)

// goldenKey signs the signed golden; it comes from a fixed seed, and
// ed25519 signatures (RFC 8032) are deterministic, so the golden is fixed.
var goldenKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

var goldenNonce = [NonceLen]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// The golden release ids; on the wire, names of their 16 hex digits.
var relA, relB = testid.Parse("0123456789abcdef"), testid.Parse("fedcba9876543210")

// env is the golden envelope: deploy 42, group "web", issued 1700000000000.
func env(targets ...string) Envelope {
	return Envelope{Deploy: 42, Group: "web", Targets: targets, Nonce: goldenNonce, Issued: 1700000000000}
}

// hexs joins annotated hex fragments, ignoring spaces.
func hexs(parts ...string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.Join(parts, ""), " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

const (
	hdrActivate = "4c434350 02 01 0000 000000000000002a" // "LCCP", v2, ACTIVATE, flags, deploy 42
	hdrRollback = "4c434350 02 02 0000 000000000000002a"
	hdrStatus   = "4c434350 02 03 0000 000000000000002a"
	hdrReply    = "4c434350 02 04 0000 000000000000002a"
	envAll      = "0000018bcfe56800 000102030405060708090a0b0c0d0e0f 03776562 0000" // issued, nonce, "web", all hosts
	nonceHex    = "000102030405060708090a0b0c0d0e0f"
	releaseHex  = "10 30313233343536373839616263646566" // "0123456789abcdef"
)

var goldens = []struct {
	name string
	msg  Message
	wire []byte
}{
	{"activate all", &Activate{Envelope: env(), Release: relA},
		hexs(hdrActivate, envAll, releaseHex, "00")},
	{"activate two hosts", &Activate{Envelope: env("h1", "h2"), Release: relA},
		hexs(hdrActivate, "0000018bcfe56800", nonceHex, "03776562",
			"0002 02 6831 02 6832", // targets h1, h2
			releaseHex, "00")},
	{"rollback to previous", &Rollback{Envelope: env()},
		hexs(hdrRollback, envAll, "00", "00")},
	{"rollback to named", &Rollback{Envelope: env(), To: relB},
		hexs(hdrRollback, envAll, "10 66656463626139383736353433323130", "00")},
	{"status", &StatusRequest{Envelope: env()},
		hexs(hdrStatus, envAll, "00")},
	{"reply ok", &Reply{Deploy: 42, Nonce: goldenNonce, Command: TypeActivate, Outcome: OutcomeOK,
		Host: "web01", Current: relA},
		hexs(hdrReply, nonceHex, "01 01", "05 7765623031", releaseHex, "0000")},
	{"reply failed", &Reply{Deploy: 42, Nonce: goldenNonce, Command: TypeActivate, Outcome: OutcomeFailed,
		Host: "web01", Error: "release: not staged"},
		hexs(hdrReply, nonceHex, "01 02", "05 7765623031", "00",
			"0013 72656c656173653a206e6f7420737461676564")},
	{"reply status", &Reply{Deploy: 42, Nonce: goldenNonce, Command: TypeStatus, Outcome: OutcomeOK,
		Host: "web01", Current: relA,
		Status: &Status{Previous: relB, FreeBytes: 1 << 30, Staged: []image.ID{relA},
			AgentVersion: "v1.2.3", LastError: "disk full"}},
		hexs(hdrReply, nonceHex, "03 01", "05 7765623031", releaseHex, "0000",
			"10 66656463626139383736353433323130", // previous
			"0000000040000000",                    // free: 1 GiB
			"01", releaseHex,                      // staged
			"0006 76312e322e33", "0009 6469736b2066756c6c", "0000")}, // version, last error, last refusal
}

// signedGolden is ACTIVATE all signed by goldenKey. The signature in
// TestSignedGolden was printed by a run of this code and is checked with
// ed25519.Verify as well.
func signedGolden(t *testing.T) (*Activate, []byte) {
	t.Helper()
	c := &Activate{Envelope: env(), Release: relA}
	wire, err := Sign(c, goldenKey)
	if err != nil {
		t.Fatal(err)
	}
	return c, wire
}

func TestGolden(t *testing.T) {
	for _, tc := range goldens {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.msg.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.wire) {
				t.Errorf("encoding:\n got %x\nwant %x", got, tc.wire)
			}
			m, err := Parse(tc.wire)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.msg, m); diff != "" {
				t.Errorf("parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSignedGolden(t *testing.T) {
	c, wire := signedGolden(t)
	pub := goldenKey.Public().(ed25519.PublicKey)
	want := hexs(hdrActivate, envAll, releaseHex, "01", hex.EncodeToString(pub),
		"1d34afdf6e0b9a29b8b13deb496ff863c53c1a66366f041c9b122533315e566e"+
			"338110106984841c8f470aa35f0dfd0c26a74536f920e4f8a63874f891d93d07")
	if !bytes.Equal(wire, want) {
		t.Errorf("signed encoding:\n got %x\nwant %x", wire, want)
	}
	if !ed25519.Verify(pub, wire[:len(wire)-64], wire[len(wire)-64:]) {
		t.Error("signature does not cover every byte before it")
	}
	m, err := ParseCommand(wire)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Command(c), m); diff != "" {
		t.Errorf("parse (-want +got):\n%s", diff)
	}
}

// encodings returns every golden encoding, the signed one included.
func encodings(t testing.TB) [][]byte {
	var out [][]byte
	for _, tc := range goldens {
		out = append(out, tc.wire)
	}
	c := &Activate{Envelope: env("h1"), Release: relA}
	wire, err := Sign(c, goldenKey)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, wire)
}

func TestTruncation(t *testing.T) {
	for _, wire := range encodings(t) {
		for i := range len(wire) {
			if m, err := Parse(wire[:i]); err == nil {
				t.Errorf("Parse of %d of %d bytes of %x = %v, want an error", i, len(wire), wire, m)
			} else if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse of %d bytes: %v, want ErrMalformed", i, err)
			}
		}
		if _, err := Parse(append(bytes.Clone(wire), 0)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse with a trailing byte: %v, want ErrMalformed", err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	base := goldens[0].wire
	edit := func(off int, v ...byte) []byte {
		b := bytes.Clone(base)
		copy(b[off:], v)
		return b
	}
	cases := []struct {
		name string
		wire []byte
		want error
	}{
		{"magic", edit(0, 'X'), ErrMalformed},
		{"version", edit(4, 3), ErrVersion},
		{"type 0", edit(5, 0), ErrMalformed},
		{"type 9", edit(5, 9), ErrMalformed},
		{"flags", edit(7, 1), ErrMalformed},
		{"group too long", edit(40, MaxName+1), ErrMalformed},
		{"group empty", edit(40, 0), ErrMalformed},
		{"group space", edit(41, ' '), ErrMalformed},
		{"too many targets", edit(44, 0xff, 0xff), ErrMalformed},
		{"scheme", edit(len(base)-1, 9), ErrMalformed},
		{"release with slash space", hexs(hdrActivate, envAll, "03 612062", "00"), ErrMalformed},
		{"oversized", append(bytes.Clone(base), make([]byte, MaxMessageLen)...), ErrMalformed},
		{"reply outcome 0", edit32(goldens[5].wire, 33, 0), ErrMalformed},
		{"reply ok with error", hexs(hdrReply, nonceHex, "01 01", "05 7765623031", "00", "0001 78"), ErrMalformed},
		{"reply status without fields", hexs(hdrReply, nonceHex, "03 01", "05 7765623031", "00", "0000"), ErrMalformed},
		{"reply staged count", hexs(hdrReply, nonceHex, "03 01", "05 7765623031", "00", "0000", "00",
			"0000000000000000", "ff"), ErrMalformed},
		{"reply text too long", hexs(hdrReply, nonceHex, "01 02", "05 7765623031", "00", "ffff"), ErrMalformed},
		{"reply text not utf-8", hexs(hdrReply, nonceHex, "01 02", "05 7765623031", "00", "0001 ff"), ErrMalformed},
	}
	for _, tc := range cases {
		if m, err := Parse(tc.wire); !errors.Is(err, tc.want) {
			t.Errorf("%s: Parse = %v, %v; want %v", tc.name, m, err, tc.want)
		}
	}
	if _, err := ParseCommand(goldens[5].wire); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseCommand of a reply: %v, want ErrMalformed", err)
	}
	if _, err := ParseReply(base); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseReply of a command: %v, want ErrMalformed", err)
	}
}

func edit32(b []byte, off int, v byte) []byte {
	b = bytes.Clone(b)
	b[off] = v
	return b
}

func TestEncodeRefuses(t *testing.T) {
	long := strings.Repeat("x", MaxName+1)
	many := make([]string, MaxTargets+1)
	for i := range many {
		many[i] = "h"
	}
	cases := []struct {
		name string
		msg  Message
	}{
		{"empty group", &StatusRequest{Envelope: Envelope{}}},
		{"long group", &StatusRequest{Envelope: Envelope{Group: long}}},
		{"too many targets", &StatusRequest{Envelope: Envelope{Group: "g", Targets: many}}},
		{"empty target", &StatusRequest{Envelope: Envelope{Group: "g", Targets: []string{""}}}},
		{"empty release", &Activate{Envelope: env()}},
		{"bad key", &StatusRequest{Envelope: Envelope{Group: "g", PublicKey: make([]byte, 3)}}},
		{"reply no host", &Reply{Command: TypeActivate, Outcome: OutcomeOK}},
		{"reply to a reply", &Reply{Command: TypeReply, Outcome: OutcomeOK, Host: "h"}},
		{"reply failed without error", &Reply{Command: TypeActivate, Outcome: OutcomeFailed, Host: "h"}},
		{"reply status missing", &Reply{Command: TypeStatus, Outcome: OutcomeOK, Host: "h"}},
		{"reply long error", &Reply{Command: TypeActivate, Outcome: OutcomeFailed, Host: "h",
			Error: strings.Repeat("e", MaxText+1)}},
		{"reply too many staged", &Reply{Command: TypeStatus, Outcome: OutcomeOK, Host: "h",
			Status: &Status{Staged: make([]image.ID, MaxStaged+1)}}},
	}
	for _, tc := range cases {
		if b, err := tc.msg.AppendBinary(nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: AppendBinary = %x, %v; want ErrMalformed", tc.name, b, err)
		}
	}
}

// TestMaxCommandFits: a command at every bound still fits one datagram.
func TestMaxCommandFits(t *testing.T) {
	c := &Activate{Envelope: env(), Release: relA} // release ids are 16 digits
	c.Group = strings.Repeat("g", MaxName)
	for range MaxTargets {
		c.Targets = append(c.Targets, strings.Repeat("h", MaxName))
	}
	wire, err := Sign(c, goldenKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(wire) > MaxMessageLen {
		t.Errorf("largest command is %d bytes, more than %d", len(wire), MaxMessageLen)
	}
	if _, err := ParseCommand(wire); err != nil {
		t.Error(err)
	}
}

func TestTruncateText(t *testing.T) {
	s := TruncateText(strings.Repeat("é", MaxText))
	if len(s) > MaxText || checkText("t", s) != nil || !strings.HasSuffix(s, "…") {
		t.Errorf("truncateText gave %d bytes, valid %v", len(s), checkText("t", s))
	}
	if got := TruncateText("a\xffb"); checkText("t", got) != nil {
		t.Errorf("TruncateText(invalid UTF-8) = %q, not valid", got)
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[Type]string{TypeActivate: "ACTIVATE", TypeRollback: "ROLLBACK",
		TypeStatus: "STATUS", TypeReply: "REPLY", 77: "Type(77)"} {
		if typ.String() != want {
			t.Errorf("Type %d String = %q, want %q", typ, typ, want)
		}
	}
	for o, want := range map[Outcome]string{OutcomeOK: "ok", OutcomeFailed: "failed", OutcomeRefused: "refused", 0: "Outcome(0)"} {
		if o.String() != want {
			t.Errorf("Outcome %d String = %q, want %q", o, o, want)
		}
	}
}

// FuzzParse: whatever parses re-encodes to the same bytes and parses to
// the same message.
func FuzzParse(f *testing.F) {
	for _, wire := range encodings(f) {
		f.Add(wire)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		again, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatalf("parsed %x but cannot encode %+v: %v", b, m, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
		m2, err := Parse(again)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("parse -> append -> parse changed the message:\n%s", diff)
		}
	})
}

// Host ids follow the one rule (hostkey.CheckID) in commands and replies,
// so send and deploy accept the same ids.
func TestHostIDRule(t *testing.T) {
	for _, id := range []string{"a b", "-web", "web\x1b"} {
		c := &Activate{Envelope: NewEnvelope("web", 1, []string{id}, t0), Release: relA}
		if _, err := c.AppendBinary(nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("a command targeting %q encodes: %v", id, err)
		}
		r := &Reply{Command: TypeStatus, Outcome: OutcomeRefused, Error: "no", Host: id}
		if _, err := r.AppendBinary(nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("a reply from %q encodes: %v", id, err)
		}
	}
	// and parsing takes no host id encoding refuses (it took "0!": found
	// by FuzzParse, as a message that parsed and did not encode again)
	c := &Activate{Envelope: NewEnvelope("web", 1, []string{"hostZ"}, t0), Release: relA}
	r := &Reply{Command: TypeStatus, Outcome: OutcomeRefused, Error: "no", Host: "hostZ"}
	for _, m := range []interface{ AppendBinary([]byte) ([]byte, error) }{c, r} {
		b, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte("hostZ"))
		copy(b[i:], "0!stZ")
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%T naming host %q parses: %v", m, "0!stZ", err)
		}
	}
}

// TestStatusDoctorFields: the doctor's fields follow the status, only when
// set; a reply without them (an older agent's) parses with them zero, and
// a cut inside them is malformed.
func TestStatusDoctorFields(t *testing.T) {
	r := &Reply{Deploy: 42, Nonce: goldenNonce, Command: TypeStatus, Outcome: OutcomeOK,
		Host: "web01", Status: &Status{Probe: goldenNonce, MTU: 1500, Problems: "no loop"}}
	want := hexs(hdrReply, nonceHex, "03 01", "05 7765623031", "00", "0000",
		"00", "0000000000000000", "00", "0000", "0000", "0000", // previous .. last refusal
		nonceHex, "05dc", "0007 6e6f206c6f6f70") // probe, MTU 1500, problems
	b, err := r.AppendBinary(nil)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("encoding: %x, %v\nwant %x", b, err, want)
	}
	got, err := Parse(b)
	if err != nil || got.(*Reply).Status.MTU != 1500 || got.(*Reply).Status.Probe != goldenNonce || got.(*Reply).Status.Problems != "no loop" {
		t.Fatalf("parse: %+v, %v", got, err)
	}
	old := len(b) - NonceLen - 2 - 9
	if m, err := Parse(b[:old]); err != nil || m.(*Reply).Status.hasDoctor() {
		t.Errorf("a reply without the doctor's fields: %+v, %v", m, err)
	}
	for n := old + 1; n < len(b); n++ {
		if _, err := Parse(b[:n]); !errors.Is(err, ErrMalformed) {
			t.Errorf("cut at %d of %d bytes: %v, want ErrMalformed", n, len(b), err)
		}
	}
	zero := append(bytes.Clone(b[:old]), make([]byte, NonceLen+2+2)...)
	if _, err := Parse(zero); !errors.Is(err, ErrMalformed) {
		t.Errorf("an all-zero doctor block: %v, want ErrMalformed", err)
	}
}

// TestReleaseIDs: a release id is a name of its 16 lowercase hex digits on
// the wire, as before ids were typed; the zero id (none) the empty name,
// where none is allowed. Any other name where an id is expected does not
// parse, and the error names the field.
func TestReleaseIDs(t *testing.T) {
	cases := []struct {
		name, field string
		wire        []byte
	}{
		{"activate v1", "release", hexs(hdrActivate, envAll, "02 7631", "00")},
		{"activate upper case", "release", hexs(hdrActivate, envAll, "10 30313233343536373839414243444546", "00")},
		{"activate zero id", "release", hexs(hdrActivate, envAll, "10 30303030303030303030303030303030", "00")},
		{"activate none", "release", hexs(hdrActivate, envAll, "00", "00")},
		{"rollback to a path", "release", hexs(hdrRollback, envAll, "09 2e2e2f2e2e2f657463", "00")},
		{"reply current", "current release", hexs(hdrReply, nonceHex, "01 01", "05 7765623031", "02 7631", "0000")},
		{"status previous", "previous release", hexs(hdrReply, nonceHex, "03 01", "05 7765623031", "00", "0000",
			"03 6f6c64", "0000000000000000", "00", "0000", "0000", "0000")},
		{"status staged", "staged release", hexs(hdrReply, nonceHex, "03 01", "05 7765623031", "00", "0000",
			"00", "0000000000000000", "01 00", "0000", "0000", "0000")},
	}
	for _, tc := range cases {
		m, err := Parse(tc.wire)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Parse = %+v, %v; want ErrMalformed naming %q", tc.name, m, err, tc.field)
		}
	}
	p, _ := SignPointer(&Pointer{Group: "web", Release: relA}, goldenKey)
	bad := bytes.Replace(p, []byte(relA.String()), []byte("0123456789ABCDEF"), 1)
	if _, err := ParsePointer(bad); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "release") {
		t.Errorf("pointer naming no release id: %v, want ErrMalformed naming the release", err)
	}
	if _, err := (&Pointer{Group: "web", PublicKey: goldenKey.Public().(ed25519.PublicKey)}).appendSigned(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("a pointer to no release encodes: %v", err)
	}
}
