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

if [[ -e /var/run/netns/$NAME-sw ]]; then
	echo "demo: a cluster named $NAME is already up (another demo?); remove it with ./scripts/cluster.sh --name $NAME down" >&2
	exit 1
fi
WORK=$(mktemp -d /tmp/loopcast-demo.XXXXXX)
UP=0
cleanup() {
	if [[ $UP == 1 ]]; then ./scripts/cluster.sh --name "$NAME" down || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
on_sender() { ./scripts/cluster.sh --name "$NAME" exec "$NAME-s" "$@"; }
hosts=$(seq -s, -f 'r%g' 1 "$HOSTS")
flags=(--key "$WORK/release.key" --iface eth0 --hosts "$hosts" --state-dir "$WORK/state")

show_pages() {
	local i
	for i in $(seq 1 "$HOSTS"); do
		printf 'r%s: ' "$i"
		on_sender curl -fsS "http://10.77.0.$((10 + i))/" | sed -n 1p
	done
}

step "a release key"
bin/sender keygen --out "$WORK/release.key"

step "a cluster: 1 sender, $HOSTS web hosts (agent + nginx + php-fpm each), ${LOSS}% loss"
UP=1
./scripts/cluster.sh --name "$NAME" up "$HOSTS" --loss "$LOSS" --agents "$WORK/release.pub" --web

step "deploy v1: build, sign, multicast, stage everywhere, then switch all hosts together"
cp -a examples/app "$WORK/app"
on_sender bin/sender deploy "${flags[@]}" --label "demo v1" "$WORK/app"
show_pages

step "deploy v2"
sed -i "s/'v1'/'v2'/" "$WORK"/app/src/*.php
on_sender bin/sender deploy "${flags[@]}" --label "demo v2" "$WORK/app"
show_pages

step "fleet status"
on_sender bin/sender status "${flags[@]}"

step "rollback: a symlink flip on every host, no transfer"
on_sender bin/sender rollback "${flags[@]}"
show_pages

step "audit log"
cat "$WORK/state/audit.log"

step "tear down"
