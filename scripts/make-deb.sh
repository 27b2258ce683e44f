#!/usr/bin/env bash
# make-deb.sh — build the Debian packages loopcast-receiver and
# loopcast-sender with Debian's own dpkg-deb, versioned from git.
#
#   scripts/make-deb.sh [OUT_DIR]      (default: dist/)
#
# loopcast-receiver: /usr/bin/receiver, its systemd unit, the agent's
# settings /etc/loopcast/receiver.env (a conffile: an upgrade keeps the
# operator's edits), the nginx, php-fpm and worker unit samples, the man
# page. loopcast-sender: /usr/bin/sender and its man page. The version is
# 0.1.0+git<commit date>.<short hash> (+dirty when the tree has changes).
# Environment: GOARCH (the build's), SOURCE_DATE_EPOCH (the commit's time).
set -euo pipefail
umask 022 # the packages' modes do not depend on the caller's
cd "$(dirname "$0")/.."
OUT=${1:-dist}
command -v dpkg-deb >/dev/null || { echo "make-deb: needs dpkg-deb (Debian's dpkg)" >&2; exit 1; }
GO=${GO:-go}
goarch=${GOARCH:-$($GO env GOARCH)}
case $goarch in # Debian's name for the architecture the binaries are for
amd64 | arm64 | s390x | riscv64) arch=$goarch ;;
386) arch=i386 ;;
arm) arch=armhf ;;
ppc64le) arch=ppc64el ;;
*) echo "make-deb: no Debian architecture for GOARCH=$goarch" >&2; exit 1 ;;
esac
if git rev-parse --git-dir >/dev/null 2>&1; then
	stamp=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S) # UTC: later commits sort later
	hash=$(git rev-parse --short=12 HEAD)
	dirty=$(git status --porcelain --untracked-files=no | grep -q . && echo +dirty || true)
	: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct)}"
else
	stamp=$(date -u +%Y%m%d%H%M%S) hash=nogit dirty=
	: "${SOURCE_DATE_EPOCH:=$(date +%s)}"
fi
export SOURCE_DATE_EPOCH
version="0.1.0+git${stamp}.${hash}${dirty}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"

build() { # build CMD -> $work/bin/CMD
	CGO_ENABLED=0 GOARCH=$goarch $GO build -trimpath -ldflags "-s -w -X main.version=$version" -o "$work/bin/$1" "./cmd/$1"
}

# pkg NAME: makes $work/NAME with DEBIAN/ and returns its root in $root
control() { # control NAME DESCRIPTION [DEPENDS] [RECOMMENDS]
	local root=$work/$1
	mkdir -p "$root/DEBIAN"
	{
		echo "Package: $1"
		echo "Version: $version"
		echo "Architecture: $arch"
		echo "Maintainer: loopcast <loopcast@localhost>"
		echo "Section: admin"
		echo "Priority: optional"
		[[ -n ${3:-} ]] && echo "Depends: $3"
		[[ -n ${4:-} ]] && echo "Recommends: $4"
		echo "Installed-Size: $(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)"
		echo "Homepage: https://github.com/loopcast/loopcast"
		echo "Description: $2"
	} >"$root/DEBIAN/control"
}

man() { # man CMD ROOT: the man page, from a binary for this machine
	mkdir -p "$2/usr/share/man/man8"
	local bin=$work/bin/$1
	if [[ $goarch != "$($GO env GOHOSTARCH)" ]]; then # a cross build cannot run here
		bin=$work/man-$1
		CGO_ENABLED=0 $GO build -o "$bin" "./cmd/$1"
	fi
	"$bin" man | gzip -9n >"$2/usr/share/man/man8/$1.8.gz"
}

copyright() { # copyright PKG ROOT
	printf '%s\n' "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/" \
		"Upstream-Name: loopcast" "Source: https://github.com/loopcast/loopcast" "" \
		"Files: *" "Copyright: the loopcast authors" "License: see the source repository" >"$2/usr/share/doc/$1/copyright"
	chmod 0644 "$2/usr/share/doc/$1/copyright"
}

