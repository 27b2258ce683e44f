#!/usr/bin/env bash
# cluster.sh — a LAN of network namespaces on one machine, for tests,
# benchmarks and the demo.
#
#   cluster.sh [--name NAME] up N [--loss PCT] [--rate MBIT [--sender-unshaped]] [--agents KEY.pub [--web]]
#                                 [--routed K [--relay I]]
#   cluster.sh [--name NAME] down
#   cluster.sh [--name NAME] loss HOST PCT   drop PCT% of UDP arriving at HOST
#   cluster.sh [--name NAME] exec HOST CMD...
#   cluster.sh [--name NAME] hosts           one "host address" line each
#   cluster.sh [--name NAME] wipe I          stop receiver rI's agent, erase its
#                                            store (unmounting it) but not its
#                                            host key, start it afresh
#   cluster.sh [--name NAME] stop I          stop receiver rI's agent (its store
#                                            and mounts stay)
#   cluster.sh [--name NAME] start I         start receiver rI's agent again
#
# NAME defaults to lc.
#
# --agents KEY.pub starts `receiver run` on every receiver (host id rI,
# root DIR/rI, trusting KEY.pub, group 239.192.0.1:5000 on eth0, metrics on
# port 9172 of the host's address); --web adds
# an nginx and a php-fpm per receiver, made from packaging/'s samples,
# serving DIR/rI/current/public on port 80 through $realpath_root, and
# gives each agent its pool (--php-fpm), so releases are served from slots
# and OPcache survives deploys (LOOPCAST_CLUSTER_AGENT_ARGS adds agent
# flags, e.g. --opcache-warm). DIR is
# /run/loopcast-cluster/NAME ($LOOPCAST_CLUSTER_DIR/NAME); every pid started is kept there and `down`
# stops those pids, unmounts what the agents mounted under DIR and removes
# it. Binaries come from bin/ (make build).
#
# Hosts are NAME-s (the sender, 10.77.0.1) and NAME-r1..rN (10.77.0.11 on).
# Each host's veth plugs into a bridge inside its own namespace NAME-sw, so
# the root namespace's network is never touched and multicast stays on the
# bridge. `exec` enters only the network namespace (nsenter --net), so a
# process started there shares the machine's mounts (loop mounts of the
# agents stay visible). `down` removes everything `up` made.
#
# --routed K puts the last K receivers on a second subnet, SUBNET_B
# (10.77.1.0/24, addresses .11 on as in the first), its own bridge NAME-sw2,
# behind a router namespace NAME-rt (10.77.0.254 and 10.77.1.254) that
# forwards unicast and carries no multicast (no multicast routing); every
# host's default route is its subnet's router. --relay I (repeatable) runs
# receiver rI's agent with --relay: it relays sessions to its subnet when
# the sender's --relays names it.
set -euo pipefail

NAME=lc
SUBNET=10.77.0
SUBNET_B=10.77.1
ROUTED_FROM=100000 # receivers from this index on are on SUBNET_B (up --routed)
NETNS_DIR=/var/run/netns
GROUP=239.192.0.1:5000
NETS=
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LOOPCAST_BIN:-$REPO/bin} # where receiver is found
PHP_FPM=$(ls /usr/sbin/php-fpm* 2>/dev/null | head -1 || true)

die() { echo "cluster: $*" >&2; exit 1; }

hostname_of() { # hostname_of INDEX -> NAME-s or NAME-rI
	if [[ $1 == 0 ]]; then echo "$NAME-s"; else echo "$NAME-r$1"; fi
}
addr_of() {
	if [[ $1 == 0 ]]; then echo "$SUBNET.1"; elif [[ $1 -ge $ROUTED_FROM ]]; then echo "$SUBNET_B.$((10 + $1))"; else echo "$SUBNET.$((10 + $1))"; fi
}
switch_of() { if [[ $1 -ge $ROUTED_FROM ]]; then echo "$NAME-sw2"; else echo "$NAME-sw"; fi; }
subnet_of() { if [[ $1 -ge $ROUTED_FROM ]]; then echo "$SUBNET_B"; else echo "$SUBNET"; fi; }

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# shape HOST MBIT SWITCH: token bucket on the host's side, so every link is MBIT.
shape() {
	local ns=$1 rate=$2 sw=$3
	in_ns "$ns" tc qdisc replace dev eth0 root tbf rate "${rate}mbit" burst 64kb latency 50ms
	# and the switch side, towards the host
	in_ns "$sw" tc qdisc replace dev "v-${ns#"$NAME"-}" root tbf rate "${rate}mbit" burst 64kb latency 50ms
}

