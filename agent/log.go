package agent

import (
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// NewLogger returns the agent's logger writing to f: text for a person at
// a terminal, JSON otherwise (the journal, a file, a log shipper).
func NewLogger(f *os.File, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if isTerminal(f) {
		return slog.New(slog.NewTextHandler(f, opts))
	}
	return slog.New(slog.NewJSONHandler(f, opts))
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
