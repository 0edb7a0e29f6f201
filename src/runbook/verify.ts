/**
 * The verification matrix: every declared service port and required file of every container.
 */
import type { Step } from './model';
import { slug, step, tcpProbe, type Ctx } from './commands';
import { ipOf, q } from './shell';

export function verify(ctx: Ctx): Step[] {
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
