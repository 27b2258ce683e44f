package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// copyBlock is the unit of the sparse copy: all-zero blocks become holes.
// 64 KiB matches the runs of zeros an ext2 image has between files while
// keeping the syscall count low.
const copyBlock = 64 << 10

// Stage makes the image at imagePath a staged release: it checks the
// manifest at manifestPath (signature when TrustedKeys are set, release
// id), the free space, and the image's size and SHA-256 against the
// manifest; then it adopts the image as images/<id>.img (a rename on the
// same filesystem, which moves the caller's file, else a sparse copy) and
// mounts it read-only at releases/<id>, checking that it holds a tree.
// The zero id means the manifest's, and Stage returns the id it staged.
// Staging a staged release only checks its mount. A refusal before the
// image is adopted (bad manifest or signature, wrong id, no space, hash
// mismatch) changes nothing but the failure record and leaves the caller's
// files in place; an image adopted but then unmountable or empty is
// removed.
func (s *Store) Stage(ctx context.Context, id image.ID, imagePath, manifestPath string) (image.ID, error) {
	m, mid, raw, err := s.check(ctx, id, imagePath, manifestPath)
	if m != nil && id.IsZero() {
		id = mid
	}
	return id, s.admit(ctx, id, imagePath, m, raw, err)
}

// Adopt stages the image at imagePath whose every chunk the caller has
// verified, in this process, against m (parsed and signature-checked, e.g.
// by the multicast receiver as the chunks arrived): it is not read or
// hashed again. Otherwise it is Stage: the signature (when TrustedKeys are
// set), the release id and the space are checked, the image renamed into
// images/ (copied across filesystems), mounted and recorded.
func (s *Store) Adopt(ctx context.Context, imagePath string, m *image.Manifest) (image.ID, error) {
	id := m.ID()
	raw, err := m.AppendBinary(nil)
	if err == nil {
		err = s.checkManifest(m, id, image.ID{}, "the manifest of "+imagePath)
	}
	if err == nil {
		err = s.checkCost(imagePath, id)
	}
	return id, s.admit(ctx, id, imagePath, m, raw, err)
}

// admit records a refusal (checkErr) or adopts the checked image.
func (s *Store) admit(ctx context.Context, id image.ID, imagePath string, m *image.Manifest, raw []byte, checkErr error) error {
	if checkErr != nil {
		s.update("stage", func(st *State) error {
			st.fail(id, checkErr)
			return checkErr
		})
		return checkErr
	}
	return s.update("stage", func(st *State) error {
		if e := st.live(id); e != nil && e.Quarantined != "" {
			// a verified copy replaces the corrupt one, unless that is served
			// or in use
			if id == st.Current {
				return fmt.Errorf("%w: %s is current: switch to another release before staging it again", ErrQuarantined, id)
			}
			if err := s.discard(st, id); err != nil {
				return fmt.Errorf("release: %s is quarantined and cannot be replaced yet: %w", id, err)
			}
			e.Retired, e.Quarantined = true, ""
		}
		if st.live(id) != nil {
			if err := s.ensureMounted(id); err != nil {
				return err
			}
			if id != st.Current {
				s.place(ctx, st, id)
			}
			return nil
		}
		if err := s.stage(ctx, st, id, imagePath, m, raw); err != nil {
			st.fail(id, err)
			return err
		}
		st.clearFailure(id)
		st.LastError = ""
		s.place(ctx, st, id)
		_, err := s.prune(st, id) // keep what was just staged, even if old
		return err
	})
}

// check verifies the manifest, the space and the image without touching
// the store, so a long hash does not hold the lock. It returns the
// manifest with its id (hashed once, here).
func (s *Store) check(ctx context.Context, id image.ID, imagePath, manifestPath string) (*image.Manifest, image.ID, []byte, error) {
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return nil, image.ID{}, nil, fmt.Errorf("release: %w", err)
	}
	m, err := image.ParseManifest(raw)
	if err != nil {
		return nil, image.ID{}, nil, fmt.Errorf("release: manifest %s: %w", manifestPath, err)
	}
	mid := m.ID()
	if err := s.checkManifest(m, mid, id, manifestPath); err != nil {
		return m, mid, nil, err
	}
	if err := s.checkCost(imagePath, mid); err != nil {
		return m, mid, nil, err
	}
	return m, mid, raw, verifyImage(ctx, imagePath, m)
}

