#!/usr/bin/env bash
# sender.sh — Vagrant provisioning for the sender VM, as root, after
# common.sh: the cluster's release key (made on the host by the Vagrantfile,
# synced to /var/lib/loopcast-vagrant/keys) becomes /etc/loopcast/release.key
# (0600) and release.pub, and the deploy command is printed.
# Environment (from the Vagrantfile): LOOPCAST_ADDR, LOOPCAST_GROUP.
set -euo pipefail
# Vagrant runs a copy of this script from /tmp: take the helpers from the tree.
. "${REPO:-/vagrant}/scripts/vagrant/lib.sh"

: "${LOOPCAST_ADDR:?set by the Vagrantfile}" "${LOOPCAST_GROUP:?set by the Vagrantfile}"
keys=/var/lib/loopcast-vagrant/keys
[ -s "$keys/release.key" ] && [ -s "$keys/release.pub" ] ||
	die "$keys holds no release.key and release.pub: the Vagrantfile's trigger makes them in .vagrant/loopcast/keys on the host; run 'vagrant rsync sender' and 'vagrant provision sender' on the host"

put_file "$keys/release.key" /etc/loopcast/release.key 0600 || true
put_file "$keys/release.pub" /etc/loopcast/release.pub 0644 || true
chmod 0755 /etc/loopcast
mkdir -p /var/lib/loopcast # sender deploy's --state-dir: lock, audit log, built images

IFACE=$(private_iface "$LOOPCAST_ADDR")
log "sender ready; deploy with:"
log "  sudo sender deploy --key /etc/loopcast/release.key --group $LOOPCAST_GROUP --iface $IFACE --hosts web1,web2,web3 /vagrant/examples/app"
