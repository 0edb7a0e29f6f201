/**
 * Running runbook steps from a workflow: the activity proxies per option profile and the loop that
 * executes steps in order, keeping learned values and step states.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { HostTarget } from '../activities/executor';
import type { StepOutcome, Mode } from '../activities/steps';
import type { HostRole, Plan } from '../plan/schema';
import { NON_RETRYABLE } from '../errors';
import type { Step, StepProfile } from '../runbook/model';
import type { StepState } from './messages';

const nonRetryableErrorTypes = [...NON_RETRYABLE];

/** One proxy per option profile. */
const proxies: Record<StepProfile, Activities> = {
  // Control-plane calls: quick, a few retries.
  quick: proxyActivities<Activities>({
    startToCloseTimeout: '5 minutes',
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5, nonRetryableErrorTypes },
  }),
  // Copies, rsyncs and pushes: long, heartbeating, cancellation waits for their cleanup.
  transfer: proxyActivities<Activities>({
    startToCloseTimeout: '12 hours',
    heartbeatTimeout: '2 minutes',
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
    retry: { initialInterval: '10s', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 10, nonRetryableErrorTypes },
  }),
  // Polls (an address after start): a fixed interval.
  poll: proxyActivities<Activities>({
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '3s', backoffCoefficient: 1, maximumAttempts: 40, nonRetryableErrorTypes },
  }),
};

export interface StepLog {
  states: Record<string, StepState>;
  values: Record<string, string>;
  outcomes: StepOutcome[];
}

export function newStepLog(values: Record<string, string> = {}): StepLog {
  return { states: {}, values: { ...values }, outcomes: [] };
}

/** The plan's hosts as activity targets: addresses and key references, nothing secret. */
export function hostTargets(plan: Plan): Record<HostRole, HostTarget> {
  return {
    source: { role: 'source', ...pick(plan.hosts.source) },
    destination: { role: 'destination', ...pick(plan.hosts.destination) },
  };
}

function pick(h: Plan['hosts']['source']): Omit<HostTarget, 'role'> {
  return { address: h.address, port: h.port, user: h.user, sshKey: h.sshKey, ...(h.knownHosts ? { knownHosts: h.knownHosts } : {}) };
}

/** Runs steps in order; a failure propagates after its state is recorded. */
export async function runSteps(steps: Step[], mode: Mode, log: StepLog, hosts: Record<HostRole, HostTarget>): Promise<void> {
  for (const step of steps) {
    log.states[step.id] = 'running';
    try {
      const outcome = await proxies[step.profile].runStep({ step, values: log.values, mode, hosts });
      log.states[step.id] = outcome.status;
      if (outcome.captured) log.values[outcome.captured.key] = outcome.captured.value;
      log.outcomes.push(outcome);
    } catch (err) {
      log.states[step.id] = 'failed';
      throw err;
    }
  }
}
