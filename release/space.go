package release

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// FreeBytes returns the bytes available to the agent on the root's
// filesystem.
func (s *Store) FreeBytes() (int64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(s.root, &fs); err != nil {
		return 0, fmt.Errorf("release: statfs %s: %w", s.root, err)
	}
	return int64(fs.Bavail) * fs.Bsize, nil
}

// CheckSpace checks that n more bytes fit under the root and still leave
// the reserve free. The agent calls it before receiving an image; Stage
// calls it before copying one in.
func (s *Store) CheckSpace(n int64) error {
	free, err := s.FreeBytes()
	if err != nil {
		return err
	}
	reserve := max(s.opts.Reserve, 0)
	if need := n + reserve; free < need {
		return fmt.Errorf("%w on %s: needs %s incl. %s reserve, %s free",
			ErrNoSpace, s.root, humanize.IBytes(uint64(need)), humanize.IBytes(uint64(reserve)), humanize.IBytes(uint64(free)))
	}
	return nil
}

// stagingCost is the disk space adopting src into images/ takes: nothing
// when it can be renamed (same filesystem), else its allocated bytes.
func (s *Store) stagingCost(src string) (int64, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return 0, fmt.Errorf("release: %w", err)
	}
	di, err := os.Stat(filepath.Join(s.root, imagesDir))
	if err != nil {
		return 0, fmt.Errorf("release: %w", err)
	}
	sst, dst := fi.Sys().(*syscall.Stat_t), di.Sys().(*syscall.Stat_t)
	if sst.Dev == dst.Dev {
		return 0, nil
	}
	return min(fi.Size(), sst.Blocks*512), nil
}
