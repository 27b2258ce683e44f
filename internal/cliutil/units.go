package cliutil

import (
	"fmt"
	"math"
	"strings"

	"github.com/dustin/go-humanize"
)

// Units on the command line, read and printed with go-humanize so that
// every flag and every report means the same thing by the same letters:
//
//   - a rate is bits per second with SI prefixes: 900M is 900,000,000 bit/s
//     (RateUnits);
//   - a size is bytes: 512MiB is binary, 512MB decimal, and a bare 512M is
//     binary, 512 MiB, as truncate(1) and mke2fs(8) read it (SizeUnits);
//   - a printed size is binary IEC: "1.5 GiB" (HumanBytes).

// RateUnits says in a rate flag's help how ParseRate reads its value.
const RateUnits = "bit/s, SI prefixes k, M, G (900M = 900Mbit = 900,000,000 bit/s)"

// SizeUnits says in a size flag's help how ParseSize reads its value.
const SizeUnits = "bytes; K, M, G, T alone are binary (2G = 2GiB), KB, MB, GB decimal (2GB = 2,000,000,000)"

// ParseRate reads a bit rate: a non-negative number, an optional SI prefix
// (k, M, G, T; K is taken as k) and an optional unit, bit, bit/s or bps.
// A lowercase m is refused: in SI it is milli, and mega is what is meant.
func ParseRate(s string) (int64, error) {
	if strings.ContainsRune(s, 'm') {
		return 0, fmt.Errorf("%q is not a rate in bit/s: m is milli, write M for mega", s)
	}
	v, unit, err := humanize.ParseSI(strings.Replace(s, "K", "k", 1))
	if err != nil || v < 0 || v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a rate in bit/s (e.g. 900M)", s)
	}
	switch strings.TrimSpace(unit) {
	case "", "bit", "bit/s", "bps", "b/s":
	default:
		return 0, fmt.Errorf("%q is not a rate in bit/s (e.g. 900M): unknown unit %q", s, unit)
	}
	if v != 0 && v < 1 {
		return 0, fmt.Errorf("%q is below 1 bit/s", s)
	}
	return int64(v), nil
}

// ParseSize reads a size in bytes: a positive whole number and an optional
// unit as go-humanize reads it (KiB, MiB, ... binary; kB, MB, ... decimal),
// except that a bare prefix letter (K, M, G, T, P, E) is binary.
func ParseSize(s string) (int64, error) {
	num := strings.TrimLeft(s, "0123456789")
	digits, unit := s[:len(s)-len(num)], strings.TrimSpace(num)
	if digits == "" || strings.TrimLeft(unit, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return 0, fmt.Errorf("%q is not a size: want a whole number and an optional unit, e.g. 2GiB", s)
	}
	if len(unit) == 1 && strings.ContainsAny(unit, "kKmMgGtTpPeE") {
		unit += "i"
	}
	n, err := humanize.ParseBytes(digits + unit)
	if err != nil || n == 0 || n > math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a size: want a whole number and an optional unit, e.g. 2GiB", s)
	}
	return int64(n), nil
}

// HumanBytes formats n with a binary unit, e.g. "1.5 GiB".
func HumanBytes(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}

// HumanRate formats a rate in bit/s with an SI prefix, e.g. "850 Mbit/s".
func HumanRate(bitsPerSec float64) string {
	return humanize.SIWithDigits(bitsPerSec, 1, "bit/s")
}
