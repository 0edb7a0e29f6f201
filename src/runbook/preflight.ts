/**
 * Preflight: both hosts reached with pinned keys, versions, the API port, trust and the remote,
 * inventories, space, and the destination's key for the rsync pull.
 */
import type { Step } from './model';
import { hasData, OWNER_KEY, step, tcpProbe, type Ctx, type StepInit } from './commands';
import { isIPv4, pinnedAddress, ph, q, sh } from './shell';

/** Where the incus client keeps its certificate (INCUS_CONF, else ~/.config/incus), as the guide reads it. */
const INCUS_CLIENT_CERT = '"${INCUS_CONF:-$HOME/.config/incus}/client.crt"';

export function preflight(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const s = (init: Omit<StepInit, 'phase'>) => step(ctx, { phase: 'preflight', ...init });
  const remote = plan.source.remoteName;
  const apiAddress = pinnedAddress(plan.source.apiAddress, 'api');
  const api = `https://${apiAddress}:${plan.source.apiPort}`;
  const srcUser = plan.hosts.source;
  // The login user's own file unless the plan names one; `$HOME` expands on the source host.
  const withData = plan.containers.filter(hasData);
  const authorizedKeys = srcUser.authorizedKeys ? q(srcUser.authorizedKeys) : '"$HOME/.ssh/authorized_keys"';
  const steps: Step[] = [
    ...resolveSteps(ctx),
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
      command: `${ctx.lxc('config', 'set', 'core.https_address', `${apiAddress}:${plan.source.apiPort}`)}`,
      check: `test "$(${ctx.lxc('config', 'get', 'core.https_address')})" = ${q(`${apiAddress}:${plan.source.apiPort}`)}`,
    }),
    ...(['source', 'destination'] as const).map((host) =>
      s({
        id: `preflight/tenant/${host}-open-${plan.source.apiPort}`,
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
      command: tcpProbe(apiAddress, plan.source.apiPort),
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
      // Stateless containers have no data folder; a tenant of only those has none to sum.
      command: withData.length
        ? `du -sb ${withData.map((c) => q(ctx.sourceDataOf(c))).join(' ')} | awk '{t+=$1} END {printf "%.0f\\n", t}'`
        : 'echo 0',
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
      // `--`: a destination that starts with `-` is not an option (`-oProxyCommand=...`).
      command: `${ctx.sshToSource} -- ${q(`${srcUser.user}@${pinnedAddress(plan.hosts.source.address, 'source')}`)} true`,
    }),
  ];
  return steps;
}

/**
 * Host names in the plan, resolved by the worker once and recorded: every later connection and
 * command uses the recorded address (`{{addr:<role>}}`), whatever DNS says later. The cutover
 * itself changes DNS records; a name resolved again afterwards could aim cleanup at another host.
 */
function resolveSteps(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const names: [string, string, string][] = [
    ['source', plan.hosts.source.address, 'the source host'],
    ['destination', plan.hosts.destination.address, 'the destination host'],
    ['api', plan.source.apiAddress, "the source's LXD API"],
  ];
  return names
    .filter(([, address]) => !isIPv4(address))
    .map(([role, address, what]) =>
      step(ctx, {
        id: `preflight/tenant/resolve-${role}`,
        phase: 'preflight',
        title: `Resolve ${address} (${what}) once; every later step uses this address`,
        host: 'worker',
        kind: 'resolve-address',
        command: sh('resolve', address), // the worker resolves it (IPv4); shown quoted like any command
        captureAs: { kind: 'address', key: `addr:${role}` },
        params: { name: address },
        once: true,
      }),
    );
}

/** Appends each stdin line to a known_hosts file unless it is there already. */
function pinScript(file: string): string {
  return sh('sh', '-c', 'mkdir -p "$(dirname "$1")" && touch "$1" && while IFS= read -r l; do grep -qxF "$l" "$1" || printf "%s\\n" "$l" >> "$1"; done', 'pin', file);
}
