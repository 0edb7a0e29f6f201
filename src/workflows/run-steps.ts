/**
 * Running runbook steps from a workflow: the activity proxies per option profile, the dispatch by
 * step kind, and the loop that executes steps in order, keeping learned values and step states.
 * A failed step either fails the run or waits for an operator's retry or skip, as the caller says.
 */
import { ActivityCancellationType, ApplicationFailure, isCancellation, proxyActivities, type ActivityInterfaceFor } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { HostTarget } from '../activities/executor';
import type { Mode, StepInput, StepOutcome } from '../activities/steps';
import { NON_RETRYABLE } from '../errors';
import type { HostRole, Plan } from '../plan/schema';
import type { Step, StepProfile } from '../runbook/model';
import { derivedValues, valuesFor } from '../runbook/values';
import { stepSummary } from './details';
import type { Decision, SkippedStep, StepState } from './messages';
import { waitForCertificate, waitForDelegation, waitForDns, waitWindow } from './wait-steps';
import type { Waits } from './waits';

const nonRetryableErrorTypes = [...NON_RETRYABLE];

/**
 * One proxy per option profile. Every activity heartbeats on a timer (a few seconds), so a short
 * heartbeat timeout is what notices a dead worker: its step is retried on another (or the
 * restarted) worker within about 20 s, whatever the step's own length. Cancellation waits for the
 * activity to end its remote command, so nothing of a cancelled step still runs on a host when the
 * compensation starts.
 */
const HEARTBEAT_TIMEOUT = '20 seconds';
const proxies: Record<StepProfile, ActivityInterfaceFor<Activities>> = {
  // Control-plane calls: quick, a few retries of what retrying can fix.
  quick: proxyActivities<Activities>({
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: HEARTBEAT_TIMEOUT,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes },
  }),
  // Copies, rsyncs and pushes: long; their attempts resume (rsync --partial, idempotent checks).
  transfer: proxyActivities<Activities>({
    startToCloseTimeout: '12 hours',
    heartbeatTimeout: HEARTBEAT_TIMEOUT,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 10, nonRetryableErrorTypes },
  }),
  // Polls (an address after start, a service coming up): a fixed interval.
  poll: proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: HEARTBEAT_TIMEOUT,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '3s', backoffCoefficient: 1, maximumAttempts: 40, nonRetryableErrorTypes },
  }),
};

/** A failure type the child raises so the parent knows which step to retry or skip. */
export const STEP_FAILED = 'StepFailed';

export type { SkippedStep } from './messages';

export interface StepLog {
  states: Record<string, StepState>;
  values: Record<string, string>;
  outcomes: StepOutcome[];
  /** Last failure message per step (trimmed), for status and audit. */
  failures: Record<string, string>;
  skipped: SkippedStep[];
  pauses: { by: string; reason: string; at: string }[];
}

export function newStepLog(values: Record<string, string> = {}): StepLog {
  return { states: {}, values: { ...values }, outcomes: [], failures: {}, skipped: [], pauses: [] };
}

/** The plan's hosts as activity targets: addresses and key references, nothing secret. */
export function hostTargets(plan: Plan): Record<HostRole, HostTarget> {
  return {
    source: { role: 'source', ...pick(plan.hosts.source) },
    destination: { role: 'destination', ...pick(plan.hosts.destination) },
  };
}

/**
 * The hosts as connections reach them: a host the plan names by a host name is reached at the
 * address preflight recorded for it (`addr:<role>`), its key still checked under the name.
 */
export function pinnedHosts(hosts: Record<HostRole, HostTarget>, values: Record<string, string>): Record<HostRole, HostTarget> {
  const pin = (t: HostTarget): HostTarget => {
    const address = values[`addr:${t.role}`];
    return address === undefined || address === t.address ? t : { ...t, address, hostKeyAlias: t.hostKeyAlias ?? t.address };
  };
  return { source: pin(hosts.source), destination: pin(hosts.destination) };
}

function pick(h: Plan['hosts']['source']): Omit<HostTarget, 'role'> {
  return { address: h.address, port: h.port, user: h.user, sshKey: h.sshKey, ...(h.knownHosts ? { knownHosts: h.knownHosts } : {}) };
}

export interface RunContext {
  mode: Mode;
  hosts: Record<HostRole, HostTarget>;
  log: StepLog;
  /**
   * Where failures go: `fail` throws a `StepFailed` failure naming the step; `wait` waits for
   * `decide` to return an operator's retry or skip, and resumes at that step.
   */
  onFailure: 'fail' | 'wait';
  decide?: (stepId: string) => Promise<Decision>;
  /** Waits while the migration is paused: called before every step. */
  whilePaused?: () => Promise<void>;
  /** Told when a step starts and when its state changes (a child reports them to its parent). */
  onStep?: (step: Step, state: StepState) => Promise<void>;
  /**
   * Steps skipped so far in this chain (a container's steps, or the tenant's): a later step whose
   * check passes is `precondition-skipped`, not `already-done`. Shared across `runSteps` calls.
   */
  skippedInChain?: string[];
  /** Where the long waits (DNS, certificates, the verification window) are recorded, woken and extended. */
  waits?: Waits;
}

