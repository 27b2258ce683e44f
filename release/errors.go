package release

import "errors"

// Errors returned by the store; match them with errors.Is.
var (
	// ErrNoSpace: the root's filesystem lacks room to stage an image.
	ErrNoSpace = errors.New("release: not enough free disk space")
	// ErrCorrupt: an image does not match its manifest.
	ErrCorrupt = errors.New("release: image does not match manifest")
	// ErrIDMismatch: the release id given does not match the manifest's.
	ErrIDMismatch = errors.New("release: id does not match manifest")
	// ErrNotStaged: the release is not staged (unknown, failed or retired).
	ErrNotStaged = errors.New("release: not staged")
	// ErrDowngrade: the release is older than current and only a rollback
	// may name it.
	ErrDowngrade = errors.New("release: older than current")
	// ErrNoPrevious: a rollback without a target, and no previous release.
	ErrNoPrevious = errors.New("release: no previous release to roll back to")
	// ErrAlreadyCurrent: the rollback target is already current.
	ErrAlreadyCurrent = errors.New("release: already current")
	// ErrEmptyTree: the image mounts but holds no files.
	ErrEmptyTree = errors.New("release: image holds no tree")
	// ErrQuarantined: the release's image was found corrupt.
	ErrQuarantined = errors.New("release: quarantined (its image is corrupt)")
)
