//go:build !linux

package synth

import "io/fs"

// lutimes is a no-op off Linux: symlink mtimes stay as created there.
func lutimes(path string, sec int64) error { return nil }

// linkCount is unknown off Linux: every file counts as singly linked.
func linkCount(fi fs.FileInfo) uint64 { return 1 }
