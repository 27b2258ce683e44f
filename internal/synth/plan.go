package synth

import (
	"io/fs"
	"math"
	"math/rand/v2"
	"path"
	"strconv"
	"strings"
)

const (
	// mtimeBase and mtimeSpread place mtimes in 2017–2020 plus a per-seed
	// offset; whole seconds, so the tree is the same on any filesystem.
	mtimeBase   = 1_500_000_000
	mtimeSpread = 365 * 24 * 3600

	// binaryShare of ordinary files are images or fonts: random bytes,
	// which no compressor shrinks.
	binaryShare = 0.10

	// flatImgShare and flatViewShare of the files go into two flat
	// directories: 3,000 and 1,500 entries in the full preset, enough for
	// multi-block (htree-size) directories.
	flatImgShare  = 0.02
	flatViewShare = 0.01

	// Per-file medians and spreads (log-normal) before scaling to
	// Options.Bytes: most code files fall in 1–20 KB.
	codeMedian   = 4000
	codeSigma    = 0.9
	binaryMedian = 6000
	binarySigma  = 1.0

	// bigMin and bigMax bound the long tail: one file in bigEvery is a
	// bundle, dump or video of a few MiB.
	bigMin   = 1 << 20
	bigMax   = 8 << 20
	bigEvery = 5000

	// fastSymlinkMax is the longest target ext2 keeps inside the inode;
	// the tree has targets of this length and one byte either side.
	fastSymlinkMax = 59
)

type fileSpec struct {
	path  string // slash-separated, relative to the root
	size  int64
	kind  contentKind
	mode  fs.FileMode
	mtime int64
	id    uint64 // seeds the content
	plain bool   // an ordinary file: may gain hard links
}

func (f *fileSpec) ext() string { return path.Ext(f.path) }

type dirSpec struct {
	path  string
	depth int
	mode  fs.FileMode
	mtime int64
}

type linkSpec struct {
	path, target string
	mtime        int64
}

type hardSpec struct{ path, target string }

type plan struct {
	root  int64 // mtime of the root directory
	dirs  []dirSpec
	files []fileSpec
	syms  []linkSpec
	hards []hardSpec
}

func (p *plan) stats() Stats {
	s := Stats{Files: len(p.files), HardLinks: len(p.hards), Symlinks: len(p.syms), Dirs: len(p.dirs)}
	for _, f := range p.files {
		s.Bytes += f.size
	}
	return s
}

// planner draws the whole tree from one generator, in a fixed order.
type planner struct {
	plan
	o     Options
	r     *rand.Rand
	base  int64
	taken map[string]bool // paths used so far
}

func makePlan(o Options) plan {
	p := &planner{
		o:     o,
		r:     rand.New(rand.NewPCG(o.Seed, 0x5eed_7ee5)),
		base:  mtimeBase + int64(o.Seed%(1<<26)),
		taken: map[string]bool{},
	}
	p.root = p.base
	p.addSkeleton()
	p.addVendors()
	p.growDirs()
	p.addFiles()
	p.scaleSizes()
	p.addHardLinks()
	p.addSymlinks()
	return p.plan
}

func (p *planner) mtime() int64 { return p.base + p.r.Int64N(mtimeSpread) }

// unique returns dir/base+ext, or dir/base-N+ext if taken, and takes it.
func (p *planner) unique(dir, base, ext string) string {
	name := path.Join(dir, base+ext)
	for i := 2; p.taken[name]; i++ {
		name = path.Join(dir, base+"-"+strconv.Itoa(i)+ext)
	}
	p.taken[name] = true
	return name
}

// addUniqueDir adds parent/name, or parent/name-N if taken; returns the path.
func (p *planner) addUniqueDir(parent, name string) string {
	n := p.unique(parent, name, "")
	delete(p.taken, n) // addDir takes it
	p.addDir(n, 0o755)
	return n
}

func (p *planner) addDir(name string, mode fs.FileMode) {
	if p.taken[name] {
		return
	}
	p.taken[name] = true
	p.dirs = append(p.dirs, dirSpec{path: name, depth: strings.Count(name, "/") + 1, mode: mode, mtime: p.mtime()})
}

