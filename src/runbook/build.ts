/**
 * Builds the runbook (the step model) from a validated plan: the operations guide, step by step,
 * with every argument quoted. Pure: imported by the workflow bundle.
 */
import type { ContainerPlan, Plan } from '../plan/schema';
import { sourceNameOf } from '../plan/schema';
import { PHASES, type Phase, type PhaseId, type Runbook, type Step, type StepHost } from './model';
import { ipOf, ph, q, sh } from './shell';

/** Marker set on every destination instance this tool creates; a name clash is an instance without it. */
export const OWNER_KEY = 'user.gbo-migrate.tenant';

/**
 * Prints `files=<n> sha256=<hex>` over the files of the given folders under a root: the same script
 * on the stopped source and over the destination's pulled copy, so the two digests compare directly.
 * Busybox-compatible (no `sort -z`).
 */
export const MANIFEST_SCRIPT =
  'cd "$1" || exit 1; shift; l=$(mktemp); for d in "$@"; do [ -e "$d" ] && find "$d" -type f; done | LC_ALL=C sort > "$l"; ' +
  'n=$(wc -l < "$l" | tr -d " "); s=$(tr "\\n" "\\0" < "$l" | xargs -0 -r sha256sum | sha256sum | cut -d" " -f1); rm -f "$l"; ' +
  'echo "files=$n sha256=$s"';

/** Prints `sha256 mtime path` for each file under the given folders of a root (the host's final copy). */
export const LISTING_SCRIPT =
  'cd "$1" || exit 1; shift; n=0; for d in "$@"; do [ -e "$d" ] && find "$d" -type f; done | LC_ALL=C sort | ' +
  '{ while IFS= read -r f; do n=$((n+1)); printf "%s %s %s\\n" "$(sha256sum < "$f" | cut -d" " -f1)" "$(stat -c %Y "$f")" "$f"; done; echo "end $n"; }';

/** Prints every path (files and folders) under the given folders of a root. */
export const PATHS_SCRIPT = 'cd "$1" || exit 1; shift; for d in "$@"; do [ -e "$d" ] && find "$d"; done';

/** Reads LISTING_SCRIPT's lines inside a container and checks each file there; busybox-compatible. */
export const CONTAINER_CHECK_SCRIPT =
  'cd "$1" || exit 1; ok=0; changed=0; bad=0; want=; while read -r sum mt f; do ' +
  'if [ "$sum" = end ]; then want=$mt; ' +
  'elif [ ! -f "$f" ]; then echo "missing: $f" >&2; bad=$((bad+1)); ' +
  'elif [ "$(stat -c %Y "$f")" != "$mt" ]; then changed=$((changed+1)); ' +
  'elif [ "$(sha256sum < "$f" | cut -d" " -f1)" = "$sum" ]; then ok=$((ok+1)); ' +
  'else echo "differs: $f" >&2; bad=$((bad+1)); fi; done; ' +
  // The listing ends with its count: a listing cut short (its side failed) cannot pass.
  'echo "files ok=$ok changed-by-services=$changed bad=$bad of $want"; [ "$bad" -eq 0 ] && [ "$want" = $((ok+changed)) ]';

/** Where the incus client keeps its certificate (INCUS_CONF, else ~/.config/incus), as the guide reads it. */
const INCUS_CLIENT_CERT = '"${INCUS_CONF:-$HOME/.config/incus}/client.crt"';

/** Is every port answering? Bash's /dev/tcp, so nothing needs installing on the destination. */
const tcpProbe = (ip: string, port: number) => sh('timeout', 5, 'bash', '-c', `: </dev/tcp/${ip}/${port}`);

/** Context shared by the phase builders. */
interface Ctx {
  plan: Plan;
  lxc(...args: (string | number)[]): string;
  incus(...args: (string | number)[]): string;
  /** `incus exec <c> -- <args>` */
  inside(container: string, ...args: (string | number)[]): string;
  sourceName(c: ContainerPlan): string;
  stagingOf(c: ContainerPlan): string;
  finalOf(c: ContainerPlan): string;
  sourceDataOf(c: ContainerPlan): string;
  sshToSource: string;
}

function context(plan: Plan): Ctx {
  const src = plan.hosts.source;
  const sshOpts = [
    'ssh',
    '-i',
    plan.data.pullIdentity,
    '-p',
    String(src.port),
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    ...(plan.data.pullKnownHosts ? ['-o', `UserKnownHostsFile=${plan.data.pullKnownHosts}`] : []),
  ];
  return {
    plan,
    lxc: (...a) => sh('lxc', ...a),
    incus: (...a) => sh('incus', ...a),
    inside: (c, ...a) => sh('incus', 'exec', c, '--', ...a),
    sourceName: (c) => sourceNameOf(plan, c),
    stagingOf: (c) => `${plan.data.staging}/${c.name}`,
    finalOf: (c) => `${plan.data.tenantsRoot}/${plan.tenant}/${c.name}`,
    sourceDataOf: (c) => `${plan.data.sourceRoot}/${c.sourceFolder ?? c.name}`,
    sshToSource: sshOpts.join(' '),
  };
}

type StepInit = Omit<Step, 'profile' | 'command'> & { profile?: Step['profile']; command: string };

/** Makes a step; `sudo` comes from the plan's host settings (see `hostCommand`). */
function step(ctx: Ctx, init: StepInit): Step {
  const sudoOn = (host: StepHost) => host !== 'worker' && ctx.plan.hosts[host].sudo;
  const s: Step = { ...init, profile: init.profile ?? 'quick' };
  if (sudoOn(init.host)) s.sudo = true;
  if (init.check !== undefined && sudoOn(init.checkOn ?? init.host)) s.checkSudo = true;
  return s;
}

