/**
 * The generic step activity: one command on one host. Idempotent: a step whose `check` already
 * passes is reported as `already-done` and changes nothing. Captures are parsed and checked
 * against what the plan expects (inventory, name clashes, free space, vhost counts).
 */
import { FailureType } from '../errors';
import type { Step } from '../runbook/model';
import { badPlan, commandFailed, commandOf, guardOf, liveExecutor, outcomeOf, refused, type ActivityDeps, type StepInput, type StepOutcome } from './common';
import type { CommandExecutor, HostTarget } from './executor';
import { withHeartbeat, type Heartbeat } from './heartbeat';
import { trimOutput } from './output';
import { parseCapture } from './parse';
import { sh } from '../runbook/shell';

export type { ActivityDeps, Mode, StepInput, StepOutcome } from './common';

/** Checks a captured value against the step's expectations; throws a typed failure if it fails them. */
async function checkCapture(step: Step, value: string, input: StepInput, live: CommandExecutor, target: HostTarget): Promise<void> {
  const p = step.params ?? {};
  if (step.captureAs?.kind === 'names') {
    const names = value ? value.split(',') : [];
    if (Array.isArray(p.expect)) {
      const missing = p.expect.filter((n) => !names.includes(n));
      if (missing.length) throw badPlan(`${step.id}: planned containers missing on ${step.host} ${target.address}: ${missing.join(', ')} (found: ${names.join(', ') || 'none'})`);
    }
    if (Array.isArray(p.mustNotContain)) {
      for (const name of p.mustNotContain.filter((n) => names.includes(n))) {
        const r = await live.run(target, commandOf(input, sh('incus', 'config', 'get', name, String(p.ownerKey))));
        if (r.stdout.trim() !== String(p.tenant)) {
          throw refused(FailureType.NameClash, `${step.id}: "${name}" already exists on ${target.address} and was not created by this migration of ${String(p.tenant)}; rename or remove it, or map the container to another name`);
        }
      }
    }
  }
  if (step.captureAs?.kind === 'bytes' && typeof p.needsTimesSource === 'number') {
    const source = Number(input.values['bytes:source-data'] ?? 0);
    const need = Math.ceil(source * p.needsTimesSource);
    if (Number(value) < need) throw refused(FailureType.NoSpace, `${step.id}: ${value} bytes free on ${target.address}, ${need} needed (${p.needsTimesSource} × ${source} bytes of source data)`);
  }
  if (step.captureAs?.kind === 'vhost-count') {
    const before = typeof p.atLeastCapture === 'string' ? Number(input.values[p.atLeastCapture] ?? 0) : 0;
    const floor = Math.max(before, typeof p.atLeast === 'number' ? p.atLeast : 0);
    if (Number(value) < floor) throw refused(FailureType.Refused, `${step.id}: the new Caddy config has ${value} vhosts, fewer than ${floor} (before: ${before}); refusing a partial config`);
  }
}

/** `runStep`'s work, heartbeating through `hb`. */
async function runStep(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step, hosts, mode } = input;
  const outcome = outcomeOf(step);
  const command = commandOf(input);
  if (mode === 'dry-run') {
    if (step.host !== 'worker' && command !== '') await deps.dryRun.run(hosts[step.host], command);
    return outcome({ status: 'recorded', command });
  }
  if (step.once && step.captureAs && input.values[step.captureAs.key] !== undefined) {
    return outcome({ status: 'already-done', command });
  }
  const live = liveExecutor(deps);
  if (step.host === 'worker') throw badPlan(`${step.id}: a ${step.kind} step has no command to run on a host`);
  const target = hosts[step.host];

  if (step.check !== undefined) {
    const checkHost = step.checkOn === undefined || step.checkOn === 'worker' ? step.host : step.checkOn;
    hb.report({ doing: 'check' });
    const checked = await live.run(hosts[checkHost], commandOf(input, step.check, step.checkSudo), hb.watch());
    if (checked.exitCode === 0) return outcome({ status: 'already-done', command, exitCode: 0 });
  }
  // Poll steps (an address that DHCP has yet to hand out) try again here, once a second, before
  // the activity fails and its retry policy takes over.
  const pollUntil = Date.now() + (step.profile === 'poll' ? 45_000 : 0);
  for (;;) {
    hb.report({ doing: 'command' });
    const r = await live.run(target, command, hb.watch({ guard: guardOf(step) }));
    if (r.exitCode !== 0) {
      const failure = commandFailed(step, command, r, target);
      throw step.refuses ? refused(FailureType.Refused, `${step.title}: refused.\n${failure.message}`) : failure;
    }
    if (!step.captureAs) return outcome({ status: 'done', command, exitCode: 0, output: trimOutput(r.stdout + r.stderr, 600) });
    let value: string;
    try {
      value = parseCapture(step.captureAs.kind, r.stdout);
    } catch (err) {
      if (Date.now() < pollUntil && !hb.signal?.aborted) {
        hb.report({ waiting: (err as Error).message });
        await new Promise((res) => setTimeout(res, 1000));
        continue;
      }
      throw commandFailed(step, command, { ...r, stderr: `unexpected output: ${(err as Error).message}\n${r.stderr}` }, target);
    }
    await checkCapture(step, value, input, live, target);
    // Only the parsed value enters history: raw output (an instance's whole config) may hold secrets.
    return outcome({ status: 'done', command, exitCode: 0, captured: { key: step.captureAs.key, value: step.captureAs.kind === 'text' ? trimOutput(value, 600) : value } });
  }
}

export function createStepActivities(deps: ActivityDeps) {
  return {
    /** Runs (or, in a dry run, records) one `run` or `capture` step. */
    async runStep(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => runStep(deps, input, hb), deps);
    },
  };
}
