#!/usr/bin/env bash
# install-deps.sh — install what loopcast's tests, benchmarks and demo need on
# Debian, as root. Idempotent: when everything is present it changes nothing
# and runs no apt-get at all (apt-get update only when a package is missing).
#
# It also makes sure a Go toolchain at least as new as go.mod's `go` line is
# usable:
#   1. `go` on PATH, /usr/local/go/bin/go or /usr/lib/go-*/bin/go new enough: done.
#   2. else Debian's newest golang-1.NN-go; if it is >= 1.21 it can switch
#      toolchains itself, and GOTOOLCHAIN=auto fetches the go.mod version
#      through the Go module proxy on first use (checked here).
#   3. else (e.g. bookworm: golang-1.19 only) that older go downloads the
#      toolchain module golang.org/toolchain@v0.0.1-goX.Y.Z.linux-ARCH from the
#      module proxy (checked against sum.golang.org) and it is installed in
#      GO_INSTALL_DIR (default /usr/local/go, which .ci/run puts on PATH).
#
# Environment: DRY_RUN=1 prints what would be done; GO_INSTALL_DIR as above.
set -euo pipefail

DRY_RUN=${DRY_RUN:-0}
GO_INSTALL_DIR=${GO_INSTALL_DIR:-/usr/local/go}

# package -> why (one line each; the command or feature that needs it).
PACKAGES=(
	"e2fsprogs   mke2fs, e2fsck, debugfs: image tests and bench-build"
	"util-linux  nsenter, unshare"
	"mount       mount, losetup"
	"iproute2    ip netns: multicast tests across namespaces"
	"iptables    loss injection in namespace tests"
	"nginx       demo web server"
	"php-fpm     demo PHP runtime"
	"php-cli     the e2e's long-running PHP script"
	"uftp        reference multicast file transfer for comparison"
	"zstd        the shell pipeline the benchmarks compare against"
	"xfsprogs    mkfs.xfs: reflink tests of the receiver's chunk reuse"
	"wrk         demo load generator"
	"curl        demo checks, Go toolchain fallback"
	"procps      ps, pgrep, sysctl"
	"time        GNU /usr/bin/time for bench-build"
	"kmod        modprobe loop"
	"vagrant     vagrant validate: the Vagrantfile check (packaging tests)"
	"systemd     systemd-analyze verify: the unit check (packaging tests)"
	"debootstrap a Debian root to run the Vagrant provisioning in (packaging tests)"
)

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }
run() {
	if [ "$DRY_RUN" = 1 ]; then log "would run: $*"; else log "running: $*"; "$@"; fi
}

need_root() {
	[ "$(id -u)" = 0 ] && return 0
	[ "$DRY_RUN" = 1 ] && return 0
	die "must run as root to $1 (try: sudo $0)"
}

installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Removed on exit: temporary files and a policy-rc.d this script created.
CLEANUP=()
cleanup() {
	local p
	for p in ${CLEANUP[@]+"${CLEANUP[@]}"}; do chmod -R u+w "$p" 2>/dev/null || true; rm -rf "$p"; done
}
trap cleanup EXIT

apt_updated=0
apt_install() {
	need_root "install $*"
	if [ "$apt_updated" = 0 ]; then
		run apt-get update -qq
		apt_updated=1
	fi
	# Installing nginx or php-fpm must not start system daemons: the tests
	# and the demo run their own, in namespaces, and need the ports free.
	if [ ! -e /usr/sbin/policy-rc.d ] && [ "$DRY_RUN" != 1 ]; then
		printf '#!/bin/sh\n# temporary, from loopcast install-deps.sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		CLEANUP+=(/usr/sbin/policy-rc.d)
	fi
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

install_packages() {
	command -v dpkg-query >/dev/null || die "dpkg-query not found: this script supports Debian only"
	local missing=() line pkg
	for line in "${PACKAGES[@]}"; do
		pkg=${line%% *}
		installed "$pkg" || missing+=("$pkg")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		log "packages: all ${#PACKAGES[@]} present, nothing to install"
		return
	fi
	log "packages: missing ${missing[*]}"
	apt_install "${missing[@]}"
}

# --- Go toolchain ----------------------------------------------------------

# version_ge A B: A >= B for Go versions like 1.26.0 or 1.26.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

# go_version GO: the version of that go binary itself (no toolchain switch).
go_version() { GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null | sed 's/^go//'; }

want_go() {
	local v
	v=$(awk '$1 == "go" { print $2; exit }' go.mod)
	[ -n "$v" ] || die "no go line in $(pwd)/go.mod"
	case $v in *.*.*) ;; *) v=$v.0 ;; esac # "go 1.26" means toolchain go1.26.0
	echo "$v"
}

