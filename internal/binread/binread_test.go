package binread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

var errTest = errors.New("test: malformed")

// sample is one of each field: u8 | u16 | u32 | u64 | 3 bytes |
// u8-prefixed "ab" | u16-prefixed "cde" | uvarint 300.
func sample() []byte {
	b := []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07}
	b = binary.BigEndian.AppendUint64(b, 0x08090a0b0c0d0e0f)
	b = append(b, 'x', 'y', 'z', 2, 'a', 'b', 0, 3, 'c', 'd', 'e')
	return binary.AppendUvarint(b, 300)
}

type fields struct {
	a      uint8
	b      uint16
	c      uint32
	d      uint64
	e      []byte
	f, g   []byte
	h      uint64
	reader *Reader
}

func readAll(b []byte) fields {
	r := New(b, errTest)
	return fields{r.U8("a"), r.U16("b"), r.U32("c"), r.U64("d"), r.Bytes("e", 3),
		r.Prefixed8("f"), r.Prefixed16("g"), r.Uvarint("h", 1000), r}
}

func TestRead(t *testing.T) {
	f := readAll(sample())
	if err := f.reader.Done(); err != nil {
		t.Fatal(err)
	}
	if f.a != 1 || f.b != 0x0203 || f.c != 0x04050607 || f.d != 0x08090a0b0c0d0e0f || string(f.e) != "xyz" ||
		string(f.f) != "ab" || string(f.g) != "cde" || f.h != 300 {
		t.Errorf("got %+v", f)
	}
}

// TestTruncated: every truncation fails, wrapping the sentinel, and the
// failure sticks: later fields read as zero.
func TestTruncated(t *testing.T) {
	full := sample()
	for n := range len(full) {
		f := readAll(full[:n])
		err := f.reader.Done()
		if !errors.Is(err, errTest) {
			t.Fatalf("%d of %d bytes: %v, want errTest", n, len(full), err)
		}
		if f.h != 0 {
			t.Errorf("%d of %d bytes: the last field read %d after a failure", n, len(full), f.h)
		}
	}
}

func TestErrorsNameTheField(t *testing.T) {
	r := New([]byte{1}, errTest)
	r.U16("port")
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "truncated in port: 1 bytes left, need 2") {
		t.Errorf("err %v does not name the field and sizes", err)
	}
	r = New(binary.AppendUvarint(nil, 7), errTest)
	if r.Uvarint("count", 6); r.Err() == nil || !strings.Contains(r.Err().Error(), "count 7, more than 6") {
		t.Errorf("uvarint above its limit: %v", r.Err())
	}
	r = New(bytes.Repeat([]byte{0xff}, 11), errTest)
	if r.Uvarint("count", ^uint64(0)); r.Err() == nil {
		t.Error("overlong uvarint read")
	}
}

func TestDoneTrailing(t *testing.T) {
	r := New([]byte{1, 2}, errTest)
	r.U8("a")
	if err := r.Done(); !errors.Is(err, errTest) || !strings.Contains(err.Error(), "1 trailing bytes") {
		t.Errorf("Done with a byte left: %v", err)
	}
}

func TestCheckKeepsTheFirst(t *testing.T) {
	r := New(nil, errTest)
	first := errors.New("first")
	r.Check(nil)
	r.Check(first)
	r.Check(errors.New("second"))
	r.Fail("third")
	if r.Err() != first {
		t.Errorf("Err = %v, want the first", r.Err())
	}
}
