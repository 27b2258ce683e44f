package synth

import (
	"path"
	"testing"
)

func TestApplyChanges(t *testing.T) {
	dir, _ := generate(t, smallOptions(t, 5))
	before := snapshot(t, dir)
	cs := ChangeSet{Seed: 11, Modify: 12, Add: 6, Delete: 8}
	got, err := ApplyChanges(dir, cs)
	if err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, dir)
	if len(got.Modified) != cs.Modify || len(got.Added) != cs.Add || len(got.Deleted) != cs.Delete {
		t.Fatalf("changes: got %d modified, %d added, %d deleted; want %d, %d, %d",
			len(got.Modified), len(got.Added), len(got.Deleted), cs.Modify, cs.Add, cs.Delete)
	}
	changed := map[string]bool{}
	dirs := map[string]bool{}
	for _, p := range got.Deleted {
		changed[p], dirs[path.Dir(p)] = true, true
		if _, ok := before[p]; !ok {
			t.Errorf("deleted %s did not exist before", p)
		}
		if _, ok := after[p]; ok {
			t.Errorf("deleted %s still exists", p)
		}
	}
	for _, p := range got.Added {
		changed[p], dirs[path.Dir(p)] = true, true
		if _, ok := before[p]; ok {
			t.Errorf("added %s existed before", p)
		}
		if e, ok := after[p]; !ok || e.kind != 'f' || e.size == 0 {
			t.Errorf("added %s: got %v (present %v), want a non-empty file", p, e, ok)
		}
	}
	for _, p := range got.Modified {
		changed[p], dirs[path.Dir(p)] = true, true
		b, a := before[p], after[p]
		if a.kind != 'f' || a.sum == b.sum || a.size <= b.size || a.mode != b.mode {
			t.Errorf("modified %s: before %v, after %v; want same mode, grown, new content", p, b, a)
		}
	}
	if len(changed) != cs.Modify+cs.Add+cs.Delete {
		t.Errorf("changes overlap: %d distinct paths for %d changes", len(changed), cs.Modify+cs.Add+cs.Delete)
	}
	if len(dirs) < 8 {
		t.Errorf("changes fall in %d directories, want them spread over the tree", len(dirs))
	}
	// Everything else is untouched (directory mtimes may move).
	for _, p := range sortedKeys(before, after) {
		b, a := before[p], after[p]
		if changed[p] || b.kind == 'd' && a.kind == 'd' && b.mode == a.mode {
			continue
		}
		if a != b {
			t.Errorf("%s changed outside the change set: before %v, after %v", p, b, a)
		}
	}
}

func TestApplyChangesDeterministic(t *testing.T) {
	o := smallOptions(t, 6)
	cs := ChangeSet{Seed: 2, Modify: 20, Add: 10, Delete: 10}
	a, _ := generate(t, o)
	b, _ := generate(t, o)
	for _, dir := range []string{a, b} {
		if _, err := ApplyChanges(dir, cs); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range diffSnapshots(snapshot(t, a), snapshot(t, b), 10) {
		t.Errorf("same change set, different trees: %s", d)
	}
}

func TestApplyChangesTooMany(t *testing.T) {
	dir, _ := generate(t, smallOptions(t, 1))
	if _, err := ApplyChanges(dir, ChangeSet{Modify: SmallFiles, Delete: SmallFiles}); err == nil {
		t.Error("change set larger than the tree: got nil error")
	}
}
