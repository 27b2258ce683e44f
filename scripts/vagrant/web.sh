#!/usr/bin/env bash
# web.sh — Vagrant provisioning for a web VM, as root, after common.sh:
# nginx and php-fpm with the repo's samples from packaging/, the trusted
# release key, /etc/loopcast/receiver.env filled in from packaging/receiver.env,
# and the agent (loopcast-receiver.service) enabled and running.
# Environment (from the Vagrantfile): LOOPCAST_HOST_ID, LOOPCAST_ADDR,
# LOOPCAST_GROUP.
set -euo pipefail
# Vagrant runs a copy of this script from /tmp: take the helpers from the tree.
. "${REPO:-/vagrant}/scripts/vagrant/lib.sh"

: "${LOOPCAST_HOST_ID:?set by the Vagrantfile}" "${LOOPCAST_ADDR:?set by the Vagrantfile}" "${LOOPCAST_GROUP:?set by the Vagrantfile}"
pkg=$REPO/packaging
trust=/var/lib/loopcast-vagrant/trust/release.pub
[ -s "$trust" ] ||
	die "$trust is missing: the Vagrantfile's trigger makes it in .vagrant/loopcast/trust on the host; run 'vagrant rsync $LOOPCAST_HOST_ID' and 'vagrant provision $LOOPCAST_HOST_ID' on the host"
IFACE=$(private_iface "$LOOPCAST_ADDR")

# --- nginx and php-fpm (Debian 12: PHP 8.2, as the samples name) --------------
apt_need nginx php-fpm
fpm=php8.2-fpm
[ -d /etc/php/8.2/fpm/pool.d ] || die "no /etc/php/8.2/fpm/pool.d: the samples in packaging/ are for Debian 12's PHP 8.2"

fpm_changed=0 nginx_changed=0 agent_changed=0
put_file "$pkg/php-fpm-loopcast.conf" /etc/php/8.2/fpm/pool.d/loopcast.conf 0644 && fpm_changed=1
put_file "$pkg/nginx-loopcast.conf" /etc/nginx/sites-available/loopcast 0644 && nginx_changed=1
if [ "$(readlink /etc/nginx/sites-enabled/loopcast 2>/dev/null)" != /etc/nginx/sites-available/loopcast ]; then
	ln -sfn /etc/nginx/sites-available/loopcast /etc/nginx/sites-enabled/loopcast
	nginx_changed=1
fi
# The sample is the default_server on :80; Debian's default site is too.
if [ -e /etc/nginx/sites-enabled/default ] || [ -L /etc/nginx/sites-enabled/default ]; then
	rm -f /etc/nginx/sites-enabled/default
	log "disabled nginx's default site"
	nginx_changed=1
fi

# --- the agent ------------------------------------------------------------------
put_file "$trust" /etc/loopcast/release.pub 0644 && agent_changed=1
# receiver.env: the sample with this VM's values.
sed -e "s|^LOOPCAST_GROUP=.*|LOOPCAST_GROUP=$LOOPCAST_GROUP|" \
	-e "s|^LOOPCAST_IFACE=.*|LOOPCAST_IFACE=$IFACE|" \
	-e "s|^LOOPCAST_HOST_ID=.*|LOOPCAST_HOST_ID=$LOOPCAST_HOST_ID|" \
	-e "s|^LOOPCAST_TRUST=.*|LOOPCAST_TRUST=/etc/loopcast/release.pub|" \
	"$pkg/receiver.env" | put_text /etc/loopcast/receiver.env 0644 && agent_changed=1
put_file "$pkg/loopcast-receiver.service" /etc/systemd/system/loopcast-receiver.service 0644 && agent_changed=1
# A new binary from common.sh also needs a restart.
bin_id=$(sha256sum /usr/local/bin/receiver | cut -d' ' -f1)
[ "$(cat /var/lib/loopcast-vagrant/receiver.running 2>/dev/null)" = "$bin_id" ] || agent_changed=1

modprobe loop 2>/dev/null || true
systemctl daemon-reload
systemctl is-enabled --quiet loopcast-receiver 2>/dev/null || systemctl enable loopcast-receiver
if [ "$agent_changed" = 1 ] || ! systemctl is-active --quiet loopcast-receiver; then
	log "agent: (re)starting loopcast-receiver"
	if ! systemctl restart loopcast-receiver; then
		journalctl -u loopcast-receiver -n 30 --no-pager >&2 || true
		die "loopcast-receiver did not start (journal above)"
	fi
	echo "$bin_id" >/var/lib/loopcast-vagrant/receiver.running
fi

# Started after the agent (the unit orders them so at boot too).
systemctl is-enabled --quiet $fpm || systemctl enable $fpm
if [ "$fpm_changed" = 1 ] || ! systemctl is-active --quiet $fpm; then
	php-fpm8.2 -t
	systemctl restart $fpm
fi
systemctl is-enabled --quiet nginx || systemctl enable nginx
if [ "$nginx_changed" = 1 ] || ! systemctl is-active --quiet nginx; then
	nginx -t
	systemctl restart nginx
fi
log "$LOOPCAST_HOST_ID ready: agent on $IFACE ($LOOPCAST_GROUP), nginx serving /srv/loopcast/current/public"
