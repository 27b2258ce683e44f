#!/usr/bin/env bash
# bench-build.sh — time `sender build` (image, signed manifest and the pack
# of compressed chunks) against what a user would script instead on the
# full synthetic tree (150,000 files, ~900 MB): `mke2fs -d` alone, and the
# pipeline `mke2fs -d` + `zstd -1 -T0` + `sha256sum`. Prints wall times,
# their ratios and loopcast's peak RSS (medians of RUNS runs).
#
# The tree is generated once and cached in $BENCH_DIR/tree-full (regenerated
# only when missing or made with another seed); the images are removed at
# the end. Before each timed command the page cache holds the whole tree
# (warmed once, re-read before every run) and no dirty pages are pending.
#
# Environment:
#   BENCH_DIR  cache and scratch directory (default /var/tmp/loopcast-bench)
#   RUNS       runs of each tool, the median is reported (default 3)
#   SEED       synthetic tree seed (default 1)
#   SENDER     the loopcast sender binary (default bin/sender, built if missing)
#   LOOPCAST=0 time mke2fs only (while `sender build` does not exist yet)
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/var/tmp/loopcast-bench}
RUNS=${RUNS:-3}
SEED=${SEED:-1}
SENDER=${SENDER:-bin/sender}
LOOPCAST=${LOOPCAST:-1}
EPOCH=1700000000 # fixed build time: loopcast images are deterministic
TREE=$BENCH_DIR/tree-full
STAMP=$BENCH_DIR/tree-full.stamp # what made the cached tree; outside it, so not imaged
TIME=/usr/bin/time

log() { printf 'bench-build: %s\n' "$*"; }
die() { printf 'bench-build: error: %s\n' "$*" >&2; exit 1; }

