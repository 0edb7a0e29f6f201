/**
 * Copy each container to the destination, marked as this tenant's, on the destination's bridge, started.
 */
import type { ContainerPlan } from '../plan/schema';
import type { Step } from './model';
import { markedAsOurs, OWNER_KEY, step, type Ctx, type StepInit } from './commands';

export function copy(ctx: Ctx, c: ContainerPlan): Step[] {
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
            title: `${c.name} is privileged (owns its ${ctx.dataPathOf(c)})`,
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
