#!/usr/bin/env bash
# demo.sh — the main job, on one machine, with good defaults: build and sign
# an image of the sample PHP app (examples/app), inspect it, and check it
# against the real ext2 tools. Run as root on Debian; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >/dev/null
export PATH="/usr/local/go/bin:$PATH"
go build -o bin/ ./cmd/...

WORK=$(mktemp -d /tmp/loopcast-demo.XXXXXX)
MNT=
cleanup() {
	if [[ -n $MNT ]] && mountpoint -q "$MNT"; then umount "$MNT"; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

step "keygen"
bin/sender keygen --out "$WORK/release.key"

step "build release v1 of examples/app"
cp -a examples/app "$WORK/app"
bin/sender build --key "$WORK/release.key" --label "demo v1" --out "$WORK/app.img" "$WORK/app"

step "inspect, verifying the signature"
bin/sender inspect --trust "$WORK/release.pub" "$WORK/app.img.manifest"

step "the image is a clean ext2 filesystem, and its SHA-256 is the manifest's"
e2fsck -fn "$WORK/app.img"
sha256sum "$WORK/app.img"

step "loop-mount it read-only and read the app"
MNT="$WORK/mnt"
mkdir "$MNT"
mount -o loop,ro,nodev,nosuid -t ext2 "$WORK/app.img" "$MNT"
ls -l "$MNT" "$MNT/public"
cat "$MNT/src/release.php"
umount "$MNT"
MNT=

printf '\ndemo: done (multicast distribution and the agent come next; see README Status)\n'
