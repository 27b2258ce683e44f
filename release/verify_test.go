package release

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/image"
)

// TestVerifyQuarantines: a kept image corrupted on disk is found by
// Verify, quarantined (no chunk source, no rollback target, retired once
// unused), and a verified copy staged again replaces it; a corrupt current
// release keeps serving, marked, until another is current.
func TestVerifyQuarantines(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{Keep: 3})
	a := f.deploy(s, "A")
	b := f.deploy(s, "B")
	ctx := context.Background()
	for _, id := range []image.ID{a, b} {
		if err := s.Verify(ctx, id, 0); err != nil {
			t.Fatalf("Verify(%s) of an intact image: %v", id, err)
		}
	}
	goodB := copyRelease(t, f, s, b)
	held, err := os.Open(filepath.Join(s.ReleaseDir(a), "id.txt")) // a process in A
	if err != nil {
		t.Fatal(err)
	}
	corrupt(t, s.imagePath(a))
	err = s.Verify(ctx, a, 0)
	if !errors.Is(err, image.ErrChunkMismatch) || !strings.Contains(err.Error(), a.String()) {
		t.Fatalf("Verify of a corrupted image: %v, want ErrChunkMismatch naming %s", err, a)
	}
	kept, _ := s.KeptImages()
	for _, k := range kept {
		if k.ID == a {
			t.Errorf("quarantined %s still offered as a chunk source", a)
		}
	}
	if _, err := s.Rollback(a); !errors.Is(err, ErrQuarantined) {
		t.Errorf("rollback to the quarantined release: %v, want ErrQuarantined", err)
	}
	held.Close()
	if err := s.Retire(); err != nil {
		t.Fatal(err)
	}
	mustMounted(t, s, a, false) // retired once unused
	if got := served(t, s); got != "B" {
		t.Errorf("serving %q, want B", got)
	}

	corrupt(t, s.imagePath(b))
	if err := s.Scrub(ctx, 64<<20); err == nil || !strings.Contains(err.Error(), b.String()) {
		t.Fatalf("Scrub with the current image corrupted: %v, want an error naming %s", err, b)
	}
	mustMounted(t, s, b, true) // current keeps serving, marked
	if st, _ := s.Status(); len(st.Releases) != 1 || st.Releases[0].Quarantined == "" {
		t.Errorf("status does not show current %s quarantined: %+v", b, st.Releases)
	}
	if _, err := s.Stage(ctx, image.ID{}, goodB+".img", goodB+".manifest"); !errors.Is(err, ErrQuarantined) {
		t.Errorf("staging again the current, quarantined release: %v, want ErrQuarantined", err)
	}
	f.deploy(s, "C") // B is no longer current: a verified copy replaces it
	if _, err := s.Stage(ctx, image.ID{}, goodB+".img", goodB+".manifest"); err != nil {
		t.Fatalf("staging B again after the switch: %v", err)
	}
	if err := s.Verify(ctx, b, 0); err != nil {
		t.Errorf("the replaced image of %s: %v", b, err)
	}
	if _, err := s.Rollback(b); err != nil {
		t.Errorf("rollback to the replaced %s: %v", b, err)
	}
}

// copyRelease copies release id's image and manifest out of the store and
// returns their path without suffix.
func copyRelease(t *testing.T, f *fixture, s *Store, id image.ID) string {
	t.Helper()
	dst := filepath.Join(f.dir, "copy-"+id.String())
	for src, to := range map[string]string{s.imagePath(id): dst + ".img", s.manifestPath(id): dst + ".manifest"} {
		if out, err := exec.Command("cp", "--sparse=always", src, to).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	return dst
}
