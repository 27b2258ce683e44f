// Package logline is a slog.Handler for a command's own output: each record
// becomes one line of text, its message then its attributes as key=value
// (written by slog's TextHandler, so quoting, groups and LogValuers are
// slog's), handed with its level to a function that prints it (after a
// timestamp, a "warning: ", above progress bars, as a JSON event ...).
package logline

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Handler renders records as lines; New makes one.
type Handler struct {
	level slog.Leveler
	print func(slog.Level, string)
	attrs slog.Handler // a TextHandler writing only the attributes, into *buf
	mu    *sync.Mutex  // guards buf, shared by the handlers WithAttrs and WithGroup derive
	buf   *bytes.Buffer
}

// New returns a Handler passing each record at level or above to print
// as one line, without a trailing newline.
func New(level slog.Leveler, print func(level slog.Level, line string)) *Handler {
	buf := &bytes.Buffer{}
	attrsOnly := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}
	return &Handler{level: level, print: print, mu: &sync.Mutex{}, buf: buf,
		attrs: slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: attrsOnly})}
}

// Enabled reports whether level is at or above the handler's.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// Handle prints r as one line: "message key=value ...".
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	line, err := h.line(ctx, r)
	h.print(r.Level, line)
	return err
}

// line renders r as Handle prints it.
func (h *Handler) line(ctx context.Context, r slog.Record) (string, error) {
	h.mu.Lock()
	h.buf.Reset()
	err := h.attrs.Handle(ctx, r)
	attrs := strings.TrimSuffix(h.buf.String(), "\n")
	h.mu.Unlock()
	if attrs == "" {
		return r.Message, err
	}
	return r.Message + " " + attrs, err
}

// WithAttrs returns a handler whose lines carry attrs too.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = h.attrs.WithAttrs(attrs)
	return &c
}

// WithGroup returns a handler that qualifies later attributes by name.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.attrs = h.attrs.WithGroup(name)
	return &c
}
