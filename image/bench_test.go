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
