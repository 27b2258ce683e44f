#!/usr/bin/env bash
# bench-heal.sh — a fleet that heals itself: how long hosts that missed a
# deploy take to converge with no sender running, and where their bytes
# come from.
#
#   1. deploy A (a synthetic tree of FILES files) to N hosts
#   2. down: stop the agents of the last K hosts, deploy B (A with 50 files
#      changed) to the others, start the K agents again
#   3. wiped: wipe the last K hosts' stores at once (host keys kept), the
#      sender not running
#
# For each host that catches up it prints the seconds from its agent's
# start to its store serving the fleet's release, and the bytes it took
# from peers and from its own kept images (its log's "caught up" line).
# The sender is not running during either catch-up: it carries 0 bytes.
#
# Environment: N (6), K (3), FILES (15000, ~90 MB), RUNS (1; with more,
# each round's figures are printed and the medians last), BENCH_DIR
# (/var/tmp/loopcast-bench), SHOW_LOG=1 (print the last host's catch-up log lines).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-6}
K=${K:-3}
FILES=${FILES:-15000}
RUNS=${RUNS:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/loopcast-bench}
NAME=lch
CLUSTER="./scripts/cluster.sh --name $NAME"
log() { printf 'bench-heal: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (namespaces, loop mounts)"
((K < N)) || die "K ($K) must be below N ($N): someone must hold the release"
[[ -e /var/run/netns/$NAME-sw ]] && die "cluster $NAME is already up"
mkdir -p "$BENCH_DIR"
go build -o bin/ ./cmd/...
WORK=$(mktemp -d "$BENCH_DIR/heal.XXXXXX")
UP=0
cleanup() {
	if [[ $UP == 1 ]]; then $CLUSTER down >/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
export LOOPCAST_CLUSTER_DIR=$WORK/cluster
now() { date +%s.%N; }

bin/synthtree --preset full --files "$FILES" --out "$WORK/tree" >/dev/null
bin/sender keygen --out "$WORK/release.key" >/dev/null
hosts=$(seq -s, -f 'r%g' 1 "$N")
first=$((N - K + 1))
deploy() { # deploy HOSTS
	$CLUSTER exec $NAME-s bin/sender deploy --key "$WORK/release.key" --iface eth0 --hosts "$1" \
		--state-dir "$WORK/state-$run" --epoch 1700000000 "$WORK/tree" >"$WORK/deploy.out" 2>&1 ||
		{ cat "$WORK/deploy.out" >&2; die "deploy to $1 failed"; }
}
current() { grep -o '"current": *"[0-9a-f]*"' "$LOOPCAST_CLUSTER_DIR/$NAME/r$1/state" 2>/dev/null | grep -o '[0-9a-f]\{16\}' || true; }
pointer() { grep -o '"release": *"[0-9a-f]*"' "$WORK/state-$run/pointer-239.192.0.1_5000.json" | grep -o '[0-9a-f]\{16\}'; }
# converge T0 WHAT: wait for hosts first..N to serve the pointer's release;
# print one line per host
converge() {
	local t0=$1 what=$2 want i done t line
	want=$(pointer)
	declare -A at=()
	for _ in $(seq 1 600); do
		done=1
		for i in $(seq "$first" "$N"); do
			[[ -n ${at[$i]:-} ]] && continue
			if [[ $(current "$i") == "$want" ]]; then at[$i]=$(now); else done=0; fi
		done
		[[ $done == 1 ]] && break
		sleep 0.1
	done
	for i in $(seq "$first" "$N"); do
		[[ -n ${at[$i]:-} ]] || die "$what: r$i did not converge to $want"
		t=$(awk -v a="$t0" -v b="${at[$i]}" 'BEGIN { printf "%.2f", b - a }')
		line=$(grep 'caught up with the fleet' "$LOOPCAST_CLUSTER_DIR/$NAME/agent-r$i.log" | tail -1)
		printf '%s r%d %s s peer_bytes=%s local_bytes=%s peers=%s\n' "$what" "$i" "$t" \
			"$(grep -o '"peer_bytes":[0-9]*' <<<"$line" | cut -d: -f2)" \
			"$(grep -o '"local_bytes":[0-9]*' <<<"$line" | cut -d: -f2)" \
			"$(grep -o '"peers":[0-9]*' <<<"$line" | cut -d: -f2)"
	done
}

for run in $(seq 1 "$RUNS"); do
	UP=1
	$CLUSTER up "$N" --agents "$WORK/release.pub" >&2
	deploy "$hosts"
	log "run $run: A on $N hosts"
	for i in $(seq "$first" "$N"); do $CLUSTER stop "$i"; done
	bin/synthtree --out "$WORK/tree" --seed "$run" --modify 50 >/dev/null
	deploy "$(seq -s, -f 'r%g' 1 $((first - 1)))"
	log "run $run: B to r1..r$((first - 1)) by multicast: $(grep -E '^wire' "$WORK/deploy.out")"
	t0=$(now)
	for i in $(seq "$first" "$N"); do $CLUSTER start "$i"; done
	converge "$t0" down | tee -a "$WORK/figures"
	[[ -n ${SHOW_LOG:-} ]] && grep -E 'running|fleet|peer|caught|staged|reconciled' "$LOOPCAST_CLUSTER_DIR/$NAME/agent-r$N.log" >&2
	t0=$(now)
	for i in $(seq "$first" "$N"); do $CLUSTER wipe "$i" & done
	wait
	converge "$t0" wiped | tee -a "$WORK/figures"
	$CLUSTER down >/dev/null
	UP=0
done
for what in down wiped; do
	awk -v w="$what" '$1 == w { print $3 }' "$WORK/figures" | sort -n |
		awk -v w="$what" '{ a[NR] = $1 } END { printf "median %s: %.2f s to converge over %d host catch-ups\n", w, a[int((NR + 1) / 2)], NR }'
done
