#!/usr/bin/env bash
# vagrant-debroot.sh — run the Vagrant provisioning of a web VM for real, in a
# Debian 12 root made by debootstrap from Debian's packages, booted with
# systemd as its init in its own namespaces (no VM: these machines cannot
# boot one), and check the result as the VM would have it:
#
#   1. a bookworm root (debootstrap --variant=minbase, with systemd, nginx,
#      php-fpm), cached as a tarball in $LOOPCAST_DEBROOT_CACHE
#      (/var/tmp/loopcast-debroot) so the next run takes seconds;
#   2. a network namespace with the VM's private address (192.168.56.11 on
#      eth1, one end of a veth pair) and systemd booted in new pid, mount, uts
#      and ipc namespaces, chrooted into a copy of that root; the repo is
#      at /vagrant, as Vagrant's synced folder, and the machine's Go
#      toolchain and module cache are lent to it read-only (the root has no
#      network: common.sh builds the binaries offline);
#   3. common.sh and web.sh, as the Vagrantfile runs them (same environment);
#   4. checks: loopcast-receiver, php8.2-fpm and nginx active under systemd;
#      the agent's journal says it runs on eth1; nginx answers on :80; the
#      agent's /healthz (through nginx's /loopcast-health) says it serves
#      nothing yet; web.sh run again changes nothing.
#
# Usage: vagrant-debroot.sh REPO   (as root; prints "debroot: ok" at the end)
# Everything it starts (by pid), mounts (in namespaces it made) and makes is
# removed at exit.
set -euo pipefail
REPO=$(cd "${1:?usage: vagrant-debroot.sh REPO}" && pwd)
CACHE=${LOOPCAST_DEBROOT_CACHE:-/var/tmp/loopcast-debroot}
MIRROR=${LOOPCAST_DEBROOT_MIRROR:-http://deb.debian.org/debian}
PKGS=systemd,systemd-sysv,dbus,iproute2,kmod,procps,ca-certificates,nginx,php-fpm
ADDR=192.168.56.11
log() { printf 'debroot: %s\n' "$*"; }
die() { printf 'debroot: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
for t in debootstrap unshare nsenter chroot ip tar; do command -v $t >/dev/null || die "needs $t (scripts/install-deps.sh)"; done
GO=$(command -v go || echo /usr/local/go/bin/go)
GOROOT=$("$GO" env GOROOT) || die "needs a Go toolchain (scripts/install-deps.sh)"
MODCACHE=$("$GO" env GOMODCACHE)
GOCACHE=$("$GO" env GOCACHE)
(cd "$REPO" && "$GO" mod download) # the root builds offline from this cache

# --- 1. the cached root --------------------------------------------------------
mkdir -p "$CACHE"
tarball=$CACHE/bookworm-$(echo "$PKGS $MIRROR" | sha256sum | cut -c1-12).tar
if [ ! -s "$tarball" ]; then
	log "making a bookworm root with debootstrap (once; cached as $tarball)"
	mk=$(mktemp -d "$CACHE/mk.XXXXXX")
	trap 'rm -rf "$mk"' EXIT
	debootstrap --variant=minbase --include="$PKGS" bookworm "$mk/root" "$MIRROR" >"$mk/log" 2>&1 ||
		{ tail -20 "$mk/log" >&2; die "debootstrap failed (log above)"; }
	# package lists, as a box has them after its first apt-get update
	cp /etc/resolv.conf "$mk/root/etc/resolv.conf"
	chroot "$mk/root" apt-get update -qq || die "apt-get update in the root failed"
	tar -C "$mk/root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
	rm -rf "$mk"
	trap - EXIT
fi

# --- 2. boot it ------------------------------------------------------------------
W=$(mktemp -d "$CACHE/run.XXXXXX")
NS=lcdeb$$
INIT=
cleanup() {
	# killing the pid namespace's init ends every process in it, and its
	# mount namespace (every mount below) with them
	if [ -n "$INIT" ]; then kill -9 "$INIT" 2>/dev/null || true; fi
	for _ in $(seq 1 50); do { [ -n "$INIT" ] && kill -0 "$INIT" 2>/dev/null; } || break; sleep 0.1; done
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
R=$W/root
mkdir -p "$R"
tar -C "$R" -xf "$tarball"
# what the Vagrantfile's trigger puts on the VM: the trusted release key
mkdir -p "$R/var/lib/loopcast-vagrant/trust" "$W/keys"
(cd "$REPO" && "$GO" build -o "$W/bin/" ./cmd/sender)
"$W/bin/sender" keygen --out "$W/keys/release.key" >/dev/null
cp "$W/keys/release.pub" "$R/var/lib/loopcast-vagrant/trust/release.pub"
mkdir -p "$R/vagrant" "$R/usr/local/go" "$R/root/go/pkg/mod" "$R/root/.cache/go-build" "$GOCACHE"

ip netns add "$NS"
ip -n "$NS" link set lo up
# a veth pair whose far end stays in the namespace too: the VM's private NIC
ip -n "$NS" link add eth1 type veth peer name eth1-peer
ip -n "$NS" addr add "$ADDR/24" dev eth1
ip -n "$NS" link set eth1-peer up
ip -n "$NS" link set eth1 up

cat >"$W/boot.sh" <<EOF
set -e
mount --make-rprivate /
mount --bind "$REPO" "$R/vagrant"
mount --bind "$GOROOT" "$R/usr/local/go" && mount -o remount,bind,ro "$R/usr/local/go"
mount --bind "$MODCACHE" "$R/root/go/pkg/mod" && mount -o remount,bind,ro "$R/root/go/pkg/mod"
mount --bind "$GOCACHE" "$R/root/.cache/go-build" # a build cache is safe to share
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
exec chroot "$R" /lib/systemd/systemd --system --log-target=kmsg --show-status=false
EOF
nsenter --net="/var/run/netns/$NS" -- unshare --fork --pid --mount --uts --ipc bash "$W/boot.sh" >"$W/init.log" 2>&1 &
UNSHARE=$!
for _ in $(seq 1 100); do
	INIT=$(pgrep -P "$UNSHARE" -x systemd || true)
	[ -n "$INIT" ] && break
	sleep 0.1
done
[ -n "$INIT" ] || { cat "$W/init.log" >&2; die "systemd did not start in the root"; }
inside() { nsenter -t "$INIT" -a -r -w -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
for _ in $(seq 1 100); do # until systemd listens on its socket
	[ -S "$R/run/systemd/private" ] || [ -S "/proc/$INIT/root/run/systemd/private" ] && break
	sleep 0.1
done
state=$(inside timeout 120 systemctl is-system-running --wait 2>&1 || true)
log "systemd in the root: $state"
case $state in running | degraded) ;; *) die "systemd did not finish booting: $state" ;; esac

# --- 3. provision, as the Vagrantfile does ------------------------------------------
vm_env=(REPO=/vagrant LOOPCAST_NODES="sender=192.168.56.10 web1=$ADDR" LOOPCAST_ADDR=$ADDR
	LOOPCAST_HOST_ID=web1 LOOPCAST_GROUP=239.192.0.1:5000 GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod)
inside "${vm_env[@]}" bash /vagrant/scripts/vagrant/common.sh || die "common.sh failed"
inside "${vm_env[@]}" bash /vagrant/scripts/vagrant/web.sh || die "web.sh failed"

# --- 4. what the VM would show ------------------------------------------------------
for u in loopcast-receiver php8.2-fpm nginx; do
	s=$(inside systemctl is-active "$u" || true)
	[ "$s" = active ] || { inside journalctl -u "$u" -n 30 --no-pager >&2 || true; die "$u is $s"; }
	log "$u: active"
done
ok=
for _ in $(seq 1 50); do
	if inside journalctl -u loopcast-receiver --no-pager | grep -q '"msg":"agent: running".*"host":"web1"'; then ok=1; break; fi
	sleep 0.2
done
[ -n "$ok" ] || { inside journalctl -u loopcast-receiver -n 30 --no-pager >&2; die "the agent's journal has no 'agent: running' for web1"; }
inside journalctl -u loopcast-receiver --no-pager | grep -q '"msg":"agent: joined' ||
	inside ip maddr show dev eth1 | grep -q 239.192.0.1 || die "the agent did not join 239.192.0.1 on eth1"
log "agent: running as web1, in group 239.192.0.1 on eth1"
# HTTP from inside the root's network namespace, with bash's /dev/tcp
get() { # get PATH -> status line and body
	inside bash -c "exec 3<>/dev/tcp/127.0.0.1/80; printf 'GET $1 HTTP/1.0\r\nHost: web1\r\n\r\n' >&3; cat <&3"
}
page=$(get /)
head -1 <<<"$page" | grep -q '^HTTP/1.1 ' || die "nginx does not answer on :80: $page"
log "nginx: $(head -1 <<<"$page" | tr -d '\r') for / (no release deployed yet)"
health=$(get /loopcast-health)
head -1 <<<"$health" | grep -q ' 503 ' && grep -q 'serving nothing' <<<"$health" ||
	die "/loopcast-health should say 503, serving nothing: $health"
log "health: $(head -1 <<<"$health" | tr -d '\r'): $(tail -1 <<<"$health")"
# provisioning again (`vagrant provision`) changes nothing
again=$(inside "${vm_env[@]}" bash /vagrant/scripts/vagrant/common.sh 2>&1) || die "common.sh again failed: $again"
again+=$(inside "${vm_env[@]}" bash /vagrant/scripts/vagrant/web.sh 2>&1) || die "web.sh again failed: $again"
if grep -E 'installed |\(re\)starting|disabled|building' <<<"$again"; then die "provisioning again changed something (above)"; fi
log "common.sh and web.sh again: nothing changed"
log ok
