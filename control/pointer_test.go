package control

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

func TestPointerRoundTrip(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	p := &Pointer{Seq: 42, Issued: time.Now().UnixMilli(), Group: "239.192.0.1:5000", Release: relA, Hosts: 2000, Rollback: true}
	p.Digest[0], p.Digest[31] = 1, 2
	b, err := SignPointer(p, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePointer(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 42 || got.Release != p.Release || got.Group != p.Group || got.Digest != p.Digest || got.Hosts != 2000 || got.Issued != p.Issued || !got.Rollback {
		t.Errorf("round trip: got %+v, want %+v", got, p)
	}
	pub := key.Public().(ed25519.PublicKey)
	if err := VerifyPointer(got, []ed25519.PublicKey{pub}, p.Group); err != nil {
		t.Errorf("verify: %v", err)
	}
	if err := VerifyPointer(got, []ed25519.PublicKey{other.Public().(ed25519.PublicKey)}, p.Group); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("untrusted key: %v, want ErrUntrustedKey", err)
	}
	if err := VerifyPointer(got, []ed25519.PublicKey{pub}, "239.192.0.2:5000"); !errors.Is(err, ErrOtherGroup) {
		t.Errorf("other group: %v, want ErrOtherGroup", err)
	}
	// every byte is covered: the seq (in the header), the release, the digest
	for _, i := range []int{9, 15, 30, len(b) - 70, len(b) - 1} {
		bad := append([]byte(nil), b...)
		bad[i] ^= 1
		if _, err := ParsePointer(bad); err == nil {
			t.Errorf("byte %d flipped: parsed", i)
		}
	}
	if _, err := ParsePointer(b[:len(b)-1]); err == nil {
		t.Error("truncated pointer parsed")
	}

	a := &PointerAnswer{Serves: true, Pointer: b}
	ab, err := a.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	ga, gp, err := ParsePointerAnswer(ab)
	if err != nil || !ga.Serves || gp.Seq != 42 {
		t.Errorf("answer: %+v %+v %v", ga, gp, err)
	}
	if typ, ok := PeekType(ab); !ok || typ != TypePointerAnswer {
		t.Errorf("PeekType = %v %v", typ, ok)
	}
	q := &PointerQuery{Group: p.Group, Have: 7}
	qb, _ := q.AppendBinary(nil)
	gq, err := ParsePointerQuery(qb)
	if err != nil || *gq != *q {
		t.Errorf("query: %+v %v", gq, err)
	}
	// a pointer is not a command: an agent's command parser refuses it
	if _, err := ParseCommand(b); err == nil {
		t.Error("ParseCommand took a pointer")
	}
}

func TestHostCert(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	hostPub, _, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	c := &HostCert{Issued: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli(), Group: "g", Host: "web1", HostKey: hostPub}
	b, err := SignHostCert(c, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHostCert(b)
	if err != nil || got.Host != "web1" || !got.HostKey.Equal(hostPub) || got.Expires != c.Expires {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	keys := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	if err := VerifyHostCert(got, keys, "g", now); err != nil {
		t.Errorf("verify: %v", err)
	}
	if err := VerifyHostCert(got, keys, "other", now); !errors.Is(err, ErrOtherGroup) {
		t.Errorf("other group: %v", err)
	}
	if err := VerifyHostCert(got, keys, "g", now.Add(2*time.Hour)); !errors.Is(err, ErrStale) {
		t.Errorf("expired: %v", err)
	}
	if err := VerifyHostCert(got, nil, "g", now); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("untrusted: %v", err)
	}
	for i := 16; i < len(b); i += 7 {
		bad := append([]byte(nil), b...)
		bad[i] ^= 1
		if _, err := ParseHostCert(bad); err == nil {
			t.Errorf("byte %d flipped: parsed", i)
		}
	}
}