function waitsOf(step: Step, ctx: RunContext): Waits {
  if (!ctx.waits) throw ApplicationFailure.nonRetryable(`${step.id}: a ${step.kind} step runs only in the tenant's migration, which records its waits`, 'BadPlan');
  return ctx.waits;
}

/**
 * Executes one step by kind. Dry runs record every step through `runStep`. Each activity carries
 * the step's ID and title as its summary: the Web UI's timeline reads as the runbook.
 */
async function execute(step: Step, ctx: RunContext): Promise<StepOutcome> {
  const input: StepInput = { step, values: valuesFor(step, ctx.log.values), mode: ctx.mode, hosts: pinnedHosts(ctx.hosts, ctx.log.values) };
  const act = proxies[step.profile];
  const options = { summary: stepSummary(step) };
  if (ctx.mode === 'dry-run') return act.runStep.executeWithOptions(options, [input]);
  switch (step.kind) {
    case 'run':
    case 'capture':
      return act.runStep.executeWithOptions(options, [input]);
    case 'probe':
      return act.probe.executeWithOptions(options, [input]);
    case 'caddy-rewrite':
      return act.rewriteCaddy.executeWithOptions(options, [input]);
    case 'vault-unseal':
      return act.unsealVault.executeWithOptions(options, [input]);
    case 'env-secret':
      return act.writeSecretEnv.executeWithOptions(options, [input]);
    case 'pin-host-key':
      return act.pinSourceHostKey.executeWithOptions(options, [input]);
    case 'verify-host-keys':
      return act.verifyHostKeys.executeWithOptions(options, [input]);
    case 'resolve-address':
      return act.resolveAddress.executeWithOptions(options, [input]);
    case 'zone-update':
      return act.updateZone.executeWithOptions(options, [input]);
    case 'find-dead-domains':
      return act.findDeadDomains.executeWithOptions(options, [input]);
    case 'wait-dns':
      return waitForDns(step, input, waitsOf(step, ctx));
    case 'wait-delegation':
      return waitForDelegation(step, input, waitsOf(step, ctx));
    case 'wait-cert':
      return waitForCertificate(step, input, waitsOf(step, ctx));
    case 'wait-window':
      return waitWindow(step, waitsOf(step, ctx));
    case 'gate':
      throw ApplicationFailure.nonRetryable(`${step.id}: gates are the workflow's, not a step to execute`, 'BadPlan');
  }
}

/** The innermost message of a failure, trimmed. */
export function messageOf(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string; cause?: { message?: string } } };
  return (e.cause?.cause?.message ?? e.cause?.message ?? e.message ?? String(err)).slice(0, 1500);
}

/** Runs steps in order; see `RunContext.onFailure` for what a failure does. */
export async function runSteps(steps: Step[], ctx: RunContext): Promise<void> {
  const { log } = ctx;
  const set = async (step: Step, state: StepState) => {
    log.states[step.id] = state;
    await ctx.onStep?.(step, state);
  };
  for (const step of steps) {
    if (log.states[step.id] === 'skipped') continue;
    // The record of the source is taken once: a value already known is never taken again from a
    // host that the migration has since changed.
    if (ctx.mode === 'live' && step.once && step.captureAs && log.values[step.captureAs.key] !== undefined) {
      await set(step, 'already-done');
      continue;
    }
    for (;;) {
      // Also before a retry: nothing new starts on a host while the migration is paused.
      if (ctx.whilePaused) await ctx.whilePaused();
      await set(step, 'running');
      try {
        const outcome = await execute(step, ctx);
        if (outcome.captured) Object.assign(log.values, { [outcome.captured.key]: outcome.captured.value }, derivedValues(outcome.captured.key, outcome.captured.value));
        const after = outcome.status === 'already-done' && ctx.skippedInChain?.length ? ctx.skippedInChain : undefined;
        log.outcomes.push(after ? { ...outcome, afterSkipped: [...after] } : outcome);
        delete log.failures[step.id];
        await set(step, after ? 'precondition-skipped' : outcome.status);
        break;
      } catch (err) {
        if (isCancellation(err)) {
          log.states[step.id] = 'pending';
          throw err;
        }
        log.failures[step.id] = messageOf(err);
        await set(step, 'failed');
        if (ctx.onFailure === 'fail' || !ctx.decide) {
          throw ApplicationFailure.create({ type: STEP_FAILED, nonRetryable: true, message: `${step.id}: ${messageOf(err)}`, details: [{ stepId: step.id }], cause: err as Error });
        }
        const decision = await ctx.decide(step.id);
        if (decision.action === 'skip') {
          if (!log.skipped.some((s) => s.id === step.id)) log.skipped.push({ id: step.id, by: decision.by, reason: decision.reason ?? '' });
          delete log.failures[step.id];
          ctx.skippedInChain?.push(step.id);
          await set(step, 'skipped');
          break;
        }
      }
    }
  }
}