function preflight(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const s = (init: Omit<StepInit, 'phase'>) => step(ctx, { phase: 'preflight', ...init });
  const remote = plan.source.remoteName;
  const api = `https://${plan.source.apiAddress}:${plan.source.apiPort}`;
  const srcUser = plan.hosts.source;
  // The login user's own file unless the plan names one; `$HOME` expands on the source host.
  const authorizedKeys = srcUser.authorizedKeys ? q(srcUser.authorizedKeys) : '"$HOME/.ssh/authorized_keys"';
  const steps: Step[] = [
    s({
      id: 'preflight/tenant/host-keys',
      title: 'The worker reaches both hosts: host keys pinned in known_hosts, logins accepted',
      host: 'worker',
      kind: 'verify-host-keys',
      command: 'ssh handshake with source and destination (host keys against known_hosts, no command)',
    }),
    s({ id: 'preflight/tenant/source-version', title: 'LXD answers on the source', host: 'source', kind: 'capture', command: ctx.lxc('version'), captureAs: { kind: 'text', key: 'version:source' } }),
    s({ id: 'preflight/tenant/destination-version', title: 'Incus answers on the destination', host: 'destination', kind: 'capture', command: ctx.incus('version'), captureAs: { kind: 'text', key: 'version:destination' } }),
    s({
      id: 'preflight/tenant/source-api-address',
      title: `LXD API listens on ${plan.source.apiAddress}:${plan.source.apiPort}`,
      host: 'source',
      kind: 'run',
      command: `${ctx.lxc('config', 'set', 'core.https_address', `${plan.source.apiAddress}:${plan.source.apiPort}`)}`,
      check: `test "$(${ctx.lxc('config', 'get', 'core.https_address')})" = ${q(`${plan.source.apiAddress}:${plan.source.apiPort}`)}`,
    }),
    ...(['source', 'destination'] as const).map((host) =>
      s({
        id: `preflight/tenant/${host}-open-8443`,
        title: `Port ${plan.source.apiPort} accepted on the ${host} host`,
        host,
        kind: 'run',
        command: sh('iptables', '-I', 'INPUT', '-p', 'tcp', '--dport', plan.source.apiPort, '-j', 'ACCEPT'),
        check: sh('iptables', '-C', 'INPUT', '-p', 'tcp', '--dport', plan.source.apiPort, '-j', 'ACCEPT'),
      }),
    ),
    s({
      id: 'preflight/tenant/api-reachable',
      title: `The destination reaches the LXD API at ${api}`,
      host: 'destination',
      kind: 'run',
      command: tcpProbe(plan.source.apiAddress, plan.source.apiPort),
    }),
    s({
      id: 'preflight/tenant/client-certificate',
      title: 'Incus client certificate exists on the destination',
      host: 'destination',
      kind: 'run',
      command: ctx.incus('remote', 'generate-certificate'),
      check: `test -s ${INCUS_CLIENT_CERT}`,
    }),
    s({
      id: 'preflight/tenant/read-client-certificate',
      title: 'Read the destination client certificate (public)',
      host: 'destination',
      kind: 'capture',
      command: `cat ${INCUS_CLIENT_CERT}`,
      captureAs: { kind: 'cert', key: 'cert:destination' },
    }),
    s({
      id: 'preflight/tenant/trust-destination',
      title: "Trust the destination's certificate in the source LXD",
      host: 'source',
      kind: 'run',
      command: sh(
        'sh',
        '-c',
        'f=$(mktemp) && printf "%s\\n" "$1" > "$f" && out=$(lxc config trust add "$f" 2>&1); rc=$?; rm -f "$f"; ' +
          'case "$out" in *lready*) exit 0;; esac; [ "$rc" -eq 0 ] || { echo "$out" >&2; exit "$rc"; }',
        'gbo-trust',
      ) + ` ${ph('cert', 'destination')}`,
      check: `${ctx.incus('list', `${remote}:`, '--format', 'csv', '-c', 'n')} >/dev/null 2>&1`,
      checkOn: 'destination',
    }),
    s({
      id: 'preflight/tenant/add-remote',
      title: `Register the source as Incus remote "${remote}"`,
      host: 'destination',
      kind: 'run',
      command: ctx.incus('remote', 'add', remote, api, '--protocol', 'incus', '--accept-certificate'),
      check: `${ctx.incus('remote', 'list', '--format', 'csv')} | grep -q ${q(`^${remote}[ ,]`)}`,
    }),
    s({
      id: 'preflight/tenant/remote-inventory',
      title: 'The destination lists the source containers through the remote',
      host: 'destination',
      kind: 'capture',
      command: ctx.incus('list', `${remote}:`, '--format', 'csv', '-c', 'n'),
      captureAs: { kind: 'names', key: 'names:remote' },
    }),
    s({
      id: 'preflight/tenant/source-inventory',
      title: 'Every planned source container exists',
      host: 'source',
      kind: 'capture',
      command: ctx.lxc('list', '--format', 'csv', '-c', 'n'),
      captureAs: { kind: 'names', key: 'names:source' },
      params: { expect: plan.containers.map((c) => ctx.sourceName(c)) },
    }),
    s({
      id: 'preflight/tenant/destination-names',
      title: 'No destination name is taken by something else',
      host: 'destination',
      kind: 'capture',
      command: ctx.incus('list', '--format', 'csv', '-c', 'n'),
      captureAs: { kind: 'names', key: 'names:destination' },
      params: { mustNotContain: plan.containers.map((c) => c.name), ownerKey: OWNER_KEY, tenant: plan.tenant },
    }),
    s({
      id: 'preflight/tenant/source-data-size',
      title: 'Size of the tenant data on the source',
      host: 'source',
      kind: 'capture',
      // printf, not print: mawk prints sums past 2^31 as `2.14832e+09`.
      command: `du -sb ${plan.containers.map((c) => q(ctx.sourceDataOf(c))).join(' ')} | awk '{t+=$1} END {printf "%.0f\\n", t}'`,
      captureAs: { kind: 'bytes', key: 'bytes:source-data' },
    }),
    s({
      id: 'preflight/tenant/destination-space',
      title: 'Free space on the destination (staging, final copy and container copies)',
      host: 'destination',
      kind: 'capture',
      command: `mkdir -p ${q(plan.data.staging)} && df -B1 --output=avail ${q(plan.data.staging)} | tail -n 1`,
      captureAs: { kind: 'bytes', key: 'bytes:destination-free' },
      // Staging is moved (not copied) to its final place, then pushed into each container: twice the data, plus margin.
      params: { needsTimesSource: 2.2 },
    }),
    s({
      id: 'preflight/tenant/read-pull-key',
      title: "Read the destination's public key for the rsync pull",
      host: 'destination',
      kind: 'capture',
      command: sh('ssh-keygen', '-y', '-f', plan.data.pullIdentity),
      captureAs: { kind: 'pubkey', key: 'pubkey:destination' },
    }),
    s({
      id: 'preflight/tenant/authorize-pull-key',
      title: "Authorize the destination's key on the source (dest→source SSH for rsync)",
      host: 'source',
      kind: 'run',
      command: `mkdir -p "$(dirname ${authorizedKeys})" && printf '%s\\n' ${ph('pubkey', 'destination')} >> ${authorizedKeys}`,
      check: `grep -qxF ${ph('pubkey', 'destination')} ${authorizedKeys}`,
    }),
    ...(plan.data.pullKnownHosts
      ? [
          s({
            id: 'preflight/tenant/pin-source-host-key',
            title: `Pin the source's host key for the pull in ${plan.data.pullKnownHosts} (from the worker's known_hosts, never a scan)`,
            host: 'destination',
            kind: 'pin-host-key',
            command: `${pinScript(plan.data.pullKnownHosts)} # stdin: the source's host key lines from the worker's known_hosts`,
            params: { write: pinScript(plan.data.pullKnownHosts) },
          }),
        ]
      : []),
    s({
      id: 'preflight/tenant/pull-ssh',
      title: 'The destination logs in to the source over SSH (host key pinned)',
      host: 'destination',
      kind: 'run',
      command: `${ctx.sshToSource} ${q(`${srcUser.user}@${plan.hosts.source.address}`)} true`,
    }),
  ];
  return steps;
}

