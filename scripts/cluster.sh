#!/usr/bin/env bash
# cluster.sh — a LAN of network namespaces on one machine, for tests,
# benchmarks and the demo.
#
#   cluster.sh [--name NAME] up N [--loss PCT] [--rate MBIT]
#   cluster.sh [--name NAME] down
#   cluster.sh [--name NAME] loss HOST PCT   drop PCT% of UDP arriving at HOST
#   cluster.sh [--name NAME] exec HOST CMD...
#   cluster.sh [--name NAME] hosts           one "host address" line each
#
# NAME defaults to lc.
#
# Hosts are NAME-s (the sender, 10.77.0.1) and NAME-r1..rN (10.77.0.11 on).
# Each host's veth plugs into a bridge inside its own namespace NAME-sw, so
# the root namespace's network is never touched and multicast stays on the
# bridge. `exec` enters only the network namespace (nsenter --net), so a
# process started there shares the machine's mounts (loop mounts of the
# agents stay visible). `down` removes everything `up` made.
set -euo pipefail

NAME=lc
SUBNET=10.77.0
NETNS_DIR=/var/run/netns

die() { echo "cluster: $*" >&2; exit 1; }

hostname_of() { # hostname_of INDEX -> NAME-s or NAME-rI
	if [[ $1 == 0 ]]; then echo "$NAME-s"; else echo "$NAME-r$1"; fi
}
addr_of() { if [[ $1 == 0 ]]; then echo "$SUBNET.1"; else echo "$SUBNET.$((10 + $1))"; fi; }

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# shape HOST MBIT: token bucket on the host's side, so every link is MBIT.
shape() {
	local ns=$1 rate=$2
	in_ns "$ns" tc qdisc replace dev eth0 root tbf rate "${rate}mbit" burst 64kb latency 50ms
	# and the switch side, towards the host
	in_ns "$NAME-sw" tc qdisc replace dev "v-${ns#"$NAME"-}" root tbf rate "${rate}mbit" burst 64kb latency 50ms
}

set_loss() {
	local ns=$1 pct=$2
	command -v iptables >/dev/null || die "iptables not installed (scripts/install-deps.sh)"
	in_ns "$ns" iptables -F INPUT
	if [[ $pct != 0 ]]; then
		local p
		p=$(awk -v p="$pct" 'BEGIN { printf "%.4f", p / 100 }')
		in_ns "$ns" iptables -A INPUT -p udp -m statistic --mode random --probability "$p" -j DROP
	fi
}

up() {
	local n=$1 loss=0 rate=""
	shift
	while [[ $# -gt 0 ]]; do
		case $1 in
		--loss) loss=$2; shift 2 ;;
		--rate) rate=$2; shift 2 ;;
		*) die "up: unknown option $1" ;;
		esac
	done
	[[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 200 ]] || die "up: N must be 1..200"
	[[ -e $NETNS_DIR/$NAME-sw ]] && die "cluster $NAME is already up (cluster.sh down --name $NAME)"
	trap 'echo "cluster: setup failed, removing it" >&2; down' ERR
	ip netns add "$NAME-sw"
	in_ns "$NAME-sw" ip link set lo up
	in_ns "$NAME-sw" ip link add br0 type bridge mcast_snooping 0
	in_ns "$NAME-sw" ip link set br0 up
	for i in $(seq 0 "$n"); do
		local h; h=$(hostname_of "$i")
		ip netns add "$h"
		in_ns "$h" ip link set lo up
		# create the pair inside the switch namespace, then move one end out
		in_ns "$NAME-sw" ip link add "v-${h#"$NAME"-}" type veth peer name eth0 netns "$h"
		in_ns "$NAME-sw" ip link set "v-${h#"$NAME"-}" master br0 up
		in_ns "$h" ip addr add "$(addr_of "$i")/24" dev eth0
		in_ns "$h" ip link set eth0 up
		# multicast leaves through eth0
		in_ns "$h" ip route add 224.0.0.0/4 dev eth0
		[[ -n $rate ]] && shape "$h" "$rate"
		[[ $i != 0 && $loss != 0 ]] && set_loss "$h" "$loss"
	done
	trap - ERR
	echo "cluster $NAME: sender $(hostname_of 0) ($(addr_of 0)), $n receivers, loss ${loss}%, rate ${rate:-unshaped}"
}

down() {
	local ns
	for ns in $(ip netns list | awk '{print $1}' | grep -E "^$NAME-(s|sw|r[0-9]+)$" || true); do
		# stop what still runs inside (started by us via exec), by pid
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
		ip netns del "$ns"
	done
}

hosts() {
	local ns
	for ns in $(ip netns list | awk '{print $1}' | grep -E "^$NAME-(s|r[0-9]+)$" | sort -V); do
		echo "$ns $(in_ns "$ns" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)"
	done
}

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
if [[ ${1:-} == --name ]]; then NAME=${2:-}; shift 2; fi
[[ $NAME =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "--name must be 1-8 lowercase letters/digits"
[[ $# -ge 1 ]] || die "usage: cluster.sh [--name NAME] up N [--loss PCT] [--rate MBIT] | down | loss HOST PCT | exec HOST CMD... | hosts"
cmd=$1; shift
case $cmd in
up) up "$@" ;;
down) down ;;
loss) [[ $# == 2 ]] || die "usage: loss HOST PCT"; set_loss "$1" "$2" ;;
exec) [[ $# -ge 2 ]] || die "usage: exec HOST CMD..."; h=$1; shift; exec nsenter --net="$NETNS_DIR/$h" -- "$@" ;;
hosts) hosts ;;
*) die "unknown command $cmd" ;;
esac
