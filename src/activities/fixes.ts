/**
 * Service fixes that need the worker: Vault's unseal key is resolved here from its reference and
 * handed to the command over stdin, so it never appears in a command line, history or log.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { FailureType } from '../errors';
import { commandFailed, commandOf, guardOf, liveExecutor, outcomeOf, type ActivityDeps, type StepInput, type StepOutcome } from './common';
import { withHeartbeat, type Heartbeat } from './heartbeat';

async function unsealVault(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step, hosts } = input;
  const outcome = outcomeOf(step);
  const live = liveExecutor(deps);
  const target = hosts[step.host === 'source' ? 'source' : 'destination'];
  if (step.check) {
    const check = commandOf(input, step.check, step.checkSudo);
    hb.report({ doing: 'check' });
    if ((await live.run(target, check, hb.watch())).exitCode === 0) return outcome({ status: 'already-done', command: step.command, exitCode: 0 });
  }
  const ref = String(step.params?.keyRef ?? '');
  if (!deps.resolveSecret) throw ApplicationFailure.create({ type: FailureType.SecretUnavailable, nonRetryable: true, message: `${step.id}: this worker cannot resolve secret references` });
  const key = await deps.resolveSecret(ref);
  const command = commandOf(input);
  hb.report({ doing: 'command' });
  const r = await live.run(target, command, hb.watch({ stdin: `${key}\n`, guard: guardOf(step) }));
  // The key went over stdin; outputs are redacted by commandFailed all the same.
  if (r.exitCode !== 0) throw commandFailed(step, command, r, target);
  return outcome({ status: 'done', command, exitCode: 0 });
}

export function createFixActivities(deps: ActivityDeps) {
  return {
    async unsealVault(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => unsealVault(deps, input, hb), deps);
    },
  };
}
