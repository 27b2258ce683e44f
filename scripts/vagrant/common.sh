#!/usr/bin/env bash
# common.sh — Vagrant provisioning for every loopcast VM, as root:
#   1. /etc/hosts names every VM (sender, web1..web3) by its private address;
#   2. multicast (224.0.0.0/4) is routed through the private interface, now,
#      at every boot and whenever that interface comes up again;
#   3. Go (through scripts/install-deps.sh) and /usr/local/bin/sender and
#      /usr/local/bin/receiver, built from /vagrant, rebuilt only when the
#      tree changed.
# Environment (from the Vagrantfile): LOOPCAST_NODES="name=addr ...",
# LOOPCAST_ADDR (this VM's private address).
set -euo pipefail
# Vagrant runs a copy of this script from /tmp: take the helpers from the tree.
. "${REPO:-/vagrant}/scripts/vagrant/lib.sh"

: "${LOOPCAST_NODES:?set by the Vagrantfile}" "${LOOPCAST_ADDR:?set by the Vagrantfile}"

# --- 1. names ----------------------------------------------------------------
hosts_block() {
	local n
	echo "# BEGIN loopcast-vagrant"
	for n in $LOOPCAST_NODES; do echo "${n#*=} ${n%%=*}"; done
	echo "# END loopcast-vagrant"
}
{
	[ ! -f /etc/hosts ] || sed '/^# BEGIN loopcast-vagrant$/,/^# END loopcast-vagrant$/d' /etc/hosts
	hosts_block
} | put_text /etc/hosts 0644 || true

# --- 2. the multicast route ----------------------------------------------------
IFACE=$(private_iface "$LOOPCAST_ADDR")
log "private interface: $IFACE ($LOOPCAST_ADDR)"
# Vagrant's network setup runs ifdown/ifup on the interface (dropping its
# routes) after boot: the ifupdown hook puts the route back, the unit covers
# boots without ifupdown.
put_text /etc/network/if-up.d/loopcast-multicast 0755 <<EOF || true
#!/bin/sh
# From loopcast's scripts/vagrant/common.sh: multicast goes out on $IFACE.
[ "\$IFACE" = "$IFACE" ] || exit 0
exec ip route replace 224.0.0.0/4 dev $IFACE
EOF
if put_text /etc/systemd/system/loopcast-multicast-route.service 0644 <<EOF; then
# From loopcast's scripts/vagrant/common.sh.
[Unit]
Description=loopcast: route multicast (224.0.0.0/4) through the private network ($IFACE)
Wants=network-online.target
After=network-online.target
Before=loopcast-receiver.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip route replace 224.0.0.0/4 dev $IFACE

[Install]
WantedBy=multi-user.target
EOF
	systemctl daemon-reload
fi
systemctl is-enabled --quiet loopcast-multicast-route.service 2>/dev/null || systemctl enable loopcast-multicast-route.service
ip route replace 224.0.0.0/4 dev "$IFACE" # the same route again is no change
log "route: $(ip -4 route show 224.0.0.0/4)"

# --- 3. Go and the binaries ----------------------------------------------------
# install-deps.sh, sourced, runs nothing; its ensure_go gets a Go toolchain as
# new as go.mod wants (on bookworm: golang-1.19 from apt, then the go.mod
# toolchain from the module proxy into /usr/local/go). Its package list is
# for the tests and the demo, not for these VMs, so it is not installed.
# In a subshell: the script's EXIT trap removes what it made (its
# temporary policy-rc.d, which would keep nginx from starting later).
apt_lists # install-deps.sh looks for golang-1.NN-go with apt-cache
apt_need ca-certificates
(
	cd "$REPO"
	# shellcheck source=../install-deps.sh
	. scripts/install-deps.sh
	ensure_go
)
export PATH=/usr/local/go/bin:$PATH

# The stamp: a hash of the Go sources, go.mod, go.sum and the Go version.
# Same tree, same binaries: nothing to do.
stamp_dir=/var/lib/loopcast-vagrant
stamp=$(cd "$REPO" && {
	go version
	find . -path ./.vagrant -prune -o -path ./bin -prune -o -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
		LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -d' ' -f1)
if [ -x /usr/local/bin/sender ] && [ -x /usr/local/bin/receiver ] &&
	[ "$(cat "$stamp_dir/build.stamp" 2>/dev/null)" = "$stamp" ]; then
	log "binaries: up to date (build $stamp)"
	exit 0
fi
log "binaries: building sender and receiver from $REPO"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$REPO" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o "$out/" ./cmd/sender ./cmd/receiver)
for b in sender receiver; do put_file "$out/$b" "/usr/local/bin/$b" 0755 || true; done
mkdir -p "$stamp_dir"
echo "$stamp" >"$stamp_dir/build.stamp"
log "binaries: /usr/local/bin/sender and /usr/local/bin/receiver (build $stamp)"