/** Appends each stdin line to a known_hosts file unless it is there already. */
function pinScript(file: string): string {
  return sh('sh', '-c', 'mkdir -p "$(dirname "$1")" && touch "$1" && while IFS= read -r l; do grep -qxF "$l" "$1" || printf "%s\\n" "$l" >> "$1"; done', 'pin', file);
}

function rsyncPull(ctx: Ctx, c: ContainerPlan): string {
  const src = `${ctx.plan.hosts.source.user}@${ctx.plan.hosts.source.address}:${ctx.sourceDataOf(c)}/`;
  return `mkdir -p ${q(ctx.stagingOf(c))} && ${sh('rsync', '-az', '--partial', '--delete', '--numeric-ids', '--info=progress2', '-e', ctx.sshToSource, src, `${ctx.stagingOf(c)}/`)}`;
}

function presync(ctx: Ctx, c: ContainerPlan): Step[] {
  return [
    step(ctx, {
      id: `presync/${c.name}/rsync`,
      phase: 'presync',
      container: c.name,
      title: `Warm pull of ${ctx.sourceDataOf(c)} while ${ctx.sourceName(c)} runs`,
      host: 'destination',
      kind: 'run',
      command: rsyncPull(ctx, c),
      check: dataMoved(ctx, c),
      profile: 'transfer',
    }),
  ];
}

/** The data already sits in its final place (a re-run after `data/<c>/move` pulls nothing again). */
function dataMoved(ctx: Ctx, c: ContainerPlan): string {
  return `test -d ${q(ctx.finalOf(c))} && test ! -e ${q(ctx.stagingOf(c))}`;
}

function record(ctx: Ctx, c: ContainerPlan): Step[] {
  const src = ctx.sourceName(c);
  return [
    step(ctx, {
      id: `record/${c.name}/instance`,
      phase: 'record',
      container: c.name,
      title: `Record ${src}'s config and devices (expanded) before they change`,
      host: 'source',
      kind: 'capture',
      command: ctx.lxc('query', `/1.0/instances/${src}`),
      captureAs: { kind: 'instance-json', key: `instance:${c.name}` },
      once: true,
    }),
    step(ctx, {
      id: `record/${c.name}/addresses`,
      phase: 'record',
      container: c.name,
      title: `Record ${src}'s addresses (Caddy upstreams point at them)`,
      host: 'source',
      kind: 'capture',
      command: ctx.lxc('query', `/1.0/instances/${src}/state`),
      captureAs: { kind: 'state-ipv4', key: `oldip:${c.name}` },
      once: true,
    }),
  ];
}

function stop(ctx: Ctx, c: ContainerPlan): Step[] {
  const src = ctx.sourceName(c);
  return [
    step(ctx, {
      id: `stop/${c.name}/stop`,
      phase: 'stop',
      container: c.name,
      title: `Stop ${src} (downtime starts)`,
      host: 'source',
      kind: 'run',
      command: ctx.lxc('stop', src),
      check: `${ctx.lxc('query', `/1.0/instances/${src}`)} | grep -q '"status": "Stopped"'`,
    }),
    step(ctx, {
      id: `stop/${c.name}/remove-devices`,
      phase: 'stop',
      container: c.name,
      title: `Remove ${src}'s own devices (Incus cannot resolve LXD host paths; proxy devices conflict with NAT)`,
      host: 'source',
      kind: 'run',
      command: `for d in $(${ctx.lxc('config', 'device', 'list', src)}); do ${ctx.lxc('config', 'device', 'remove', src)} "$d" || exit 1; done`,
      check: `test -z "$(${ctx.lxc('config', 'device', 'list', src)})"`,
    }),
    step(ctx, {
      id: `stop/${c.name}/source-manifest`,
      phase: 'stop',
      container: c.name,
      title: `Checksum ${ctx.sourceDataOf(c)} now that nothing writes to it`,
      host: 'source',
      kind: 'capture',
      command: sh('sh', '-c', MANIFEST_SCRIPT, 'manifest', ctx.sourceDataOf(c), ...c.dataDirs),
      captureAs: { kind: 'digest', key: `digest:${c.name}` },
      once: true,
      profile: 'transfer',
    }),
  ];
}

function copy(ctx: Ctx, c: ContainerPlan): Step[] {
  const { plan } = ctx;
  const src = ctx.sourceName(c);
  const s = (init: Omit<StepInit, 'phase' | 'container' | 'host'>) => step(ctx, { phase: 'copy', container: c.name, host: 'destination', ...init });
  return [
    s({
      id: `copy/${c.name}/copy`,
      title: `Copy ${src} → ${c.name}`,
      kind: 'run',
      // Marked in the same command as soon as the copy is whole, so the mark proves it whole: a
      // retried attempt after a worker died at the copy's end finds it done, and an unmarked
      // instance of this name is a copy an earlier attempt left half made (preflight refused any
      // other), so it goes before copying again.
      command:
        `if ${ctx.incus('query', `/1.0/instances/${c.name}`)} >/dev/null 2>&1; then ${ctx.incus('delete', '--force', c.name)} || exit 1; fi; ` +
        `${ctx.incus('copy', '--instance-only', `${plan.source.remoteName}:${src}`, c.name, '--storage', plan.destination.storagePool)} && ` +
        ctx.incus('config', 'set', c.name, `${OWNER_KEY}=${plan.tenant}`),
      check: markedAsOurs(ctx, c.name),
      profile: 'transfer',
    }),
    s({
      id: `copy/${c.name}/nic`,
      title: `eth0 on ${plan.destination.bridge}`,
      kind: 'run',
      command: ctx.incus('config', 'device', 'add', c.name, 'eth0', 'nic', 'name=eth0', `network=${plan.destination.bridge}`),
      check: `${ctx.incus('config', 'device', 'list', c.name)} | grep -qx eth0`,
    }),
    ...(c.privileged
      ? [
          s({
            id: `copy/${c.name}/privileged`,
            title: `${c.name} is privileged (owns its /opt/gbo)`,
            kind: 'run',
            command: ctx.incus('config', 'set', c.name, 'security.privileged=true'),
            check: `test "$(${ctx.incus('config', 'get', c.name, 'security.privileged')})" = true`,
          }),
        ]
      : []),
    s({
      id: `copy/${c.name}/start`,
      title: `Start ${c.name}`,
      kind: 'run',
      command: ctx.incus('start', c.name),
      check: `${ctx.incus('query', `/1.0/instances/${c.name}`)} | grep -q '"status": "Running"'`,
    }),
    s({
      id: `copy/${c.name}/address`,
      title: `Read ${c.name}'s new address (a remote copy gets a new MAC, so a new IP)`,
      kind: 'capture',
      command: ctx.incus('list', `^${c.name}$`, '--format', 'json'),
      captureAs: { kind: 'list-ipv4', key: `ip:${c.name}` },
      profile: 'poll',
    }),
  ];
}