# make_switch SWITCH: a namespace holding a bridge without multicast
# snooping (every port hears the group).
make_switch() {
	ip netns add "$1"
	in_ns "$1" ip link set lo up
	in_ns "$1" ip link add br0 type bridge mcast_snooping 0
	in_ns "$1" ip link set br0 up
}

# make_router: NAME-rt on both switches, forwarding unicast only.
make_router() {
	local rt=$NAME-rt x sw net
	ip netns add "$rt"
	in_ns "$rt" ip link set lo up
	for x in a b; do
		sw=$NAME-sw net=$SUBNET
		[[ $x == b ]] && sw=$NAME-sw2 net=$SUBNET_B
		in_ns "$sw" ip link add v-rt type veth peer name "eth-$x" netns "$rt"
		in_ns "$sw" ip link set v-rt master br0 up
		in_ns "$rt" ip addr add "$net.254/24" dev "eth-$x"
		in_ns "$rt" ip link set "eth-$x" up
	done
	in_ns "$rt" sysctl -qw net.ipv4.ip_forward=1
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
	local n=$1 loss=0 rate="" pub="" web=0 shape_from=0 routed=0 relays=()
	shift
	while [[ $# -gt 0 ]]; do
		case $1 in
		--routed) routed=$2; shift 2 ;;
		--relay) relays+=("$2"); shift 2 ;;
		--loss) loss=$2; shift 2 ;;
		--rate) rate=$2; shift 2 ;;
		--sender-unshaped) shape_from=1; shift ;; # only the receivers' links are MBIT (a faster sender, as 10 GbE in front of 1 GbE hosts)
		--agents) pub=$(realpath "$2"); shift 2 ;;
		--web) web=1; shift ;;
		*) die "up: unknown option $1" ;;
		esac
	done
	[[ $web == 0 || -n $pub ]] || die "up: --web needs --agents"
	[[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 200 ]] || die "up: N must be 1..200"
	[[ $routed =~ ^[0-9]+$ && $routed -lt $n ]] || die "up: --routed K must be below N"
	[[ $routed -gt 0 ]] && ROUTED_FROM=$((n - routed + 1))
	[[ ${#relays[@]} == 0 || -n $pub ]] || die "up: --relay needs --agents"
	[[ -e $NETNS_DIR/$NAME-sw ]] && die "cluster $NAME is already up (cluster.sh down --name $NAME)"
	# any failure from here on (die exits too) removes what was made
	UP_OK=0
	trap 'rc=$?; if [[ $UP_OK != 1 ]]; then echo "cluster: setup failed, removing it" >&2; tail_logs >&2; down; fi; exit $rc' EXIT
	make_switch "$NAME-sw"
	if [[ $routed -gt 0 ]]; then
		make_switch "$NAME-sw2"
		make_router
	fi
	for i in $(seq 0 "$n"); do
		local h sw; h=$(hostname_of "$i") sw=$(switch_of "$i")
		ip netns add "$h"
		in_ns "$h" ip link set lo up
		# create the pair inside the switch namespace, then move one end out
		in_ns "$sw" ip link add "v-${h#"$NAME"-}" type veth peer name eth0 netns "$h"
		in_ns "$sw" ip link set "v-${h#"$NAME"-}" master br0 up
		in_ns "$h" ip addr add "$(addr_of "$i")/24" dev eth0
		in_ns "$h" ip link set eth0 up
		# multicast leaves through eth0
		in_ns "$h" ip route add 224.0.0.0/4 dev eth0
		[[ $routed -gt 0 ]] && in_ns "$h" ip route add default via "$(subnet_of "$i").254"
		[[ -n $rate && $i -ge $shape_from ]] && shape "$h" "$rate" "$sw"
		[[ $i != 0 && $loss != 0 ]] && set_loss "$h" "$loss"
	done
	if [[ -n $pub ]]; then
		mkdir -p "$DIR"
		[[ $web == 1 ]] && touch "$DIR/web"
		# copied once, whole, before any agent reads it
		cp "$pub" "$DIR/trust.pub.tmp" && mv "$DIR/trust.pub.tmp" "$DIR/trust.pub"
		for i in "${relays[@]}"; do touch "$DIR/relay-r$i"; done
		for i in $(seq 1 "$n"); do
			[[ $web == 1 ]] && start_web "$i"
			start_agent "$i" "$pub"
		done
		wait_ready "$n" "$web"
	fi
	UP_OK=1
	trap - EXIT
	echo "cluster $NAME: sender $(hostname_of 0) ($(addr_of 0)), $n receivers, loss ${loss}%, rate ${rate:-unshaped}$([[ $shape_from == 1 ]] && echo " (the sender's link unshaped)")$([[ $routed -gt 0 ]] && echo ", the last $routed behind a router (subnet $SUBNET_B.0/24)")"
}

# start_bg HOST LOG CMD...: run CMD in HOST's network namespace, in the
# background; its pid goes to DIR/pids.
start_bg() {
	local h=$1 log=$2; shift 2
	nsenter --net="$NETNS_DIR/$h" -- "$@" >>"$log" 2>&1 &
	echo $! >>"$DIR/pids"
}

start_agent() {
	local i=$1 pub=$2 h; h=$(hostname_of "$1")
	[[ -x $BIN/receiver ]] || die "no $BIN/receiver (make build, or set LOOPCAST_BIN)"
	if ! [[ $pub -ef $DIR/trust.pub ]]; then
		cp "$pub" "$DIR/trust.pub.tmp" && mv "$DIR/trust.pub.tmp" "$DIR/trust.pub"
	fi
	local extra=()
	# LOOPCAST_CLUSTER_NO_SLOTS=1: agents without their pool, each release
	# served from its own path (what the OPcache benchmark compares with)
	[[ -f $DIR/web && ${LOOPCAST_CLUSTER_NO_SLOTS:-0} != 1 ]] && extra+=(--php-fpm "$DIR/web-r$i/php.sock")
	[[ -f $DIR/relay-r$i ]] && extra+=(--relay --relay-iface eth0)
	# shellcheck disable=SC2206 # flags, split on purpose
	extra+=(${LOOPCAST_CLUSTER_AGENT_ARGS:-})
	start_bg "$h" "$DIR/agent-r$i.log" "$BIN/receiver" run --root "$DIR/r$i" \
		--group "$GROUP" --iface eth0 --host-id "r$i" --trust "$DIR/trust.pub" --metrics-addr :9172 "${extra[@]}"
	tail -1 "$DIR/pids" >"$DIR/agent-r$i.pid"
}

# wipe I: the host loses its store, as a server whose disk was replaced
# would; it keeps its identity (host.key), as it keeps its ssh host keys.
wipe() {
	local i=$1 pid m t
	[[ -f $DIR/agent-r$i.pid ]] || die "wipe: no agent r$i in cluster $NAME"
	pid=$(cat "$DIR/agent-r$i.pid")
	stop_pids "$pid"
	NETS=$(our_nets)
	! ours "$pid" || die "wipe: agent r$i (pid $pid) does not stop"
	for m in $(awk -v d="$DIR/r$i/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	local key=
	if [[ -f $DIR/r$i/host.key ]]; then
		key=$(mktemp "$DIR/host-r$i.XXXXXX")
		cp -p "$DIR/r$i/host.key" "$key"
	fi
	rm -rf "$DIR/r$i"
	if [[ -n $key ]]; then
		mkdir -p "$DIR/r$i"
		mv "$key" "$DIR/r$i/host.key"
	fi
	start_agent "$i" "$DIR/trust.pub"
	for t in $(seq 1 100); do [[ -d $DIR/r$i/releases ]] && return 0; sleep 0.1; done
	die "wipe: agent r$i did not come back"
}

# stop_agent I: stop rI's agent, as a host that is down or rebooting
stop_agent() {
	local i=$1 pid
	[[ -f $DIR/agent-r$i.pid ]] || die "stop: no agent r$i in cluster $NAME"
	pid=$(cat "$DIR/agent-r$i.pid")
	stop_pids "$pid"
	NETS=$(our_nets)
	! ours "$pid" || die "stop: agent r$i (pid $pid) does not stop"
}

start_web() {
	local i=$1 h w; h=$(hostname_of "$1"); w=$DIR/web-r$i
	[[ -n $PHP_FPM ]] || die "no php-fpm (scripts/install-deps.sh)"
	mkdir -p "$w"
	sed -e "s|/run/php/php8.2-fpm-loopcast.sock|$w/php.sock|" "$REPO/packaging/php-fpm-loopcast.conf" >"$w/pool.conf"
	printf '[global]\npid = %s\nerror_log = %s\ndaemonize = no\ninclude = %s\n' \
		"$w/php-fpm.pid" "$w/php-fpm.log" "$w/pool.conf" >"$w/php-fpm.conf"
	sed -e "s|/srv/loopcast|$DIR/r$i|" -e "s|unix:/run/php/php8.2-fpm-loopcast.sock|unix:$w/php.sock|" \
		-e "s|include fastcgi_params;|include /etc/nginx/fastcgi_params;|" "$REPO/packaging/nginx-loopcast.conf" >"$w/server.conf"
	cat >"$w/nginx.conf" <<-CONF
	user www-data;
	worker_processes 1;
	daemon off;
	pid $w/nginx.pid;
	error_log $w/nginx-error.log;
	events { worker_connections 512; }
	http {
	    include /etc/nginx/mime.types;
	    access_log off;
	    # the tests' load generator reuses connections for thousands of
	    # requests; nginx's default of 1000 per connection closes them under
	    # it, and a request racing that close fails for reasons unrelated
	    # to deploys
	    keepalive_requests 1000000;
	    include $w/server.conf;
	}
	CONF
	start_bg "$h" "$w/php-fpm.out" "$PHP_FPM" -F -y "$w/php-fpm.conf"
	start_bg "$h" "$w/nginx.out" nginx -c "$w/nginx.conf"
}

# wait_ready N WEB: every agent answered on its store (and nginx listens).
# Up to 30 s: on a loaded 2-core machine (the test suite running beside)
# php-fpm alone can take several seconds to start.
# tail_logs: the last lines of every log of the cluster, for a failed setup
# (which removes them).
tail_logs() {
	local f
	for f in "$DIR"/*.log "$DIR"/web-r*/*.log; do
		[[ -s $f ]] || continue
		echo "--- $f"
		tail -n 5 "$f"
	done
	return 0
}

wait_ready() {
	local n=$1 web=$2 i t
	for t in $(seq 1 300); do
		local ok=1
		for i in $(seq 1 "$n"); do
			[[ -e $DIR/r$i/state || -d $DIR/r$i/releases ]] || ok=0
			[[ $web == 0 || -S $DIR/web-r$i/php.sock ]] || ok=0
			[[ $web == 0 || -s $DIR/web-r$i/nginx.pid ]] || ok=0
		done
		[[ $ok == 1 ]] && return 0
		sleep 0.1
	done
	die "agents or web servers did not come up; logs in $DIR"
}

# our_nets lists the nsfs inodes of this cluster's namespaces.
our_nets() {
	local f
	for f in "$NETNS_DIR/$NAME"-*; do [[ -e $f ]] && stat -L -c %i "$f"; done
}

# ours PID: PID is alive and inside one of this cluster's namespaces, so
# it is one we started and not a reused pid.
ours() {
	local link
	link=$(readlink "/proc/$1/ns/net" 2>/dev/null) || return 1
	grep -qx "${link//[^0-9]/}" <<<"$NETS"
}

# stop_pids PID...: TERM those still ours, then KILL what is left.
stop_pids() {
	local pid t
	NETS=$(our_nets)
	for pid in "$@"; do ours "$pid" && kill "$pid" 2>/dev/null; done
	for t in $(seq 1 50); do
		local alive=0
		for pid in "$@"; do ours "$pid" && alive=1; done
		[[ $alive == 0 ]] && return 0
		sleep 0.1
	done
	for pid in "$@"; do ours "$pid" && kill -9 "$pid" 2>/dev/null; done
	sleep 0.2
}

# stop_started stops every pid this cluster started.
stop_started() {
	[[ -f $DIR/pids ]] || return 0
	# shellcheck disable=SC2046
	stop_pids $(cat "$DIR/pids")
	rm -f "$DIR/pids"
}

# unmount_all: the agents' loop mounts under DIR (lazily if still busy);
# their loop devices go with them (autoclear).
unmount_all() {
	local m
	for m in $(awk -v d="$DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}

down() {
	stop_started
	local ns
	for ns in $(ip netns list | awk '{print $1}' | grep -E "^$NAME-(s|sw|sw2|rt|r[0-9]+)$" || true); do
		ip netns del "$ns"
	done
	unmount_all
	rm -rf "$DIR"
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
DIR=${LOOPCAST_CLUSTER_DIR:-/run/loopcast-cluster}/$NAME
[[ $# -ge 1 ]] || die "usage: cluster.sh [--name NAME] up N [--loss PCT] [--rate MBIT] | down | loss HOST PCT | exec HOST CMD... | hosts"
cmd=$1; shift
case $cmd in
up) up "$@" ;;
down) down ;;
loss) [[ $# == 2 ]] || die "usage: loss HOST PCT"; set_loss "$1" "$2" ;;
exec) [[ $# -ge 2 ]] || die "usage: exec HOST CMD..."; h=$1; shift; exec nsenter --net="$NETNS_DIR/$h" -- "$@" ;;
hosts) hosts ;;
dir) echo "$DIR" ;;
wipe) [[ $# == 1 ]] || die "usage: wipe I"; wipe "$1" ;;
stop) [[ $# == 1 ]] || die "usage: stop I"; stop_agent "$1" ;;
start) [[ $# == 1 ]] || die "usage: start I"; start_agent "$1" "$DIR/trust.pub" ;;
*) die "unknown command $cmd" ;;
esac
