#!/usr/bin/env bash
# bench-transfer.sh — multicast the same incompressible payload with loopcast
# and with Debian's uftp/uftpd over a LAN of network namespaces, and print
# for each: wall time from start until every host completed, bytes the
# sender put on the wire, the physical limit (image at link rate) and the
# ratios.
#
#   bench-transfer.sh N LOSS_PCT SIZE_MB LINK_MBIT
#
#   N          receivers
#   LOSS_PCT   independent loss on every receiver's input (iptables statistic)
#   SIZE_MB    payload: one random file of SIZE_MB MiB, packed by `sender build`
#   LINK_MBIT  every link shaped by tc tbf to this rate; 0 leaves links unshaped
#
# The LAN is scripts/cluster.sh (namespace "lcb-*", removed on exit). Both
# tools send at 95% of the link rate (unshaped: loopcast unpaced, uftp -R -1).
#
# Environment:
#   FEC        loopcast --fec-overhead PCT (default: none given, parity sized
#              from the loss the hosts report; the hand-tuned figure was 2.4 × LOSS_PCT)
#   SENDER, RECEIVER  loopcast binaries (default bin/sender, bin/receiver; built if missing)
#   UFTP=0     skip uftp
#   BENCH_DIR  scratch directory (default /var/tmp/loopcast-bench)
#   KEEP=1     keep the scratch directory (logs: send.log, lcb-r*.log)
#   AUTO_RATE=1  loopcast runs with no --rate (its default: the first pass
#              starts low and follows the slowest host, up to 900 Mbit/s)
#              instead of 95% of the link rate
#   SENDER_UNSHAPED=1  shape only the receivers' links (a sender link
#              faster than the hosts', as 10 GbE in front of 1 GbE hosts)
#   DEAF=K     after the loopcast run, make the last K receivers drop the
#              multicast group (iptables -d 224.0.0.0/4 -j DROP in their
#              namespace) and run loopcast again: they take the unicast path
#              (the inventory gives every host's address); prints that run's
#              wall against the first (the goal: <= 1.5)
set -euo pipefail