# go_candidates prints the go binaries that exist, PATH's first.
go_candidates() {
	local g
	for g in "$(command -v go || true)" "$GO_INSTALL_DIR/bin/go" /usr/local/go/bin/go $(ls -d /usr/lib/go-*/bin/go 2>/dev/null | sort -V -r); do
		if [ -n "$g" ] && [ -x "$g" ]; then echo "$g"; fi
	done
}

# newest_apt_go prints the newest golang-1.NN-go package with an install candidate.
newest_apt_go() {
	local p
	for p in $(apt-cache search --names-only '^golang-1\.[0-9]+-go$' 2>/dev/null | awk '{print $1}' | sort -V -r); do
		if apt-cache policy "$p" | grep 'Candidate: [0-9]' >/dev/null; then echo "$p"; return; fi
	done
}

# install_toolchain_module GO VERSION: download the go.mod toolchain as a
# module with an older go (verified against the checksum database) and
# install it in GO_INSTALL_DIR.
install_toolchain_module() {
	local gobin=$1 v=$2 arch mod tmp dir
	arch=$(dpkg --print-architecture)
	mod="golang.org/toolchain@v0.0.1-go$v.linux-$arch"
	need_root "install Go $v in $GO_INSTALL_DIR"
	[ -e "$GO_INSTALL_DIR" ] && die "$GO_INSTALL_DIR exists but holds no usable go >= $v; move it away and rerun"
	log "go: downloading $mod through the module proxy with $gobin"
	[ "$DRY_RUN" = 1 ] && { log "would install it in $GO_INSTALL_DIR"; return; }
	tmp=$(mktemp -d)
	CLEANUP+=("$tmp" "$GO_INSTALL_DIR.tmp.$$")
	dir=$(cd "$tmp" && GOMODCACHE="$tmp/mod" GOFLAGS=-mod=mod GO111MODULE=on GOTOOLCHAIN=local \
		"$gobin" mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -n "$dir" ] && [ -f "$dir/bin/go" ] || die "download of $mod failed"
	mkdir -p "$(dirname "$GO_INSTALL_DIR")"
	cp -R "$dir" "$GO_INSTALL_DIR.tmp.$$"
	chmod -R u+w "$GO_INSTALL_DIR.tmp.$$"
	# Module zips keep no file modes: restore the executables.
	chmod 0755 "$GO_INSTALL_DIR.tmp.$$"/bin/* "$GO_INSTALL_DIR.tmp.$$"/pkg/tool/*/*
	mv "$GO_INSTALL_DIR.tmp.$$" "$GO_INSTALL_DIR"
	log "go: installed $("$GO_INSTALL_DIR/bin/go" version) in $GO_INSTALL_DIR"
}

ensure_go() {
	local want g have pkg aptv
	want=$(want_go)
	for g in $(go_candidates); do
		have=$(go_version "$g")
		if [ -n "$have" ] && version_ge "$have" "$want"; then
			log "go: $g is go$have >= go$want (go.mod), nothing to do"
			[ "$g" = "$(command -v go || true)" ] || log "go: note: put $(dirname "$g") on PATH"
			return
		fi
		log "go: $g is go${have:-?}, older than go$want (go.mod)"
	done
	pkg=$(newest_apt_go)
	[ -n "$pkg" ] || die "no golang-1.NN-go package in the apt sources; install Go >= $want from https://go.dev/dl/"
	aptv=${pkg#golang-}
	aptv=${aptv%-go}
	installed "$pkg" || apt_install "$pkg"
	g=/usr/lib/go-$aptv/bin/go
	if version_ge "$aptv" 1.21; then
		# Go >= 1.21 switches to the go.mod toolchain by itself.
		if [ ! -e "$GO_INSTALL_DIR" ]; then run ln -s "/usr/lib/go-$aptv" "$GO_INSTALL_DIR"; fi
		log "go: $pkg installed; GOTOOLCHAIN=auto fetches go$want through the module proxy"
		[ "$DRY_RUN" = 1 ] || log "go: check: $(GOTOOLCHAIN=auto "$g" version)"
		return
	fi
	log "go: newest Debian Go is $aptv (< 1.21: cannot switch toolchains)"
	install_toolchain_module "$g" "$want"
}

main() {
	cd "$(dirname "$0")/.."
	install_packages
	ensure_go
	log "done"
}

# Sourcing the script (for testing its functions) runs nothing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
