#!/usr/bin/env bash
# The operator at the shop's DNS provider: points the external zone's A records
# (@, www, voip in shop.lab) at an address and reloads the provider's server (NSD, SIGHUP).
#   bash lab/extdns.sh set 198.18.0.2    # after the cutover: the destination host
#   bash lab/extdns.sh show              # the zone file as served
# Waits (≤ 10 s) until the server answers the new address. Lab addresses only (198.18.0.0/15).
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"
. "$LAB_DIR/shop.sh"
[ "$(id -u)" = 0 ] || die "extdns: needs root (the server runs in netns $EXTDNS_NETNS)"
case "${1:-}" in
  show) cat "$EXTDNS_DIR/$SHOP_ZONE.zone" ;;
  set)
    addr=${2:-}
    [[ "$addr" =~ ^198\.1[89]\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "extdns set: a lab address (198.18.0.0/15), not '$addr'"
    [ -s "$EXTDNS_DIR/nsd.pid" ] || die "extdns: the external DNS server is not running (lab:up)"
    extdns_zone "$addr" > "$EXTDNS_DIR/$SHOP_ZONE.zone.new"
    mv "$EXTDNS_DIR/$SHOP_ZONE.zone.new" "$EXTDNS_DIR/$SHOP_ZONE.zone"
    kill -HUP "$(cat "$EXTDNS_DIR/nsd.pid")"
    for _ in $(seq 50); do
      if [ "$(dig +time=1 +tries=1 +short "@$EXTDNS_ADDR" "www.$SHOP_ZONE" A)" = "$addr" ]; then
        log "extdns: $SHOP_ZONE A records -> $addr"; exit 0
      fi
      sleep 0.2
    done
    die "extdns: $EXTDNS_ADDR still does not answer $addr for www.$SHOP_ZONE"
    ;;
  *) echo "usage: $0 set ADDRESS | show" >&2; exit 2 ;;
esac
