/**
 * What every step activity shares: its input, its outcome, choosing the executor for the mode, and
 * turning a failed command into a readable failure.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { createHash } from 'node:crypto';
import { FailureType } from '../errors';
import type { HostRole } from '../plan/schema';
import type { Step } from '../runbook/model';
import { hostCommand, placeholdersIn } from '../runbook/shell';
import type { NetProbes } from '../probe/probes';
import type { CommandExecutor, CommandGuard, CommandResult, HostTarget } from './executor';
import { redact, relevantLines, trimOutput } from './output';

export type Mode = 'dry-run' | 'live';

export interface StepInput {
  step: Step;
  /** The plan's hosts (addresses and key references only). */
  hosts: Record<HostRole, HostTarget>;
  /** Values learned so far (`ip:proxy`, `cert:destination`, ...). */
  values: Record<string, string>;
  mode: Mode;
  /** Certificate checks: Caddy's log lines before this time are stale (it has retried since). */
  since?: string;
}

export interface StepOutcome {
  id: string;
  /** `recorded`: dry run; `done`: ran now; `already-done`: the check found the effect in place. */
  status: 'recorded' | 'done' | 'already-done';
  host: Step['host'];
  command: string;
  exitCode?: number;
  /** Trimmed and redacted. */
  output?: string;
  captured?: { key: string; value: string };
  /** Probes: whether the thing answered. */
  ok?: boolean;
  /** Certificate checks: the CA's rate limit ends at this time (ISO 8601). */
  retryAt?: string;
  /** Set by the workflow: the check passed, but these earlier steps of its chain were skipped. */
  afterSkipped?: string[];
  startedAt: string;
  durationMs: number;
}

export interface ActivityDeps {
  /** Records commands for dry runs. */
  dryRun: CommandExecutor;
  /** Runs commands on the real hosts; absent on a worker that only serves dry runs. */
  live?: CommandExecutor;
  /** Resolves secret references (`env:`, `file:`) in the worker; never called with a value. */
  resolveSecret?: (ref: string) => Promise<string>;
  /** Between heartbeats of a running activity. Default 5 s. */
  heartbeatIntervalMs?: number;
  /** The worker's own probes (NAT, DNS propagation, certificates); default the real network. */
  net?: NetProbes;
}

export function badPlan(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FailureType.BadPlan, nonRetryable: true, message });
}

export function refused(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, nonRetryable: true, message });
}

/** Output that a later attempt may not see: the network, a lock, a busy device, a loaded host. */
const TRANSIENT = /connection (reset|refused|closed|timed out)|\btimed? ?out\b|\bbusy\b|temporarily unavailable|try again/i;
/** Output that every attempt would repeat: the host or the plan needs fixing first. */
const PERMANENT = /command not found|no such file or directory|permission denied|not authorized|operation not permitted|a password is required|not in the sudoers file/i;

/** Why no retry of a failed command can succeed, or undefined when one might. */
function cannotSucceed(r: CommandResult): string | undefined {
  if (r.exitCode === 127) return 'a command is missing on the host';
  if (r.exitCode === 126) return 'a command is not executable on the host';
  // ssh(1) exits 255 when it loses its connection, and the pool reports a missing status so.
  if (r.exitCode === 255) return undefined;
  const lines = `${r.stderr}\n${r.stdout}`.split('\n');
  if (lines.some((l) => TRANSIENT.test(l))) return undefined;
  const permanent = lines.find((l) => PERMANENT.test(l));
  return permanent === undefined ? undefined : redact(permanent.trim()).slice(0, 200);
}

/**
 * A failed command as a failure: step, host, exit code, the command and the stderr lines that
 * matter. `CommandCannotSucceed` (not retried) when the output shows a retry would repeat it,
 * else `CommandFailed` (retried).
 */
export function commandFailed(step: Step, command: string, r: CommandResult, target?: HostTarget): ApplicationFailure {
  const why = relevantLines(r.stderr) || relevantLines(r.stdout) || '(no output)';
  const where = target ? `${step.host} ${target.user}@${target.address}` : step.host;
  const reason = cannotSucceed(r);
  const verdict = reason === undefined ? '' : `, which a retry would repeat (${reason}); fix the host or the plan, then retry the step`;
  return ApplicationFailure.create({
    type: reason === undefined ? FailureType.CommandFailed : FailureType.CommandCannotSucceed,
    nonRetryable: reason !== undefined,
    message: `${step.id} failed on ${where}: exit ${r.exitCode}${verdict}\n$ ${trimOutput(command, 400)}\n${why}`,
    details: [{ step: step.id, host: step.host, exitCode: r.exitCode }],
  });
}

/**
 * The guard for a step's main command (see `RunOptions.guard`): the workflow and the step, so a
 * retried attempt stops whatever an earlier one of the same step still runs on the host.
 */
export function guardOf(step: Step): CommandGuard {
  const workflowId = currentActivity()?.info.workflowExecution?.workflowId ?? 'local';
  let key = `${workflowId}.${step.id}`.replace(/[^A-Za-z0-9._-]/g, '_');
  // It names a file: a long key keeps its start and a digest of the whole.
  if (key.length > 200) key = `${key.slice(0, 150)}.${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
  return { key, ...(step.sudo ? { sudo: true } : {}) };
}

/** The live executor, or a non-retryable failure on a dry-run-only worker. */
export function liveExecutor(deps: ActivityDeps): CommandExecutor {
  if (!deps.live) throw badPlan('this worker has no SSH configuration: it serves dry runs only');
  return deps.live;
}

/** A step's command for its host with every placeholder filled (strictly, for live runs). */
export function commandOf(input: StepInput, text = input.step.command, sudo = input.step.sudo): string {
  try {
    const command = hostCommand(text, input.values, sudo, input.mode === 'live');
    const left = placeholdersIn(command);
    if (input.mode === 'live' && left.length > 0) throw new Error(`unresolved ${left.join(', ')}`);
    return command;
  } catch (err) {
    throw badPlan(`${input.step.id}: ${(err as Error).message}`);
  }
}

/** Starts timing an outcome. */
export function outcomeOf(step: Step): (o: Omit<StepOutcome, 'id' | 'host' | 'startedAt' | 'durationMs'>) => StepOutcome {
  const startedAt = new Date();
  return (o) => ({ id: step.id, host: step.host, startedAt: startedAt.toISOString(), durationMs: Date.now() - startedAt.getTime(), ...o });
}

/** The activity context, or undefined when a step runs outside a worker (an operator's re-check). */
export function currentActivity(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}