// checkCost checks the space adopting the image at path takes.
func (s *Store) checkCost(path string, id image.ID) error {
	cost, err := s.stagingCost(path)
	if err != nil {
		return err
	}
	if err := s.CheckSpace(cost); err != nil {
		return fmt.Errorf("release: stage %s: %w", id, err)
	}
	return nil
}

// checkManifest checks m's signature (when TrustedKeys are set) and that
// its id mid is id, unless id is zero (any).
func (s *Store) checkManifest(m *image.Manifest, mid, id image.ID, path string) error {
	if len(s.opts.TrustedKeys) > 0 {
		if err := m.Verify(s.opts.TrustedKeys); err != nil {
			return fmt.Errorf("release: manifest %s: %w", path, err)
		}
	}
	if !id.IsZero() && id != mid {
		return fmt.Errorf("%w: %s names %s, not %s", ErrIDMismatch, path, mid, id)
	}
	return nil
}

// verifyImage checks the image's size and every chunk against the
// manifest (on all cores).
func verifyImage(ctx context.Context, path string, m *image.Manifest) error {
	if err := image.VerifyFile(ctx, path, m); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

// stage adopts a verified image, mounts it and records it; on error it
// removes whatever it added.
func (s *Store) stage(ctx context.Context, st *State, id image.ID, src string, m *image.Manifest, raw []byte) error {
	if err := atomicfile.WriteFile(s.manifestPath(id), raw, 0o644); err != nil {
		return fmt.Errorf("release: stage %s: %w", id, err)
	}
	crashPoint(stepManifestWritten)
	if err := adopt(ctx, src, s.imagePath(id)); err != nil {
		os.Remove(s.manifestPath(id))
		return fmt.Errorf("release: stage %s: %w", id, err)
	}
	crashPoint(stepAdopted)
	if err := s.ensureMounted(id); err != nil {
		s.discard(st, id)
		return err
	}
	crashPoint(stepMounted)
	s.record(st, id, m)
	s.log.Info("release: staged", "id", id, "size", m.ImageSize, "label", m.Label)
	return nil
}

// record adds id to the history as staged. A release staged before keeps
// its first order, so it is still older than what came after it.
func (s *Store) record(st *State, id image.ID, m *image.Manifest) {
	e := st.entry(id)
	if e == nil {
		st.History = append(st.History, Entry{ID: id, Order: st.next()})
		e = &st.History[len(st.History)-1]
	}
	e.Retired, e.Size, e.Label, e.Built = false, m.ImageSize, m.Label, m.Created
	e.Quarantined, e.QuarantinedAt = "", time.Time{} // a verified copy
	e.StagedAt = s.now()
}

// adopt moves src to dst, copying when they are on different filesystems.
func adopt(ctx context.Context, src, dst string) error {
	err := os.Rename(src, dst)
	if errors.Is(err, unix.EXDEV) {
		return copySparse(ctx, src, dst)
	}
	if err != nil {
		return err
	}
	return atomicfile.SyncDir(dirOf(dst))
}

// copySparse copies src to dst atomically, leaving all-zero blocks as holes.
func copySparse(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := atomicfile.Create(dst, 0o644)
	if err != nil {
		return err
	}
	defer out.Abort()
	buf := make([]byte, copyBlock)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(in, buf)
		if n > 0 && !image.IsZero(buf[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				return fmt.Errorf("copy %s to %s: %w", src, dst, werr)
			}
			crashPoint(stepCopying)
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	if err := out.Truncate(off); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Commit()
}