/** The destination instance carries this tenant's mark: this migration made it, whole. */
function markedAsOurs(ctx: Ctx, name: string): string {
  return `test "$(${ctx.incus('config', 'get', name, OWNER_KEY)} 2>/dev/null)" = ${q(ctx.plan.tenant)}`;
}

function data(ctx: Ctx, c: ContainerPlan): Step[] {
  const { plan } = ctx;
  const s = (init: Omit<StepInit, 'phase' | 'container' | 'host'>) => step(ctx, { phase: 'data', container: c.name, host: 'destination', ...init });
  const inContainer = plan.data.containerPath;
  const hostDigest = sh('sh', '-c', MANIFEST_SCRIPT, 'manifest', ctx.finalOf(c), ...c.dataDirs);
  // Every file of the final copy, in the container with the same content; files the container's
  // own services changed since the push (newer mtime: tar keeps the source's) are counted, not failed.
  const containerMatches =
    `${sh('sh', '-c', LISTING_SCRIPT, 'listing', ctx.finalOf(c), ...c.dataDirs)} | ` + ctx.inside(c.name, 'sh', '-c', CONTAINER_CHECK_SCRIPT, 'check', inContainer);
  // Only what was pushed: files the container's services created since belong to whoever made them.
  const ownerCheck =
    `${sh('sh', '-c', PATHS_SCRIPT, 'paths', ctx.finalOf(c), ...c.dataDirs)} | ` +
    ctx.inside(c.name, 'sh', '-c', `cd ${q(inContainer)} && owner=$(id -u ${q(c.owner)} >/dev/null 2>&1 && echo ${q(c.owner)} || echo ${q(c.ownerFallback)}); ` + 'while IFS= read -r f; do [ ! -e "$f" ] || [ "$(stat -c %U "$f")" = "$owner" ] || exit 1; done');
  return [
    s({ id: `data/${c.name}/final-sync`, title: `Final delta pull of ${c.name}'s data (source stopped)`, kind: 'run', command: rsyncPull(ctx, c), check: dataMoved(ctx, c), profile: 'transfer' }),
    s({
      id: `data/${c.name}/move`,
      title: `Move ${c.name}'s data to ${ctx.finalOf(c)}`,
      kind: 'run',
      command: sh(
        'sh',
        '-c',
        'mkdir -p "$2" && if [ -d "$3" ]; then rsync -a --delete "$1/" "$3/" && rm -rf "$1"; else mv "$1" "$3"; fi',
        'move',
        ctx.stagingOf(c),
        `${plan.data.tenantsRoot}/${plan.tenant}`,
        ctx.finalOf(c),
      ),
      check: dataMoved(ctx, c),
    }),
    s({
      id: `data/${c.name}/verify-transfer`,
      title: `The pulled copy of ${c.name}'s data matches the source checksums bit for bit`,
      kind: 'run',
      command: `test "$(${hostDigest})" = ${ph('digest', c.name)}`,
      refuses: true,
      profile: 'transfer',
    }),
    s({
      id: `data/${c.name}/push`,
      title: `Push the data into ${c.name}:${inContainer} (copied in, not a disk device)`,
      kind: 'run',
      // The guide's `incus file push --recursive DIR/. C/opt/gbo/` nests DIR's name under /opt/gbo
      // on Incus 6 (its "fix directory structure" step); a tar stream, its other method, does not.
      command: `${ctx.inside(c.name, 'mkdir', '-p', inContainer)} && tar -C ${q(ctx.finalOf(c))} -cf - . | ${ctx.inside(c.name, 'tar', '-C', inContainer, '-xf', '-')}`,
      check: containerMatches,
      profile: 'transfer',
    }),
    s({
      id: `data/${c.name}/chown`,
      title: `${inContainer} owned by ${c.owner}, else ${c.ownerFallback}`,
      kind: 'run',
      command: ctx.inside(
        c.name,
        'sh',
        '-c',
        `chown -R ${c.owner}:${c.owner} ${inContainer} 2>/dev/null || chown -R ${c.ownerFallback}:${c.ownerFallback} ${inContainer}`,
      ),
      check: ownerCheck,
      profile: 'transfer',
    }),
    s({
      id: `data/${c.name}/verify`,
      title: `Every file in ${c.name} matches the source checksums`,
      kind: 'run',
      command: containerMatches,
      refuses: true,
      profile: 'transfer',
    }),
  ];
}

