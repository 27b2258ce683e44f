package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/loopcast/loopcast/opcache"
)

// opcacheDir holds the OPcache helper script under the store's root.
const opcacheDir = "opcache"

// opcacheEvery is how often the agent looks at OPcache between deploys.
const opcacheEvery = time.Minute

// opcacheLoop watches the pool's OPcache until ctx ends: it logs the pool
// once it answers, and warns, once per change, when it cannot be reached,
// when OPcache is off or checks timestamps (slots need neither), and when
// OPcache nears full (it then stops caching new scripts until it
// restarts, which costs a recompile of everything).
func opcacheLoop(ctx context.Context, pool *opcache.Client, log *slog.Logger) error {
	t := time.NewTicker(opcacheEvery)
	defer t.Stop()
	var last string
	for {
		note, level, attrs := opcacheNote(ctx, pool)
		if note != last {
			log.Log(ctx, level, note, append(attrs, "socket", pool.Socket)...)
			last = note
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func opcacheNote(ctx context.Context, pool *opcache.Client) (string, slog.Level, []any) {
	st, err := pool.Status(ctx)
	switch {
	case err != nil:
		return "agent: php-fpm pool unreachable: releases are served from their own paths until it answers", slog.LevelWarn, []any{"err", err}
	case !st.Enabled:
		return "agent: OPcache is off in the php-fpm pool", slog.LevelWarn, nil
	case st.NearFull() != "":
		return "agent: OPcache nears full: raise opcache.memory_consumption or opcache.max_accelerated_files, or reload php-fpm at a quiet moment",
			slog.LevelWarn, []any{"why", st.NearFull(), "restarts", st.Restarts()}
	}
	attrs := []any{"scripts", st.Scripts, "used_mib", st.UsedMemory >> 20, "limit_mib", st.MemoryLimit >> 20}
	if st.ValidateTimestamps {
		return "agent: OPcache reachable; opcache.validate_timestamps=1 costs a stat per script and request, and slots do not need it", slog.LevelInfo, attrs
	}
	return "agent: OPcache reachable", slog.LevelInfo, attrs
}
