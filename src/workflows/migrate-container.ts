/**
 * One container's migration: warm pre-sync, record, stop, copy, data. A child workflow per
 * container keeps each history small and lets containers run in parallel. A failed step fails the
 * child with the step's id; the parent asks the operator and re-runs the child, whose steps are
 * idempotent, so the re-run skips what is already done. Cancelled, it undoes its own container.
 */
import { CancellationScope, isCancellation } from '@temporalio/workflow';
import type { Mode } from '../activities/steps';
import type { Plan } from '../plan/schema';
import type { RecordedInstance } from '../activities/parse';
import { buildRunbook, compensationSteps } from '../runbook/build';
import { CONTAINER_PHASES, stepsOf } from '../runbook/model';
import { hostTargets, newStepLog, runSteps, type SkippedStep, type StepLog } from './run-steps';

export interface MigrateContainerInput {
  plan: Plan;
  container: string;
  mode: Mode;
  /** Values learned by the parent (the run's timestamp, ...). */
  values: Record<string, string>;
  /** Steps an operator chose to skip. */
  skip?: SkippedStep[];
}

export interface MigrateContainerResult {
  container: string;
  log: StepLog;
}

export async function migrateContainer(input: MigrateContainerInput): Promise<MigrateContainerResult> {
  const { plan, container, mode } = input;
  const runbook = buildRunbook(plan);
  const log = newStepLog(input.values);
  const ctx = { mode, hosts: hostTargets(plan), log, skip: input.skip, onFailure: 'fail' as const };
  try {
    for (const phase of CONTAINER_PHASES) {
      // Downtime starts when the source stops; the parent measures it from here.
      if (phase === 'stop' && log.values[`stoppedAt:${container}`] === undefined) log.values[`stoppedAt:${container}`] = new Date().toISOString();
      await runSteps(stepsOf(runbook, phase, container), ctx);
    }
  } catch (err) {
    if (isCancellation(err) && mode === 'live') await CancellationScope.nonCancellable(() => compensate(plan, container, log));
    throw err;
  }
  return { container, log };
}

/**
 * Undoes one container: only what this migration changed. Nothing on the source changes before
 * `record` captured the instance, so without that record there is nothing to restore there.
 */
export async function compensate(plan: Plan, container: string, log: StepLog): Promise<void> {
  const recorded = log.values[`instance:${container}`];
  const instance = recorded ? (JSON.parse(recorded) as RecordedInstance) : undefined;
  const steps = compensationSteps(plan, container, instance?.devices ?? {}).filter(
    (s) => (instance !== undefined || s.host === 'destination') && (!s.id.endsWith('/start-source') || instance?.status === 'Running'),
  );
  await runSteps(steps, { mode: 'live', hosts: hostTargets(plan), log, onFailure: 'fail' });
}
