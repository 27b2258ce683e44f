package synth

import (
	"bytes"
	"compress/flate"
	"path"
	"strings"
	"testing"
)

// TestFullPresetShape checks the full preset's plan without writing it.
func TestFullPresetShape(t *testing.T) {
	o, err := PresetOptions(PresetFull, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := makePlan(o)
	st := p.stats()
	if st.Files != FullFiles {
		t.Errorf("files: got %d, want %d", st.Files, FullFiles)
	}
	if lo, hi := int64(FullBytes*0.99), int64(FullBytes*1.01); st.Bytes < lo || st.Bytes > hi {
		t.Errorf("bytes: got %d, want %d ±1%%", st.Bytes, FullBytes)
	}
	var mid, big int
	perDir := map[string]int{}
	deepest := 0
	for _, f := range p.files {
		if f.size >= 1<<10 && f.size <= 20<<10 {
			mid++
		}
		if f.size >= bigMin {
			big++
		}
		perDir[path.Dir(f.path)]++
		deepest = max(deepest, strings.Count(f.path, "/"))
	}
	if mid < st.Files*3/4 {
		t.Errorf("files of 1–20 KB: got %d of %d, want at least 3/4", mid, st.Files)
	}
	if big < 10 {
		t.Errorf("files of 1 MiB or more: got %d, want at least 10", big)
	}
	if deepest < maxDepth {
		t.Errorf("deepest file has %d parent directories, want %d", deepest, maxDepth)
	}
	if n := perDir["public/assets/img"]; n < 2000 {
		t.Errorf("public/assets/img holds %d files, want thousands", n)
	}
	long := 0
	for _, s := range p.syms {
		if len(s.target) > fastSymlinkMax {
			long++
		}
	}
	if long < 10 {
		t.Errorf("symlinks with targets of 60 bytes or more: got %d, want at least 10", long)
	}
}

func deflated(t *testing.T, b []byte) int {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, 6)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Len()
}

// TestContentCompressibility: code compresses like source (deflate ≥ 3x),
// binary assets do not compress at all.
func TestContentCompressibility(t *testing.T) {
	for _, ext := range []string{".php", ".js"} {
		f := fileSpec{path: "a/b" + ext, size: 256 << 10, kind: kindCode, id: 1}
		b := appendContent(nil, 9, &f)
		if len(b) != int(f.size) {
			t.Fatalf("%s: got %d bytes, want %d", ext, len(b), f.size)
		}
		if n := deflated(t, b); n*3 > len(b) {
			t.Errorf("%s: deflate %d -> %d, want at least 3x", ext, len(b), n)
		}
	}
	f := fileSpec{path: "a/b.png", size: 256 << 10, kind: kindBinary, id: 1}
	b := appendContent(nil, 9, &f)
	if !bytes.HasPrefix(b, []byte(signatures[".png"])) {
		t.Errorf("png does not start with the PNG signature: % x", b[:8])
	}
	if n := deflated(t, b); n < len(b)*99/100 {
		t.Errorf("binary: deflate %d -> %d, want no gain", len(b), n)
	}
}

func TestRelPath(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"a/b", "a/b/f", "f"},
		{"a/b", "a/c/f", "../c/f"},
		{"x", "a/b/f", "../a/b/f"},
		{"a/b/c", "a/f", "../../f"},
	} {
		if got := relPath(c.from, c.to); got != c.want {
			t.Errorf("relPath(%q, %q) = %q, want %q", c.from, c.to, got, c.want)
		}
	}
}

func TestPresetOptions(t *testing.T) {
	if _, err := PresetOptions("huge", 1); err == nil {
		t.Error("PresetOptions(huge): got nil error")
	}
	o, err := PresetOptions(PresetFull, 5)
	if err != nil || o != (Options{Seed: 5, Files: FullFiles, Bytes: FullBytes}) {
		t.Errorf("PresetOptions(full, 5) = %+v, %v", o, err)
	}
}
