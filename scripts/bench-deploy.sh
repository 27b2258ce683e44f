#!/usr/bin/env bash
# bench-deploy.sh — deploys on the full synthetic tree, loopcast against
# the shell pipeline a user would script instead, in one run, on the same
# cluster (N hosts in network namespaces, unshaped veth links) at the same
# rate:
#
#   loopcast  sender deploy DIR (build, multicast, stage, switch), for A (the
#             tree), then B (A with one ~5 KB file changed), then C (A with
#             200 files modified, 20 added, 20 deleted)
#   pipeline  mke2fs -d + zstd -1 -T0 + sha256sum on the sender; uftp to
#             every host; on each host zstd -d + sha256sum -c +
#             mount -o loop,ro + an atomic symlink switch (ln -s + mv -T)
#
# Each wall runs from the command's start until every host serves the
# release. Prints the walls and the ratios against the goals: full deploy
# loopcast/pipeline <= 0.5; B <= 0.1 x A; C <= 0.15 x A.
#
# B and C change the tree in place, as a checkout updated by `git pull`
# is (the build then reads only the files that changed); COPIES=1 makes
# them separate copies of the tree instead, as a fresh checkout per
# release is (every file is read again).
#
# Environment: N (3), RATE (900, Mbit/s), SEED (1, C's change set), RUNS
# (1: the median of RUNS rounds is printed), BENCH_DIR (/var/tmp/loopcast-bench;
# the tree is the one scripts/bench-build.sh caches there), PIPELINE=0
# skips the pipeline, XFS=1 puts the hosts' roots, the sender's state dir
# (where deploy builds, so a hotfix build reflinks its base) and the
# pipeline's files on an XFS filesystem with reflink, made on a loop device for the
# run, instead of BENCH_DIR's filesystem. LOGS=DIR keeps the deploys' logs
# there; DEPLOY_ARGS adds flags to every `sender deploy` (-v: the session's
# detail); LOOPCAST_CPUPROFILE=FILE makes every sender and agent write a CPU
# profile to FILE.PID.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3}
RATE=${RATE:-900}
SEED=${SEED:-1}
RUNS=${RUNS:-1}
PIPELINE=${PIPELINE:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/loopcast-bench}
TREE=$BENCH_DIR/tree-full
NAME=lcp
CLUSTER="./scripts/cluster.sh --name $NAME"
UFTP_GROUP=239.192.7.1
log() { printf 'bench-deploy: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (namespaces, loop mounts)"
[[ -d $TREE ]] || die "no cached tree at $TREE: run scripts/bench-build.sh once (it generates it)"
for t in zstd uftp uftpd mke2fs go; do command -v $t >/dev/null || die "needs $t (scripts/install-deps.sh)"; done
[[ -e /var/run/netns/$NAME-sw ]] && die "cluster $NAME is already up"
go build -o bin/ ./cmd/...

WORK=$(mktemp -d "$BENCH_DIR/deploy.XXXXXX")
HOSTS_DIR=$WORK # where the hosts' roots and the pipeline's files live
UP=0
PIDS=()
cleanup() {
	local p
	for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done
	for p in "$HOSTS_DIR"/pipe-r*/mnt-*; do [[ -d $p ]] && umount "$p" 2>/dev/null || true; done
	if [[ -n ${LOGS:-} ]]; then
		mkdir -p "$LOGS" && cp "$WORK"/deploy-*.log "$LOOPCAST_CLUSTER_DIR/$NAME"/agent-*.log "$LOGS"/ 2>/dev/null || true
	fi
	if [[ $UP == 1 ]]; then $CLUSTER down >/dev/null || true; fi
	[[ $HOSTS_DIR == "$WORK" ]] || umount "$HOSTS_DIR" || true
	rm -rf "$WORK"
}
trap cleanup EXIT
if [[ ${XFS:-0} == 1 ]]; then
	command -v mkfs.xfs >/dev/null || die "XFS=1 needs mkfs.xfs (scripts/install-deps.sh)"
	truncate -s 40G "$WORK/xfs.img"
	mkfs.xfs -q -m reflink=1 "$WORK/xfs.img"
	HOSTS_DIR=$WORK/xfs
	mkdir -p "$HOSTS_DIR"
	mount -o loop "$WORK/xfs.img" "$HOSTS_DIR"
fi
export LOOPCAST_CLUSTER_DIR=$HOSTS_DIR/cluster
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

COPIES=${COPIES:-0}
hot=$(cd "$TREE" && find . -type f -size +4999c -size -5201c | LC_ALL=C sort | awk 'NR == 1')
[[ -n $hot ]] || die "no ~5 KB file in the tree"
# change_b DIR, change_c DIR: the hotfix and the 200-file change
change_b() {
	local p=$1/$hot
	{ head -c 2500 "$p"; printf '\n// hotfix: check the token before use\n'; tail -c +2501 "$p"; } >"$p.new" && mv "$p.new" "$p"
}
change_c() { bin/synthtree --out "$1" --seed "$SEED" --modify 200 --add 20 --delete 20; }
if [[ $COPIES == 1 ]]; then
	log "copying the tree twice (B, C)"
	for v in B C; do cp -a "$TREE" "$WORK/$v"; done
	change_b "$WORK/B"
	log "B: changed $hot"
	log "C: $(change_c "$WORK/C")"
fi

bin/sender keygen --out "$WORK/release.key" >/dev/null
hosts=$(seq -s, -f 'r%g' 1 "$N")
UP=1
$CLUSTER up "$N" --agents "$WORK/release.pub" >&2

# loopcast LABEL DIR: one deploy; prints its wall.
loopcast() {
	local out t0
	t0=$(now)
	out=$($CLUSTER exec $NAME-s bin/sender deploy --key "$WORK/release.key" --iface eth0 --hosts "$hosts" \
		--rate "${RATE}M" --state-dir "$HOSTS_DIR/state" --epoch 1700000000 --label "$1" ${DEPLOY_ARGS:-} "$2" 2>"$WORK/deploy-$1.log")
	local wall
	wall=$(since "$t0")
	grep -q "^release .*: all " <<<"$out" || { echo "$out" >&2; die "deploy $1 did not switch every host (log $WORK/deploy-$1.log)"; }
	log "loopcast $1: ${wall}s; $(grep -E '^(wire|chunks)' <<<"$out" | tr '\n' ' ')"
	echo "$wall"
}

# pipeline TREE: the shell pipeline's full deploy; prints its wall.
pipeline() {
	local entries kib size img=$WORK/pipe.img t0 i r id ids=
	entries=$(find "$1" | wc -l)
	kib=$(du -sk "$1" | cut -f1)
	size=$(( kib + kib / 10 ))k
	rm -f "$img" "$img.zst" "$img.sha256"
	for i in $(seq 1 "$N"); do
		r=$NAME-r$i
		rm -rf "$HOSTS_DIR/pipe-r$i"
		mkdir -p "$HOSTS_DIR/pipe-r$i"
		id=$(printf '0x0A4D00%02X' $((10 + i))) # cluster.sh gives receiver i 10.77.0.(10+i)
		$CLUSTER exec "$r" uftpd -d -U "$id" -I eth0 -M "$UFTP_GROUP" -D "$HOSTS_DIR/pipe-r$i" 2>"$WORK/uftpd-$i.log" &
		PIDS+=($!)
		ids+=$id,
	done
	sleep 0.5 # uftpd listening
	t0=$(now)
	mke2fs -q -F -t ext2 -b 4096 -m 0 -N $(( entries + entries / 10 )) -E root_owner=0:0 -d "$1" "$img" "$size" >"$WORK/mke2fs.log"
	zstd -1 -T0 -q -f "$img" -o "$img.zst"
	(cd "$WORK" && sha256sum pipe.img >pipe.img.sha256)
	$CLUSTER exec $NAME-s uftp -I eth0 -M "$UFTP_GROUP" -R $(( RATE * 1000 )) -H "${ids%,}" -L "$WORK/uftp.log" \
		"$img.zst" "$img.sha256" >/dev/null || die "uftp failed (log $WORK/uftp.log)"
	local hp=()
	for i in $(seq 1 "$N"); do
		$CLUSTER exec $NAME-r$i sh -c "cd '$HOSTS_DIR/pipe-r$i' && zstd -d -q -f pipe.img.zst -o pipe.img &&
			sha256sum -c --quiet pipe.img.sha256 && mkdir -p mnt-$2 && mount -o loop,ro pipe.img mnt-$2 &&
			ln -s mnt-$2 current.tmp && mv -T current.tmp current" &
		hp+=($!)
	done
	for i in "${hp[@]}"; do wait "$i" || die "a pipeline host failed"; done
	local wall
	wall=$(since "$t0")
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	PIDS=()
	for i in $(seq 1 "$N"); do
		[[ -d $HOSTS_DIR/pipe-r$i/current/lost+found ]] || die "pipeline: host $i does not serve the image"
		umount "$HOSTS_DIR/pipe-r$i/mnt-$2"
	done
	log "pipeline: ${wall}s; .zst $(( $(stat -c %s "$img.zst") / 1048576 )) MiB"
	echo "$wall"
}

declare -A W
for run in $(seq 1 "$RUNS"); do
	log "round $run/$RUNS"
	rm -rf "$HOSTS_DIR/state"
	if [[ $run -gt 1 ]]; then # a fresh start: every host empty again
		for i in $(seq 1 "$N"); do $CLUSTER wipe "$i" >&2; done
	fi
	if [[ $COPIES == 1 ]]; then
		W[A]+="$(loopcast A "$TREE") "
		W[B]+="$(loopcast B "$WORK/B") "
		W[C]+="$(loopcast C "$WORK/C") "
	else # one checkout, updated in place
		rm -rf "$WORK/T"
		cp -a "$TREE" "$WORK/T"
		sleep 2 # older than the build's racy window, as a checkout is
		W[A]+="$(loopcast A "$WORK/T") "
		change_b "$WORK/T"
		log "B: changed $hot in place"
		W[B]+="$(loopcast B "$WORK/T") "
		log "C: $(change_c "$WORK/T") in place"
		W[C]+="$(loopcast C "$WORK/T") "
	fi
	[[ $PIPELINE == 0 ]] || W[P]+="$(pipeline "$TREE" "$run") "
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
a=$(median "${W[A]}") b=$(median "${W[B]}") c=$(median "${W[C]}")
echo "# $N hosts (roots on $(stat -f -c %T "$HOSTS_DIR")), full synthetic tree, unshaped veth links, ${RATE} Mbit/s, medians of $RUNS"
echo "loopcast A (full):     ${a}s   (runs: ${W[A]})"
echo "loopcast B (1 file):   ${b}s   B/A $(awk -v x="$b" -v y="$a" 'BEGIN { printf "%.3f", x / y }') (goal <= 0.1)"
echo "loopcast C (200 files): ${c}s   C/A $(awk -v x="$c" -v y="$a" 'BEGIN { printf "%.3f", x / y }') (goal <= 0.15)"
if [[ $PIPELINE != 0 ]]; then
	p=$(median "${W[P]}")
	echo "pipeline (full):       ${p}s   (runs: ${W[P]})"
	echo "loopcast A / pipeline: $(awk -v x="$a" -v y="$p" 'BEGIN { printf "%.2f", x / y }') (goal <= 0.5)"
fi
