package deploy

import (
	"crypto/ed25519"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/internal/testid"
)

// captureConn records what is written to it.
type captureConn struct {
	mu   sync.Mutex
	sent map[string][][]byte // by destination
	*replyQueue
}

func (c *captureConn) WriteTo(p []byte, to net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[to.String()] = append(c.sent[to.String()], append([]byte(nil), p...))
	return len(p), nil
}

// TestPublishPointer: each pointer has a higher sequence number than the
// last recorded, is signed for the group, and goes to the group and to
// every known host address.
func TestPublishPointer(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	conn := &captureConn{sent: map[string][][]byte{}, replyQueue: newReplyQueue()}
	group := &net.UDPAddr{IP: net.IPv4(239, 192, 0, 1), Port: 5001}
	c := &Commander{Conn: conn, To: group, Group: "239.192.0.1:5000", Key: key,
		Unicast: map[string]string{"web2": "10.0.0.2"}}
	path := filepath.Join(t.TempDir(), "pointer.json")
	p1, err := Publish(c, path, testid.Parse("aaaaaaaaaaaaaaaa"), [32]byte{1}, []string{"web1", "web2"}, 0, false, false)
	if err != nil {
		t.Fatal(err)
	}
	// a record from the future (another sender's clock ahead): still higher
	rec, _ := ReadPointer(path)
	rec.Seq += 1 << 40
	b, _ := control.SignPointer(&control.Pointer{Seq: rec.Seq, Group: c.Group, Release: rel("x")}, key)
	rec.Pointer = b
	writeRecord(t, path, rec)
	p2, err := Publish(c, path, testid.Parse("bbbbbbbbbbbbbbbb"), [32]byte{}, []string{"web1", "web2"}, 0, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Seq != rec.Seq+1 || p1.Seq >= p2.Seq {
		t.Errorf("seqs %d then %d (record %d); want each above the last", p1.Seq, p2.Seq, rec.Seq)
	}
	got := conn.sent[group.String()]
	if len(got) != 2*pointerSends {
		t.Fatalf("%d pointers to the group, want %d", len(got), 2*pointerSends)
	}
	p, err := control.ParsePointer(got[len(got)-1])
	if err != nil || control.VerifyPointer(p, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, c.Group) != nil {
		t.Fatalf("published pointer: %+v %v", p, err)
	}
	if p.Release != testid.Parse("bbbbbbbbbbbbbbbb") || p.Hosts != 2 || p.Seq != p2.Seq || !p.Rollback {
		t.Errorf("published %v, want release b, 2 hosts, seq %d", p, p2.Seq)
	}
	if n := len(conn.sent["10.0.0.2:5001"]); n != 2*pointerSends {
		t.Errorf("%d pointers by unicast to web2's known address, want %d", n, 2*pointerSends)
	}
	if last, _ := ReadPointer(path); last.Seq != p2.Seq || last.Release != p2.Release {
		t.Errorf("record %+v, want the last pointer", last)
	}
}

func writeRecord(t *testing.T, path string, r *PointerRecord) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
