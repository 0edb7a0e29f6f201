/**
 * One container's migration: warm pre-sync, record, stop, copy, data. A child workflow per
 * container keeps each history small and lets containers run in parallel. It reports every step
 * and every value it learns to its parent as it goes, so the parent holds the one record of the
 * source. A failed step waits here for the operator's retry or skip (forwarded by the parent) and
 * resumes at that step; a pause holds it at its next step boundary. Cancelled, it stops: the
 * parent undoes every container that was touched, from its record.
 */
import { ApplicationFailure, CancellationScope, isCancellation, workflowInfo } from '@temporalio/workflow';
import type { Mode } from '../activities/steps';
import type { Plan } from '../plan/schema';
import { buildRunbook } from '../runbook/build';
import { CONTAINER_PHASES, stepsOf } from '../runbook/model';
import { workflowIdOf } from './messages';
import { ContainerControl } from './operator-state';
import { runSteps, type RunContext, type StepLog } from './run-steps';

export interface MigrateContainerInput {
  plan: Plan;
  container: string;
  mode: Mode;
  /** What the parent knows already (the run's timestamp, and on a re-run the recorded source). */
  values: Record<string, string>;
  /** `wait` (default): a failed step waits for the operator; `fail`: the child fails naming the step. */
  onFailure?: 'wait' | 'fail';
  /** The migration was paused when this child started. */
  paused?: boolean;
}

export interface MigrateContainerResult {
  container: string;
  log: StepLog;
}

/**
 * Only the tenant's migration may start a container's: it validated the plan, ran preflight and
 * holds the record a cancel undoes from. Started on its own (the Web UI lists this workflow type
 * too), a container's steps would stop a source with nobody to put it back.
 */
function refuseUnlessChildOfItsTenant(input: MigrateContainerInput): void {
  const parent = workflowInfo().parent;
  const tenant = typeof input?.plan?.tenant === 'string' ? input.plan.tenant : undefined;
  const mode = input?.mode === 'live' || input?.mode === 'dry-run' ? input.mode : undefined;
  const expected = tenant !== undefined && mode !== undefined ? workflowIdOf(tenant, mode) : undefined;
  if (parent === undefined || expected === undefined || parent.workflowId !== expected) {
    throw ApplicationFailure.nonRetryable(
      `migrateContainer runs only as a child of its tenant's migration (${expected ?? 'migrate-<tenant>'}), ` +
        `not on its own (parent: ${parent?.workflowId ?? 'none'}); start migrateTenant with the plan instead`,
      'NotAChildOfItsMigration',
    );
  }
  if (!input.plan.containers?.some((c) => c.name === input.container)) {
    throw ApplicationFailure.nonRetryable(`migrateContainer: ${JSON.stringify(input.container)} is not a container of the plan`, 'InvalidPlan');
  }
}

export async function migrateContainer(input: MigrateContainerInput): Promise<MigrateContainerResult> {
  refuseUnlessChildOfItsTenant(input);
  const { plan, container, mode } = input;
  const runbook = buildRunbook(plan);
  const control = new ContainerControl(container, input.values, input.paused ?? false);
  const { log } = control;
  const ctx: RunContext = { ...control.runContext(plan, mode, input.onFailure), onStep: control.onStep };
  try {
    for (const phase of CONTAINER_PHASES) {
      // Downtime starts when the source stops; the parent measures it from here.
      if (phase === 'stop' && log.values[`stoppedAt:${container}`] === undefined) control.learn(`stoppedAt:${container}`, new Date().toISOString());
      await runSteps(stepsOf(runbook, phase, container), ctx);
      await control.flush();
    }
    await control.flush(null);
  } catch (err) {
    // Whatever the parent has not heard yet, it hears before it compensates.
    if (isCancellation(err)) await CancellationScope.nonCancellable(() => control.flush(null));
    throw err;
  }
  return { container, log };
}
