# Shared settings of the lab scripts (sourced, not executed).
# Address plan (RFC 2544 benchmark range, lab-only; nothing is auto-detected):
#   veth gbo-src (root ns)  198.18.0.1/30  <->  veth gbo-dst0 (netns gbo-dst) 198.18.0.2/30
#   source LXD bridge  lxdbr-gbo 198.18.16.1/24 (root ns)
#   destination bridge incusbr0  198.18.32.1/24 (netns gbo-dst)
GBO_LAB_ROOT="${GBO_LAB_ROOT:-/var/lib/gbo-lab}"
GBO_LAB_CACHE="${GBO_LAB_CACHE:-/var/cache/gbo-lab}"
GBO_LAB_DATA_MB="${GBO_LAB_DATA_MB:-8}"
GBO_LAB_TENANT=pragmatismo
GBO_LAB_ZONE="${GBO_LAB_ZONE:-pragmatismo.lab}"

NETNS=gbo-dst
VETH_SRC=gbo-src
VETH_DST=gbo-dst0
SRC_ADDR=198.18.0.1
DST_ADDR=198.18.0.2
SRC_BRIDGE=lxdbr-gbo
SRC_BRIDGE_ADDR=198.18.16.1
SRC_SUBNET=198.18.16.0/24
DST_BRIDGE=incusbr0
DST_BRIDGE_ADDR=198.18.32.1
DST_SUBNET=198.18.32.0/24
SSH_PORT=22
LXD_API_PORT=8443

SRC_DIR="$GBO_LAB_ROOT/src"
DST_DIR="$GBO_LAB_ROOT/dst"
SRC_DATA="$SRC_DIR/opt/gbo"          # the source host's /opt/gbo (one folder per container)
SRC_HOME="$SRC_DIR/home"             # HOME of root on the source host (via sshd SetEnv)
DST_HOME="$DST_DIR/home"             # HOME of root on the destination host
export LXD_DIR="$SRC_DIR/lxd"
export LXD_CONF="$SRC_HOME/.config/lxc"
export INCUS_DIR="$DST_DIR/incus"
export INCUS_CONF="$DST_HOME/.config/incus"
LAB_KEY="$GBO_LAB_ROOT/ssh/id_ed25519"
LAB_KNOWN_HOSTS="$GBO_LAB_ROOT/ssh/known_hosts"
PULL_KEY="$DST_HOME/.ssh/id_ed25519"
PULL_KNOWN_HOSTS="$DST_HOME/.ssh/known_hosts"
PLAN_FILE="$GBO_LAB_ROOT/plan.yaml"

# The ten containers: name, last octet of the fixed DHCP lease on lxdbr-gbo, owner of /opt/gbo
# (alm-ci has no gbuser: it exercises the guide's root fallback), data dirs, services.
CONTAINERS=(proxy tables system drive dns email webmail alm alm-ci table-editor)
declare -A C_OCTET=([proxy]=10 [tables]=11 [system]=12 [drive]=13 [dns]=14 [email]=15 [webmail]=16 [alm]=17 [alm-ci]=18 [table-editor]=19)
declare -A C_DIRS=(
  [proxy]="conf data logs" [tables]="conf data logs pgconf pgdata" [system]="bin botserver-stack conf data logs"
  [drive]="data logs" [dns]="bin conf data logs" [email]="conf data logs" [webmail]="conf data logs"
  [alm]="alm conf data logs" [alm-ci]="conf data logs" [table-editor]="conf data logs")
# "port:kind:Service" — http = busybox httpd answering "<container> <Service> <port>",
# tcp = busybox `nc -ll` answering a one-line banner, caddy / dns = the real servers (Caddy, NSD).
declare -A C_PORTS=(
  [proxy]="80:caddy:Caddy 443:caddy:Caddy" [tables]="5432:tcp:PostgreSQL"
  [system]="8200:http:Vault 6379:tcp:Valkey 9100:http:MinIO 6333:http:Qdrant 5858:http:botserver 5859:http:botui"
  [drive]="9000:http:MinIO" [dns]="53:dns:NSD"
  [email]="25:tcp:SMTP 465:tcp:SMTPS 587:tcp:Submission 993:tcp:IMAPS 995:tcp:POP3S 143:tcp:IMAP 110:tcp:POP3 4190:tcp:Sieve"
  [webmail]="80:http:Roundcube" [alm]="3000:http:Forgejo" [alm-ci]="" [table-editor]="8080:http:NocoDB")
# Share of GBO_LAB_DATA_MB per container (percent).
declare -A C_WEIGHT=([proxy]=4 [tables]=20 [system]=25 [drive]=20 [dns]=3 [email]=8 [webmail]=4 [alm]=8 [alm-ci]=4 [table-editor]=4)
# Caddy vhosts (name relative to the zone, "@" = apex) -> upstream container:port.
VHOSTS=("@ system:5859" "www system:5859" "chat system:5859" "app system:5859" "docs system:5859"
  "api system:5858" "bot system:5858" "admin system:5858" "status system:5858"
  "vault system:8200" "vectors system:6333" "minio system:9100" "console system:9100"
  "drive drive:9000" "s3 drive:9000" "files drive:9000"
  "tables table-editor:8080" "nocodb table-editor:8080" "db table-editor:8080"
  "webmail webmail:80" "mail webmail:80" "autoconfig webmail:80"
  "alm alm:3000" "git alm:3000" "forgejo alm:3000" "ci alm:3000")
c_ip() { echo "198.18.16.${C_OCTET[$1]}"; }

