package image

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkBuild builds the tree at $LOOPCAST_BENCH_TREE (e.g. the full
// synthetic tree from `go run ./cmd/synthtree --preset full`), or a small
// generated tree, and reports source MB/s.
func BenchmarkBuild(b *testing.B) {
	src := os.Getenv("LOOPCAST_BENCH_TREE")
	if src == "" {
		src = b.TempDir()
		randomTree(b, src, 3)
	}
	out := filepath.Join(b.TempDir(), "bench.img")
	epoch := int64(1_700_000_000)
	var size int64
	for b.Loop() {
		res, err := Build(context.Background(), src, out, Options{Epoch: &epoch, HeadroomPct: DefaultHeadroomPct})
		if err != nil {
			b.Fatal(err)
		}
		size = res.UsedBytes
	}
	b.SetBytes(size)
}

// BenchmarkScan scans the tree at $LOOPCAST_BENCH_TREE (or a small
// generated one): the stat of every entry, what a hotfix build on a base
// pays whatever it changed. It reports entries per second.
func BenchmarkScan(b *testing.B) {
	src := os.Getenv("LOOPCAST_BENCH_TREE")
	if src == "" {
		src = b.TempDir()
		randomTree(b, src, 3)
	}
	var n int
	for b.Loop() {
		t, err := scanTree(src)
		if err != nil {
			b.Fatal(err)
		}
		n = len(t.nodes)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkHashFile(b *testing.B) {
	p := filepath.Join(b.TempDir(), "img")
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	os.WriteFile(p, data, 0o644)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := HashFile(context.Background(), p, ChunkSize); err != nil {
			b.Fatal(err)
		}
	}
}
