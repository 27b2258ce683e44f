package multicast

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/internal/testenv"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// localCopy writes the non-zero chunks of the test image that keep
// selects into a file of their own, in reverse order so offsets differ
// from the image's, and returns an index of them.
func (ts *testSession) localCopy(name string, keep func(i int) bool) ChunkIndex {
	ts.t.Helper()
	src, err := os.ReadFile(ts.img)
	if err != nil {
		ts.t.Fatal(err)
	}
	path := filepath.Join(ts.t.TempDir(), name+".old.img")
	var b []byte
	x := ChunkIndex{}
	for i := len(ts.m.Chunks) - 1; i >= 0; i-- {
		if c := ts.m.Chunks[i]; !c.Zero && keep(i) {
			off, n := ts.m.ChunkRange(i)
			x[c.Hash] = ChunkLoc{Path: path, Off: int64(len(b))}
			b = append(b, src[off:off+int64(n)]...)
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		ts.t.Fatal(err)
	}
	return x
}

// nonZero lists the test image's non-zero chunks.
func (ts *testSession) nonZero() []int {
	var nz []int
	for i, c := range ts.m.Chunks {
		if !c.Zero {
			nz = append(nz, i)
		}
	}
	return nz
}

// Hosts that hold most chunks locally (different ones) get only what they
// lack; a host that holds nothing gets everything in the same session;
// the sender multicasts only the chunks some host lacks.
func TestChunkReuse(t *testing.T) {
	probe := newTestSession(t, nil)
	nz := probe.nonZero()
	lacks := map[string][]int{"a": {nz[1], nz[5]}, "b": {nz[2], nz[9]}, "c": nz, "full": nil}
	for _, tc := range []struct {
		name  string
		hosts []string
		sent  int     // distinct chunks the sender must multicast
		loss  float64 // per delivery
	}{
		{"two deltas and a wiped host", []string{"a", "b", "c"}, len(nz), 0},
		{"the same at 5% loss", []string{"a", "b", "c"}, len(nz), 0.05},
		{"two deltas", []string{"a", "b"}, 4, 0},
		{"nothing to send", []string{"full"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestSession(t, lossy(tc.loss, 5))
			ts.send.Hosts = tc.hosts
			local := map[string]ChunkIndex{}
			for _, h := range tc.hosts {
				if h != "c" {
					local[h] = ts.localCopy(h, func(i int) bool { return !slices.Contains(lacks[h], i) })
				}
			}
			res := ts.runVerified(tc.hosts, func(h string, o *ReceiveOptions) {
				if x := local[h]; x != nil {
					o.Local = x.Lookup
				}
			})
			for _, h := range tc.hosts {
				if want := len(nz) - len(lacks[h]); res[h].Reused != want {
					t.Errorf("%s: reused %d chunks, want %d", h, res[h].Reused, want)
				}
			}
			r := ts.report
			if done, all := r.Completed(); done != len(tc.hosts) || all != len(tc.hosts) {
				t.Errorf("report: %d of %d complete: %+v", done, all, r.Hosts)
			}
			if r.ChunksSent != tc.sent || r.ChunksReused != len(nz)-tc.sent || r.ChunksTotal != len(ts.m.Chunks) ||
				r.ChunksZero != len(ts.m.Chunks)-len(nz) {
				t.Errorf("report: chunks total %d zero %d reused %d sent %d, want %d %d %d %d", r.ChunksTotal, r.ChunksZero,
					r.ChunksReused, r.ChunksSent, len(ts.m.Chunks), len(ts.m.Chunks)-len(nz), len(nz)-tc.sent, tc.sent)
			}
		})
	}
}

// Local chunks are trusted, not read back (the host vouches for its kept
// images; the agent scrubs them): a corrupted local copy lands in the
// image as it is, which checkImage sees and the receiver does not. A local
// source that names bytes past the end of its file cannot be copied: that
// chunk is received instead.
func TestLocalChunksTrusted(t *testing.T) {
	ts := newTestSession(t, nil)
	nz := ts.nonZero()
	x := ts.localCopy("h", func(int) bool { return true })
	short := ts.m.Chunks[nz[3]].Hash
	x[short] = ChunkLoc{Path: x[short].Path, Off: 1 << 30}
	ts.send.Hosts = []string{"h"}
	res, errs := ts.run(context.Background(), ts.send.Hosts, func(_ string, o *ReceiveOptions) { o.Local = x.Lookup })
	if errs["h"] != nil {
		t.Fatal(errs["h"])
	}
	ts.checkImage("h")
	if res["h"].Reused != len(nz)-1 {
		t.Errorf("reused %d chunks, want %d", res["h"].Reused, len(nz)-1)
	}
	if ts.report.ChunksSent != 1 {
		t.Errorf("sender sent %d chunks, want the 1 whose local copy is out of reach", ts.report.ChunksSent)
	}
}

// Progress is called with bytes that never go down, phases in order, and
// a last call saying done with every host complete.
func TestSendProgress(t *testing.T) {
	ts := newTestSession(t, lossy(0.02, 4))
	ts.send.Hosts = []string{"p1", "p2"}
	var mu sync.Mutex
	var got []SendProgress
	ts.send.Progress = func(p SendProgress) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}
	_, errs := ts.run(context.Background(), ts.send.Hosts, nil)
	for _, h := range ts.send.Hosts {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 2 {
		t.Fatalf("progress called %d times, want at least one per phase", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Bytes < got[i-1].Bytes || got[i].Phase < got[i-1].Phase || got[i].DataQueued < got[i-1].DataQueued {
			t.Errorf("progress went back: %+v after %+v", got[i], got[i-1])
		}
	}
	var data int64
	for _, i := range ts.nonZero() {
		_, n := ts.m.ChunkRange(i)
		data += int64(n)
	}
	last := got[len(got)-1]
	want := SendProgress{Phase: PhaseDone, Bytes: ts.report.Bytes, DataBytes: data, DataQueued: data, Hosts: 2, Registered: 2, Complete: 2}
	if len(last.Slowest) != 0 { // every host complete: nobody is slow
		t.Errorf("last progress names slow hosts: %+v", last.Slowest)
	}
	last.Slowest = nil
	if !reflect.DeepEqual(last, want) {
		t.Errorf("last progress %+v, want %+v", last, want)
	}
	sawSlow := false
	for _, p := range got {
		sawSlow = sawSlow || len(p.Slowest) > 0
	}
	if !sawSlow {
		t.Error("no progress named the hosts still to finish")
	}
	if got[0].Phase != PhaseRegistering {
		t.Errorf("first progress in phase %v, want %v", got[0].Phase, PhaseRegistering)
	}
}

// held lists what a store holds compactly: all-zero chunks join runs, a
// host with only zero chunks lists nothing.
func TestHeldRanges(t *testing.T) {
	m := &image.Manifest{ImageSize: 10 * 4096, ChunkSize: 4096, Chunks: make([]image.Chunk, 10)}
	m.Chunks[2].Zero, m.Chunks[7].Zero = true, true
	st := newStore(m, &wire.Announce{SymbolSize: 1024, BlockSymbols: 8}, nil, nil)
	if got := st.held(); got != nil {
		t.Errorf("holding only zero chunks: %v, want nothing", got)
	}
	for _, i := range []int{0, 1, 3, 5, 6, 8} {
		st.chunks[i].done = true
	}
	want := []wire.Range{{First: 0, Count: 4}, {First: 5, Count: 4}}
	if d := cmp.Diff(want, st.held()); d != "" {
		t.Errorf("held (-want +got):\n%s", d)
	}
}

// A host that joins after the first pass, holding nothing, gets the chunks
// left out of it (held by every host registered in time) through whole-
// chunk NACKs. The early host is kept incomplete (its lacking chunk's
// symbols are dropped) until the late one has registered, so the session
// cannot end first.
func TestLateJoinerAfterReuse(t *testing.T) {
	ts := newTestSession(t, nil)
	nz := ts.nonZero()
	x := ts.localCopy("early", func(i int) bool { return i != nz[1] && i != nz[5] })
	runLateJoiner(t, ts, uint32(nz[1]), func(o *ReceiveOptions) { o.Local = x.Lookup })
	r := ts.report
	if r.ChunksReused != len(nz)-2 || r.ChunksSent != len(nz) {
		t.Errorf("report: reused %d, sent %d chunks; want %d left out of the first pass and all %d sent in the end",
			r.ChunksReused, r.ChunksSent, len(nz)-2, len(nz))
	}
}

// A guest (a host not in the closed group) that holds nothing must not
// decide what the members are sent: the first pass still leaves out every
// chunk both members hold.
func TestGuestDoesNotDefeatReuse(t *testing.T) {
	probe := newTestSession(t, nil)
	nz := probe.nonZero()
	lacks := map[string][]int{"a": {nz[1], nz[5]}, "b": {nz[2], nz[9]}}
	ts := newTestSession(t, nil)
	ts.send.Hosts = []string{"a", "b"}
	guestIn := false
	ts.net.SetDrop(func(from, to string, b []byte) bool { // called with the net's lock held
		if wire.Type(b[5]) != wire.TypeRegister || to != "sender" {
			return false
		}
		if from == "guest" {
			if _, m, err := wire.Parse(b); err == nil && !m.(*wire.Register).NeedManifest {
				guestIn = true // a real registration, not a request for the manifest
			}
			return false
		}
		if _, m, err := wire.Parse(b); err == nil && m.(*wire.Register).NeedManifest {
			return false
		}
		return !guestIn // the members register only after the guest (they retry)
	})
	local := map[string]ChunkIndex{}
	for _, h := range []string{"a", "b"} {
		local[h] = ts.localCopy(h, func(i int) bool { return !slices.Contains(lacks[h], i) })
	}
	_, errs := ts.run(context.Background(), []string{"a", "b", "guest"}, func(h string, o *ReceiveOptions) {
		if x := local[h]; x != nil {
			o.Local = x.Lookup
		}
		if h == "guest" {
			o.SenderTimeout = time.Second // it may be left unfinished when the members are done
		}
	})
	for _, h := range []string{"a", "b"} {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
		ts.checkImage(h)
	}
	if want := len(nz) - 4; ts.report.ChunksReused != want {
		t.Errorf("first pass left out %d chunks, want the %d both members hold (a guest holding nothing must not count)", ts.report.ChunksReused, want)
	}
}

// runLateJoiner runs a session with two hosts: "early", set up by early,
// and "late", which starts once early has seen data and registers while
// the session runs (chunk withheld is kept from early until then, so the
// session cannot end first). Both must end with the right image.
func runLateJoiner(t *testing.T, ts *testSession, withheld uint32, early func(*ReceiveOptions)) {
	t.Helper()
	started := make(chan struct{})
	lateIn := false
	ts.net.SetDrop(func(from, to string, b []byte) bool { // called with the net's lock held
		typ := wire.Type(b[5])
		switch {
		case to == "late" && typ == wire.TypeRegister && len(b) > wire.HeaderLen+6 && !lateIn:
			lateIn = true // the sender acknowledged late's registration
		case to == "early" && (typ == wire.TypeData || typ == wire.TypeRepair) && len(b) >= wire.HeaderLen+4:
			if started != nil {
				close(started)
				started = nil
			}
			return !lateIn && binary.BigEndian.Uint32(b[wire.HeaderLen:]) == withheld
		}
		return false
	})
	begin := started
	ts.send.MinHosts = 1
	ts.runLate([]string{"early", "late"}, begin, func(h string, o *ReceiveOptions) {
		if h == "early" {
			early(o)
		}
	})
	if done, all := ts.report.Completed(); done != 2 || all != 2 {
		t.Errorf("report: %d of %d complete: %+v", done, all, ts.report.Hosts)
	}
}

// scratchFilesystems are the hosts' store filesystems the reflink tests
// make (mounttest.ScratchFS): one that shares extents, one that cannot.
var scratchFilesystems = []struct {
	name, mkfs string
	args       []string
	reflink    bool
}{
	{"xfs", "mkfs.xfs", []string{"-q", "-m", "reflink=1"}, true},
	{"ext4", "mkfs.ext4", []string{"-q", "-F"}, false},
}

// TestLocalReflink: a host whose kept image is on XFS with reflink fills
// the new image from it by sharing extents, one FICLONERANGE per run: every
// reused byte is reflinked, none copied. On ext4 the same runs are copied
// in the kernel (copy_file_range), none reflinked. Either way the image
// verifies and only the chunks the host lacks are sent.
func TestLocalReflink(t *testing.T) {
	testenv.RequireLoop(t)
	for _, fs := range scratchFilesystems {
		t.Run(fs.name, func(t *testing.T) {
			testenv.RequireTool(t, fs.mkfs)
			dir := mounttest.ScratchFS(t, fs.mkfs, fs.args...)
			ts := newTestSession(t, nil)
			ts.dir = dir
			kept := filepath.Join(dir, "kept.img")
			if out, err := exec.Command("cp", "--sparse=always", "--reflink=never", ts.img, kept).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			nz := ts.nonZero()
			x := ChunkIndex{}
			x.Add(kept, ts.m)
			lack := []int{nz[2], nz[len(nz)-1]} // one inside, and the short last chunk
			var reusedBytes int64
			for _, i := range nz {
				if !slices.Contains(lack, i) {
					_, n := ts.m.ChunkRange(i)
					reusedBytes += int64(n)
				}
			}
			for _, i := range lack {
				delete(x, ts.m.Chunks[i].Hash)
			}
			ts.send.Hosts = []string{"h"}
			res, errs := ts.run(context.Background(), ts.send.Hosts, func(_ string, o *ReceiveOptions) { o.Local = x.Lookup })
			if errs["h"] != nil {
				t.Fatal(errs["h"])
			}
			ts.checkImage("h")
			want := int64(0)
			if fs.reflink {
				want = reusedBytes
			}
			if res["h"].Reused != len(nz)-len(lack) || res["h"].Reflinked != want {
				t.Errorf("reused %d chunks, %d bytes reflinked; want %d chunks, %d bytes", res["h"].Reused, res["h"].Reflinked, len(nz)-len(lack), want)
			}
			if ts.report.ChunksSent != len(lack) {
				t.Errorf("sent %d chunks, want the %d the host lacked", ts.report.ChunksSent, len(lack))
			}
		})
	}
}
