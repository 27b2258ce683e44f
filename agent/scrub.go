package agent

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	"github.com/loopcast/loopcast/release"
	"golang.org/x/sys/unix"
)

// Scrub tunables: kept images are trusted by their verified manifests
// (chunks are copied from them unread), so the agent re-reads them in the
// background against silent disk corruption.
const (
	// scrubDelay keeps the first scrub away from the boot and the first
	// deploys after it.
	scrubDelay = time.Hour
	// scrubEvery is the period: each kept image is read once a day.
	scrubEvery = 24 * time.Hour
	// scrubRate bounds the scrub's reads: 32 MB/s reads a 1 GB image in
	// about half a minute while leaving the disk to the web server (and
	// its I/O is of the idle class besides).
	scrubRate = 32 << 20
)

// scrubLoop verifies every kept image every scrubEvery; a corrupt one is
// quarantined by the store (never a chunk source or base again) and logged.
func scrubLoop(ctx context.Context, store *release.Store, m *Metrics, log *slog.Logger) error {
	t := time.NewTimer(scrubDelay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		start := time.Now()
		err := scrub(ctx, store)
		if ctx.Err() == nil {
			m.scrubbed(err)
		}
		if err != nil && ctx.Err() == nil {
			log.Error("agent: scrub found corrupt images", "err", err)
		} else if err == nil {
			log.Info("agent: scrub done, kept images intact", "took", time.Since(start).Round(time.Second))
		}
		t.Reset(scrubEvery)
	}
}

// scrub runs one pass on a thread of the idle I/O class.
func scrub(ctx context.Context, store *release.Store) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer setIOPrio(setIOPrio(ioprioClassIdle << ioprioClassShift))
	return store.Scrub(ctx, scrubRate)
}

// I/O priority of the calling thread (ioprio_get(2), ioprio_set(2)).
const (
	ioprioWhoProcess = 1 // with id 0: the calling thread
	ioprioClassShift = 13
	ioprioClassIdle  = 3
)

// setIOPrio sets the calling thread's I/O priority and returns the old.
func setIOPrio(prio uintptr) uintptr {
	old, _, _ := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, 0, 0)
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, prio)
	return old
}
