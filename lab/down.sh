#!/usr/bin/env bash
# lab:down — removes everything lab:up created: containers, daemons, sshd, netns, links, the
# daemons' nft/iptables tables, mounts under the lab root, and the lab root itself. Idempotent.
# The package installs and the image cache ($GBO_LAB_CACHE) are kept: they are not lab state.
set -uo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"
. "$LAB_DIR/shop.sh"
. "$LAB_DIR/acme-ca.sh"
[ "$(id -u)" = 0 ] || die "lab:down needs root"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pid() { # pidfile: TERM, wait up to 5 s, KILL
  local f=$1 pid i
  [ -s "$f" ] || return 0
  pid=$(cat "$f"); kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; return 0
}

# Containers and daemons, both hosts in parallel. Force-stop the instances (the lab's data is
# deleted anyway), ask the daemons to shut down; their pidfiles are the fallback.
teardown_dst() {
  if alive "$DST_DIR/run/incusd.pid"; then
    timeout 60 incus stop --all --force >/dev/null 2>&1
    timeout 30 /usr/libexec/incus/incusd shutdown --timeout 20 >/dev/null 2>&1
  fi
  stop_pid "$DST_DIR/run/incusd.pid"
  stop_pid "$DST_DIR/run/sshd.pid"
}
teardown_src() {
  if alive "$SRC_DIR/run/lxd.pid"; then
    timeout 60 lxc stop --all --force >/dev/null 2>&1
    timeout 30 lxd shutdown --timeout 20 >/dev/null 2>&1
  fi
  stop_pid "$SRC_DIR/run/lxd.pid"
  stop_pid "$SRC_DIR/run/sshd.pid"
}
log "stopping instances, daemons and sshd on both hosts, the external DNS and the ACME CA (pebble, front)"
teardown_dst & teardown_src & stop_pid "$EXTDNS_DIR/nsd.pid" & stop_pid "$ACME_DIR/front.pid" & stop_pid "$ACME_DIR/pebble.pid" & wait
log "daemons stopped ($(elapsed) s)"

# Leftover processes: anything inside the destination's netns, and anything whose command line
# names the lab root (dnsmasq and forkproxy of the daemons' networks and devices, pebble and the
# ACME front if their pidfiles are gone).
pids=()
for ns in "$NETNS" "$EXTDNS_NETNS"; do
  if [ -e "/run/netns/$ns" ]; then pids+=($(ip netns pids "$ns" 2>/dev/null)); fi
done
if [ -n "$GBO_LAB_ROOT" ] && [ "$GBO_LAB_ROOT" != / ]; then
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" = "$$" ] && continue
    if tr '\0' ' ' 2>/dev/null < "$d/cmdline" | grep -qF -- "$GBO_LAB_ROOT/"; then pids+=("${d#/proc/}"); fi
  done
fi
if [ "${#pids[@]}" -gt 0 ]; then
  log "killing leftover lab processes: ${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null; sleep 0.5; kill -KILL "${pids[@]}" 2>/dev/null
fi

# Network: the netns takes incusbr0, the veth peer and the destination's nft/iptables with it.
ip netns del "$NETNS" 2>/dev/null
ip netns del "$SRC_FW_NETNS" 2>/dev/null
ip netns del "$EXTDNS_NETNS" 2>/dev/null
# The route to the destination's bridge (lab:up) goes with the veth; deleted first all the same.
ip route del "$DST_SUBNET" via "$DST_ADDR" 2>/dev/null
ip link del "$VETH_SRC" 2>/dev/null
ip link del "$EXTDNS_VETH" 2>/dev/null
ip link del "$SRC_BRIDGE" 2>/dev/null
for t in "inet lxd" "ip lxd" "ip6 lxd" "bridge lxd"; do nft delete table $t 2>/dev/null; done
# xtables fallback rules carry LXD's comment "generated for LXD network lxdbr-gbo".
for tool in iptables ip6tables; do
  for table in filter nat mangle; do
    command -v $tool >/dev/null || continue
    $tool -t $table -S 2>/dev/null | grep -F "LXD network $SRC_BRIDGE" | sed 's/^-A /-D /' | while read -r rule; do
      eval "$tool -t $table $rule" 2>/dev/null
    done
  done
done

# Mounts under the lab root (deepest first), then the lab root.
if [ -n "$GBO_LAB_ROOT" ] && [ "$GBO_LAB_ROOT" != / ]; then
  for m in $(awk -v r="$GBO_LAB_ROOT" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null
  done
  rm -rf --one-file-system "$GBO_LAB_ROOT"
  # liblxc's lock directories for the lab's containers; then the runtime dirs, only if empty.
  rm -rf "/run/lxc/lock$GBO_LAB_ROOT"
  d="/run/lxc/lock$(dirname "$GBO_LAB_ROOT")"
  while [ "$d" != /run ] && rmdir "$d" 2>/dev/null; do d=$(dirname "$d"); done
fi
# `ip netns add` made /run/netns a mount point; undo that when no namespace is left in it.
if [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then umount /run/netns 2>/dev/null; rmdir /run/netns 2>/dev/null; fi
echo "lab:down: done in $(elapsed) s"
