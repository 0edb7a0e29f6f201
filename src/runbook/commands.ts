/**
 * The command builders every phase module shares: the context (the plan and its derived paths),
 * `step` (sudo from the plan's host settings), the `lxc` / `incus` / `incus exec` wrappers, and the
 * probes. Every argument goes through `sh`/`q` here, whatever validation already did.
 */
import type { ContainerPlan, Plan } from '../plan/schema';
import { sourceNameOf } from '../plan/schema';
import type { Step, StepHost } from './model';
import { isIPv4, q, sh } from './shell';

/** Marker set on every destination instance this tool creates; a name clash is an instance without it. */
export const OWNER_KEY = 'user.gbo-migrate.tenant';

/** Is every port answering? Bash's /dev/tcp, so nothing needs installing on the destination. */
export const tcpProbe = (ip: string, port: number) => sh('timeout', 5, 'bash', '-c', `: </dev/tcp/${q(ip)}/${q(port)}`);

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
