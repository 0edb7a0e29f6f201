#!/usr/bin/env bash
# Prints the plan of the lab's second tenant, shop (up.sh writes it to $GBO_LAB_ROOT/plan-shop.yaml).
# Unlike pragmatismo's: no caddy section; DNS hosted elsewhere (no dns.container/zoneFile/
# reloadCommand: the cutover's `dns` gate lists the records, the operator changes them at the
# provider and approves `dns`); renamed containers (source: …); a UDP service with its probe; a
# stateless container (no dataDirs); a container whose data lives at another dataPath; no
# owner/ownerFallback (ownership is kept from the source).
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"
. "$LAB_DIR/shop.sh"

dirs_yaml() { echo "[$(echo ${SHOP_DIRS[$1]} | sed 's/ /, /g')]"; }
cat <<PLAN
# The gbo-lab's second tenant, written by lab/up.sh: shop on this machine's lab hosts.
# Source: LXD in the root namespace ($SRC_ADDR); destination: Incus in netns $NETNS ($DST_ADDR).
# DNS: $SHOP_ZONE at an external provider ($EXTDNS_ADDR, netns $EXTDNS_NETNS; lab/extdns.sh).
apiVersion: gbo-migrate/v1
tenant: $SHOP_TENANT

$(plan_hosts)

source:
  engine: lxd
  remoteName: lxd-source
  apiAddress: $SRC_ADDR
  apiPort: $LXD_API_PORT

destination:
  engine: incus
  bridge: $DST_BRIDGE
  bridgeSubnet: $DST_SUBNET
  storagePool: default
  publicAddress: $DST_ADDR
  iptablesRulesFile: $DST_DIR/etc/iptables/rules.v4
  restoreUnitFile: $DST_DIR/etc/systemd/system/iptables-restore.service

data:
  sourceRoot: $SRC_DATA
  staging: $DST_HOME/gbo-$SHOP_TENANT
  tenantsRoot: $DST_DIR/opt/gbo/tenants
  containerPath: /opt/gbo
  pullIdentity: $PULL_KEY
  pullKnownHosts: $PULL_KNOWN_HOSTS

containers:
  - name: ${SHOP_DEST[acme-storefront]}
    source: acme-storefront
    sourceFolder: acme-storefront
    role: storefront (busybox httpd)
    dataDirs: $(dirs_yaml acme-storefront)
    dataPath: ${SHOP_PATH[acme-storefront]}
    services:
      - { name: Storefront, ports: [80], probe: { kind: http, path: / } }
  - name: ${SHOP_DEST[acme-orders]}
    source: acme-orders
    sourceFolder: acme-orders
    role: orders database (lab stand-in, privileged)
    privileged: true
    canary: true
    dataDirs: $(dirs_yaml acme-orders)
    services:
      - { name: OrdersDB, ports: [6432], probe: { kind: tcp } }
  - name: ${SHOP_DEST[acme-voice]}
    source: acme-voice
    sourceFolder: acme-voice
    role: SIP (lab stand-in, UDP)
    dataDirs: $(dirs_yaml acme-voice)
    services:
      - name: SIP
        ports: [5060]
        protocol: udp
        probe: { kind: udp, send: "$SHOP_UDP_SEND", expect: "$SHOP_UDP_EXPECT" }
  - name: ${SHOP_DEST[acme-queue]}
    source: acme-queue
    role: queue worker (stateless)
    services:
      - { name: Queue, ports: [4222], probe: { kind: tcp } }

portForwards:
$(for f in "${SHOP_FORWARDS[@]}"; do
    IFS=: read -r pub proto c port <<<"$f"
    svc=$(for e in ${SHOP_PORTS[$c]}; do IFS=: read -r p _ _ s <<<"$e"; [ "$p" = "$port" ] && echo "$s"; done)
    echo "  - { port: $pub, protocol: $proto, container: ${SHOP_DEST[$c]}, containerPort: $port, service: $svc }"
  done)

dns:
  zone: $SHOP_ZONE
  oldTtlSeconds: 30
  authoritativeServers: [$EXTDNS_ADDR]
  records:
$(for n in "${EXTDNS_NAMES[@]}"; do echo "    - { name: \"$n\", type: A, value: $DST_ADDR }"; done)

approvals:
  cutover: true
  cleanup: true
  verificationWindow: 1m
  gateTimeout: 1h

concurrency:
  containers: 2
PLAN