WORK=
cleanup() { if [ -n "$WORK" ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

check_tools() {
	[ -x "$TIME" ] && "$TIME" -f %e true 2>/dev/null || die "needs GNU time at $TIME (run scripts/install-deps.sh)"
	command -v mke2fs >/dev/null || die "needs mke2fs (run scripts/install-deps.sh)"
	command -v zstd >/dev/null || die "needs zstd (run scripts/install-deps.sh)"
	command -v go >/dev/null || die "needs go on PATH"
	if [ "$LOOPCAST" = 1 ]; then
		if [ ! -x "$SENDER" ]; then
			log "building $SENDER"
			go build -o "$SENDER" ./cmd/sender
		fi
		"$SENDER" build --help >/dev/null 2>&1 ||
			die "$SENDER has no working 'build' command (LOOPCAST=0 times mke2fs alone)"
	fi
}

# generator_hash identifies the generator's code (tests excluded).
generator_hash() {
	find internal/synth cmd/synthtree -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12
}

# ensure_tree generates the cached tree when missing, into a temporary name
# renamed into place, so an interrupted run never leaves a partial tree.
ensure_tree() {
	# The stamp names the generator's sources too: a changed generator
	# makes a different tree.
	local want synthtree
	want="synthtree --preset full --seed $SEED synth=$(generator_hash)"
	if [ -d "$TREE" ] && [ "$(cat "$STAMP" 2>/dev/null | head -1)" = "$want" ]; then
		log "tree: cached $TREE ($(tail -1 "$STAMP"))"
		return
	fi
	mkdir -p "$BENCH_DIR"
	rm -rf "$TREE" "$TREE.tmp" "$STAMP"
	synthtree=$BENCH_DIR/synthtree # built from this checkout, matching the stamp
	go build -o "$synthtree" ./cmd/synthtree
	log "tree: generating $TREE ($want)"
	local out
	out=$("$synthtree" --preset full --seed "$SEED" --out "$TREE.tmp")
	log "tree: $out"
	mv "$TREE.tmp" "$TREE"
	printf '%s\n%s\n' "$want" "$out" >"$STAMP"
}

# warm reads every file so the timed runs measure the tools, not the disk.
# (tar writing to /dev/null itself would skip the file contents.)
warm() { tar -C "$TREE" -cf - . | cat >/dev/null; }

# timed NAME CMD...: runs CMD under GNU time, appends "wall_s maxrss_kib" to
# $WORK/NAME.times, prints the figures.
timed() {
	local name=$1 t
	shift
	warm
	sync
	"$TIME" -f '%e %M' -o "$WORK/$name.last" "$@" >"$WORK/$name.log" 2>&1 ||
		{ cat "$WORK/$name.log" >&2; die "$name failed: $*"; }
	t=$(tail -1 "$WORK/$name.last")
	echo "$t" >>"$WORK/$name.times"
	printf '%s %ss %sMiB' "$name" "${t% *}" "$(( ${t#* } / 1024 ))"
}

# median FILE COLUMN: the median of one column (odd count: the middle value;
# even: the lower middle).
median() { awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

main() {
	cd "$(dirname "$0")/.."
	check_tools
	ensure_tree
	WORK=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
	local entries kib size i
	entries=$(find "$TREE" | wc -l)
	kib=$(du -sk "$TREE" | cut -f1)
	size=$(( kib + kib / 10 ))k # the tree's allocated size plus 10%
	log "tree: $entries entries, $(( kib / 1024 )) MiB allocated; mke2fs image ${size}, $(( entries + entries / 10 )) inodes"
	log "warming the page cache"
	warm
	for i in $(seq "$RUNS"); do
		printf 'bench-build: run %d/%d: ' "$i" "$RUNS"
		if [ "$LOOPCAST" = 1 ]; then
			rm -f "$WORK/loopcast.img"*
			timed loopcast "$SENDER" build --epoch "$EPOCH" --out "$WORK/loopcast.img" "$TREE"
			printf ' | '
		fi
		rm -f "$WORK/mke2fs.img"
		timed mke2fs mke2fs -q -F -t ext2 -b 4096 -m 0 -N $(( entries + entries / 10 )) \
			-E root_owner=0:0 -d "$TREE" "$WORK/mke2fs.img" "$size"
		printf ' | '
		rm -f "$WORK/pipeline.img" "$WORK/pipeline.img.zst"
		timed pipeline sh -c "mke2fs -q -F -t ext2 -b 4096 -m 0 -N $(( entries + entries / 10 )) \
			-E root_owner=0:0 -d '$TREE' '$WORK/pipeline.img' $size &&
			zstd -1 -T0 -q -f '$WORK/pipeline.img' -o '$WORK/pipeline.img.zst' &&
			sha256sum '$WORK/pipeline.img' >'$WORK/pipeline.img.sha256'"
		echo
	done
	report
}

# report checks the last images with e2fsck (a benchmark of a broken image
# is worthless) and prints the medians.
report() {
	local img m_wall p_wall l_wall l_rss
	for img in "$WORK"/loopcast.img "$WORK"/mke2fs.img; do
		[ -f "$img" ] || continue
		e2fsck -fn "$img" >"$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log" >&2; die "e2fsck -fn $img found errors"; }
		log "$(basename "$img"): $(( $(stat -c %s "$img") / 1048576 )) MiB, $(du -k "$img" | cut -f1 | awk '{ printf "%d", $1 / 1024 }') MiB allocated, e2fsck -fn clean"
	done
	m_wall=$(median "$WORK/mke2fs.times" 1)
	p_wall=$(median "$WORK/pipeline.times" 1)
	echo "mke2fs -d:      median wall ${m_wall} s, peak RSS $(( $(median "$WORK/mke2fs.times" 2) / 1024 )) MiB (runs: $RUNS)"
	echo "mke2fs -d + zstd -1 -T0 + sha256sum: median wall ${p_wall} s (zst $(( $(stat -c %s "$WORK/pipeline.img.zst") / 1048576 )) MiB)"
	if [ "$LOOPCAST" = 1 ]; then
		l_wall=$(median "$WORK/loopcast.times" 1)
		l_rss=$(median "$WORK/loopcast.times" 2)
		echo "loopcast build: median wall ${l_wall} s, peak RSS $(( l_rss / 1024 )) MiB (runs: $RUNS)"
		echo "loopcast pack: $(( $(stat -c %s "$WORK/loopcast.img.pack") / 1048576 )) MiB"
		echo "ratio loopcast/mke2fs: $(awk -v a="$l_wall" -v b="$m_wall" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
		echo "ratio loopcast/pipeline: $(awk -v a="$l_wall" -v b="$p_wall" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') (goal <= 0.6)"
	fi
}

main "$@"