function network(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const s = (init: Omit<StepInit, 'phase' | 'host'>) => step(ctx, { phase: 'network', host: 'destination', ...init });
  const subnet = plan.destination.bridgeSubnet;
  const rulesFile = plan.destination.iptablesRulesFile;
  const unitFile = plan.destination.restoreUnitFile;
  const unitName = unitFile.slice(unitFile.lastIndexOf('/') + 1);
  const steps: Step[] = [
    s({ id: 'network/tenant/ip-forward', title: 'IP forwarding on', kind: 'run', command: sh('sysctl', '-w', 'net.ipv4.ip_forward=1'), check: `test "$(sysctl -n net.ipv4.ip_forward)" = 1` }),
    s({
      id: 'network/tenant/loopback',
      title: 'Loopback ACCEPT at the top of INPUT (above any DROP)',
      kind: 'run',
      command: `${sh('iptables', '-D', 'INPUT', '-i', 'lo', '-j', 'ACCEPT')} 2>/dev/null; ${sh('iptables', '-I', 'INPUT', '1', '-i', 'lo', '-j', 'ACCEPT')}`,
      check: `iptables -S INPUT | sed -n 2p | grep -qx -- '-A INPUT -i lo -j ACCEPT'`,
    }),
  ];
  for (const f of plan.portForwards) {
    // -d: only traffic addressed to the host is forwarded; without it, containers' own outbound
    // traffic to any address on these ports would be captured too.
    const rule = ['PREROUTING', '-d', plan.destination.publicAddress, '-p', f.protocol, '--dport', f.port, '-j', 'DNAT', '--to-destination', `${ipOf(f.container)}:${f.containerPort ?? f.port}`];
    steps.push(
      s({
        id: `network/tenant/dnat-${f.protocol}-${f.port}`,
        title: `DNAT ${f.protocol}/${f.port} → ${f.container}${f.service ? ` (${f.service})` : ''}`,
        kind: 'run',
        // A rule for this port to another address (a container copied again) is replaced, not shadowed.
        command: `${dropDnat(plan.destination.publicAddress, f.protocol, f.port)}; ${sh('iptables', '-t', 'nat', '-A', ...rule)}`,
        check: sh('iptables', '-t', 'nat', '-C', ...rule),
      }),
    );
  }
  const masq = ['POSTROUTING', '-s', subnet, '!', '-d', subnet, '-j', 'MASQUERADE'];
  steps.push(
    s({ id: 'network/tenant/masquerade', title: `MASQUERADE ${subnet}`, kind: 'run', command: sh('iptables', '-t', 'nat', '-A', ...masq), check: sh('iptables', '-t', 'nat', '-C', ...masq) }),
    s({
      id: 'network/tenant/persist',
      title: `Persist the rules in ${rulesFile}`,
      kind: 'run',
      command: `mkdir -p ${q(dirname(rulesFile))} && iptables-save > ${q(rulesFile)}`,
    }),
    s({
      id: 'network/tenant/restore-unit',
      title: 'A boot-time unit restores the rules',
      kind: 'run',
      command:
        `mkdir -p ${q(dirname(unitFile))} && printf '%s\\n' ${q(restoreUnit(rulesFile))} > ${q(unitFile)} && ` +
        `if [ -d /run/systemd/system ]; then systemctl daemon-reload && systemctl enable ${q(unitName)}; fi`,
      check: `test -f ${q(unitFile)} && grep -qF ${q(rulesFile)} ${q(unitFile)}`,
    }),
  );
  steps.push(...firewall(ctx));
  for (const f of plan.portForwards) {
    steps.push(
      step(ctx, {
        id: `network/tenant/nat-answers-${f.protocol}-${f.port}`,
        phase: 'network',
        title: `${plan.destination.publicAddress}:${f.port}/${f.protocol} answers through NAT`,
        host: 'worker',
        kind: 'probe',
        command: `${f.protocol} ${plan.destination.publicAddress}:${f.port}`,
        params: { protocol: f.protocol, address: plan.destination.publicAddress, port: f.port, zone: plan.dns.zone },
      }),
    );
  }
  for (const c of plan.containers) {
    // Only once NAT answers: the guide removes Incus proxy devices because they conflict with it.
    steps.push(
      s({
        id: `network/${c.name}/remove-proxy-devices`,
        title: `No Incus proxy devices on ${c.name}`,
        container: c.name,
        kind: 'run',
        command: `for d in $(${ctx.incus('config', 'device', 'list', c.name)}); do if [ "$(${ctx.incus('config', 'device', 'get', c.name)} "$d" type)" = proxy ]; then ${ctx.incus('config', 'device', 'remove', c.name)} "$d" || exit 1; fi; done`,
      }),
    );
  }
  return steps;
}

/**
 * The guide's host firewall: SSH allowed FIRST, forwarding allowed (containers), the plan's ports,
 * and only then enable, which itself refuses when the SSH rule is missing: never a locked-out host.
 */
function firewall(ctx: Ctx): Step[] {
  const fw = ctx.plan.destination.firewall;
  if (!fw) return [];
  const s = (init: Omit<StepInit, 'phase' | 'host'>) => step(ctx, { phase: 'network', host: 'destination', ...init });
  const allowed = (p: number) => `ufw status | grep -qE ${q(`^${p}/tcp +ALLOW`)}`;
  return [
    s({ id: 'network/tenant/firewall-allow-22', title: 'Firewall: allow SSH (22/tcp) before anything else', kind: 'run', command: sh('ufw', 'allow', '22/tcp'), check: allowed(22) }),
    s({ id: 'network/tenant/firewall-forward', title: 'Firewall: forwarding allowed (DEFAULT_FORWARD_POLICY=ACCEPT, for the containers)', kind: 'run', command: sh('ufw', 'default', 'allow', 'routed'), check: `ufw status verbose | grep -q 'allow (routed)'` }),
    ...fw.allow
      .filter((p) => p !== 22)
      .map((p) => s({ id: `network/tenant/firewall-allow-${p}`, title: `Firewall: allow ${p}/tcp`, kind: 'run', command: sh('ufw', 'allow', `${p}/tcp`), check: allowed(p) })),
    s({
      id: 'network/tenant/firewall-enable',
      title: 'Firewall: enable (refused unless 22/tcp is allowed)',
      kind: 'run',
      command: `${allowed(22)} || { echo 'refusing to enable the firewall: 22/tcp is not allowed' >&2; exit 1; }; ufw --force enable`,
      check: `ufw status | grep -q '^Status: active'`,
      refuses: true,
    }),
  ];
}

/** Deletes every PREROUTING DNAT rule for traffic to `address` on `protocol`/`port`, whatever its target. */
function dropDnat(address: string, protocol: string, port: number): string {
  const match = `-A PREROUTING -d ${address}/32 -p ${protocol} -m ${protocol} --dport ${port} -j DNAT `;
  return `iptables -t nat -S PREROUTING | grep -F -- ${q(match)} | sed 's/^-A /-D /' | while read -r r; do iptables -t nat $r || exit 1; done`;
}

/**
 * What a cancel before cutover undoes on the destination host: this plan's DNAT rules, saved
 * again. The MASQUERADE rule and ip_forward stay: other tenants' containers may rely on them.
 */
