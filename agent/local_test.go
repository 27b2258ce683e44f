package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
	"github.com/loopcast/loopcast/release"
)

// keptImage writes images/<id>.img of two 4 KiB chunks filled with the
// given bytes and its manifest, as the store keeps a staged release.
func keptImage(t *testing.T, root string, id image.ID, fill ...byte) *image.Manifest {
	t.Helper()
	var b []byte
	for _, c := range fill {
		b = append(b, []byte(strings.Repeat(string(c), image.MinChunkSize))...)
	}
	img := filepath.Join(root, "images", id.String()+".img")
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := image.HashFile(context.Background(), img, image.MinChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.WriteManifestFile(filepath.Join(root, "images", id.String()+".manifest"), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The index holds the live releases' chunks, pointing at bytes that are
// those chunks, and leaves out retired releases and ones missing a file.
func TestLocalChunks(t *testing.T) {
	s := openStore(t, t.TempDir())
	root := s.Root()
	// the store names a release's files by its id; these ids are not the
	// manifests': the bases below are keyed by the manifests' own ids
	aaaa, bbbb, cccc, dddd := testid.Of("aaaa"), testid.Of("bbbb"), testid.Of("cccc"), testid.Of("dddd")
	live := keptImage(t, root, aaaa, 'a', 'b')
	newer := keptImage(t, root, bbbb, 'b', 'c')
	retired := keptImage(t, root, cccc, 'd')
	noImage := keptImage(t, root, dddd, 'e')
	os.Remove(filepath.Join(root, "images", dddd.String()+".img"))
	st := release.State{History: []release.Entry{{ID: aaaa, Order: 1}, {ID: bbbb, Order: 2},
		{ID: cccc, Order: 3, Retired: true}, {ID: dddd, Order: 4}, {Order: 5}}} // the last: no id
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "state"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	x, _ := localImages(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(x) != 3 {
		t.Errorf("indexed %d chunks, want 3 (a, b, c): %v", len(x), x)
	}
	for _, c := range []image.Chunk{live.Chunks[0], newer.Chunks[0], newer.Chunks[1]} {
		path, off, ok := x.Lookup(c.Hash)
		if !ok {
			t.Errorf("chunk %x not indexed", c.Hash[:4])
			continue
		}
		got := make([]byte, image.MinChunkSize)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.ReadAt(got, off)
		f.Close()
		if sha256.Sum256(got) != c.Hash {
			t.Errorf("chunk %x points at %s@%d, which holds other bytes", c.Hash[:4], path, off)
		}
	}
	if path, _, _ := x.Lookup(live.Chunks[1].Hash); !strings.HasSuffix(path, bbbb.String()+".img") {
		t.Errorf("chunk held by two releases found in %q, want the newer %s.img", path, bbbb)
	}
	for _, m := range []*image.Manifest{retired, noImage} {
		if _, _, ok := x.Lookup(m.Chunks[0].Hash); ok {
			t.Errorf("chunk %x of a retired or imageless release indexed", m.Chunks[0].Hash[:4])
		}
	}
	// the same live images serve as delta bases, by release id
	_, bases := localImages(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	want := map[image.ID]string{live.ID(): filepath.Join(root, "images", aaaa.String()+".img"),
		newer.ID(): filepath.Join(root, "images", bbbb.String()+".img")}
	if len(bases) != len(want) {
		t.Errorf("bases %v, want %v", bases, want)
	}
	for id, path := range want {
		if bases[id] != path {
			t.Errorf("base %s: got %q, want %q", id, bases[id], path)
		}
	}
}
