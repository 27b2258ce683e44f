package release

import (
	"context"
	"errors"
	"fmt"

	"github.com/loopcast/loopcast/image"
)

// Verify checks release id's kept image against its manifest, every chunk
// (at most bytesPerSec when positive: the agent's background scrub; at
// full speed for `receiver verify`). An image found corrupt is quarantined:
// it is never again a source of chunks or a delta base, cannot be
// activated or rolled back to, and is retired once nothing uses it (unless
// it is current, which keeps serving until the next deploy: only the
// operator can tell whether a damaged release is worse than none). The
// error names the release and the chunks that differ.
func (s *Store) Verify(ctx context.Context, id image.ID, bytesPerSec int64) error {
	m, err := image.ReadManifestFile(s.manifestPath(id))
	if err == nil {
		if mid := m.ID(); mid != id {
			err = fmt.Errorf("%w: %s names release %s", ErrIDMismatch, s.manifestPath(id), mid)
		}
	}
	if err == nil {
		err = image.VerifyFile(ctx, s.imagePath(id), m, image.VerifyOptions{BytesPerSec: bytesPerSec})
	}
	if err == nil || ctx.Err() != nil {
		return err
	}
	verr := fmt.Errorf("release: %s is corrupt: %w", id, err)
	if qerr := s.quarantine(id, verr); qerr != nil {
		return errors.Join(verr, qerr)
	}
	return verr
}

// quarantine marks release id corrupt, with why, and applies retention.
func (s *Store) quarantine(id image.ID, why error) error {
	return s.update("quarantine", func(st *State) error {
		e := st.live(id)
		if e == nil {
			return nil // retired meanwhile
		}
		e.Quarantined, e.QuarantinedAt = why.Error(), s.now()
		s.log.Error("release: quarantined", "id", id, "err", why)
		st.fail(id, why)
		_, err := s.prune(st)
		return err
	})
}

// Scrub verifies every kept image in turn at bytesPerSec (the agent runs
// it in the background); it returns the corrupt ones' errors joined.
func (s *Store) Scrub(ctx context.Context, bytesPerSec int64) error {
	kept, err := s.KeptImages()
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range kept {
		if err := s.Verify(ctx, k.ID, bytesPerSec); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