[[ $# == 4 ]] || { echo "usage: $0 N LOSS_PCT SIZE_MB LINK_MBIT" >&2; exit 2; }
N=$1 LOSS=$2 SIZE_MB=$3 LINK=$4
SENDER=${SENDER:-bin/sender}
RECEIVER=${RECEIVER:-bin/receiver}
UFTP=${UFTP:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/loopcast-bench}
FEC=${FEC:-}
CLUSTER="$(dirname "$0")/cluster.sh --name lcb"
GROUP=239.77.1.1:47200
UFTP_GROUP=239.77.1.2

log() { printf 'bench-transfer: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

WORK=
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	$CLUSTER down || true
	[[ -n $WORK && -z ${KEEP:-} ]] && rm -rf "$WORK"
}
trap cleanup EXIT

check() {
	[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
	for t in ip tc iptables nsenter awk; do command -v "$t" >/dev/null || die "needs $t (scripts/install-deps.sh)"; done
	[[ $UFTP == 0 ]] || command -v uftp >/dev/null || die "needs uftp and uftpd (apt-get install uftp), or UFTP=0"
	[[ -x $SENDER ]] || go build -o "$SENDER" ./cmd/sender
	[[ -x $RECEIVER ]] || go build -o "$RECEIVER" ./cmd/receiver
}

# make_image: a tree holding one random file, packed and signed.
make_image() {
	mkdir -p "$WORK/tree"
	head -c "$((SIZE_MB << 20))" /dev/urandom >"$WORK/tree/payload.bin"
	"$SENDER" keygen --out "$WORK/bench.key" >/dev/null
	"$SENDER" build --out "$WORK/bench.img" --key "$WORK/bench.key" --epoch 1700000000 "$WORK/tree" >/dev/null 2>&1 ||
		die "sender build failed"
	IMAGE_BYTES=$(stat -c %s "$WORK/bench.img")
}

tx_bytes() { # bytes sent on the sender's eth0 so far
	$CLUSTER exec lcb-s ip -s link show dev eth0 | awk '/TX:/ { getline; print $1; exit }'
}

now() { date +%s.%N; }

receivers() { seq 1 "$N" | sed 's/^/lcb-r/'; }

run_loopcast() {
	local label=${1:-loopcast} r rate hosts i
	for r in $(receivers); do
		$CLUSTER exec "$r" "$RECEIVER" fetch --group "$GROUP" --iface eth0 --trust "$WORK/bench.pub" \
			--host-id "$r" --host-key "$WORK/$r.hostkey" --out "$WORK/$r.img" 2>"$WORK/$r.log" &
		PIDS+=($!)
	done
	rate=(--rate 0)
	[[ $LINK != 0 ]] && rate=(--rate "$(awk -v l="$LINK" 'BEGIN { printf "%dM", l * 0.95 }')")
	[[ -n ${AUTO_RATE:-} ]] && rate=()
	hosts=$WORK/hosts # one "ID IP" line per receiver: the unicast path reaches hosts that hear no multicast
	for i in $(seq 1 "$N"); do echo "lcb-r$i 10.77.0.$((10 + i))"; done >"$hosts"
	sleep 0.5 # receivers listening
	local t0 b0 t1 b1
	b0=$(tx_bytes) t0=$(now)
	$CLUSTER exec lcb-s "$SENDER" send --key "$WORK/bench.key" --state-dir "$WORK/state" --group "$GROUP" --iface eth0 "${rate[@]}" --hosts "@$hosts" \
		${FEC:+--fec-overhead "$FEC"} --wait 30s "$WORK/bench.img" >"$WORK/send.out" 2>"$WORK/send.log" ||
		log "loopcast sender: exit $? ($(tail -1 "$WORK/send.out"))"
	t1=$(now) b1=$(tx_bytes)
	wait "${PIDS[@]}" 2>/dev/null || true
	PIDS=()
	for r in $(receivers); do
		cmp -s "$WORK/bench.img" "$WORK/$r.img" || log "$label: $r image differs or is missing"
		rm -f "$WORK/$r.img"
	done
	grep -q unicast "$WORK/send.out" && log "$label: $(grep -c ' unicast ' "$WORK/send.out" || true) hosts took the unicast path; $(grep '^unicast:' "$WORK/send.out" || true)"
	report "$label" "$t0" "$t1" "$b0" "$b1"
}

run_uftp() {
	local r i id rate ids=
	for i in $(seq 1 "$N"); do
		r=lcb-r$i
		mkdir -p "$WORK/uftp-$r"
		id=$(printf '0x0A4D00%02X' $((10 + i))) # cluster.sh gives receiver i 10.77.0.(10+i)
		$CLUSTER exec "$r" uftpd -d -U "$id" -I eth0 -M "$UFTP_GROUP" -D "$WORK/uftp-$r" 2>"$WORK/uftpd-$r.log" &
		PIDS+=($!)
		ids+=$id,
	done
	rate=-1
	[[ $LINK != 0 ]] && rate=$(awk -v l="$LINK" 'BEGIN { printf "%d", l * 950 }')
	sleep 0.5
	local t0 b0 t1 b1
	b0=$(tx_bytes) t0=$(now)
	$CLUSTER exec lcb-s uftp -I eth0 -M "$UFTP_GROUP" -R "$rate" -H "${ids%,}" -L "$WORK/uftp.log" "$WORK/bench.img" ||
		log "uftp: exit $?"
	t1=$(now) b1=$(tx_bytes)
	for r in $(receivers); do
		cmp -s "$WORK/bench.img" "$WORK/uftp-$r/bench.img" || log "uftp: $r image differs or is missing"
	done
	for i in "${PIDS[@]}"; do kill "$i" 2>/dev/null || true; done
	PIDS=()
	report uftp "$t0" "$t1" "$b0" "$b1"
}

# report TOOL T0 T1 B0 B1: one line of figures; WALL_<TOOL> kept for ratios.
report() {
	local wall wire limit
	wall=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.2f", b - a }')
	wire=$(($5 - $4))
	limit=$(awk -v s="$IMAGE_BYTES" -v l="$LINK" 'BEGIN { if (l == 0) print "-"; else printf "%.2f", s * 8 / (l * 1e6) }')
	printf '%-9s wall %8ss  wire %8.1f MiB  payload %8.1f MiB  limit %6ss  wall/limit %6s  wire/payload %.3f\n' \
		"$1" "$wall" "$(awk -v w="$wire" 'BEGIN { print w / 1048576 }')" "$(awk -v s="$IMAGE_BYTES" 'BEGIN { print s / 1048576 }')" \
		"$limit" "$(awk -v w="$wall" -v l="$limit" 'BEGIN { if (l == "-") print "-"; else printf "%.2f", w / l }')" \
		"$(awk -v w="$wire" -v s="$IMAGE_BYTES" 'BEGIN { printf "%.3f", w / s }')"
	printf -v "WALL_$1" '%s' "$wall"
}

check
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/transfer.XXXXXX")
make_image
shape=()
[[ $LINK != 0 ]] && shape=(--rate "$LINK")
[[ $LINK != 0 && -n ${SENDER_UNSHAPED:-} ]] && shape+=(--sender-unshaped)
$CLUSTER down || true
$CLUSTER up "$N" --loss "$LOSS" "${shape[@]}" >&2
echo "# $N receivers, ${LOSS}% loss, ${SIZE_MB} MiB payload ($IMAGE_BYTES B image), link ${LINK} Mbit/s${SENDER_UNSHAPED:+ (the sender unshaped)}, loopcast fec ${FEC:-auto}${AUTO_RATE:+, no --rate}"
run_loopcast
if [[ ${DEAF:-0} -gt 0 ]]; then
	for i in $(seq $((N - DEAF + 1)) "$N"); do
		$CLUSTER exec "lcb-r$i" iptables -I INPUT -d 224.0.0.0/4 -j DROP
	done
	run_loopcast deaf
	for i in $(seq $((N - DEAF + 1)) "$N"); do
		$CLUSTER exec "lcb-r$i" iptables -D INPUT -d 224.0.0.0/4 -j DROP
	done
	awk -v a="$WALL_deaf" -v b="$WALL_loopcast" -v k="$DEAF" 'BEGIN { printf "deaf/loopcast wall %.2f (%d hosts without multicast)\n", a / b, k }'
fi
if [[ $UFTP != 0 ]]; then
	run_uftp
	awk -v a="$WALL_loopcast" -v b="$WALL_uftp" 'BEGIN { printf "loopcast/uftp wall %.2f\n", a / b }'
fi
