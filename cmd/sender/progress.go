package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/loopcast/loopcast/internal/cliutil"
	"golang.org/x/term"
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
	return &progress{w: f, label: label, tty: term.IsTerminal(int(f.Fd())), start: time.Now()}
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
	fmt.Fprintf(p.w, "\r%s: %5.1f%%  %s / %s  %s/s ", p.label, pct, cliutil.HumanBytes(done), cliutil.HumanBytes(total), cliutil.HumanBytes(int64(rate)))
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
