package agent

import (
	"log/slog"
	"os"

	"golang.org/x/term"
)

// NewLogger returns the agent's logger writing to f: text for a person at
// a terminal, JSON otherwise (the journal, a file, a log shipper).
func NewLogger(f *os.File, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if term.IsTerminal(int(f.Fd())) {
		return slog.New(slog.NewTextHandler(f, opts))
	}
	return slog.New(slog.NewJSONHandler(f, opts))
}
