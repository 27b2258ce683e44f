package synth

import "fmt"

// Preset names accepted by PresetOptions.
const (
	PresetSmall = "small"
	PresetFull  = "full"
)

const (
	// FullFiles and FullBytes match the tree the design targets:
	// ~150,000 files, ~900 MB.
	FullFiles = 150_000
	FullBytes = 900_000_000

	// SmallFiles and SmallBytes keep a test tree quick to write and to
	// image while still holding a MiB-sized file and every special entry.
	SmallFiles = 300
	SmallBytes = 4 << 20

	// defaultMeanSize is FullBytes/FullFiles: used when Options.Bytes is 0.
	defaultMeanSize = FullBytes / FullFiles

	// maxDepth bounds directory nesting (vendor/a/b/src/... reaches it);
	// deep enough to exercise path handling, as deep as real vendor trees.
	maxDepth = 10

	// filesPerDir is the mean number of files per directory of a typical
	// PHP project with its vendor tree.
	filesPerDir = 12

	// maxFiles bounds Options.Files so a typo cannot fill the disk.
	maxFiles = 5_000_000
)

// Options says what tree Generate writes. Zero fields take defaults.
type Options struct {
	// Seed selects the tree; the same seed gives the same tree.
	Seed uint64
	// Files is the number of regular files (inodes), not counting the
	// extra names of hard links. Default SmallFiles.
	Files int
	// Bytes is the total file content to aim for; sizes are scaled to
	// reach it. Default Files*defaultMeanSize.
	Bytes int64
}

// PresetOptions returns the options of a named preset ("small" or "full").
func PresetOptions(name string, seed uint64) (Options, error) {
	switch name {
	case PresetSmall:
		return Options{Seed: seed, Files: SmallFiles, Bytes: SmallBytes}, nil
	case PresetFull:
		return Options{Seed: seed, Files: FullFiles, Bytes: FullBytes}, nil
	}
	return Options{}, fmt.Errorf("synth: unknown preset %q (want %q or %q)", name, PresetSmall, PresetFull)
}

func (o Options) withDefaults() (Options, error) {
	if o.Files == 0 {
		o.Files = SmallFiles
	}
	if o.Files < 0 || o.Files > maxFiles {
		return o, fmt.Errorf("synth: files %d out of range 1..%d", o.Files, maxFiles)
	}
	if o.Bytes == 0 {
		o.Bytes = int64(o.Files) * defaultMeanSize
	}
	if o.Bytes < 0 {
		return o, fmt.Errorf("synth: bytes %d is negative", o.Bytes)
	}
	return o, nil
}

// Stats counts what Generate wrote.
type Stats struct {
	Files     int   // regular files (inodes)
	HardLinks int   // extra names of regular files
	Symlinks  int   // symbolic links
	Dirs      int   // directories, not counting the root
	Bytes     int64 // file content, each inode once
}

func (s Stats) String() string {
	return fmt.Sprintf("files=%d dirs=%d symlinks=%d hardlinks=%d bytes=%d",
		s.Files, s.Dirs, s.Symlinks, s.HardLinks, s.Bytes)
}
