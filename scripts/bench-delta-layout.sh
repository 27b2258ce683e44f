#!/usr/bin/env bash
# bench-delta-layout.sh — what the stable layout (`sender build --base`)
# buys: how many 1 MiB chunks of an image change when the tree changes a
# little, against a fresh layout and against `mke2fs -t ext2 -d`.
#
# On the full synthetic tree (cached by scripts/bench-build.sh; never
# modified here, the change sets go to copies):
#   A = the tree;  B = A with one ~5 KB file changed (a line inserted);
#   C = A with 200 files modified, 20 added, 20 deleted (synthtree --modify).
# It builds A, then B and C with --base A (and fresh, for comparison), and
# mke2fs -d images of A and C of the same size; it prints, per image, the
# chunks that differ from A's at the same index, their bytes, their
# zstd -3 size, and the zstd -3 size of the changed and added files.
# Every image is checked with e2fsck -fn. Scratch space (~10 GB) is removed
# at the end.
#
# Environment:
#   BENCH_DIR  cache and scratch directory (default /var/tmp/loopcast-bench)
#   SEED       change-set seed (default 7)
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/var/tmp/loopcast-bench}
SEED=${SEED:-7}
EPOCH=1700000000
TREE=$BENCH_DIR/tree-full
CHANGED_AFTER=1700000000 # change sets stamp mtimes from here (synth changeBase)
TIME=/usr/bin/time

log() { printf 'bench-delta: %s\n' "$*"; }
die() { printf 'bench-delta: error: %s\n' "$*" >&2; exit 1; }

