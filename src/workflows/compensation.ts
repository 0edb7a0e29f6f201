/**
 * Cancel before cutover: undo everything this run did, from the one record the migration keeps,
 * for every container it touched (whether its child finished, failed or was cancelled midway).
 * Every undo step is attempted even when one fails; what could not be undone is reported with the
 * command that finishes it by hand.
 */
import type { RecordedInstance } from '../activities/parse';
import type { Plan } from '../plan/schema';
import { compensationSteps, networkCompensationSteps } from '../runbook/build';
import { CONTAINER_PHASES, type PhaseId, type Step } from '../runbook/model';
import { hostCommand } from '../runbook/shell';
import type { UndoFailure } from './messages';
import { hostTargets, pinnedHosts, messageOf, runSteps, type StepLog } from './run-steps';

/** The undo steps for what the record says this run touched, last container first. */
export function undoSteps(plan: Plan, log: StepLog): Step[] {
  const touched = (name: string) =>
    Object.entries(log.states).some(([id, state]) => {
      const [phase, container] = id.split('/');
      return container === name && CONTAINER_PHASES.includes(phase as PhaseId) && state !== 'pending';
    });
  const freeAtPreflight = log.values['names:destination'] === undefined ? undefined : log.values['names:destination'].split(',');
  const steps: Step[] = Object.keys(log.states).some((id) => id.startsWith('network/')) ? networkCompensationSteps(plan) : [];
  for (const c of [...plan.containers].reverse().filter((x) => touched(x.name))) {
    const recorded = log.values[`instance:${c.name}`];
    const instance = recorded ? (JSON.parse(recorded) as RecordedInstance) : undefined;
    const madeHere = freeAtPreflight !== undefined && !freeAtPreflight.includes(c.name);
    steps.push(
      // Nothing on the source changes before `record` captured the instance: without that record
      // there is nothing to restore there; a source that was stopped before stays stopped.
      ...compensationSteps(plan, c.name, instance?.devices ?? {}, { madeHere }).filter(
        (s) => (instance !== undefined || s.host === 'destination') && (!s.id.endsWith('/start-source') || instance?.status === 'Running'),
      ),
    );
  }
  return steps;
}

/** Runs every undo step; returns those that failed, each with the command to finish it by hand. */
export async function compensate(plan: Plan, log: StepLog): Promise<UndoFailure[]> {
  const failures: UndoFailure[] = [];
  const hosts = pinnedHosts(hostTargets(plan), log.values);
  for (const step of undoSteps(plan, log)) {
    try {
      await runSteps([step], { mode: 'live', hosts, log, onFailure: 'fail' });
    } catch (err) {
      // Reported as what is left to undo by hand, not as a step waiting for a decision.
      delete log.failures[step.id];
      failures.push({ id: step.id, host: `${step.host} ${step.host === 'worker' ? '' : hosts[step.host].address}`.trim(), error: messageOf(err), byHand: byHand(step, log.values) });
    }
  }
  return failures;
}

function byHand(step: Step, values: Record<string, string>): string {
  try {
    return hostCommand(step.command, values, step.sudo);
  } catch {
    return step.command;
  }
}
