#!/usr/bin/env bash
# demo.sh — the main job on one machine, with good defaults: a real deploy
# of the sample PHP app (examples/app) to a local cluster of 3 web hosts
# (network namespaces, each with the loopcast agent, nginx and php-fpm),
# then a second release, the fleet's status, and a rollback. Everything it
# starts is stopped and removed at the end. Run as root on Debian; it
# installs what it needs.
#
#   HOSTS=5 LOSS=2 ./scripts/demo.sh    more hosts, 2% packet loss at each
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${HOSTS:-3}
LOSS=${LOSS:-0}
NAME=demo
./scripts/install-deps.sh >/dev/null
export PATH="/usr/local/go/bin:$PATH"
go build -o bin/ ./cmd/...

WORK=$(mktemp -d /tmp/loopcast-demo.XXXXXX)
cleanup() {
	./scripts/cluster.sh --name "$NAME" down || true
	rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
on_sender() { ./scripts/cluster.sh --name "$NAME" exec "$NAME-s" "$@"; }
hosts=$(seq -s, -f 'r%g' 1 "$HOSTS")
flags=(--key "$WORK/release.key" --iface eth0 --hosts "$hosts")

show_pages() {
	local i
	for i in $(seq 1 "$HOSTS"); do
		printf 'r%s: ' "$i"
		on_sender curl -s "http://10.77.0.$((10 + i))/" | head -1
	done
}

step "a release key"
bin/sender keygen --out "$WORK/release.key"

step "a cluster: 1 sender, $HOSTS web hosts (agent + nginx + php-fpm each), ${LOSS}% loss"
./scripts/cluster.sh --name "$NAME" down >/dev/null 2>&1 || true
./scripts/cluster.sh --name "$NAME" up "$HOSTS" --loss "$LOSS" --agents "$WORK/release.pub" --web

step "deploy v1: build, sign, multicast, stage everywhere, then switch all hosts together"
cp -a examples/app "$WORK/app"
on_sender bin/sender deploy "${flags[@]}" --state-dir "$WORK/state" --label "demo v1" "$WORK/app"
show_pages

step "deploy v2"
sed -i "s/'v1'/'v2'/" "$WORK"/app/src/*.php
on_sender bin/sender deploy "${flags[@]}" --state-dir "$WORK/state" --label "demo v2" "$WORK/app"
show_pages

step "fleet status"
on_sender bin/sender status "${flags[@]}"

step "rollback: a symlink flip on every host, no transfer"
on_sender bin/sender rollback "${flags[@]}"
show_pages

step "audit log"
cat "$WORK/state/audit.log"

step "tear down"
