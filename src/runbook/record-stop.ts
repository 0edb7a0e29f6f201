/**
 * Record each source container (config, devices, addresses) before anything changes it, then stop
 * it, remove its devices and checksum its data now that nothing writes to it.
 */
import type { ContainerPlan } from '../plan/schema';
import type { Step } from './model';
import { hasData, step, type Ctx } from './commands';
import { MANIFEST_SCRIPT } from './scripts';
import { sh } from './shell';

export function record(ctx: Ctx, c: ContainerPlan): Step[] {
  const src = ctx.sourceName(c);
  return [
    step(ctx, {
      id: `record/${c.name}/instance`,
      phase: 'record',
      container: c.name,
      title: `Record ${src}'s config, devices and idmap (expanded) before they change`,
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
      title: `Record ${src}'s addresses (reverse-proxy upstreams may point at them)`,
      host: 'source',
      kind: 'capture',
      command: ctx.lxc('query', `/1.0/instances/${src}/state`),
      captureAs: { kind: 'state-ipv4', key: `oldip:${c.name}` },
      once: true,
    }),
  ];
}

export function stop(ctx: Ctx, c: ContainerPlan): Step[] {
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
    ...(hasData(c)
      ? [
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
        ]
      : []),
  ];
}
