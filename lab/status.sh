#!/usr/bin/env bash
# lab:status — what of the lab is up. Exit 0 only when everything is: network, both sshd (key
# login with the pinned host keys), LXD, Incus, the ten containers RUNNING, every seeded service
# answering, Caddy answering for its vhosts (HTTP: the source's Caddy has no certificates, see
# up.sh), the shop tenant and its external DNS, the ACME CA (pebble, the front). `--quiet` prints
# nothing and stops at the first thing down.
set -uo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"
. "$LAB_DIR/shop.sh"
. "$LAB_DIR/acme-ca.sh"
QUIET=0; [ "${1:-}" = --quiet ] && QUIET=1
ok=0; bad=0
say() { [ "$QUIET" = 1 ] || printf '%s\n' "$*"; }
check() { # description command...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then ok=$((ok + 1)); say "  ok    $what"; else bad=$((bad + 1)); say "  DOWN  $what"
    # --quiet (lab:up's "is it up?") stops at the first thing down: a lab a migration changed
    # would otherwise cost a timeout per missing port and vhost (about a minute).
    [ "$QUIET" = 1 ] && exit 1
  fi
}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
tcp_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
lab_ssh() { timeout 10 ssh -i "$LAB_KEY" -o BatchMode=yes -o UserKnownHostsFile="$LAB_KNOWN_HOSTS" \
  -o StrictHostKeyChecking=yes -o ConnectTimeout=3 -p "$SSH_PORT" "root@$1" "${@:2}"; }

[ -d "$GBO_LAB_ROOT" ] || { say "lab root $GBO_LAB_ROOT absent: the lab is down"; exit 1; }
say "gbo-lab at $GBO_LAB_ROOT"
say "network"
check "netns $NETNS" test -e "/run/netns/$NETNS"
check "source firewall rule set (netns $SRC_FW_NETNS)" test -e "/run/netns/$SRC_FW_NETNS"
check "veth $VETH_SRC $SRC_ADDR" bash -c "ip -4 addr show dev $VETH_SRC | grep -q 'inet $SRC_ADDR/'"
check "veth $VETH_DST $DST_ADDR (in $NETNS)" bash -c "ip netns exec $NETNS ip -4 addr show dev $VETH_DST | grep -q 'inet $DST_ADDR/'"
check "$DST_ADDR:$SSH_PORT reachable" tcp_open "$DST_ADDR" "$SSH_PORT"
check "route to the destination bridge $DST_SUBNET via $DST_ADDR" bash -c "ip -4 route show $DST_SUBNET | grep -q 'via $DST_ADDR dev $VETH_SRC'"
say "ACME CA (pebble behind the lab's front)"
pebble_up() { acme_alive "$ACME_DIR/pebble.pid" && curl -fsS -m 2 --cacert "$ACME_DIR/lab-ca.pem" -o /dev/null "https://$PEBBLE_ADDR:$PEBBLE_PORT/dir"; }
root_current() { curl -fsS -m 2 --cacert "$ACME_DIR/lab-ca.pem" "https://$PEBBLE_ADDR:$PEBBLE_MGMT_PORT/roots/0" | cmp -s - "$ACME_DIR/root.pem"; }
check "pebble (pid $(cat "$ACME_DIR/pebble.pid" 2>/dev/null)) on $PEBBLE_ADDR:$PEBBLE_PORT" pebble_up
check "  root.pem is pebble's root of this start" root_current
check "front (pid $(cat "$ACME_DIR/front.pid" 2>/dev/null)) on $ACME_DIRECTORY" acme_alive "$ACME_DIR/front.pid"
check "  directory through the front (lab CA), URLs pointing at the front" acme_directory_ok
w=$(acme_window)
say "  rate limit: ${w:+active until $w}${w:-none} ($ACME_WINDOW_FILE)"
say "source host $SRC_ADDR"
check "sshd (pid $(cat "$SRC_DIR/run/sshd.pid" 2>/dev/null))" alive "$SRC_DIR/run/sshd.pid"
check "ssh root@$SRC_ADDR with the lab key" lab_ssh "$SRC_ADDR" true
check "LXD daemon (pid $(cat "$SRC_DIR/run/lxd.pid" 2>/dev/null))" alive "$SRC_DIR/run/lxd.pid"
check "LXD API $SRC_ADDR:$LXD_API_PORT" tcp_open "$SRC_ADDR" "$LXD_API_PORT"
check "bridge $SRC_BRIDGE $SRC_BRIDGE_ADDR" bash -c "ip -4 addr show dev $SRC_BRIDGE | grep -q 'inet $SRC_BRIDGE_ADDR/'"
say "destination host $DST_ADDR (netns $NETNS)"
check "sshd (pid $(cat "$DST_DIR/run/sshd.pid" 2>/dev/null))" alive "$DST_DIR/run/sshd.pid"
check "ssh root@$DST_ADDR with the lab key" lab_ssh "$DST_ADDR" true
check "Incus daemon (pid $(cat "$DST_DIR/run/incusd.pid" 2>/dev/null))" alive "$DST_DIR/run/incusd.pid"
check "incus answers over ssh" lab_ssh "$DST_ADDR" incus list --format csv
check "bridge $DST_BRIDGE $DST_BRIDGE_ADDR (in $NETNS)" bash -c "ip netns exec $NETNS ip -4 addr show dev $DST_BRIDGE | grep -q 'inet $DST_BRIDGE_ADDR/'"
say "containers on the source"
states="$(timeout 10 lxc list --format csv -c ns 2>/dev/null)"
for c in "${CONTAINERS[@]}"; do
  n="$GBO_LAB_TENANT-$c"
  check "$n RUNNING $(c_ip "$c")" grep -qx "$n,RUNNING" <<<"$states"
  for e in ${C_PORTS[$c]}; do
    IFS=: read -r port kind svc <<<"$e"
    if [ "$kind" = dns ]; then
      check "  $svc udp/$port (SOA $GBO_LAB_ZONE)" bash -c "dig +time=1 +tries=1 +short @$(c_ip "$c") $GBO_LAB_ZONE SOA | grep -q ns1"
      check "  $svc tcp/$port" tcp_open "$(c_ip "$c")" "$port"
    else
      check "  $svc tcp/$port" tcp_open "$(c_ip "$c")" "$port"
    fi
  done
