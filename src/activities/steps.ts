/**
 * The step activity: one step of the runbook = one remote side effect. Idempotent: a step whose
 * `check` already passes is reported as `already-done` and changes nothing.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { FailureType } from '../errors';
import type { Step } from '../runbook/model';
import { hostCommand, placeholdersIn } from '../runbook/shell';
import type { HostRole } from '../plan/schema';
import type { CommandExecutor, CommandResult, HostTarget } from './executor';
import { relevantLines, trimOutput } from './output';
import { parseCapture } from './parse';

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
  startedAt: string;
  durationMs: number;
}

export interface ActivityDeps {
  /** Records commands for dry runs. */
  dryRun: CommandExecutor;
  /** Runs commands on the real hosts; absent on a worker that only serves dry runs. */
  live?: CommandExecutor;
}

function failed(step: Step, command: string, r: CommandResult): ApplicationFailure {
  const why = relevantLines(r.stderr) || relevantLines(r.stdout) || '(no output)';
  return ApplicationFailure.create({
    type: FailureType.CommandFailed,
    message: `${step.id} failed on ${step.host}: exit ${r.exitCode}\n$ ${trimOutput(command, 400)}\n${why}`,
    details: [{ step: step.id, host: step.host, exitCode: r.exitCode }],
  });
}

/** Activities over injected executors; the worker wires the real ones, tests their own. */
export function createStepActivities(deps: ActivityDeps) {
  return {
    async runStep(input: StepInput): Promise<StepOutcome> {
      const { step, values, mode, hosts } = input;
      const startedAt = new Date();
      const outcome = (o: Omit<StepOutcome, 'id' | 'host' | 'startedAt' | 'durationMs'>): StepOutcome => ({
        id: step.id,
        host: step.host,
        startedAt: startedAt.toISOString(),
        durationMs: Date.now() - startedAt.getTime(),
        ...o,
      });
      let command: string;
      try {
        command = hostCommand(step.command, values, step.sudo, mode === 'live');
      } catch (err) {
        throw ApplicationFailure.create({ type: FailureType.BadPlan, nonRetryable: true, message: `${step.id}: ${(err as Error).message}` });
      }

      if (mode === 'dry-run') {
        if (step.host !== 'worker' && command !== '') await deps.dryRun.run(hosts[step.host], command);
        return outcome({ status: 'recorded', command });
      }

      const live = deps.live;
      if (!live) {
        throw ApplicationFailure.create({ type: FailureType.BadPlan, nonRetryable: true, message: 'this worker has no SSH configuration: it serves dry runs only' });
      }
      if (step.host === 'worker' || (step.kind !== 'run' && step.kind !== 'capture')) {
        throw ApplicationFailure.create({
          type: FailureType.BadPlan,
          nonRetryable: true,
          message: `${step.id}: step kind "${step.kind}" on ${step.host} has no live implementation in this worker`,
        });
      }
      const left = placeholdersIn(command);
      if (left.length > 0) throw ApplicationFailure.create({ type: FailureType.BadPlan, nonRetryable: true, message: `${step.id}: unresolved ${left.join(', ')}` });

      if (step.check !== undefined) {
        const checkCommand = hostCommand(step.check, values, step.checkSudo, true);
        const checkHost = step.checkOn === undefined || step.checkOn === 'worker' ? step.host : step.checkOn;
        const checked = await live.run(hosts[checkHost], checkCommand);
        if (checked.exitCode === 0) return outcome({ status: 'already-done', command, exitCode: 0 });
      }
      const r = await live.run(hosts[step.host], command, {
        onOutput: () => Context.current().heartbeat({ step: step.id }),
        signal: Context.current().cancellationSignal,
      });
      if (r.exitCode !== 0) throw failed(step, command, r);
      if (step.captureAs) {
        let value: string;
        try {
          value = parseCapture(step.captureAs.kind, r.stdout);
        } catch (err) {
          throw ApplicationFailure.create({ type: FailureType.CommandFailed, message: `${step.id}: unexpected output on ${step.host}: ${(err as Error).message}` });
        }
        return outcome({ status: 'done', command, exitCode: 0, output: trimOutput(r.stdout, 600), captured: { key: step.captureAs.key, value } });
      }
      return outcome({ status: 'done', command, exitCode: 0, output: trimOutput(r.stdout + r.stderr, 600) });
    },
  };
}

export type StepActivities = ReturnType<typeof createStepActivities>;
