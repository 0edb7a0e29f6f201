/**
 * What a cancel before cutover undoes, per container.
 */
import type { Plan } from '../plan/schema';
import type { Step } from './model';
import { context, markedAsOurs, slug, step } from './commands';
import { q, sh } from './shell';

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