done
say "caddy vhosts"
for v in "${VHOSTS[@]}"; do
  name=${v%% *}; target=${v#* }
  if [ "$name" = "@" ]; then host=$GBO_LAB_ZONE; else host=$name.$GBO_LAB_ZONE; fi
  check "  http://$host -> $target" bash -c "curl -fsS -m 2 -H 'Host: $host' http://$(c_ip proxy)/ | grep -q '$GBO_LAB_TENANT-${target%%:*} .* ${target#*:}'"
done
say "tenant $SHOP_TENANT on the source"
for c in "${SHOP_CONTAINERS[@]}"; do
  check "$c RUNNING $(shop_ip "$c") (-> ${SHOP_DEST[$c]})" grep -qx "$c,RUNNING" <<<"$states"
  for e in ${SHOP_PORTS[$c]}; do
    IFS=: read -r port proto kind svc <<<"$e"
    if [ "$proto" = udp ]; then
      check "  $svc udp/$port (answers '$SHOP_UDP_SEND')" bash -c "$(declare -f udp_ask); udp_ask $(shop_ip "$c") $port '$SHOP_UDP_SEND' | grep -qF '$SHOP_UDP_EXPECT'"
    else
      check "  $svc tcp/$port" tcp_open "$(shop_ip "$c")" "$port"
    fi
  done
done
check "shop manifest $SHOP_MANIFEST" test -s "$SHOP_MANIFEST"
say "external DNS of $SHOP_ZONE (netns $EXTDNS_NETNS)"
check "NSD (pid $(cat "$EXTDNS_DIR/nsd.pid" 2>/dev/null))" alive "$EXTDNS_DIR/nsd.pid"
check "  www.$SHOP_ZONE A over UDP at $EXTDNS_ADDR" bash -c "dig +time=1 +tries=1 +short @$EXTDNS_ADDR www.$SHOP_ZONE A | grep -q ."
check "plan $PLAN_FILE" test -s "$PLAN_FILE"
check "plan $SHOP_PLAN_FILE" test -s "$SHOP_PLAN_FILE"
say "$ok ok, $bad down"
[ "$bad" = 0 ]
