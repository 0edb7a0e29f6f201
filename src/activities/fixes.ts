/**
 * Service fixes that need the worker: a secret (Vault's unseal key, an env value from `valueRef`)
 * is resolved here from its reference and handed to the command over stdin, so it never appears in
 * a command line, history, heartbeat, failure or log.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { FailureType } from '../errors';
import type { CommandResult } from './executor';
import { commandFailed, commandOf, guardOf, liveExecutor, outcomeOf, type ActivityDeps, type StepInput, type StepOutcome } from './common';
import { withHeartbeat, type Heartbeat } from './heartbeat';
import { trimOutput } from './output';

/** The secret a step names in `params[param]`, resolved by the worker. */
async function secretOf(deps: ActivityDeps, input: StepInput, param: string): Promise<string> {
  const { step } = input;
  const ref = String(step.params?.[param] ?? '');
  if (!deps.resolveSecret) throw ApplicationFailure.create({ type: FailureType.SecretUnavailable, nonRetryable: true, message: `${step.id}: this worker cannot resolve secret references` });
  const value = await deps.resolveSecret(ref);
  if (/[\n\r\0]/.test(value)) {
    throw ApplicationFailure.create({ type: FailureType.SecretUnavailable, nonRetryable: true, message: `${step.id}: the secret from ${ref} is more than one line (or holds a NUL); it cannot be one value` });
  }
  return value;
}

/** Output with every occurrence of the secret removed (the scripts never print it; a second guard). */
function without(secret: string, r: CommandResult): CommandResult {
  if (secret.length < 3) return r;
  const cut = (t: string) => t.split(secret).join('[secret redacted]');
  return { ...r, stdout: cut(r.stdout), stderr: cut(r.stderr) };
}

/**
 * Runs a step whose command (and check) read a secret on stdin: check first (with the secret, as
 * the comparison needs it), then the command.
 */
async function runWithSecret(deps: ActivityDeps, input: StepInput, hb: Heartbeat, param: string, checkTakesSecret: boolean): Promise<StepOutcome> {
  const { step, hosts } = input;
  const outcome = outcomeOf(step);
  const live = liveExecutor(deps);
  const target = hosts[step.host === 'source' ? 'source' : 'destination'];
  const command = commandOf(input);
  const secret = checkTakesSecret ? await secretOf(deps, input, param) : undefined;
  if (step.check) {
    const check = commandOf(input, step.check, step.checkSudo);
    hb.report({ doing: 'check' });
    const opts = secret === undefined ? hb.watch() : hb.watch({ stdin: `${secret}\n` });
    if ((await live.run(target, check, opts)).exitCode === 0) return outcome({ status: 'already-done', command: step.command, exitCode: 0 });
  }
  const value = secret ?? (await secretOf(deps, input, param));
  hb.report({ doing: 'command' });
  const r = without(value, await live.run(target, command, hb.watch({ stdin: `${value}\n`, guard: guardOf(step) })));
  // The secret went over stdin; outputs are redacted by commandFailed all the same.
  if (r.exitCode !== 0) throw commandFailed(step, command, r, target);
  return outcome({ status: 'done', command, exitCode: 0, output: trimOutput(r.stdout + r.stderr, 600) });
}

export function createFixActivities(deps: ActivityDeps) {
  return {
    async unsealVault(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => runWithSecret(deps, input, hb, 'keyRef', false), deps);
    },
    /** An `env-secret` step: the value from `params.valueRef`, over stdin to the check and the command. */
    async writeSecretEnv(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => runWithSecret(deps, input, hb, 'valueRef', true), deps);
    },
  };
}
