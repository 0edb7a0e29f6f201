/**
 * One container's migration: warm pre-sync, record, stop, copy, data. A child workflow per
 * container keeps each history small and lets containers run in parallel.
 */
import type { Mode } from '../activities/steps';
import type { Plan } from '../plan/schema';
import { buildRunbook } from '../runbook/build';
import { CONTAINER_PHASES, stepsOf } from '../runbook/model';
import { hostTargets, newStepLog, runSteps, type StepLog } from './run-steps';

export interface MigrateContainerInput {
  plan: Plan;
  container: string;
  mode: Mode;
  /** Values learned by the parent (the run's timestamp, ...). */
  values: Record<string, string>;
}

export interface MigrateContainerResult {
  container: string;
  log: StepLog;
}

export async function migrateContainer(input: MigrateContainerInput): Promise<MigrateContainerResult> {
  const runbook = buildRunbook(input.plan);
  const log = newStepLog(input.values);
  for (const phase of CONTAINER_PHASES) {
    await runSteps(stepsOf(runbook, phase, input.container), input.mode, log, hostTargets(input.plan));
  }
  return { container: input.container, log };
}
