/**
 * The command builders every phase module shares: the context (the plan and its derived paths),
 * `step` (sudo from the plan's host settings), the `lxc` / `incus` / `incus exec` wrappers, and the
 * probes. Every argument goes through `sh`/`q` here, whatever validation already did.
 */
import type { ContainerPlan, Plan, Probe } from '../plan/schema';
import { sourceNameOf } from '../plan/schema';
import type { Step, StepHost } from './model';
import { isIPv4, q, sh } from './shell';

/** Marker set on every destination instance this tool creates; a name clash is an instance without it. */
export const OWNER_KEY = 'user.gbo-migrate.tenant';

/** Is every port answering? Bash's /dev/tcp, so nothing needs installing on the destination. */
export const tcpProbe = (ip: string, port: number) => sh('timeout', 5, 'bash', '-c', `: </dev/tcp/${q(ip)}/${q(port)}`);

/**
 * An HTTP request over bash's /dev/tcp; any status line 1xx–4xx counts as answering (a 404 or a
 * 401 is a service that answers; a 5xx or silence is not).
 */
const HTTP_PROBE =
  'exec 3<>"/dev/tcp/$1/$2" || exit 1; printf "GET %s HTTP/1.0\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n" "$3" "$1" >&3; ' +
  'head -c 12 <&3 | grep -Eq "^HTTP/[0-9.]+ [1-4][0-9][0-9]"';

/**
 * A DNS question (type SOA) for a name as a hand-built datagram over bash's /dev/udp: the answer
 * must carry the question's ID, the response bit and NOERROR. Needs bash, printf, dd and od only.
 */
const DNS_PROBE =
  'exec 3<>"/dev/udp/$1/$2" || exit 1; printf "$3" >&3; ' +
  'r=$(timeout 3 dd bs=4096 count=1 status=none <&3 | head -c 4 | od -An -tx1 | tr -d " \\n"); ' +
  'case "$r" in 6762[89a-f]?[0-9a-f]0) exit 0;; esac; echo "no DNS answer (got ${r:-nothing})" >&2; exit 1';

/** A datagram `$3`; a reply that contains `$4` counts as answering. */
const UDP_PROBE =
  'exec 3<>"/dev/udp/$1/$2" || exit 1; printf %s "$3" >&3; ' +
  'r=$(timeout 3 dd bs=4096 count=1 status=none <&3 | tr -d "\\000"); ' +
  'case "$r" in *"$4"*) exit 0;; esac; echo "no reply containing the expected text" >&2; exit 1';

/** A DNS query for `name`, type SOA, ID 0x6762, no recursion, as printf escapes (octal). */
export function dnsQueryEscapes(name: string): string {
  const o = (n: number) => `\\${n.toString(8).padStart(3, '0')}`;
  const labels = name.replace(/\.$/, '').split('.').map((l) => `${o(l.length)}${l}`).join('');
  return `${o(0x67)}${o(0x62)}${o(0)}${o(0)}${o(0)}${o(1)}${o(0)}${o(0)}${o(0)}${o(0)}${o(0)}${o(0)}${labels}${o(0)}${o(0)}${o(6)}${o(0)}${o(1)}`;
}

/**
 * The command that probes `ip:port` the way the plan declares for the service, from the
 * destination host, with bash and coreutils only. `none` has no command (the matrix shows it as
 * not probed).
 */
export function probeCommand(ip: string, port: number, probe: Probe): string {
  switch (probe.kind) {
    case 'tcp':
      return tcpProbe(ip, port);
    case 'http':
      return sh('timeout', 5, 'bash', '-c', HTTP_PROBE, 'http-probe', ip, port, probe.path);
    case 'dns':
      return sh('timeout', 5, 'bash', '-c', DNS_PROBE, 'dns-probe', ip, port, dnsQueryEscapes(probe.name));
    case 'udp':
      return sh('timeout', 5, 'bash', '-c', UDP_PROBE, 'udp-probe', ip, port, probe.send, probe.expect);
    case 'none':
      return '';
  }
}

/** Context shared by the phase builders. */
export interface Ctx {
  plan: Plan;
  lxc(...args: (string | number)[]): string;
  incus(...args: (string | number)[]): string;
  /** `incus exec <c> -- <args>` */
  inside(container: string, ...args: (string | number)[]): string;
  sourceName(c: ContainerPlan): string;
  stagingOf(c: ContainerPlan): string;
  finalOf(c: ContainerPlan): string;
  sourceDataOf(c: ContainerPlan): string;
  /** Where the container's data goes inside it: its own `dataPath`, else `data.containerPath`. */
  dataPathOf(c: ContainerPlan): string;
  sshToSource: string;
}

export function context(plan: Plan): Ctx {
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
    // Connecting to the recorded address of a named host: its key is pinned under the name.
    ...(isIPv4(src.address) ? [] : ['-o', `HostKeyAlias=${src.address}`]),
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
    dataPathOf: (c) => c.dataPath ?? plan.data.containerPath,
    // Quoted word by word: the pull-ssh step runs it through a shell, rsync splits `-e` on the same quotes.
    sshToSource: sshOpts.map(q).join(' '),
  };
}

export type StepInit = Omit<Step, 'profile' | 'command'> & { profile?: Step['profile']; command: string };

/** Makes a step; `sudo` comes from the plan's host settings (see `hostCommand`). */
export function step(ctx: Ctx, init: StepInit): Step {
  const sudoOn = (host: StepHost) => host !== 'worker' && ctx.plan.hosts[host].sudo;
  const s: Step = { ...init, profile: init.profile ?? 'quick' };
  if (sudoOn(init.host)) s.sudo = true;
  if (init.check !== undefined && sudoOn(init.checkOn ?? init.host)) s.checkSudo = true;
  return s;
}

/** The destination instance carries this tenant's mark: this migration made it, whole. */
export function markedAsOurs(ctx: Ctx, name: string): string {
  return `test "$(${ctx.incus('config', 'get', name, OWNER_KEY)} 2>/dev/null)" = ${q(ctx.plan.tenant)}`;
}

export function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

export function dirname(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** A container with data folders; one without is stateless (no data steps). */
export function hasData(c: ContainerPlan): boolean {
  return c.dataDirs.length > 0;
}