export function networkCompensationSteps(plan: Plan): Step[] {
  const ctx = context(plan);
  return [
    ...plan.portForwards.map((f) =>
      step(ctx, {
        id: `undo/tenant/dnat-${f.protocol}-${f.port}`,
        phase: 'network',
        title: `Remove the DNAT rule for ${f.protocol}/${f.port}`,
        host: 'destination',
        kind: 'run',
        command: dropDnat(plan.destination.publicAddress, f.protocol, f.port),
      }),
    ),
    step(ctx, {
      id: 'undo/tenant/persist',
      phase: 'network',
      title: `Save the rules again in ${plan.destination.iptablesRulesFile}`,
      host: 'destination',
      kind: 'run',
      command: `if [ -f ${q(plan.destination.iptablesRulesFile)} ]; then iptables-save > ${q(plan.destination.iptablesRulesFile)}; fi`,
    }),
  ];
}

/** The guide's iptables-restore unit. */
export function restoreUnit(rulesFile: string): string {
  return [
    '[Unit]',
    'Description=Restore iptables rules on boot',
    'After=network-pre.target',
    'Before=network.target',
    'DefaultDependencies=no',
    '[Service]',
    'Type=oneshot',
    `ExecStart=/bin/sh -c "/sbin/iptables-restore < ${rulesFile}"`,
    'RemainAfterExit=yes',
    '[Install]',
    'WantedBy=multi-user.target',
  ].join('\n');
}

function proxy(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const { container, configPath, binary, storageRoot, minVhosts } = plan.caddy;
  const next = `${configPath}.new`;
  const s = (init: Omit<StepInit, 'phase' | 'host' | 'container'>) => step(ctx, { phase: 'proxy', host: 'destination', container, ...init });
  const adapt = (file: string) => ctx.inside(container, binary, 'adapt', '--config', file, '--adapter', 'caddyfile');
  // The checks below pass once no rewritten config waits to be validated and installed.
  const nothingPending = ctx.inside(container, 'test', '!', '-e', next);
  return [
    s({ id: 'proxy/tenant/vhosts-before', title: 'Count the vhosts of the current config', kind: 'capture', command: adapt(configPath), captureAs: { kind: 'vhost-count', key: 'vhosts:before' } }),
    s({
      id: 'proxy/tenant/backup',
      title: 'Back up the Caddy config with a timestamp',
      kind: 'run',
      command: ctx.inside(container, 'cp', '-p', configPath, `${configPath}.bak-${ph('stamp', 'run')}`),
      check: ctx.inside(container, 'test', '-f', `${configPath}.bak-${ph('stamp', 'run')}`),
    }),
    (() => {
      const read = ctx.inside(container, 'cat', configPath);
      // Written over a copy of the live file, so owner and mode stay as they were (`cat >` keeps them).
      const write = ctx.inside(container, 'sh', '-c', 'cp -p "$2" "$1" && cat > "$1"', 'write', next, configPath);
      return s({
        id: 'proxy/tenant/rewrite',
        title: `Rewrite upstreams old → new addresses into ${next}`,
        kind: 'caddy-rewrite',
        command: `${read} | <old→new container addresses> | ${write}`,
        params: { read, write, containers: plan.containers.map((c) => c.name) },
      });
    })(),
    s({ id: 'proxy/tenant/validate', title: 'caddy validate the new config', kind: 'run', command: ctx.inside(container, binary, 'validate', '--config', next, '--adapter', 'caddyfile'), check: nothingPending }),
    s({
      id: 'proxy/tenant/vhosts-after',
      title: `Refuse a config with fewer vhosts than before or than ${minVhosts}`,
      kind: 'capture',
      command: adapt(next),
      captureAs: { kind: 'vhost-count', key: 'vhosts:after' },
      params: { atLeast: minVhosts, atLeastCapture: 'vhosts:before' },
      check: nothingPending,
    }),
    s({
      id: 'proxy/tenant/storage-block',
      title: `Refuse a config without the explicit storage block (${storageRoot})`,
      kind: 'run',
      refuses: true,
      command: `${adapt(next)} | grep -q ${q(`"storage":{"module":"file_system","root":"${storageRoot}"}`)}`,
      check: nothingPending,
    }),
    s({ id: 'proxy/tenant/install', title: 'Install the new config', kind: 'run', command: ctx.inside(container, 'mv', next, configPath), check: nothingPending }),
    s({ id: 'proxy/tenant/reload', title: 'caddy reload (not restart)', kind: 'run', command: ctx.inside(container, binary, 'reload', '--config', configPath, '--adapter', 'caddyfile') }),
  ];
}

function fixes(ctx: Ctx): Step[] {
  const { plan } = ctx;
  return plan.serviceFixes.flatMap((f, i): Step[] => {
    const base = { phase: 'fixes' as const, host: 'destination' as const, container: f.container };
    switch (f.kind) {
      case 'loopback-accept':
        return [
          step(ctx, {
            ...base,
            id: `fixes/${f.container}/loopback-accept-${i}`,
            title: `Loopback ACCEPT above any DROP inside ${f.container} (Valkey on 127.0.0.1)`,
            kind: 'run',
            command: ctx.inside(
              f.container,
              'sh',
              '-c',
              'iptables -D INPUT -i lo -j ACCEPT 2>/dev/null; iptables -I INPUT 1 -i lo -j ACCEPT && if [ -d /etc/iptables ]; then iptables-save > /etc/iptables/rules.v4; fi',
            ),
            check: ctx.inside(f.container, 'sh', '-c', "iptables -S INPUT | sed -n 2p | grep -qx -- '-A INPUT -i lo -j ACCEPT'"),
          }),
        ];
      case 'env': {
        const value = f.value.replace(/\{\{ip:([a-z0-9-]+)\}\}/g, (_m, c: string) => ipOf(c));
        const line = `${f.key}=${value}`;
        return [
          step(ctx, {
            ...base,
            id: `fixes/${f.container}/env-${f.key.toLowerCase()}`,
            title: `${f.key} in ${f.file}`,
            kind: 'run',
            command: ctx.inside(
              f.container,
              'sh',
              '-c',
              // Keeps an `Environment=` prefix (systemd units) and replaces the whole value; the new
              // text goes over a copy of the file (`cp -p`), so its owner and mode stay.
              'f="$1"; k="$2"; v="$3"; t="$f.gbo-new"; cp -p "$f" "$t" || exit 1; if grep -qE "^(Environment=\\"?)?$k=" "$f"; then ' +
                'sed -E "s#^(Environment=\\"?)?$k=[^\\"]*#\\1$k=$v#" "$f" > "$t"; else { cat "$f"; echo "$k=$v"; } > "$t"; fi && mv "$t" "$f"',
              'env-fix',
              f.file,
              f.key,
              value,
            ),
            check: ctx.inside(f.container, 'grep', '-qE', `^(Environment="?)?${f.key}=`, f.file) + ` && ${ctx.inside(f.container, 'grep', '-qF', line, f.file)}`,
          }),
          ...f.restart.map((unit) =>
            step(ctx, { ...base, id: `fixes/${f.container}/restart-${unit}`, title: `Restart ${unit}`, kind: 'run', command: ctx.inside(f.container, 'systemctl', 'restart', unit) }),
          ),
        ];
      }
      case 'vault-unseal':
        return [
          step(ctx, {
            ...base,
            id: `fixes/${f.container}/vault-unseal`,
            title: `Unseal Vault in ${f.container} (key from ${f.keyRef.split(':')[0]} reference, over stdin)`,
            kind: 'vault-unseal',
            command: ctx.inside(f.container, 'env', `VAULT_ADDR=${f.vaultAddr}`, 'VAULT_SKIP_VERIFY=true', 'sh', '-c', 'read -r k && "$1" operator unseal "$k" >/dev/null', 'unseal', f.binary),
            check: ctx.inside(f.container, 'env', `VAULT_ADDR=${f.vaultAddr}`, 'VAULT_SKIP_VERIFY=true', f.binary, 'status'),
            params: { keyRef: f.keyRef },
          }),
        ];
    }
  });
}

