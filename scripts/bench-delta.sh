#!/usr/bin/env bash
# bench-delta.sh — delta deploys on the full synthetic tree, for real: N
# agents in a namespace cluster; deploy A (the tree), then B (A with one
# ~5 KB file changed), then C (A with 200 files modified, 20 added, 20
# deleted). Prints, per deploy, bytes on the wire, chunks reused/sent and
# wall time, against the goals: B <= 1 MiB on the wire; C <= 5 x the zstd -3
# size of C's changed and added files; the wall time of A vs C.
#
# Environment: N (default 3), BENCH_DIR (default /var/tmp/loopcast-bench;
# the tree is the one scripts/bench-build.sh caches there), SEED (1).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3}
SEED=${SEED:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/loopcast-bench}
TREE=$BENCH_DIR/tree-full
CHANGED_AFTER=1700000000 # change sets stamp mtimes from here (synth)
NAME=lcd
log() { printf 'bench-delta: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (namespaces, loop mounts)"
[[ -d $TREE ]] || die "no cached tree at $TREE: run scripts/bench-build.sh once (it generates it)"
for t in zstd go; do command -v $t >/dev/null || die "needs $t"; done
[[ -e /var/run/netns/$NAME-sw ]] && die "cluster $NAME is already up"
go build -o bin/ ./cmd/...

WORK=$(mktemp -d "$BENCH_DIR/delta.XXXXXX")
export LOOPCAST_CLUSTER_DIR=$WORK/cluster
UP=0
cleanup() {
	if [[ $UP == 1 ]]; then ./scripts/cluster.sh --name $NAME down || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

log "copying the tree three times (A, B, C)"
for v in A B C; do cp -a "$TREE" "$WORK/$v"; done
hot=$(cd "$WORK/B" && find . -type f -size +4999c -size -5201c | LC_ALL=C sort | awk 'NR == 1')
[[ -n $hot ]] || die "no ~5 KB file in the tree"
python3 - "$WORK/B/$hot" <<'PY'
import sys
p = sys.argv[1]
d = open(p, 'rb').read()
open(p, 'wb').write(d[:len(d) // 2] + b"\n// hotfix: check the token before use\n" + d[len(d) // 2:])
PY
log "B: changed $hot"
log "C: $(bin/synthtree --out "$WORK/C" --seed "$SEED" --modify 200 --add 20 --delete 20)"
zs=$(cd "$WORK/C" && find . -type f -newermt @$CHANGED_AFTER -print0 | xargs -0 cat | zstd -3 -q -c | wc -c)
zb=$(zstd -3 -q -c "$WORK/B/$hot" | wc -c)

bin/sender keygen --out "$WORK/release.key" >/dev/null
hosts=$(seq -s, -f 'r%g' 1 "$N")
UP=1
./scripts/cluster.sh --name $NAME up "$N" --agents "$WORK/release.pub" >&2

declare -A WALL WIRE CHUNKS
deploy() { # deploy LABEL
	local out start end
	start=$(date +%s.%N)
	out=$(./scripts/cluster.sh --name $NAME exec $NAME-s bin/sender deploy --key "$WORK/release.key" \
		--iface eth0 --hosts "$hosts" --state-dir "$WORK/state" --epoch 1700000000 "$WORK/$1" 2>"$WORK/deploy-$1.log")
	end=$(date +%s.%N)
	echo "$out" >&2
	grep -q "^release .*: all " <<<"$out" || die "deploy $1 did not switch every host (log: $WORK/deploy-$1.log)"
	WALL[$1]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
	WIRE[$1]=$(awk '/^wire/ { print $2, $3 }' <<<"$out" | tr -d ';')
	CHUNKS[$1]=$(grep '^chunks' <<<"$out")
}
for v in A B C; do log "deploying $v"; deploy $v; done

echo "# $N hosts, full synthetic tree (seed $SEED), unshaped veth links, --rate 900M"
for v in A B C; do printf '%s: wall %6ss  wire %-10s  %s\n' "$v" "${WALL[$v]}" "${WIRE[$v]}" "${CHUNKS[$v]}"; done
echo "B's changed file, zstd -3: $zb bytes; goal: B on the wire <= 1 MiB"
echo "C's changed and added files, zstd -3: $zs bytes; goal: C on the wire <= 5 x = $((5 * zs)) bytes"
awk -v a="${WALL[A]}" -v c="${WALL[C]}" 'BEGIN { printf "wall A / wall C: %.2f\n", a / c }'
