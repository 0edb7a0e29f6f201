#!/usr/bin/env bash
# Idempotent installation of the lab's real parts, from Debian's mirror only.
# Everything is installed through a private apt source list (bookworm + bookworm-backports) with
# its own lists directory under $GBO_LAB_CACHE, so /etc/apt is never touched.
#   lab/install.sh [EXTRA_PACKAGE...]   (scripts/test.sh adds chromium for the Web UI test)
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"

PKGS=(lxd nftables iptables openssh-server openssh-client rsync caddy nsd busybox-static
      dnsmasq-base bind9-dnsutils curl ca-certificates pebble "$@")
BPO_PKGS=(incus-base incus-client)

missing=()
for p in "${PKGS[@]}" "${BPO_PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ] && [ -x /usr/libexec/incus/incusd ] && command -v lxd >/dev/null; then
  log "install: all packages present"
  exit 0
fi
log "install: missing ${missing[*]}"

APT_DIR="$GBO_LAB_CACHE/apt"
mkdir -p "$APT_DIR/lists/partial"
MIRROR="${GBO_LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SEC_MIRROR="${GBO_LAB_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
cat > "$APT_DIR/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $MIRROR bookworm-backports main
deb $SEC_MIRROR bookworm-security main
SRC
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$APT_DIR/lists" -o "APT::Get::List-Cleanup=0")

# Refresh the private lists when missing or older than a day.
if [ -z "$(find "$APT_DIR/lists" -maxdepth 1 -name '*backports*Packages*' -mmin -1440 2>/dev/null)" ]; then
  log "install: apt-get update (private lists)"
  apt-get "${APT_OPTS[@]}" update -qq
fi

# Never let package scripts start daemons (there is no init system; the lab starts its own).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
fi
trap 'if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends -t bookworm-backports "${BPO_PKGS[@]}" >/dev/null
log "install: done"