function verify(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const steps: Step[] = [];
  for (const c of plan.containers) {
    for (const svc of c.services) {
      for (const port of svc.ports) {
        const base = { phase: 'verify' as const, container: c.name, params: { service: svc.name, port, protocol: svc.protocol, required: svc.required } };
        steps.push(
          svc.protocol === 'tcp'
            ? step(ctx, { ...base, id: `verify/${c.name}/${slug(svc.name)}-${port}`, title: `${c.name} × ${svc.name} × ${port}/tcp`, host: 'destination', kind: 'probe', command: tcpProbe(ipOf(c.name), port) })
            : step(ctx, {
                ...base,
                id: `verify/${c.name}/${slug(svc.name)}-${port}-udp`,
                title: `${c.name} × ${svc.name} × ${port}/udp`,
                host: 'destination',
                kind: 'probe',
                // A DNS question for the zone's SOA: the only UDP service the guide runs.
                command: ctx.inside(c.name, 'nslookup', '-type=soa', plan.dns.zone, '127.0.0.1'),
              }),
        );
      }
    }
    for (const file of c.requiredFiles) {
      const tests = [`test -e ${file.path}`, ...(file.executable ? [`test -x ${file.path}`] : []), ...(file.owner ? [`test "$(stat -c %U ${file.path})" = ${file.owner}`] : [])];
      steps.push(
        step(ctx, {
          id: `verify/${c.name}/file-${slug(file.path)}`,
          phase: 'verify',
          container: c.name,
          title: `${c.name}: ${file.path}${file.owner ? ` owned by ${file.owner}` : ''}${file.executable ? ', executable' : ''}`,
          host: 'destination',
          kind: 'probe',
          command: ctx.inside(c.name, 'sh', '-c', tests.join(' && ')),
          params: { service: 'file', path: file.path, required: true },
        }),
      );
    }
  }
  return steps;
}

function cutover(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const { dns } = plan;
  return [
    step(ctx, { id: 'cutover/tenant/gate', phase: 'cutover', title: 'Approval: cut over (matrix green or recorded override)', host: 'worker', kind: 'gate', gate: 'cutover', command: '' }),
    step(ctx, {
      id: 'cutover/tenant/zone-backup',
      phase: 'cutover',
      container: dns.container,
      title: `Back up ${dns.zoneFile}`,
      host: 'destination',
      kind: 'run',
      command: ctx.inside(dns.container, 'cp', '-p', dns.zoneFile, `${dns.zoneFile}.bak-${ph('stamp', 'run')}`),
      check: ctx.inside(dns.container, 'test', '-f', `${dns.zoneFile}.bak-${ph('stamp', 'run')}`),
    }),
    (() => {
      const read = ctx.inside(dns.container, 'cat', dns.zoneFile);
      const write = ctx.inside(dns.container, 'sh', '-c', 'cp -p "$1" "$1.new" && cat > "$1.new" && mv "$1.new" "$1"', 'write', dns.zoneFile);
      return step(ctx, {
        id: 'cutover/tenant/zone-update',
        phase: 'cutover',
        container: dns.container,
        title: `Point ${dns.records.map((r) => `${r.name} ${r.type}`).join(', ')} at the destination; bump the SOA serial`,
        host: 'destination',
        kind: 'zone-update',
        command: `${read} | <set records, serial+1> | ${write}`,
        params: { read, write, zone: dns.zone, records: dns.records.map((r) => JSON.stringify(r)) },
      });
    })(),
    step(ctx, { id: 'cutover/tenant/dns-reload', phase: 'cutover', container: dns.container, title: 'Reload the DNS server', host: 'destination', kind: 'run', command: ctx.inside(dns.container, ...dns.reloadCommand) }),
    step(ctx, {
      id: 'cutover/tenant/dns-propagated',
      phase: 'cutover',
      title: `Wait until ${dns.authoritativeServers.join(', ')} answer the new records, then ${dns.oldTtlSeconds}s for old TTLs`,
      host: 'worker',
      kind: 'wait-dns',
      command: dns.authoritativeServers.map((server) => `dig @${server} ${dns.zone} A`).join('; '),
      params: { servers: dns.authoritativeServers, oldTtlSeconds: dns.oldTtlSeconds, zone: dns.zone, records: dns.records.map((r) => JSON.stringify(r)) },
      profile: 'poll',
    }),
  ];
}

function certificates(ctx: Ctx): Step[] {
  const { plan } = ctx;
  return (plan.certificates?.domains ?? []).map((domain) =>
    step(ctx, {
      id: `certificates/tenant/${slug(domain)}`,
      phase: 'certificates',
      title: `A valid certificate is served for ${domain} (waits out ACME rate limits)`,
      host: 'worker',
      kind: 'wait-cert',
      command: `tls ${plan.destination.publicAddress}:443 servername=${domain}`,
      params: { domain, address: plan.destination.publicAddress, pollInterval: plan.certificates?.wait.pollInterval ?? '5m', maxWait: plan.certificates?.wait.maxWait ?? '7d' },
      profile: 'poll',
    }),
  );
}

