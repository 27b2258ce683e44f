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
const RateUnits = "bit/s, SI prefixes k, M, G, either case (900M = 900Mbit = 900,000,000 bit/s)"

// SizeUnits says in a size flag's help how ParseSize reads its value.
const SizeUnits = "bytes; K, M, G, T alone are binary (2G = 2GiB), KB, MB, GB decimal (2GB = 2,000,000,000)"

// ParseRate reads a bit rate: a non-negative number, an optional SI prefix
// (k, M, G, T, either case: no one sends millibits, so 900m is 900M, as
// loopcast always read it) and an optional unit, bit, bit/s or bps.
func ParseRate(s string) (int64, error) {
	v, unit, err := humanize.ParseSI(normalizePrefix(s))
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

// normalizePrefix puts the SI prefix after a rate's number in the case
// go-humanize reads: k, M, G, T.
func normalizePrefix(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune("0123456789. ", r) })
	if i < 0 {
		return s
	}
	switch s[i] {
	case 'K':
		return s[:i] + "k" + s[i+1:]
	case 'm', 'g', 't':
		return s[:i] + strings.ToUpper(s[i:i+1]) + s[i+1:]
	}
	return s
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
