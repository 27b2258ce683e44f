package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progressEvery limits redraws of the progress line.
const progressEvery = 200 * time.Millisecond

// progress draws one updating line on a terminal and nothing otherwise.
type progress struct {
	w     io.Writer
	label string
	tty   bool
	last  time.Time
	start time.Time
	drawn bool
}

func newProgress(f *os.File, label string) *progress {
	fi, err := f.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return &progress{w: f, label: label, tty: tty, start: time.Now()}
}

func (p *progress) update(done, total int64) {
	if !p.tty || time.Since(p.last) < progressEvery {
		return
	}
	p.last = time.Now()
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r%s: %5.1f%%  %s / %s  %s/s ", p.label, pct, humanBytes(done), humanBytes(total), humanBytes(int64(rate)))
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
