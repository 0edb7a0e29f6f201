/**
 * Cleanup: the verification window, the gate, then the source's data and containers, each recorded
 * before it goes.
 */
import type { Step } from './model';
import { hasData, step, type Ctx } from './commands';
import { q, sh } from './shell';

export function cleanup(ctx: Ctx): Step[] {
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
    // A stateless container has no data folder on the source.
    if (hasData(c)) {
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
      );
    }
    steps.push(
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