// skeleton is the fixed top of the tree, parents first.
var skeleton = []string{
	"app", "app/Http", "app/Http/Controllers", "app/Models", "bin", "config",
	"public", "public/assets", "public/assets/img", "public/assets/js",
	"public/assets/css", "public/assets/fonts", "resources", "resources/views",
	"resources/views/emails", "resources/lang", "routes", "storage", "storage/app",
	"storage/app/public", "storage/tmp", "storage/shared", "tests", "vendor", "vendor/bin",
}

func (p *planner) addSkeleton() {
	for _, d := range skeleton {
		mode := fs.FileMode(0o755)
		switch d {
		case "storage/tmp":
			mode = fs.ModeSticky | 0o777
		case "storage/shared":
			mode = fs.ModeSetgid | 0o775
		}
		p.addDir(d, mode)
	}
}

// addVendors lays out vendor/<vendor>/<package>/src/<Namespace>, four
// levels that growDirs then deepens.
func (p *planner) addVendors() {
	for range max(2, p.o.Files/1500) {
		v := p.addUniqueDir("vendor", word(p.r))
		for range 1 + p.r.IntN(4) {
			pkg := p.addUniqueDir(v, word(p.r)+"-"+word(p.r))
			p.addDir(pkg+"/src", 0o755)
			p.addDir(pkg+"/src/"+title(word(p.r)), 0o755)
			if p.r.IntN(2) == 0 {
				p.addDir(pkg+"/tests", 0o755)
			}
		}
	}
}

// growDirs adds directories under random parents until there are about
// filesPerDir files per directory; a random recursive tree, so depth
// grows with the tree up to maxDepth.
func (p *planner) growDirs() {
	want := max(len(p.dirs)+4, p.o.Files/filesPerDir)
	for len(p.dirs) < want {
		parent := p.dirs[p.r.IntN(len(p.dirs))]
		if parent.depth >= maxDepth || strings.HasPrefix(parent.path, "public/assets/") ||
			parent.path == "resources/views/emails" || parent.path == "vendor/bin" {
			continue
		}
		name := word(p.r)
		if strings.Contains(parent.path, "/src") || strings.HasPrefix(parent.path, "app") {
			name = title(name)
		}
		p.addUniqueDir(parent.path, name)
	}
}

func (p *planner) addFile(name string, size int64, kind contentKind, mode fs.FileMode, plain bool) {
	p.files = append(p.files, fileSpec{path: name, size: size, kind: kind, mode: mode,
		mtime: p.mtime(), id: uint64(len(p.files)), plain: plain})
}

// addFiles places Options.Files regular files: special ones first, then
// the flat directories, then ordinary files anywhere.
func (p *planner) addFiles() {
	n := p.o.Files
	p.addFile(p.unique("bin", "console", ""), 2000, kindCode, 0o755, false)
	p.addFile(p.unique("bin", "suid-helper", ""), 1500, kindCode, fs.ModeSetuid|0o755, false)
	for range max(2, n/2000) - 1 {
		p.addFile(p.unique("vendor/bin", word(p.r), ""), 1000, kindCode, 0o755, false)
	}
	for range max(2, n/1000) {
		p.addFile(p.unique(p.randomDir().path, ".gitkeep", ""), 0, kindCode, 0o644, false)
	}
	for i := range max(1, n/bigEvery) {
		size := bigMin + p.r.Int64N(bigMax-bigMin)
		size = min(size, max(p.o.Bytes/4, 1))
		if i%2 == 0 {
			p.addFile(p.unique("public/assets/js", "bundle-"+word(p.r), ".js"), size, kindCode, 0o644, false)
		} else {
			p.addFile(p.unique("public/assets", "intro-"+word(p.r), ".mp4"), size, kindBinary, 0o644, false)
		}
	}
	for range max(1, int(float64(n)*flatImgShare)) {
		p.addOrdinary("public/assets/img", kindBinary)
	}
	for range max(1, int(float64(n)*flatViewShare)) {
		p.addOrdinary("resources/views/emails", kindCode)
	}
	for len(p.files) < n {
		kind := kindCode
		if p.r.Float64() < binaryShare {
			kind = kindBinary
		}
		p.addOrdinary(p.randomDir().path, kind)
	}
	p.files = p.files[:n] // tiny n: the special files alone may exceed it
}

