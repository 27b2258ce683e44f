#!/usr/bin/env bash
# bench-opcache.sh — what a deploy costs PHP's OPcache, with slots against
# every release on its own path (releases/<id>, what per-release directories
# give, and loopcast without --php-fpm), in one run on the same cluster: one
# host in a network namespace with the project's nginx and php-fpm samples
# (opcache.validate_timestamps=0), an app of CLASSES PHP classes whose page
# loads them all, then DEPLOYS releases that each change one file.
#
# For each mode it prints the steady request time (median of 30 requests),
# the first request after each switch, their ratio (median over the deploys
# after the ring of slots is full), and OPcache's scripts and memory after
# each deploy. Targets: first request after the switch <= 3x a steady one;
# scripts grow by <= the changed files per deploy; memory stays within
# opcache.memory_consumption, with no restart, over 20 deploys.
#
# Environment: CLASSES (2000), DEPLOYS (20), WARM=1 adds a mode with
# --opcache-warm.
set -euo pipefail
cd "$(dirname "$0")/.."
CLASSES=${CLASSES:-2000}
DEPLOYS=${DEPLOYS:-20}
NAME=lco
CLUSTER="./scripts/cluster.sh --name $NAME"
log() { printf 'bench-opcache: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (namespaces, loop mounts)"
command -v curl >/dev/null || die "needs curl (scripts/install-deps.sh)"
[[ -e /var/run/netns/$NAME-sw ]] && die "cluster $NAME is already up"
go build -o bin/ ./cmd/...

WORK=$(mktemp -d /var/tmp/loopcast-opcache.XXXXXX)
UP=0
cleanup() {
	if [[ $UP == 1 ]]; then $CLUSTER down >/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
./bin/sender keygen --out "$WORK/release.key" >/dev/null

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# request: the page's time in ms, from the sender's namespace
request() {
	$CLUSTER exec "$NAME-s" curl -sf -o /dev/null -w '%{time_total}\n' http://10.77.0.11/all.php |
		awk '{ printf "%.2f", $1 * 1000 }'
}
opcache() { # scripts, used/wasted/limit MiB, restarts, full
	./bin/receiver status --json --root "$DIR/r1" --php-fpm "$DIR/web-r1/php.sock" | awk -F'[:,]' '
		function v(k) { return k in o ? o[k] : "-" }
		$1 ~ /"(scripts|used_memory|wasted_memory|memory_limit|oom_restarts|hash_restarts|cache_full)"/ {
			k = $1; gsub(/[ "]/, "", k); x = $2; gsub(/ /, "", x); o[k] = x }
		END { printf "%s scripts, %d/%d MiB used (+%d wasted), %d restarts, full %s",
			v("scripts"), v("used_memory") / 1048576, v("memory_limit") / 1048576, v("wasted_memory") / 1048576,
			v("oom_restarts") + v("hash_restarts"), v("cache_full") }'
}
deploy() { # deploy LABEL
	rm -rf "$WORK/app"
	./bin/synthtree --php-app "$CLASSES" --label "$1" --out "$WORK/app" >/dev/null
	$CLUSTER exec "$NAME-s" ./bin/sender deploy --key "$WORK/release.key" --iface eth0 --hosts r1 \
		--state-dir "$WORK/state-$MODE" --epoch 1700000000 "$WORK/app" >/dev/null 2>"$WORK/deploy.log" ||
		{ cat "$WORK/deploy.log" >&2; die "deploy $1 failed"; }
}

run_mode() { # run_mode MODE ENV...
	MODE=$1; shift
	env "$@" $CLUSTER up 1 --agents "$WORK/release.pub" --web >/dev/null
	UP=1
	DIR=$($CLUSTER dir)
	deploy v0
	request >/dev/null; request >/dev/null # compile, then warm
	local s=() i
	for i in $(seq 1 30); do s+=("$(request)"); done
	local steady; steady=$(median "${s[*]}")
	log "$MODE: steady request ${steady} ms; OPcache: $(opcache)"
	local ratios=() firsts=()
	for i in $(seq 1 "$DEPLOYS"); do
		deploy "v$i"
		local first; first=$(request)
		firsts+=("$first")
		# the ring of 3 slots is full from the 3rd deploy on
		[[ $i -ge 3 ]] && ratios+=("$(awk -v a="$first" -v b="$steady" 'BEGIN { printf "%.2f", a / b }')")
		log "$MODE: deploy $i: first request ${first} ms; OPcache $(opcache)"
	done
	printf '%-12s steady %7.2f ms  first after switch (median, deploys 3..%d) %8.2f ms  ratio %7.2f  OPcache after %d deploys: %s\n' \
		"$MODE" "$steady" "$DEPLOYS" "$(median "${firsts[*]:2}")" "$(median "${ratios[*]}")" "$DEPLOYS" "$(opcache)"
	$CLUSTER down >/dev/null
	UP=0
}

log "app of $CLASSES classes, $DEPLOYS one-file deploys per mode"
run_mode own-paths LOOPCAST_CLUSTER_NO_SLOTS=1
run_mode slots LOOPCAST_CLUSTER_NO_SLOTS=0
if [[ ${WARM:-0} == 1 ]]; then
	run_mode slots+warm LOOPCAST_CLUSTER_AGENT_ARGS=--opcache-warm
fi
