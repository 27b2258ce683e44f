package cliutil

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "8M": 8 << 20, "2g": 2 << 30, "1T": 1 << 40,
		"512MiB": 512 << 20, "512 MiB": 512 << 20, "512MB": 512e6, "2GB": 2e9, "64k": 64 << 10, "100B": 100} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1.5G", "ten", "0", "8Q", "8 M M", "9E", "99999999999999999999"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"900M": 900e6, "900Mbit": 900e6, "900 Mbit/s": 900e6, "1G": 1e9, "1.5G": 1.5e9,
		"0": 0, "200": 200, "100k": 100e3, "100K": 100e3, "10Mbps": 10e6, "900m": 900e6, "1g": 1e9, "900mbit/s": 900e6} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "ten", "900MB", "900MiB", "1n", "1Q"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) succeeded", in)
		}
	}
}

func TestHumanRate(t *testing.T) {
	for v, want := range map[float64]string{0: "0 bit/s", 850.34e6: "850.3 Mbit/s", 1e9: "1 Gbit/s", 12e3: "12 kbit/s"} {
		if got := HumanRate(v); got != want {
			t.Errorf("HumanRate(%g) = %q, want %q", v, got, want)
		}
	}
}