func (p *planner) randomDir() dirSpec { return p.dirs[p.r.IntN(len(p.dirs))] }

var (
	codeExts   = []string{".php", ".php", ".php", ".php", ".php", ".php", ".php", ".js", ".json", ".twig", ".css", ".md", ".xml", ".yml"}
	binaryExts = []string{".png", ".png", ".jpg", ".jpg", ".gif", ".woff2", ".ttf", ".ico"}
)

func (p *planner) addOrdinary(dir string, kind contentKind) {
	var ext string
	var size float64
	if kind == kindBinary {
		ext = binaryExts[p.r.IntN(len(binaryExts))]
		size = binaryMedian * math.Exp(binarySigma*p.r.NormFloat64())
	} else {
		ext = codeExts[p.r.IntN(len(codeExts))]
		size = codeMedian * math.Exp(codeSigma*p.r.NormFloat64())
	}
	base := word(p.r) + "-" + word(p.r)
	if ext == ".php" {
		base = title(word(p.r)) + title(word(p.r))
	}
	p.addFile(p.unique(dir, base, ext), int64(max(16, size)), kind, 0o644, true)
}

// scaleSizes scales the ordinary files so all sizes add up to Options.Bytes
// (as near as whole bytes allow); the factor is bounded so a tiny or huge
// target still keeps the shape of the distribution.
func (p *planner) scaleSizes() {
	var fixed, scalable int64
	for _, f := range p.files {
		if f.plain {
			scalable += f.size
		} else {
			fixed += f.size
		}
	}
	if scalable == 0 {
		return
	}
	factor := float64(p.o.Bytes-fixed) / float64(scalable)
	factor = min(max(factor, 0.05), 20)
	for i := range p.files {
		if p.files[i].plain {
			p.files[i].size = max(1, int64(float64(p.files[i].size)*factor))
		}
	}
}

func (p *planner) hasPlain() bool {
	for _, f := range p.files {
		if f.plain {
			return true
		}
	}
	return false
}

// randomPlain picks an ordinary file; callers check hasPlain first.
func (p *planner) randomPlain() *fileSpec {
	for {
		if f := &p.files[p.r.IntN(len(p.files))]; f.plain {
			return f
		}
	}
}

// addHardLinks gives some ordinary files a second name in another directory.
func (p *planner) addHardLinks() {
	if !p.hasPlain() {
		return
	}
	for range max(2, p.o.Files/1000) {
		f := p.randomPlain()
		name := p.unique(p.randomDir().path, path.Base(f.path), "")
		p.hards = append(p.hards, hardSpec{path: name, target: f.path})
	}
}

func (p *planner) addSym(name, target string) {
	p.syms = append(p.syms, linkSpec{path: name, target: target, mtime: p.mtime()})
}

// addSymlinks adds a directory link (Laravel's public/storage), dangling
// targets at and around the fast-symlink limit, and links to files: half
// short (a sibling), half relative across the tree (often past 60 bytes).
func (p *planner) addSymlinks() {
	p.addSym(p.unique("public", "storage", ""), "../storage/app/public")
	p.addSym(p.unique("config", "ca-certificates", ""), "/etc/ssl/certs/ca-certificates.crt")
	for _, n := range []int{fastSymlinkMax, fastSymlinkMax + 1, fastSymlinkMax + 2, 300} {
		target := "missing/" + strings.Repeat("x", n-len("missing/"))
		p.addSym(p.unique("storage", "dangling-"+strconv.Itoa(n), ""), target)
	}
	if !p.hasPlain() {
		return
	}
	for i := range max(4, p.o.Files/300) {
		f := p.randomPlain()
		dir := path.Dir(f.path)
		if i%2 == 1 {
			dir = p.randomDir().path
		}
		name := p.unique(dir, "link-"+path.Base(f.path), "")
		p.addSym(name, relPath(dir, f.path))
	}
}

// relPath is the relative path from directory from to file to, both
// slash-separated and relative to the same root.
func relPath(from, to string) string {
	fp, tp := strings.Split(from, "/"), strings.Split(to, "/")
	i := 0
	for i < len(fp) && i < len(tp)-1 && fp[i] == tp[i] {
		i++
	}
	return strings.Repeat("../", len(fp)-i) + strings.Join(tp[i:], "/")
}
