/**
 * What every step activity shares: its input, its outcome, choosing the executor for the mode, and
 * turning a failed command into a readable failure.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { FailureType } from '../errors';
import type { HostRole } from '../plan/schema';
import type { Step } from '../runbook/model';
import { hostCommand, placeholdersIn } from '../runbook/shell';
import type { CommandExecutor, CommandResult, HostTarget } from './executor';
import { relevantLines, trimOutput } from './output';

export type Mode = 'dry-run' | 'live';

export interface StepInput {
  step: Step;
  /** The plan's hosts (addresses and key references only). */
  hosts: Record<HostRole, HostTarget>;
  /** Values learned so far (`ip:proxy`, `cert:destination`, ...). */
  values: Record<string, string>;
  mode: Mode;
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
}

export function badPlan(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FailureType.BadPlan, nonRetryable: true, message });
}

export function refused(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, nonRetryable: true, message });
}

/** A failed command as a failure: step, host, exit code, the command and the stderr lines that matter. */
export function commandFailed(step: Step, command: string, r: CommandResult): ApplicationFailure {
  const why = relevantLines(r.stderr) || relevantLines(r.stdout) || '(no output)';
  return ApplicationFailure.create({
    type: FailureType.CommandFailed,
    message: `${step.id} failed on ${step.host}: exit ${r.exitCode}\n$ ${trimOutput(command, 400)}\n${why}`,
    details: [{ step: step.id, host: step.host, exitCode: r.exitCode }],
  });
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
