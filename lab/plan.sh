#!/usr/bin/env bash
# Prints the lab tenant's plan (schema of src/plan/schema.ts, like examples/pragmatismo.yaml) with
# the lab's addresses, keys and paths. up.sh writes it to $GBO_LAB_ROOT/plan.yaml.
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"

dirs_yaml() { echo "[$(echo ${C_DIRS[$1]} | sed 's/ /, /g')]"; }
cat <<PLAN
# The gbo-lab tenant, written by lab/up.sh: the pragmatismo tenant on this machine's lab hosts.
# Source: LXD in the root namespace ($SRC_ADDR); destination: Incus in netns $NETNS ($DST_ADDR).
apiVersion: gbo-migrate/v1
tenant: $GBO_LAB_TENANT

$(plan_hosts)

source:
  engine: lxd
  remoteName: lxd-source
  apiAddress: $SRC_ADDR
  apiPort: $LXD_API_PORT
  containerPrefix: $GBO_LAB_TENANT-

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
  staging: $DST_HOME/gbo
  tenantsRoot: $DST_DIR/opt/gbo/tenants
  containerPath: /opt/gbo
  pullIdentity: $PULL_KEY
  pullKnownHosts: $PULL_KNOWN_HOSTS

containers:
  - name: proxy
    role: Caddy reverse proxy
    dataDirs: $(dirs_yaml proxy)
    services:
      - { name: Caddy, ports: [80, 443] }
  - name: tables
    role: PostgreSQL (lab stand-in)
    canary: true
    dataDirs: $(dirs_yaml tables)
    services:
      - { name: PostgreSQL, ports: [5432] }
  - name: system
    role: botserver + botui (lab stand-ins)
    privileged: true
    dataDirs: $(dirs_yaml system)
    services:
      - { name: Vault, ports: [8200] }
      - { name: Valkey, ports: [6379] }
      - { name: MinIO, ports: [9100] }
      - { name: Qdrant, ports: [6333] }
      - { name: botserver, ports: [5858] }
      - { name: botui, ports: [5859] }
    requiredFiles:
      - { path: /opt/gbo/bin/botserver, owner: gbuser, executable: true }
  - name: drive
    role: MinIO S3 (lab stand-in)
    dataDirs: $(dirs_yaml drive)
    services:
      - { name: MinIO, ports: [9000] }
  - name: dns
    role: NSD (the guide's CoreDNS)
    dataDirs: $(dirs_yaml dns)
    services:
      - { name: NSD, ports: [53], protocol: udp, probe: { kind: dns, name: $GBO_LAB_ZONE } }
      - { name: NSD-tcp, ports: [53] }
  - name: email
    role: Stalwart mail (lab stand-in)
    dataDirs: $(dirs_yaml email)
    services:
      - { name: Stalwart, ports: [25, 465, 587, 993, 995, 143, 110, 4190] }
  - name: webmail
    role: Roundcube (lab stand-in)
    dataDirs: $(dirs_yaml webmail)
    services:
      - { name: Roundcube, ports: [80] }
  - name: alm
    role: Forgejo ALM (lab stand-in)
    dataDirs: $(dirs_yaml alm)
    services:
      - { name: Forgejo, ports: [3000] }
  - name: alm-ci
    role: Forgejo CI runner (no gbuser in the lab, /opt/gbo owned by root)
    dataDirs: $(dirs_yaml alm-ci)
    services:
      - { name: Forgejo-runner, required: false }
  - name: table-editor
    role: NocoDB (lab stand-in)
    dataDirs: $(dirs_yaml table-editor)
    services:
      - { name: NocoDB, ports: [8080] }

portForwards:
  - { port: 80, protocol: tcp, container: proxy, service: HTTP }
  - { port: 443, protocol: tcp, container: proxy, service: HTTPS }
  - { port: 25, protocol: tcp, container: email, service: SMTP }
  - { port: 465, protocol: tcp, container: email, service: SMTPS }
  - { port: 587, protocol: tcp, container: email, service: Submission }
  - { port: 993, protocol: tcp, container: email, service: IMAPS }
  - { port: 995, protocol: tcp, container: email, service: POP3S }
  - { port: 143, protocol: tcp, container: email, service: IMAP }
  - { port: 110, protocol: tcp, container: email, service: POP3 }
  - { port: 4190, protocol: tcp, container: email, service: Sieve }
  - { port: 53, protocol: udp, container: dns, service: DNS }
  - { port: 53, protocol: tcp, container: dns, service: DNS }

caddy:
  container: proxy
  configPath: /opt/gbo/conf/config
  storageRoot: /opt/gbo/data/caddy
  binary: /usr/bin/caddy
  minVhosts: ${#VHOSTS[@]}
  # Caddy's JSON log (the Caddyfile's global log block): the certificate wait reads its tls.obtain lines.
  logFile: /opt/gbo/logs/caddy.log
  # The lab supervises Caddy like systemd's Restart=always: a stopped Caddy starts again within 0.2 s.
  restartCommand: [killall, caddy]
  # After a CA rate limit, a restart (a fresh internal throttle) gets certificates in seconds.
  certificateRetry: restart

dns:
  zone: $GBO_LAB_ZONE
  container: dns
  zoneFile: /opt/gbo/data/$GBO_LAB_ZONE.zone
  reloadCommand: [killall, -HUP, nsd]
  oldTtlSeconds: 30
  authoritativeServers: [$DST_ADDR]
  records:
    - { name: "@", type: A, value: $DST_ADDR }
    - { name: ns1, type: A, value: $DST_ADDR }
    - { name: ns2, type: A, value: $DST_ADDR }
    - { name: "@", type: NS, value: ns1.$GBO_LAB_ZONE. }
    - { name: "@", type: NS, value: ns2.$GBO_LAB_ZONE. }
    - { name: "*", type: A, value: $DST_ADDR }

certificates:
  domains:
    - $GBO_LAB_ZONE
    - chat.$GBO_LAB_ZONE
    - alm.$GBO_LAB_ZONE
    - webmail.$GBO_LAB_ZONE
    - drive.$GBO_LAB_ZONE
    - tables.$GBO_LAB_ZONE
  # The lab's ACME CA (pebble, behind lab/acme-front.mjs): its root changes at every start.
  caFile: $GBO_LAB_ROOT/acme/root.pem
  issuer: Pebble
  wait:
    pollInterval: 5s
    maxWait: 10m

serviceFixes:
  - kind: env
    container: system
    file: /opt/gbo/conf/botserver.env
    key: DATABASE_URL
    set: { urlHost: "{{ip:tables}}" }
    restart: []
  - kind: hosts-entry
    container: alm-ci
    hostname: system
    address: "{{ip:system}}"

approvals:
  cutover: true
  cleanup: true
  verificationWindow: 1m
  gateTimeout: 1h

concurrency:
  containers: 3
PLAN
