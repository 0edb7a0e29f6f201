/**
 * The verification matrix: every declared service port, probed the way the plan declares it, and
 * every required file of every container.
 */
import { probeOf } from '../plan/schema';
import type { Step } from './model';
import { probeCommand, slug, step, type Ctx } from './commands';
import { ipOf, q } from './shell';

export function verify(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const steps: Step[] = [];
  for (const c of plan.containers) {
    for (const svc of c.services) {
      const probe = probeOf(svc);
      for (const port of svc.ports) {
        const id = `verify/${c.name}/${slug(svc.name)}-${port}${svc.protocol === 'udp' ? '-udp' : ''}`;
        const params = { service: svc.name, port, protocol: svc.protocol, required: svc.required, probe: probe.kind, probeSpec: JSON.stringify(probe) };
        const title = `${c.name} × ${svc.name} × ${port}/${svc.protocol} (${probe.kind === 'none' ? 'not probed' : `${probe.kind} probe`})`;
        steps.push(
          probe.kind === 'none'
            ? // Declared as not probed: in the matrix as such, never red.
              step(ctx, { id, phase: 'verify', container: c.name, title, host: 'worker', kind: 'probe', command: '', params })
            : step(ctx, { id, phase: 'verify', container: c.name, title, host: 'destination', kind: 'probe', command: probeCommand(ipOf(c.name), port, probe), params }),
        );
      }
    }
    for (const file of c.requiredFiles) {
      const tests = [`test -e ${q(file.path)}`, ...(file.executable ? [`test -x ${q(file.path)}`] : []), ...(file.owner ? [`test "$(stat -c %U ${q(file.path)})" = ${q(file.owner)}`] : [])];
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