# --- loopcast-receiver ---------------------------------------------------------
build receiver
r=$work/loopcast-receiver
install -D -m 0755 "$work/bin/receiver" "$r/usr/bin/receiver"
install -d "$r/lib/systemd/system" "$r/etc/loopcast" "$r/usr/share/doc/loopcast-receiver/examples"
sed 's|/usr/local/bin/receiver|/usr/bin/receiver|g' packaging/loopcast-receiver.service >"$r/lib/systemd/system/loopcast-receiver.service"
sed 's|/usr/local/bin/receiver|/usr/bin/receiver|g' packaging/app-worker@.service >"$r/usr/share/doc/loopcast-receiver/examples/app-worker@.service"
install -m 0644 packaging/receiver.env "$r/etc/loopcast/receiver.env"
install -m 0644 packaging/nginx-loopcast.conf packaging/php-fpm-loopcast.conf "$r/usr/share/doc/loopcast-receiver/examples/"
install -m 0644 README.md "$r/usr/share/doc/loopcast-receiver/README.md"
copyright loopcast-receiver "$r"
man receiver "$r"
chmod 0644 "$r/lib/systemd/system/loopcast-receiver.service" "$r/usr/share/doc/loopcast-receiver/examples/app-worker@.service"
control loopcast-receiver "loopcast agent: receives, verifies, stages and switches releases
 Joins the loopcast multicast group, verifies every chunk of a release
 image against its signed manifest, loop-mounts it read-only and switches
 the current symlink nginx serves through \$realpath_root, on the
 sender's signed commands. Set LOOPCAST_TRUST in /etc/loopcast/receiver.env,
 then: systemctl enable --now loopcast-receiver; receiver doctor checks the
 host." "" "nginx, php-fpm"
echo /etc/loopcast/receiver.env >"$r/DEBIAN/conffiles"
cat >"$r/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
# an install into another root (dpkg --root) touches no running system
[ -z "${DPKG_ROOT:-}" ] || exit 0
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
	# started once its trusted release key is set (receiver.env), not before
	if systemctl is-enabled --quiet loopcast-receiver 2>/dev/null; then
		systemctl try-restart loopcast-receiver >/dev/null || true
	fi
fi
exit 0
SH
cat >"$r/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
# an install into another root (dpkg --root) touches no running system
[ -z "${DPKG_ROOT:-}" ] || exit 0
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop loopcast-receiver >/dev/null 2>&1 || true
fi
exit 0
SH
cat >"$r/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
# an install into another root (dpkg --root) touches no running system
[ -z "${DPKG_ROOT:-}" ] || exit 0
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
SH
chmod 0755 "$r/DEBIAN/postinst" "$r/DEBIAN/prerm" "$r/DEBIAN/postrm"

# --- loopcast-sender -----------------------------------------------------------
build sender
s=$work/loopcast-sender
install -D -m 0755 "$work/bin/sender" "$s/usr/bin/sender"
install -d "$s/var/lib/loopcast" "$s/usr/share/doc/loopcast-sender"
install -m 0644 README.md "$s/usr/share/doc/loopcast-sender/README.md"
copyright loopcast-sender "$s"
man sender "$s"
control loopcast-sender "loopcast sender: builds and multicasts release images to a web fleet
 Packs a code tree into a deterministic ext2 image with a signed manifest,
 multicasts it to every host at once with NACK and parity repair, and
 switches the hosts atomically (canary waves and health gates optional)."

for p in loopcast-receiver loopcast-sender; do
	find "$work/$p" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	dpkg-deb --root-owner-group -Zxz --build "$work/$p" "$OUT/${p}_${version}_${arch}.deb" >/dev/null
	echo "$OUT/${p}_${version}_${arch}.deb"
done
