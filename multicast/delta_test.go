package multicast

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/internal/testenv"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// deltaChanged are the test image's chunks the new image changes one
// 4 KiB block of: random (0, 4, 8) and text (1, 5) chunks, which the base
// holds, and an all-zero one (2), which it does not.
var deltaChanged = []int{0, 1, 2, 4, 5, 8}

// deltaCovered counts the changed chunks the base holds (non-zero there).
const deltaCovered = 5

// deltaSession turns a test session into a delta deploy: the test image
// becomes the base, and the session sends a copy of it with one 4 KiB
// block rewritten in each of deltaChanged. withBase says whether the
// sender is given the base.
func deltaSession(t *testing.T, withBase bool) (ts *testSession, base *image.Manifest, basePath string) {
	ts = newTestSession(t, nil)
	base, basePath = ts.m, ts.img
	b, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	for n, i := range deltaChanged {
		off := i*testChunk + (n%4)*8192
		copy(b[off:off+4096], strings.Repeat(fmt.Sprintf("patched block %d of a changed file. ", n), 4096/30+1))
	}
	ts.img = filepath.Join(t.TempDir(), "new.img")
	if err := os.WriteFile(ts.img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := image.HashFile(context.Background(), ts.img, testChunk)
	if err != nil {
		t.Fatal(err)
	}
	m.Label = "test"
	m.Sign(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	ts.m, ts.send.Manifest = m, m
	if withBase {
		if err := image.WriteManifestFile(basePath+".manifest", base); err != nil {
			t.Fatal(err)
		}
		p := openPack(t, ts.img, m, basePath)
		ts.send.Pack, ts.send.BaseID = p, p.BaseID
	}
	return ts, base, basePath
}

// hostBase gives host h its own copy of the base image (corrupted by
// corrupt, if set) as BaseImage and as the local chunk index, as an agent
// does with its live release.
func hostBase(t *testing.T, ts *testSession, base *image.Manifest, basePath, h string, o *ReceiveOptions, corrupt func([]byte)) {
	b, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	if corrupt != nil {
		corrupt(b)
	}
	path := filepath.Join(ts.dir, h+".base.img")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	x := ChunkIndex{}
	x.Add(path, base)
	o.Local = x.Lookup
	o.BaseImage = func(id image.ID) (string, bool) { return path, id == base.ID() }
}

// runDelta runs one session to hosts, each holding the base unless
// lacking says otherwise, and checks every host ends on the new image.
func runDelta(t *testing.T, ts *testSession, base *image.Manifest, basePath string, hosts []string,
	lacking map[string]bool, corrupt map[string]func([]byte)) map[string]*Result {
	ts.send.Hosts = hosts
	res := ts.runVerified(hosts, func(h string, o *ReceiveOptions) {
		if !lacking[h] {
			hostBase(t, ts, base, basePath, h, o, corrupt[h])
		}
	})
	if done, all := ts.report.Completed(); done != len(hosts) || all != len(hosts) {
		t.Errorf("report: %d of %d complete: %+v", done, all, ts.report.Hosts)
	}
	if len(lacking) == 0 && ts.report.ChunksSent != len(deltaChanged) {
		t.Errorf("report: %d chunks sent, want the %d changed", ts.report.ChunksSent, len(deltaChanged))
	}
	return res
}

// Hosts holding the base get the changed chunks as deltas against it: a
// small fraction of the bytes of sending them plain.
func TestDeltaChunks(t *testing.T) {
	hosts := []string{"d1", "d2", "d3"}
	ts, base, basePath := deltaSession(t, false)
	runDelta(t, ts, base, basePath, hosts, nil, nil)
	plain := ts.report
	if plain.DeltaChunks != 0 {
		t.Errorf("without a base: %d delta chunks, want 0", plain.DeltaChunks)
	}
	ts, base, basePath = deltaSession(t, true)
	runDelta(t, ts, base, basePath, hosts, nil, nil)
	delta := ts.report
	if delta.DeltaChunks != deltaCovered {
		t.Errorf("%d delta chunks, want %d", delta.DeltaChunks, deltaCovered)
	}
	t.Logf("bytes on the wire: plain %d (payload %d), delta %d (payload %d)", plain.Bytes, plain.PayloadBytes, delta.Bytes, delta.PayloadBytes)
	if delta.Bytes*10 >= plain.Bytes {
		t.Errorf("delta session sent %d bytes, want under a tenth of plain's %d", delta.Bytes, plain.Bytes)
	}
}

// One registered host lacking the base (a wiped host: no base, no local
// chunks) makes the whole session plain.
func TestDeltaHostLacksBase(t *testing.T) {
	ts, base, basePath := deltaSession(t, true)
	runDelta(t, ts, base, basePath, []string{"d1", "d2", "nobase"}, map[string]bool{"nobase": true}, nil)
	if ts.report.DeltaChunks != 0 {
		t.Errorf("%d delta chunks with a host lacking the base, want 0", ts.report.DeltaChunks)
	}
}

// A host whose base chunk is corrupt decodes a wrong chunk, which fails
// its hash check; it asks for the chunk again and gets it plain.
func TestDeltaCorruptBase(t *testing.T) {
	ts, base, basePath := deltaSession(t, true)
	rot := func(b []byte) { b[4*testChunk+60000] ^= 0xff } // chunk 4, away from its changed block
	res := runDelta(t, ts, base, basePath, []string{"d1", "d2", "rot"}, nil, map[string]func([]byte){"rot": rot})
	if ts.report.DeltaChunks != deltaCovered {
		t.Errorf("%d delta chunks, want %d", ts.report.DeltaChunks, deltaCovered)
	}
	if res["rot"].BadChunks != 1 {
		t.Errorf("host with a corrupt base: %d bad chunks, want 1", res["rot"].BadChunks)
	}
}

// A host that joins a delta session late, without the base, ignores the
// delta symbols and asks for those chunks whole; they come plain and it
// completes in the same session. The early host is kept incomplete (one
// chunk's symbols are dropped) until the late one has registered.
func TestDeltaLateJoinerWithoutBase(t *testing.T) {
	ts, base, basePath := deltaSession(t, true)
	runLateJoiner(t, ts, uint32(deltaChanged[0]), func(o *ReceiveOptions) { hostBase(t, ts, base, basePath, "early", o, nil) })
	if ts.report.DeltaChunks != deltaCovered {
		t.Errorf("%d delta chunks in the first pass, want %d", ts.report.DeltaChunks, deltaCovered)
	}
}

// Deltas under loss, with a late joiner that lacks the base: the session
// starts in delta mode with the three base holders; late joins once data
// flows and asks for the delta chunks whole, so they go plain mid-session.
// Every host must end with the right image. (Repairing a chunk after it
// went plain used to abort the session; that path depends on timing here,
// so TestSchedulerAfterLayoutChange is the check that always catches it.)
func TestDeltaUnderLossWithLateJoiner(t *testing.T) {
	ts, base, basePath := deltaSession(t, true)
	rng := rand.New(rand.NewPCG(5, 6))
	started := make(chan struct{})
	withheld, lateIn := uint32(deltaChanged[0]), false
	ts.net.SetDrop(func(from, to string, b []byte) bool { // called with the net's lock held
		typ := wire.Type(b[5])
		if to == "late" && typ == wire.TypeRegister && len(b) > wire.HeaderLen+6 {
			lateIn = true // the sender acknowledged late's registration
		}
		if typ != wire.TypeData && typ != wire.TypeRepair {
			return false
		}
		if to == "e1" {
			if started != nil {
				close(started)
				started = nil
			}
			if !lateIn && binary.BigEndian.Uint32(b[wire.HeaderLen:]) == withheld {
				return true // e1 cannot finish (nor the session end) before late is in
			}
		}
		return rng.Float64() < 0.08
	})
	begin := started
	early := []string{"e1", "e2", "e3"}
	ts.send.MinHosts = 3 // an open group that starts with the base holders
	ts.runLate(append(early, "late"), begin, func(h string, o *ReceiveOptions) {
		if h != "late" {
			hostBase(t, ts, base, basePath, h, o, nil)
		}
	})
	if ts.report.DeltaChunks != deltaCovered {
		t.Errorf("%d chunks sent as deltas, want %d: the session must start in delta mode", ts.report.DeltaChunks, deltaCovered)
	}
}

// TestDeltaWritesChanged: on a filesystem with reflink (XFS), a delta
// chunk is written as its base chunk shared by reflink plus the blocks
// that differ: of each changed chunk, only its one changed 4 KiB block
// owns new data (filefrag: every other block is shared). On ext4 the
// chunk is written whole. Either way the image verifies.
func TestDeltaWritesChanged(t *testing.T) {
	testenv.RequireLoop(t)
	for _, fs := range scratchFilesystems {
		t.Run(fs.name, func(t *testing.T) {
			testenv.RequireTool(t, fs.mkfs)
			testenv.RequireTool(t, "filefrag")
			ts, base, basePath := deltaSession(t, true)
			ts.dir = mounttest.ScratchFS(t, fs.mkfs, fs.args...)
			runDelta(t, ts, base, basePath, []string{"d1"}, nil, nil)
			if ts.report.DeltaChunks != deltaCovered {
				t.Fatalf("%d delta chunks, want %d", ts.report.DeltaChunks, deltaCovered)
			}
			shared := sharedBlocks(t, filepath.Join(ts.dir, "d1.img"))
			for _, i := range deltaChanged {
				if base.Chunks[i].Zero {
					continue // sent plain: nothing to share
				}
				n := 0
				for b := i * testChunk / 4096; b < (i+1)*testChunk/4096; b++ {
					if shared[b] {
						n++
					}
				}
				want := 0
				if fs.reflink {
					want = testChunk/4096 - 1
				}
				if n != want {
					t.Errorf("chunk %d: %d of its %d blocks shared with the base, want %d", i, n, testChunk/4096, want)
				}
			}
		})
	}
}

// TestPrefilledChunksReplaced: where the store shares extents, a host
// with the base starts from the base's chunks (prefilled by reflink at
// registration); a session that sends them plain (a host lacks the base)
// or sends a delta that a corrupt base chunk cannot decode still leaves
// every host on the new image, byte for byte (runVerified).
func TestPrefilledChunksReplaced(t *testing.T) {
	testenv.RequireLoop(t)
	for _, fs := range scratchFilesystems {
		t.Run(fs.name, func(t *testing.T) {
			testenv.RequireTool(t, fs.mkfs)
			ts, base, basePath := deltaSession(t, true)
			ts.dir = mounttest.ScratchFS(t, fs.mkfs, fs.args...)
			runDelta(t, ts, base, basePath, []string{"d1", "nobase"}, map[string]bool{"nobase": true}, nil)
			if ts.report.DeltaChunks != 0 {
				t.Errorf("%d delta chunks with a host lacking the base, want 0", ts.report.DeltaChunks)
			}
			ts, base, basePath = deltaSession(t, true)
			ts.dir = mounttest.ScratchFS(t, fs.mkfs, fs.args...)
			rot := func(b []byte) { b[4*testChunk+60000] ^= 0xff } // chunk 4, away from its changed block
			res := runDelta(t, ts, base, basePath, []string{"rot"}, nil, map[string]func([]byte){"rot": rot})
			if res["rot"].BadChunks != 1 {
				t.Errorf("host with a corrupt base: %d bad chunks, want 1", res["rot"].BadChunks)
			}
		})
	}
}

// sharedBlocks reads which 4 KiB blocks of path share their extent with
// another file (filefrag -v: the "shared" flag).
func sharedBlocks(t *testing.T, path string) map[int]bool {
	out, err := exec.Command("filefrag", "-b4096", "-v", path).CombinedOutput()
	if err != nil {
		t.Fatalf("filefrag: %v\n%s", err, out)
	}
	shared := map[int]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		// "   0:        0..      15:      24592..     24607:     16:             shared"
		f := strings.Fields(strings.NewReplacer("..", " ", ":", " ").Replace(line))
		if len(f) < 6 || !strings.Contains(line, "shared") {
			continue
		}
		from, err1 := strconv.Atoi(f[1])
		to, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		for b := from; b <= to; b++ {
			shared[b] = true
		}
	}
	return shared
}
