package logline

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLines(t *testing.T) {
	var got []string
	log := slog.New(New(slog.LevelInfo, func(level slog.Level, line string) {
		got = append(got, level.String()+" "+line)
	}))
	log.Debug("not printed", "round", 3)
	log.Info("deploy: built release", "release", "abc", "took", 1500*time.Millisecond)
	log.Warn("host refuses the session", "host", "r2", "err", errors.New("does not trust the key"))
	log.With("session", "0005e55a").WithGroup("stream").Info("pushing", "chunks", 2)
	log.Info("nothing else")
	want := []string{
		"INFO deploy: built release release=abc took=1.5s",
		`WARN host refuses the session host=r2 err="does not trust the key"`,
		"INFO pushing session=0005e55a stream.chunks=2",
		"INFO nothing else",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}