WORK=
cleanup() { if [ -n "$WORK" ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

# chunkdiff A B [CHUNK]: chunks of image B whose SHA-256 differs from A's
# chunk at the same index, their bytes, how many are all zeros (not sent),
# and the zstd -3 size of the non-zero ones. CHUNK defaults to 1 MiB.
chunkdiff() {
	python3 - "$1" "$2" "${3:-1048576}" <<'EOF'
import hashlib, subprocess, sys
CHUNK = int(sys.argv[3])
a, b = open(sys.argv[1], 'rb'), open(sys.argv[2], 'rb')
total = diff = zero = 0
z = subprocess.Popen(['zstd', '-3', '-q', '-c'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
import threading
out = []
t = threading.Thread(target=lambda: out.append(len(z.stdout.read())))
t.start()
while True:
    cb = b.read(CHUNK)
    if not cb:
        break
    ca = a.read(CHUNK)
    total += 1
    if hashlib.sha256(ca).digest() != hashlib.sha256(cb).digest():
        diff += 1
        if cb.count(0) == len(cb):
            zero += 1
        else:
            z.stdin.write(cb)
z.stdin.close(); t.join(); z.wait()
print(f"{diff} of {total} chunks differ ({diff*CHUNK/1048576:.2f} MiB, {zero} of them all zeros), zstd -3 of the non-zero ones: {out[0]/1048576:.2f} MiB")
EOF
}

timed() { # timed LOG CMD...: runs CMD, prints its wall time and peak RSS
	local log=$1 t
	shift
	"$TIME" -f '%e %M' -o "$WORK/time" "$@" >"$log" 2>&1 || { cat "$log" >&2; die "failed: $*"; }
	t=$(tail -1 "$WORK/time")
	printf '%ss, peak RSS %s MiB' "${t% *}" "$(( ${t#* } / 1024 ))"
}

fsck_ok() { e2fsck -fn "$1" >"$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log" >&2; die "e2fsck -fn $1 found errors"; }; }

main() {
	cd "$(dirname "$0")/.."
	[ -d "$TREE" ] || die "no cached tree at $TREE: run scripts/bench-build.sh first"
	for t in python3 zstd mke2fs e2fsck go; do command -v $t >/dev/null || die "needs $t"; done
	WORK=$(mktemp -d "$BENCH_DIR/delta.XXXXXX")
	local sender=$WORK/sender synthtree=$WORK/synthtree
	go build -o "$sender" ./cmd/sender
	go build -o "$synthtree" ./cmd/synthtree

	log "copying the tree for B and C"
	cp -a "$TREE" "$WORK/B"
	cp -a "$TREE" "$WORK/C"
	local hot
	hot=$(cd "$WORK/B" && find . -type f -size +4999c -size -5201c | LC_ALL=C sort | awk 'NR == 1')
	[ -n "$hot" ] || die "no ~5 KB file in the tree"
	python3 - "$WORK/B/$hot" <<'EOF'
import sys
p = sys.argv[1]
d = open(p, 'rb').read()
open(p, 'wb').write(d[:len(d) // 2] + b"\n// hotfix: check the token before use\n" + d[len(d) // 2:])
EOF
	touch -d @$((CHANGED_AFTER + 60)) "$WORK/B/$hot"
	log "B: changed $hot ($(stat -c %s "$TREE/$hot") -> $(stat -c %s "$WORK/B/$hot") bytes)"
	log "C: $("$synthtree" --out "$WORK/C" --seed "$SEED" --modify 200 --add 20 --delete 20)"

	local files raw
	(cd "$WORK/C" && find . -type f -newermt @$CHANGED_AFTER | LC_ALL=C sort) >"$WORK/C.changed"
	files=$(wc -l <"$WORK/C.changed")
	raw=$(cd "$WORK/C" && tr '\n' '\0' <"$WORK/C.changed" | xargs -0 cat | wc -c)
	local zs
	zs=$(cd "$WORK/C" && tr '\n' '\0' <"$WORK/C.changed" | xargs -0 cat | zstd -3 -q -c | wc -c)
	log "C: $files changed and added files, $raw bytes, zstd -3 (concatenated): $zs bytes"
	local zb
	zb=$(zstd -3 -q -c "$WORK/B/$hot" | wc -c)
	log "B: the changed file, zstd -3: $zb bytes"

	printf 'bench-delta: build A (fresh): '
	timed "$WORK/A.log" "$sender" build --epoch $EPOCH --out "$WORK/A.img" "$TREE"
	echo
	local x
	for x in B C; do
		printf 'bench-delta: build %s --base A: ' "$x"
		timed "$WORK/$x.log" "$sender" build --epoch $EPOCH --base "$WORK/A.img" --out "$WORK/$x.img" "$WORK/$x"
		printf '  (%s)\n' "$(grep '^base' "$WORK/$x.log" | sed 's/^base *[^:]*: //')"
		printf 'bench-delta: build %s fresh: ' "$x"
		timed "$WORK/$x-fresh.log" "$sender" build --epoch $EPOCH --out "$WORK/$x-fresh.img" "$WORK/$x"
		echo
	done
	local size entries
	size=$(stat -c %s "$WORK/A.img")
	entries=$(find "$TREE" | wc -l)
	for x in A C; do
		local src=$TREE
		[ $x = A ] || src=$WORK/$x
		printf 'bench-delta: mke2fs -d %s: ' "$x"
		timed "$WORK/m$x.log" mke2fs -q -F -t ext2 -b 4096 -m 0 -N $((entries + entries / 10)) \
			-E root_owner=0:0 -d "$src" "$WORK/m$x.img" $((size / 4096))
		echo
	done
	for x in A.img B.img B-fresh.img C.img C-fresh.img mA.img mC.img; do fsck_ok "$WORK/$x"; done
	log "all images pass e2fsck -fn; image size $((size / 1048576)) MiB; layout file $(stat -c %s "$WORK/A.img.layout") bytes"
	echo "B --base A vs A:        $(chunkdiff "$WORK/A.img" "$WORK/B.img")"
	echo "B fresh vs A:           $(chunkdiff "$WORK/A.img" "$WORK/B-fresh.img")"
	echo "C --base A vs A:        $(chunkdiff "$WORK/A.img" "$WORK/C.img")"
	echo "C fresh vs A:           $(chunkdiff "$WORK/A.img" "$WORK/C-fresh.img")"
	echo "mke2fs C vs mke2fs A:   $(chunkdiff "$WORK/mA.img" "$WORK/mC.img")"
	echo "C changed+added files:  $files files, $raw bytes, zstd -3 $zs bytes"
	log "finer chunks, for comparison (the manifest uses 1 MiB):"
	local cs
	for cs in 65536 4096; do
		echo "C --base A vs A, $((cs / 1024)) KiB chunks:      $(chunkdiff "$WORK/A.img" "$WORK/C.img" $cs)"
		echo "mke2fs C vs mke2fs A, $((cs / 1024)) KiB chunks: $(chunkdiff "$WORK/mA.img" "$WORK/mC.img" $cs)"
	done
}

main "$@"
