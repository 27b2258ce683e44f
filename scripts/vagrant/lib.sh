# lib.sh — helpers for the Vagrant provisioning scripts (sourced, not run).
# Every step checks before it changes anything, so provisioning again
# (`vagrant provision`) changes nothing when all is in place.

log() { printf 'loopcast-vagrant: %s\n' "$*"; }
die() { printf 'loopcast-vagrant: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (Vagrant's shell provisioner does)"
REPO=${REPO:-/vagrant}
[ -f "$REPO/go.mod" ] || die "$REPO holds no loopcast tree (is the synced folder there?)"

# put_file SRC DST MODE: install SRC as DST (atomically, with MODE) if it
# differs; returns 0 when it changed DST, 1 when DST was already the same.
put_file() {
	local src=$1 dst=$2 mode=$3
	if [ -f "$dst" ] && cmp -s "$src" "$dst" && [ "$(stat -c %a "$dst")" = "${mode#0}" ]; then
		return 1
	fi
	mkdir -p "$(dirname "$dst")"
	install -m "$mode" "$src" "$dst.tmp.$$"
	mv -f "$dst.tmp.$$" "$dst"
	log "installed $dst"
	return 0
}

# put_text DST MODE: like put_file, with the content on stdin.
put_text() {
	local dst=$1 mode=$2 tmp changed=1
	tmp=$(mktemp)
	cat >"$tmp"
	put_file "$tmp" "$dst" "$mode" && changed=0
	rm -f "$tmp"
	return $changed
}

# apt_lists: fetch the package lists if there are none (boxes ship without).
apt_lists() {
	compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null && return 0
	log "apt: no package lists, running apt-get update"
	apt-get update -qq
}

# apt_need PKG...: install the packages that are missing.
apt_need() {
	local p missing=()
	for p in "$@"; do
		[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "apt: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# private_iface ADDR: the interface holding ADDR (Vagrant's private network).
private_iface() {
	local ifc
	ifc=$(ip -o -4 addr show | awk -v a="$1" '{ split($4, p, "/"); if (p[1] == a) { print $2; exit } }')
	[ -n "$ifc" ] || die "no interface holds $1: is the private network up?"
	echo "$ifc"
}
