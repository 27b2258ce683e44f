package agent

import (
	"testing"
	"time"

	"github.com/loopcast/loopcast/opcache"
)

func TestShouldReload(t *testing.T) {
	now := time.Now()
	full := opcache.Status{Enabled: true, CacheFull: true, ActiveRequests: 0}
	roomy := opcache.Status{Enabled: true, MemoryLimit: 100 << 20, UsedMemory: 10 << 20, ActiveRequests: 0}
	busy := full
	busy.ActiveRequests = 1
	unknown := full
	unknown.ActiveRequests = -1
	for _, tc := range []struct {
		name string
		st   opcache.Status
		last time.Time
		want bool
	}{
		{"full and quiet", full, time.Time{}, true},
		{"full, quiet, reloaded long ago", full, now.Add(-2 * reloadEvery), true},
		{"full, but reloaded recently", full, now.Add(-time.Minute), false},
		{"room left", roomy, time.Time{}, false},
		{"full but busy", busy, time.Time{}, false},
		{"full, activity unknown", unknown, time.Time{}, false},
	} {
		if got := shouldReload(&tc.st, tc.last, now); got != tc.want {
			t.Errorf("%s: shouldReload = %v, want %v", tc.name, got, tc.want)
		}
	}
}
