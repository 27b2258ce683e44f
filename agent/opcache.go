package agent

import (
	"context"
	"log/slog"
	"os/exec"
	"time"

	"github.com/loopcast/loopcast/opcache"
)

// opcacheEvery is how often the agent looks at OPcache between deploys.
const opcacheEvery = time.Minute

// Reloads of php-fpm the agent runs when OPcache nears full (with
// RunConfig.OPcacheReload): only when the pool runs no other request (a
// reload ends workers within php-fpm's process_control_timeout, 0 by
// default: a request running then would fail), at most once per
// reloadEvery, and each bounded by reloadTimeout.
const (
	quietRequests = 0
	reloadEvery   = time.Hour
	reloadTimeout = 2 * time.Minute
)

// opcacheLoop watches the pool's OPcache until ctx ends: it logs the pool
// once it answers, and warns, once per change, when it cannot be reached,
// when OPcache is off or checks timestamps (slots need neither), and when
// OPcache nears full (it then stops caching new scripts until it
// restarts). With reload set, a near-full OPcache is emptied by running
// reload (e.g. "systemctl reload php8.2-fpm") at a quiet moment.
func opcacheLoop(ctx context.Context, pool *opcache.Client, reload string, log *slog.Logger) error {
	t := time.NewTicker(opcacheEvery)
	defer t.Stop()
	var last string
	var lastReload time.Time
	for {
		st, err := pool.Status(ctx)
		note, level, attrs := opcacheNote(st, err)
		if note != last {
			log.Log(ctx, level, note, append(attrs, "socket", pool.Socket)...)
			last = note
		}
		if reload != "" && err == nil && shouldReload(st, lastReload, time.Now()) {
			lastReload = time.Now()
			runReload(ctx, reload, st, log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func opcacheNote(st *opcache.Status, err error) (string, slog.Level, []any) {
	switch {
	case err != nil:
		return "agent: php-fpm pool unreachable, or refusing the OPcache helper: releases are served from their own paths until it answers", slog.LevelWarn, []any{"err", err}
	case !st.Enabled:
		return "agent: OPcache is off in the php-fpm pool", slog.LevelWarn, nil
	case st.NearFull() != "":
		return "agent: OPcache nears full: raise opcache.memory_consumption or opcache.max_accelerated_files, or reload php-fpm at a quiet moment (--opcache-reload)",
			slog.LevelWarn, []any{"why", st.NearFull(), "restarts", st.Restarts()}
	}
	attrs := []any{"scripts", st.Scripts, "used_mib", st.UsedMemory >> 20, "limit_mib", st.MemoryLimit >> 20}
	if st.ValidateTimestamps {
		return "agent: OPcache reachable; opcache.validate_timestamps=1 costs a stat per script and request, and slots do not need it", slog.LevelInfo, attrs
	}
	return "agent: OPcache reachable", slog.LevelInfo, attrs
}

// shouldReload says whether to reload php-fpm now: OPcache nears full, the
// pool is quiet, and the last reload is long enough ago.
func shouldReload(st *opcache.Status, last, now time.Time) bool {
	return st.NearFull() != "" && st.ActiveRequests >= 0 && st.ActiveRequests <= quietRequests &&
		(last.IsZero() || now.Sub(last) >= reloadEvery)
}

// runReload runs the operator's reload command through the shell.
func runReload(ctx context.Context, reload string, st *opcache.Status, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	log.Warn("agent: OPcache nears full and the pool is quiet: reloading php-fpm", "command", reload,
		"why", st.NearFull(), "active_requests", st.ActiveRequests)
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", reload).CombinedOutput()
	if err != nil {
		log.Error("agent: php-fpm reload failed", "command", reload, "err", err, "output", string(out))
		return
	}
	log.Info("agent: php-fpm reloaded", "command", reload)
}
