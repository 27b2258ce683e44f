package synth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// maxWriters bounds parallel file writers; past a few, the disk is the limit.
const maxWriters = 8

// Generate writes the tree for opts under dir, which must be missing or
// empty, and returns what it wrote. On error the partial tree is left for
// the caller to remove.
func Generate(ctx context.Context, dir string, opts Options) (Stats, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	if err := prepareRoot(dir); err != nil {
		return Stats{}, err
	}
	p := makePlan(o)
	if err := p.mkdirs(dir); err != nil {
		return Stats{}, err
	}
	if err := p.writeFiles(ctx, dir, o.Seed); err != nil {
		return Stats{}, err
	}
	if err := p.link(dir); err != nil {
		return Stats{}, err
	}
	if err := p.dirTimes(dir); err != nil {
		return Stats{}, err
	}
	return p.stats(), nil
}

func prepareRoot(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("synth: %s is not empty", dir)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

func (p *plan) mkdirs(root string) error {
	for _, d := range p.dirs {
		name := filepath.Join(root, filepath.FromSlash(d.path))
		if err := os.Mkdir(name, 0o755); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		if err := os.Chmod(name, d.mode); err != nil { // umask-proof, and special bits
			return fmt.Errorf("synth: %w", err)
		}
	}
	return nil
}

// writeFiles writes the files with one writer per CPU; writer w takes
// every n-th file. Each file's bytes depend only on (seed, file), so the
// split does not change the result.
func (p *plan) writeFiles(ctx context.Context, root string, seed uint64) error {
	n := min(runtime.GOMAXPROCS(0), maxWriters)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			var buf []byte
			for i := w; i < len(p.files); i += n {
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				var err error
				buf, err = writeFile(root, seed, &p.files[i], buf[:0])
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeFile writes f in one write from buf (returned for reuse), then sets
// its mode and mtime.
func writeFile(root string, seed uint64, f *fileSpec, buf []byte) ([]byte, error) {
	name := filepath.Join(root, filepath.FromSlash(f.path))
	buf = appendContent(buf, seed, f)
	fh, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return buf, fmt.Errorf("synth: %w", err)
	}
	_, err = fh.Write(buf)
	if err == nil {
		err = fh.Chmod(f.mode) // after the write, which would clear setuid
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		t := time.Unix(f.mtime, 0)
		err = os.Chtimes(name, t, t)
	}
	if err != nil {
		return buf, fmt.Errorf("synth: write %s: %w", f.path, err)
	}
	return buf, nil
}

// link makes the hard links and symlinks.
func (p *plan) link(root string) error {
	for _, h := range p.hards {
		err := os.Link(filepath.Join(root, filepath.FromSlash(h.target)), filepath.Join(root, filepath.FromSlash(h.path)))
		if err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	for _, s := range p.syms {
		name := filepath.Join(root, filepath.FromSlash(s.path))
		if err := os.Symlink(s.target, name); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		if err := lutimes(name, s.mtime); err != nil {
			return fmt.Errorf("synth: set mtime of %s: %w", s.path, err)
		}
	}
	return nil
}

// dirTimes sets directory mtimes last, deepest first (dirs lists parents
// before children), since creating entries changed them.
func (p *plan) dirTimes(root string) error {
	for i := len(p.dirs) - 1; i >= 0; i-- {
		t := time.Unix(p.dirs[i].mtime, 0)
		if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(p.dirs[i].path)), t, t); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	t := time.Unix(p.root, 0)
	if err := os.Chtimes(root, t, t); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}
