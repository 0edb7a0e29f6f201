#!/usr/bin/env bash
# lab:up — a real LXD source host and a real Incus destination host on this machine, with the
# seeded pragmatismo tenant on the source. Idempotent: a complete lab is left as it is; a partial
# one is torn down (lab/down.sh) and rebuilt. See docs/lab.md.
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"
. "$LAB_DIR/shop.sh"
. "$LAB_DIR/acme-ca.sh"
[ "$(id -u)" = 0 ] || die "lab:up needs root (network namespaces, LXD, Incus)"
# The daemons inherit the working directory: a checkout deleted later would leave them in a
# directory that no longer exists (their rsync then fails with "getcwd(): No such file").
cd /
case "$GBO_LAB_ROOT" in /*) ;; *) die "GBO_LAB_ROOT must be absolute" ;; esac
[[ "$GBO_LAB_ROOT" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "GBO_LAB_ROOT: letters, digits, . _ - / only (it ends up in the plan)"
[[ "$GBO_LAB_DATA_MB" =~ ^[0-9]+$ ]] || die "GBO_LAB_DATA_MB must be a number of MB"

bash "$LAB_DIR/install.sh"

# A lab built by other scripts or with other parameters is rebuilt.
PARAMS="data_mb=$GBO_LAB_DATA_MB zone=$GBO_LAB_ZONE scripts=$(cat "$LAB_DIR"/*.sh "$LAB_DIR"/*.mjs "$LAB_DIR"/image/* | sha256sum | cut -c1-12)"
if [ "$(cat "$GBO_LAB_ROOT/params" 2>/dev/null)" = "$PARAMS" ] && bash "$LAB_DIR/status.sh" --quiet; then
  log "lab already up (plan: $PLAN_FILE)"
  echo "lab:up: already up in $(elapsed) s"
  exit 0
fi
if [ -e "$GBO_LAB_ROOT" ] || ip netns list | grep -qwE "$NETNS|$SRC_FW_NETNS|$EXTDNS_NETNS" || ip link show "$VETH_SRC" >/dev/null 2>&1 \
   || ip link show "$SRC_BRIDGE" >/dev/null 2>&1 || ip link show "$EXTDNS_VETH" >/dev/null 2>&1; then
  log "a lab exists but is not fully up with these parameters ($PARAMS): tearing it down first"
  bash "$LAB_DIR/down.sh" >/dev/null
fi

# ---------------------------------------------------------------- network
log "network: veth $VETH_SRC $SRC_ADDR <-> netns $NETNS $VETH_DST $DST_ADDR"
mkdir -p "$GBO_LAB_ROOT" "$SRC_DIR/run" "$SRC_DIR/log" "$DST_DIR/run" "$DST_DIR/log"
chmod 755 "$GBO_LAB_ROOT"
ip netns add "$NETNS"
ip link add "$VETH_SRC" type veth peer name "$VETH_DST" netns "$NETNS"
ip addr add "$SRC_ADDR/30" dev "$VETH_SRC"
ip link set "$VETH_SRC" up
in_dst ip link set lo up
in_dst ip addr add "$DST_ADDR/30" dev "$VETH_DST"
in_dst ip link set "$VETH_DST" up
# The destination forwards NATed traffic to its containers (the guide's ip_forward=1).
in_dst sysctl -qw net.ipv4.ip_forward=1
# The way back from the source host (where the lab's ACME CA listens) to the destination's
# containers: their bridge has no NAT, so Caddy in a migrated proxy container reaches the CA with
# its own 198.18.32.x address, and the answers need this route (the lab's stand-in for the
# internet between a production destination and Let's Encrypt). Without it they would leave by
# this machine's default route.
ip route add "$DST_SUBNET" via "$DST_ADDR" dev "$VETH_SRC"
# The source host's firewall rule set (see lib.sh): what a migration does to the source's
# iptables lands there, never in this machine's own chains.
ip netns add "$SRC_FW_NETNS"
ip netns exec "$SRC_FW_NETNS" ip link set lo up
mkdir -p "$SRC_BIN"
for tool in iptables iptables-save iptables-restore; do
  printf '#!/bin/sh\n# The lab source host'"'"'s firewall: its own rule set (netns %s).\nexec ip netns exec %s /usr/sbin/%s "$@"\n' \
    "$SRC_FW_NETNS" "$SRC_FW_NETNS" "$tool" > "$SRC_BIN/$tool"
  chmod 755 "$SRC_BIN/$tool"
done
grep -E ' /sys/fs/cgroup' /proc/self/mounts > "$DST_DIR/host-mounts"
# The shop tenant's external DNS (its provider): NSD in netns $EXTDNS_NETNS on $EXTDNS_ADDR.
log "external DNS for $SHOP_ZONE: NSD in netns $EXTDNS_NETNS on $EXTDNS_ADDR (veth $EXTDNS_VETH $EXTDNS_GW)"
extdns_start

# ---------------------------------------------------------------- daemons (start early, in parallel)
mkdir -p "$LXD_DIR" "$INCUS_DIR" "$LXD_CONF" "$INCUS_CONF"
chmod 711 "$LXD_DIR" "$INCUS_DIR"
log "starting LXD (LXD_DIR=$LXD_DIR) and Incus in $NETNS (INCUS_DIR=$INCUS_DIR)"
# Each host sees only its own tree: the source's daemons get an empty tmpfs over $DST_DIR, the
# destination's over $SRC_DIR; neither sees the worker's private key ($GBO_LAB_ROOT/ssh).
SRC_HIDE="$DST_DIR:$GBO_LAB_ROOT/ssh"
DST_HIDE="$SRC_DIR:$GBO_LAB_ROOT/ssh"
on_src() { unshare -m --propagation slave sh "$LAB_DIR/host-exec.sh" "$DST_DIR/host-mounts" "$SRC_HIDE" "$@"; }
on_dst() { ip netns exec "$NETNS" sh "$LAB_DIR/host-exec.sh" "$DST_DIR/host-mounts" "$DST_HIDE" "$@"; }
setsid unshare -m --propagation slave sh "$LAB_DIR/host-exec.sh" "$DST_DIR/host-mounts" "$SRC_HIDE" \
  lxd --group lxd --logfile "$SRC_DIR/log/lxd.log" </dev/null >>"$SRC_DIR/log/lxd.out" 2>&1 &
echo $! > "$SRC_DIR/run/lxd.pid"
setsid ip netns exec "$NETNS" sh "$LAB_DIR/host-exec.sh" "$DST_DIR/host-mounts" "$DST_HIDE" \
  /usr/libexec/incus/incusd --group incus-admin --logfile "$DST_DIR/log/incusd.log" \
  </dev/null >>"$DST_DIR/log/incusd.out" 2>&1 &
echo $! > "$DST_DIR/run/incusd.pid"

# The lab's ACME CA (lab/acme-ca.sh), while the daemons start: the lab CA (the proxy's data below
# carries it), pebble (about 1 s: it makes its root and intermediate) and the front, each checked.
log "ACME CA: pebble on $PEBBLE_ADDR:$PEBBLE_PORT (VA resolves via $DST_ADDR:53), front $ACME_DIRECTORY"
acme_make_ca
acme_start

# ---------------------------------------------------------------- SSH: keys, known_hosts, two sshd
log "ssh: lab key $LAB_KEY, known_hosts $LAB_KNOWN_HOSTS"
mkdir -p "$GBO_LAB_ROOT/ssh" "$SRC_DIR/ssh" "$DST_DIR/ssh" "$SRC_HOME/.ssh" "$DST_HOME/.ssh" /run/sshd
chmod 700 "$GBO_LAB_ROOT/ssh" "$SRC_DIR/ssh" "$DST_DIR/ssh" "$SRC_HOME/.ssh" "$DST_HOME/.ssh"
chmod 755 /run/sshd
ssh-keygen -q -t ed25519 -N '' -C gbo-lab-worker -f "$LAB_KEY"
ssh-keygen -q -t ed25519 -N '' -C gbo-lab-source-host -f "$SRC_DIR/ssh/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C gbo-lab-destination-host -f "$DST_DIR/ssh/ssh_host_ed25519_key"
# The destination's own key for its rsync pull from the source; NOT authorized on the source
# (preflight does that, as the guide's prerequisite 2).
ssh-keygen -q -t ed25519 -N '' -C root@gbo-lab-destination -f "$PULL_KEY"
install -m 600 "$LAB_KEY.pub" "$SRC_HOME/.ssh/authorized_keys"
install -m 600 "$LAB_KEY.pub" "$DST_HOME/.ssh/authorized_keys"
{
  echo "$SRC_ADDR $(cut -d' ' -f1,2 "$SRC_DIR/ssh/ssh_host_ed25519_key.pub")"
  echo "$DST_ADDR $(cut -d' ' -f1,2 "$DST_DIR/ssh/ssh_host_ed25519_key.pub")"
} > "$LAB_KNOWN_HOSTS"
chmod 644 "$LAB_KNOWN_HOSTS"
write_sshd_config() { # dir address home env...
  local dir=$1 addr=$2 home=$3; shift 3
  cat > "$dir/ssh/sshd_config" <<CFG
# gbo-lab sshd ($dir)
ListenAddress $addr:$SSH_PORT
HostKey $dir/ssh/ssh_host_ed25519_key
PidFile $dir/run/sshd.pid
AuthorizedKeysFile $home/.ssh/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment no
X11Forwarding no
PrintMotd no
MaxSessions 64
MaxStartups 64:30:128
LogLevel VERBOSE
SetEnv HOME=$home $*
Subsystem sftp /usr/lib/openssh/sftp-server
CFG
}
write_sshd_config "$SRC_DIR" "$SRC_ADDR" "$SRC_HOME" "LXD_DIR=$LXD_DIR" "LXD_CONF=$LXD_CONF" "PATH=$SRC_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
write_sshd_config "$DST_DIR" "$DST_ADDR" "$DST_HOME" "INCUS_DIR=$INCUS_DIR" "INCUS_CONF=$INCUS_CONF"
/usr/sbin/sshd -t -f "$SRC_DIR/ssh/sshd_config"
on_src /usr/sbin/sshd -f "$SRC_DIR/ssh/sshd_config" -E "$SRC_DIR/log/sshd.log"
on_dst /usr/sbin/sshd -f "$DST_DIR/ssh/sshd_config" -E "$DST_DIR/log/sshd.log"

# ---------------------------------------------------------------- seeded data (host side)
gen_file() { # path bytes
  local f=$1 n=$2
  mkdir -p "$(dirname "$f")"
  if [ "$n" -gt 0 ]; then head -c "$n" /dev/urandom > "$f"; else : > "$f"; fi
}
gen_data() {
  local total=$((GBO_LAB_DATA_MB * 1024 * 1024)) c d dirs ndirs share per i chunk left
  mkdir -p "$SRC_DATA"; chmod 755 "$SRC_DIR" "$SRC_DIR/opt" "$SRC_DATA"
  for c in "${CONTAINERS[@]}"; do
    dirs=(${C_DIRS[$c]}); ndirs=${#dirs[@]}
    share=$((total * C_WEIGHT[$c] / 100))
    for d in "${dirs[@]}"; do
      mkdir -p "$SRC_DATA/$c/$d"
      # A few small files, then blobs of at most 32 MB carrying the dir's share of the bytes.
      for i in 1 2 3; do
        printf 'gbo-lab %s/%s file %s\ncreated %s\n' "$c" "$d" "$i" "$(date -u +%FT%TZ)" > "$SRC_DATA/$c/$d/note-$i.txt"
      done
      mkdir -p "$SRC_DATA/$c/$d/nested/deeper"
      gen_file "$SRC_DATA/$c/$d/nested/deeper/small.bin" 4096
      per=$((share / ndirs)); i=0; left=$per
      while [ "$left" -gt 0 ]; do
        chunk=$(( left > 33554432 ? 33554432 : left ))
        gen_file "$SRC_DATA/$c/$d/blob-$(printf %03d $i).bin" "$chunk"
        left=$((left - chunk)); i=$((i + 1))
      done
    done
  done
  # Files the guide and the plan name.
  printf '#!/bin/sh\necho "botserver (gbo-lab stand-in)"\n' > "$SRC_DATA/system/bin/botserver"
  chmod 755 "$SRC_DATA/system/bin/botserver"
  cat > "$SRC_DATA/system/conf/botserver.env" <<ENV
DATABASE_URL=postgres://gbuser@$(c_ip tables):5432/botserver
BOTSERVER_PORT=5858
ENV
  mkdir -p "$SRC_DATA/system/botserver-stack/bin/vault"
  printf '#!/bin/sh\necho "vault (gbo-lab stand-in)"\n' > "$SRC_DATA/system/botserver-stack/bin/vault/vault"
  chmod 755 "$SRC_DATA/system/botserver-stack/bin/vault/vault"
  echo 15 > "$SRC_DATA/tables/pgdata/PG_VERSION"
  printf "listen_addresses = '*'\nport = 5432\n" > "$SRC_DATA/tables/pgconf/postgresql.conf"
  mkdir -p "$SRC_DATA/proxy/data/caddy"
  # The lab CA in the proxy's own data (it names the ACME front's certificate), so the migration
  # copies it along with the Caddyfile that points at it.
  install -m 644 "$ACME_DIR/lab-ca.pem" "$SRC_DATA/proxy/conf/acme-ca.pem"
  write_caddyfile > "$SRC_DATA/proxy/conf/config"
  caddy fmt --overwrite "$SRC_DATA/proxy/conf/config"
  write_zone > "$SRC_DATA/dns/data/$GBO_LAB_ZONE.zone"
  write_nsd_conf > "$SRC_DATA/dns/conf/nsd.conf"
  mkdir -p "$SRC_DATA/dns/data/nsd"
}
write_caddyfile() {
  local v name target host
  cat <<CADDY
# Caddyfile of the gbo-lab proxy container ($GBO_LAB_TENANT). Upstreams are the SOURCE
# containers' addresses on $SRC_BRIDGE ($SRC_SUBNET); the migration must rewrite them.
# Certificates come from the lab's ACME CA (pebble behind the lab's front, which can play a
# rate limit) with real validation through the names' DNS: the names point at the destination
# only after the migration's DNS cutover, so until then Caddy logs failed attempts and backs off.
{
	admin localhost:2019
	storage file_system {
		root /opt/gbo/data/caddy
	}
	acme_ca $ACME_DIRECTORY
	acme_ca_root $ACME_PROXY_CA
	skip_install_trust
	log {
		output file /opt/gbo/logs/caddy.log
		format json
	}
}

CADDY
  for v in "${VHOSTS[@]}"; do
    name=${v%% *}; target=${v#* }
    if [ "$name" = "@" ]; then host=$GBO_LAB_ZONE; else host=$name.$GBO_LAB_ZONE; fi
    printf 'http://%s, https://%s {\n\treverse_proxy %s:%s\n}\n\n' "$host" "$host" "$(c_ip "${target%%:*}")" "${target#*:}"
  done
}
write_zone() {
  cat <<ZONE
; $GBO_LAB_ZONE — the lab tenant's zone, served by NSD in $GBO_LAB_TENANT-dns.
; Records point at the SOURCE host ($SRC_ADDR); the cutover changes them to the destination.
\$ORIGIN $GBO_LAB_ZONE.
\$TTL 30
@       IN SOA ns1.$GBO_LAB_ZONE. hostmaster.$GBO_LAB_ZONE. ( 2026010101 3600 600 604800 30 )
@       IN NS  ns1.$GBO_LAB_ZONE.
@       IN NS  ns2.$GBO_LAB_ZONE.
@       IN A   $SRC_ADDR
ns1     IN A   $SRC_ADDR
ns2     IN A   $SRC_ADDR
*       IN A   $SRC_ADDR
ZONE
}
write_nsd_conf() {
  cat <<NSD
# NSD of the gbo-lab dns container: the zone file lives under /opt/gbo/data.
server:
	ip-address: 0.0.0.0
	do-ip6: no
	port: 53
	username: ""
	chroot: ""
	database: ""
	zonesdir: "/opt/gbo/data"
	pidfile: "/run/nsd.pid"
	xfrdfile: "/opt/gbo/data/nsd/xfrd.state"
	zonelistfile: "/opt/gbo/data/nsd/zone.list"
	xfrdir: "/tmp"
	logfile: "/opt/gbo/logs/nsd.log"
	server-count: 1
	verbosity: 1
remote-control:
	control-enable: no
zone:
	name: $GBO_LAB_ZONE
	zonefile: "/opt/gbo/data/$GBO_LAB_ZONE.zone"
NSD
}
write_services() { # container -> /etc/gbo/services (run by the image's init)
  local c=$1 e port kind svc
  echo '#!/bin/sh'
  echo "# services of $GBO_LAB_TENANT-$c (generated by lab/up.sh)"
  echo 'mkdir -p /srv/www /etc/gbo/banners'
  for e in ${C_PORTS[$c]}; do
    IFS=: read -r port kind svc <<<"$e"
    case $kind in
      http)
        echo "mkdir -p /srv/www/$port && echo '$GBO_LAB_TENANT-$c $svc $port' > /srv/www/$port/index.html"
        echo "httpd -p $port -h /srv/www/$port"
        ;;
      tcp)
        printf "printf '#!/bin/sh\\\\necho \"%s\"\\\\n' > /etc/gbo/banners/%s && chmod 755 /etc/gbo/banners/%s\n" \
          "$GBO_LAB_TENANT-$c $svc $port ready" "$port" "$port"
        echo "nc -ll -p $port -e /etc/gbo/banners/$port >/dev/null 2>&1 &"
        ;;
    esac
  done
  # Caddy and NSD are supervised like systemd's Restart=always: (re)started while not running
  # and their config exists (on the destination the data arrives after the first start); Caddy
  # within 0.2 s of stopping, as systemd's RestartSec would (the certificate wait restarts it).
  case $c in
    proxy)
      cat <<'SVC'
mkdir -p /root/.config /root/.local/share
(
  while :; do
    if ! pidof caddy >/dev/null && [ -s /opt/gbo/conf/config ]; then
      caddy run --config /opt/gbo/conf/config --adapter caddyfile >> /var/log/caddy.out 2>&1
    fi
    sleep 0.2
  done
) &
SVC
      ;;
    dns)
      cat <<'SVC'
(
  while :; do
    if ! pidof nsd >/dev/null && [ -s /opt/gbo/conf/nsd.conf ]; then
      mkdir -p /opt/gbo/data/nsd
      nsd -c /opt/gbo/conf/nsd.conf >> /var/log/nsd.out 2>&1
    fi
    sleep 2
  done
) &
SVC
      ;;
  esac
}

log "data: ${GBO_LAB_DATA_MB} MB under $SRC_DATA"
gen_data
log "ACME account in the proxy's Caddy storage (registered by a throwaway Caddy, see acme-ca.sh)"
acme_register_account "$SRC_DATA/proxy/data/caddy"

# ---------------------------------------------------------------- wait for daemons, preseed
lxd waitready --timeout 60 || die "LXD did not start (see $SRC_DIR/log/lxd.log)"
/usr/libexec/incus/incusd waitready --timeout 60 2>/dev/null || incus admin waitready --timeout 60 \
  || die "Incus did not start (see $DST_DIR/log/incusd.log)"
log "daemons ready ($(elapsed) s): preseeding (fixed subnets, no NAT, no IPv6, dir pools)"
# The part both daemons share: a bridge on a fixed subnet (no NAT, no IPv6), a dir pool, and a
# default profile on that bridge. $1 bridge, $2 bridge address, $3 DHCP range.
preseed() {
  cat <<PRESEED
networks:
- name: $1
  type: bridge
  config:
    ipv4.address: $2/24
    ipv4.nat: "false"
    ipv4.dhcp.ranges: $3
    ipv6.address: none
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root: {path: /, pool: default, type: disk}
    eth0: {name: eth0, network: $1, type: nic}
PRESEED
}
{ printf 'config:\n  core.https_address: %s\n' "$SRC_ADDR:$LXD_API_PORT"; preseed "$SRC_BRIDGE" "$SRC_BRIDGE_ADDR" 198.18.16.100-198.18.16.199; } |
  lxd init --preseed >/dev/null
preseed "$DST_BRIDGE" "$DST_BRIDGE_ADDR" 198.18.32.100-198.18.32.199 | incus admin init --preseed >/dev/null

# ---------------------------------------------------------------- image and containers
tarball="$(bash "$LAB_DIR/image.sh")"
lxc image import "$tarball" --alias gbo-busybox >/dev/null
log "image imported ($(elapsed) s); creating ${#CONTAINERS[@]} containers"
SVC_DIR="$SRC_DIR/services"; mkdir -p "$SVC_DIR"
LIBS_DIR="$SRC_DIR/nsd-libs"
create_container() {
  local c=$1 n="$GBO_LAB_TENANT-$1" f
  local extra=()
  [ "$c" = system ] && extra=(-c security.privileged=true)
  lxc init gbo-busybox "$n" "${extra[@]}" >/dev/null
  lxc config device override "$n" eth0 ipv4.address="$(c_ip "$c")" >/dev/null
  # The guide's disk device: the host's /opt/gbo/<container> mounted at /opt/gbo.
  lxc config device add "$n" gbo disk source="$SRC_DATA/$c" path=/opt/gbo >/dev/null
  write_services "$c" > "$SVC_DIR/$c"
  lxc file push --mode 0755 "$SVC_DIR/$c" "$n/etc/gbo/services"
  case $c in
    proxy)
      lxc file push --mode 0755 /usr/bin/caddy "$n/usr/bin/caddy"
      for f in $(ldd /usr/bin/caddy | grep -o '/[^ ]*'); do lxc file push -p "$(readlink -f "$f")" "$n$f"; done
      # Proxy devices on the source host, as the guide had them (the migration must remove them).
      lxc config device add "$n" http proxy listen="tcp:$SRC_ADDR:80" connect=tcp:127.0.0.1:80 >/dev/null
      lxc config device add "$n" https proxy listen="tcp:$SRC_ADDR:443" connect=tcp:127.0.0.1:443 >/dev/null
      ;;
    dns)
      lxc file push --mode 0755 /usr/sbin/nsd "$n/usr/sbin/nsd"
      for f in $(ldd /usr/sbin/nsd | grep -o '/[^ ]*'); do lxc file push -p "$(readlink -f "$f")" "$n$f"; done
      ;;
    alm-ci)
      # No gbuser here: /opt/gbo belongs to root (the guide's chown fallback).
      printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$SVC_DIR/alm-ci.passwd"
      printf 'root:x:0:\nnogroup:x:65534:\n' > "$SVC_DIR/alm-ci.group"
      lxc file push "$SVC_DIR/alm-ci.passwd" "$n/etc/passwd"
      lxc file push "$SVC_DIR/alm-ci.group" "$n/etc/group"
      ;;
  esac
}
# One at a time: LXD 5.0 was seen to hang on a `config device add` with ten creations in parallel.
for c in "${CONTAINERS[@]}"; do
  create_container "$c" > "$SRC_DIR/log/create-$c.log" 2>&1 || { log "creating $c failed:"; cat "$SRC_DIR/log/create-$c.log" >&2; die "container creation failed"; }
done
log "creating the ${#SHOP_CONTAINERS[@]} containers of tenant $SHOP_TENANT ($(elapsed) s)"
for c in "${SHOP_CONTAINERS[@]}"; do
  shop_create_container "$c" > "$SRC_DIR/log/create-$c.log" 2>&1 || { log "creating $c failed:"; cat "$SRC_DIR/log/create-$c.log" >&2; die "container creation failed"; }
done

# Ownership as seen inside: gbuser (uid 1000) owns /opt/gbo, root in alm-ci. Unprivileged
# containers see host uid <idmap base>+N as N; the privileged system container sees host uids.
base="$(lxc config get "$GBO_LAB_TENANT-proxy" volatile.idmap.next | grep -o '"Hostid":[0-9]*' | head -1 | cut -d: -f2)"
[[ "$base" =~ ^[0-9]+$ ]] || die "cannot read the idmap of $GBO_LAB_TENANT-proxy"
for c in "${CONTAINERS[@]}"; do
  case $c in
    system) uid=1000 ;;
    alm-ci) uid=$base ;;
    *) uid=$((base + 1000)) ;;
  esac
  chown -R "$uid:$uid" "$SRC_DATA/$c"
done
log "data of tenant $SHOP_TENANT: owners 0, 33, 1000, 1001 (container view), modes 600-755, links"
shop_gen_data "$base"

log "manifest: $SRC_DIR/manifest.sha256"
(cd "$SRC_DATA" && find "${CONTAINERS[@]}" -type f -printf '%p\n' | LC_ALL=C sort | xargs -r -d '\n' sha256sum) > "$SRC_DIR/manifest.sha256"

# One `lxc start` of all of them has been seen to hang after every container was running (the
# client missed the operation's end): bounded, then each container is checked and started alone.
start_containers() {
  timeout 120 lxc start "$@" >/dev/null 2>&1 || log "lxc start did not return in 120 s (or failed); checking each container"
  local c running
  running=$(lxc list -c ns --format csv | awk -F, '$2 == "RUNNING" { print $1 }')
  for c in "$@"; do
    grep -qxF "$c" <<<"$running" && continue
    timeout 60 lxc start "$c" >/dev/null || die "container $c does not start (lxc start timed out or failed)"
  done
}
start_containers "${CONTAINERS[@]/#/$GBO_LAB_TENANT-}" "${SHOP_CONTAINERS[@]}"
log "containers started ($(elapsed) s); waiting for their services"

# ---------------------------------------------------------------- wait for every service
deadline=$(( $(date +%s) + 60 ))
wait_for() { # description command...
  local what=$1; shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $what"
    sleep 0.2
  done
}
tcp_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
for c in "${CONTAINERS[@]}"; do
  for e in ${C_PORTS[$c]}; do
    IFS=: read -r port kind svc <<<"$e"
    if [ "$kind" = dns ]; then
      wait_for "$c udp/$port" dig +time=1 +tries=1 +short "@$(c_ip "$c")" "$GBO_LAB_ZONE" SOA
      wait_for "$c tcp/$port" tcp_open "$(c_ip "$c")" "$port"
    else
      wait_for "$c $svc tcp/$port" tcp_open "$(c_ip "$c")" "$port"
    fi
  done
done
wait_for "Caddy vhost chat.$GBO_LAB_ZONE" curl -fsS -m 2 -H "Host: chat.$GBO_LAB_ZONE" "http://$(c_ip proxy)/"
for c in "${SHOP_CONTAINERS[@]}"; do
  for e in ${SHOP_PORTS[$c]}; do
    IFS=: read -r port proto kind svc <<<"$e"
    if [ "$proto" = udp ]; then
      wait_for "$c $svc udp/$port" bash -c "$(declare -f udp_ask); udp_ask $(shop_ip "$c") $port '$SHOP_UDP_SEND' | grep -qF '$SHOP_UDP_EXPECT'"
    else
      wait_for "$c $svc tcp/$port" tcp_open "$(shop_ip "$c")" "$port"
    fi
  done
done
wait_for "external DNS www.$SHOP_ZONE" bash -c "dig +time=1 +tries=1 +short @$EXTDNS_ADDR www.$SHOP_ZONE A | grep -qx $SRC_ADDR"

# The shop's data as its containers see it (uids after the idmap), for the tests to compare.
log "shop manifest (container view): $SHOP_MANIFEST"
for c in "${SHOP_CONTAINERS[@]}"; do
  [ -n "${SHOP_DIRS[$c]}" ] || continue
  lxc exec "$c" -- sh -s -- "${SHOP_PATH[$c]}" ${SHOP_DIRS[$c]} < "$LAB_DIR/shop-manifest.sh" | sed "s|^|${SHOP_DEST[$c]}\t|"
done > "$SHOP_MANIFEST"
[ "$(wc -l < "$SHOP_MANIFEST")" -ge "${#SHOP_ENTRIES[@]}" ] || die "shop manifest incomplete ($SHOP_MANIFEST)"

# ---------------------------------------------------------------- the lab tenant's plan
bash "$LAB_DIR/plan.sh" > "$PLAN_FILE.tmp"
mv "$PLAN_FILE.tmp" "$PLAN_FILE"
bash "$LAB_DIR/plan-shop.sh" > "$SHOP_PLAN_FILE.tmp"
mv "$SHOP_PLAN_FILE.tmp" "$SHOP_PLAN_FILE"
echo "$PARAMS" > "$GBO_LAB_ROOT/params"

cat <<SUMMARY
lab:up: done in $(elapsed) s
  source host       root@$SRC_ADDR:$SSH_PORT  (LXD $(lxd --version), API https://$SRC_ADDR:$LXD_API_PORT, bridge $SRC_BRIDGE $SRC_SUBNET)
  destination host  root@$DST_ADDR:$SSH_PORT  (netns $NETNS, Incus $(incus --version), bridge $DST_BRIDGE $DST_SUBNET)
  ssh               ssh -i $LAB_KEY -o UserKnownHostsFile=$LAB_KNOWN_HOSTS -o StrictHostKeyChecking=yes root@$SRC_ADDR
  source data       $SRC_DATA (${GBO_LAB_DATA_MB} MB, manifest $SRC_DIR/manifest.sha256)
  plan              $PLAN_FILE
  second tenant     $SHOP_TENANT: ${SHOP_CONTAINERS[*]} (manifest $SHOP_MANIFEST), plan $SHOP_PLAN_FILE
  external DNS      $SHOP_ZONE at $EXTDNS_ADDR:53 (netns $EXTDNS_NETNS); change it with: bash lab/extdns.sh set ADDRESS
  ACME CA           $ACME_DIRECTORY (front; pebble $PEBBLE_ADDR:$PEBBLE_PORT, VA DNS $DST_ADDR:53), lab CA $ACME_DIR/lab-ca.pem,
                    issued certificates chain to $ACME_DIR/root.pem; rate limit: bash lab/acme.sh rate-limit SECONDS|off
SUMMARY