function cleanup(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const steps: Step[] = [
    step(ctx, {
      id: 'cleanup/tenant/verification-window',
      phase: 'cleanup',
      title: `Verification window: ${plan.approvals.verificationWindow} of the tenant running on the destination`,
      host: 'worker',
      kind: 'wait-window',
      command: '',
      params: { duration: plan.approvals.verificationWindow },
    }),
    step(ctx, { id: 'cleanup/tenant/gate', phase: 'cleanup', title: 'Approval: delete the source copies', host: 'worker', kind: 'gate', gate: 'cleanup', command: '' }),
  ];
  for (const c of plan.containers) {
    const src = ctx.sourceName(c);
    steps.push(
      step(ctx, {
        id: `cleanup/${c.name}/record-data`,
        phase: 'cleanup',
        container: c.name,
        title: `Record what is about to be deleted under ${ctx.sourceDataOf(c)}`,
        host: 'source',
        kind: 'capture',
        command: `du -sb ${q(ctx.sourceDataOf(c))} 2>/dev/null; find ${q(ctx.sourceDataOf(c))} -maxdepth 2 2>/dev/null | head -n 50`,
        captureAs: { kind: 'text', key: `deleted:${c.name}` },
      }),
      step(ctx, {
        id: `cleanup/${c.name}/delete-data`,
        phase: 'cleanup',
        container: c.name,
        title: `Delete ${ctx.sourceDataOf(c)} on the source`,
        host: 'source',
        kind: 'run',
        command: sh('rm', '-rf', '--one-file-system', ctx.sourceDataOf(c)),
        check: sh('test', '!', '-e', ctx.sourceDataOf(c)),
        destructive: true,
        gate: 'cleanup',
      }),
      step(ctx, {
        id: `cleanup/${c.name}/delete-container`,
        phase: 'cleanup',
        container: c.name,
        title: `Delete the stopped source container ${src}`,
        host: 'source',
        kind: 'run',
        command: ctx.lxc('delete', src),
        check: `! ${ctx.lxc('query', `/1.0/instances/${src}`)} >/dev/null 2>&1`,
        destructive: true,
        gate: 'cleanup',
      }),
    );
  }
  return steps;
}

/** Devices as `lxc query` reports them: name → { type, key: value }. */
export type DeviceMap = Record<string, Record<string, string>>;

/**
 * What a cancel before cutover undoes for one container: the destination copy goes (only if this
 * migration made it), the source's recorded devices come back exactly as they were, the source
 * starts again. Without `devices` (the dry run), one step stands for the per-device ones.
 */
export function compensationSteps(plan: Plan, container: string, devices?: DeviceMap, options: { madeHere?: boolean } = {}): Step[] {
  const ctx = context(plan);
  const c = plan.containers.find((x) => x.name === container);
  if (!c) throw new Error(`no container ${container} in the plan`);
  const src = ctx.sourceName(c);
  const restore: Step[] =
    devices === undefined
      ? [
          step(ctx, {
            id: `undo/${c.name}/restore-devices`,
            phase: 'stop',
            container: c.name,
            title: `Restore ${src}'s recorded devices`,
            host: 'source',
            kind: 'run',
            command: `${ctx.lxc('config', 'device', 'add', src)} <name> <type> <key=value>... (each recorded device)`,
          }),
        ]
      : Object.entries(devices).map(([name, cfg]) => {
          const { type, ...keys } = cfg;
          return step(ctx, {
            id: `undo/${c.name}/restore-device-${slug(name)}`,
            phase: 'stop',
            container: c.name,
            title: `Restore ${src}'s ${type ?? ''} device ${name}`,
            host: 'source',
            kind: 'run',
            command: ctx.lxc('config', 'device', 'add', src, name, type ?? 'none', ...Object.entries(keys).map(([k, v]) => `${k}=${v}`)),
            check: `${ctx.lxc('config', 'device', 'list', src)} | grep -qx ${q(name)}`,
          });
        });
  return [
    step(ctx, {
      id: `undo/${c.name}/delete-copy`,
      phase: 'copy',
      container: c.name,
      title: `Delete the destination copy ${c.name} (only if this migration made it)`,
      host: 'destination',
      kind: 'run',
      // Made here: the name was free at preflight, so whatever holds it now is this run's copy,
      // marked or left half made. Otherwise only a copy with this tenant's mark goes.
      command: options.madeHere
        ? `if ${ctx.incus('query', `/1.0/instances/${c.name}`)} >/dev/null 2>&1; then ${ctx.incus('delete', '--force', c.name)}; fi`
        : `if ${markedAsOurs(ctx, c.name)}; then ${ctx.incus('delete', '--force', c.name)}; fi`,
      check: `! ${ctx.incus('query', `/1.0/instances/${c.name}`)} >/dev/null 2>&1`,
    }),
    step(ctx, {
      id: `undo/${c.name}/delete-copied-data`,
      phase: 'data',
      container: c.name,
      title: `Delete ${c.name}'s pulled data on the destination (a later run must pull afresh)`,
      host: 'destination',
      kind: 'run',
      command: sh('rm', '-rf', '--one-file-system', ctx.stagingOf(c), ctx.finalOf(c)),
    }),
    ...restore,
    step(ctx, {
      id: `undo/${c.name}/start-source`,
      phase: 'stop',
      container: c.name,
      title: `Start ${src} again`,
      host: 'source',
      kind: 'run',
      command: ctx.lxc('start', src),
      check: `${ctx.lxc('query', `/1.0/instances/${src}`)} | grep -q '"status": "Running"'`,
    }),
  ];
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

function dirname(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** The whole runbook for a plan, phase by phase. Containers in plan order, canaries first. */
export function buildRunbook(plan: Plan): Runbook {
  const ctx = context(plan);
  const ordered = [...plan.containers.filter((c) => c.canary), ...plan.containers.filter((c) => !c.canary)];
  const perContainer = (f: (ctx: Ctx, c: ContainerPlan) => Step[]) => ordered.flatMap((c) => f(ctx, c));
  const byPhase: Record<PhaseId, Step[]> = {
    preflight: preflight(ctx),
    presync: perContainer(presync),
    record: perContainer(record),
    stop: perContainer(stop),
    copy: perContainer(copy),
    data: perContainer(data),
    network: network(ctx),
    proxy: proxy(ctx),
    fixes: fixes(ctx),
    verify: verify(ctx),
    cutover: cutover(ctx),
    certificates: certificates(ctx),
    cleanup: cleanup(ctx),
  };
  const phases: Phase[] = PHASES.map((p) => ({ id: p.id, title: p.title, steps: byPhase[p.id] }));
  return { tenant: plan.tenant, phases, compensation: [...networkCompensationSteps(plan), ...ordered.flatMap((c) => compensationSteps(plan, c.name))] };
}