log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
in_dst() { ip netns exec "$NETNS" "$@"; }
# The source host's firewall: LXD needs the root network namespace, so the source host's own
# iptables commands (over its sshd) act on this namespace's rule set instead of this machine's.
SRC_FW_NETNS=gbo-srcfw
SRC_BIN="$GBO_LAB_ROOT/src/bin"
lxc() { command lxc "$@"; }
incus() { command incus "$@"; }

# Seconds since the sourcing script started, for the times lab:up and lab:down print.
T0=$(date +%s%N)
elapsed() { echo "$(( ($(date +%s%N) - T0) / 1000000 ))" | awk '{printf "%.1f", $1/1000}'; }

# ---------------------------------------------------------------- the second tenant: shop
# Unlike pragmatismo: no reverse proxy, its DNS hosted outside the tenant (the "external DNS"
# below), source containers named differently from their destination names, a UDP service, a
# stateless container, data files of several owners and modes. Source name -> destination name.
SHOP_TENANT=shop
SHOP_ZONE=shop.lab
SHOP_CONTAINERS=(acme-storefront acme-orders acme-voice acme-queue)
declare -A SHOP_DEST=([acme-storefront]=shop-web [acme-orders]=shop-db [acme-voice]=shop-voip [acme-queue]=shop-worker)
declare -A SHOP_OCTET=([acme-storefront]=40 [acme-orders]=41 [acme-voice]=42 [acme-queue]=43)
# Data dirs (under the container's data path); acme-queue is stateless (no data, no disk device).
declare -A SHOP_DIRS=([acme-storefront]="htdocs uploads" [acme-orders]="db conf" [acme-voice]="conf spool" [acme-queue]="")
# Where the data is mounted inside the container (the plan's containers[].dataPath).
declare -A SHOP_PATH=([acme-storefront]=/srv/shop [acme-orders]=/opt/gbo [acme-voice]=/opt/gbo [acme-queue]=)
SHOP_PRIVILEGED=acme-orders
# "port:proto:kind:Service"; http = busybox httpd, tcp = busybox nc banner, udp = a datagram
# responder (Debian's perl, pushed like Caddy/NSD: busybox-static has no udpsvd and no nc -u).
declare -A SHOP_PORTS=([acme-storefront]="80:tcp:http:Storefront" [acme-orders]="6432:tcp:tcp:OrdersDB"
  [acme-voice]="5060:udp:udp:SIP" [acme-queue]="4222:tcp:tcp:Queue")
# What the destination forwards on its public address: "public:proto:source-container:port".
# Ports pragmatismo does not forward (80, 443, 25, … 53), so both tenants can live on one host.
SHOP_FORWARDS=("8081:tcp:acme-storefront:80" "6432:tcp:acme-orders:6432" "5060:udp:acme-voice:5060")
SHOP_UDP_SEND="OPTIONS sip:shop.lab"     # the UDP exchange: this datagram ...
SHOP_UDP_EXPECT="acme-voice SIP 5060"    # ... is answered with a line containing this
shop_ip() { echo "198.18.16.${SHOP_OCTET[$1]}"; }
SHOP_PLAN_FILE="$GBO_LAB_ROOT/plan-shop.yaml"
SHOP_MANIFEST="$SRC_DIR/shop-manifest.tsv"   # container view, see lab/shop-manifest.sh

# The shop's external DNS ("hosted elsewhere", at a provider): NSD in its own network namespace,
# reached from this machine over a veth pair. Its records point at the source host at first;
# lab/extdns.sh plays the operator who changes them at the provider.
EXTDNS_NETNS=gbo-extdns
EXTDNS_VETH=gbo-extdns        # root namespace end, 198.18.1.1/30
EXTDNS_VETH_PEER=gbo-extdns0  # in the namespace, 198.18.1.2/30 (NSD listens here, port 53)
EXTDNS_GW=198.18.1.1
EXTDNS_ADDR=198.18.1.2
EXTDNS_DIR="$GBO_LAB_ROOT/extdns"
EXTDNS_NAMES=("@" www voip)   # the A records of $SHOP_ZONE

# The lab's ACME CA (lab/acme-ca.sh): pebble on loopback, the project's front (lab/acme-front.mjs)
# on the source host's address, so Caddy reaches it from the source's containers and, through
# the route below, from the destination's.
ACME_DIR="$GBO_LAB_ROOT/acme"
PEBBLE_ADDR=127.0.0.1
PEBBLE_PORT=14000              # ACME
PEBBLE_MGMT_PORT=15000         # management: /roots/0, /intermediates/0
ACME_FRONT_ADDR=$SRC_ADDR
ACME_FRONT_PORT=14443
ACME_DIRECTORY="https://$ACME_FRONT_ADDR:$ACME_FRONT_PORT/dir"
ACME_WINDOW_FILE="$ACME_DIR/rate-limited-until"
ACME_PROXY_CA=/opt/gbo/conf/acme-ca.pem   # lab-ca.pem as the proxy container sees it

# The two lab hosts as every lab plan names them (lab/plan.sh, lab/plan-shop.sh).
plan_hosts() {
  cat <<HOSTS
hosts:
  source:
    address: $SRC_ADDR
    port: $SSH_PORT
    user: root
    sshKey: file:$LAB_KEY
    knownHosts: file:$LAB_KNOWN_HOSTS
    authorizedKeys: $SRC_HOME/.ssh/authorized_keys
  destination:
    address: $DST_ADDR
    port: $SSH_PORT
    user: root
    sshKey: file:$LAB_KEY
    knownHosts: file:$LAB_KNOWN_HOSTS
HOSTS
}
