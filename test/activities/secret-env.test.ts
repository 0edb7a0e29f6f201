/**
 * `env-secret` steps: the worker resolves `valueRef` and hands the value to the check and the
 * command over stdin; it never reaches a command line, the outcome, a heartbeat or a failure.
 */
import { join } from 'node:path';
import { createActivities } from '../../src/activities';
import type { StepInput } from '../../src/activities/common';
import { DryRunExecutor, type CommandExecutor, type CommandResult, type HostTarget, type RunOptions } from '../../src/activities/executor';
import { loadPlan } from '../../src/plan/load';
import { planSchema, type PlanInput } from '../../src/plan/schema';
import { buildRunbook } from '../../src/runbook/build';
import { phaseSteps } from '../../src/runbook/model';
import { inActivity } from './context';

const SECRET = 's3cr3t&|/#value';
const example = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
const plan = planSchema.parse({
  ...(JSON.parse(JSON.stringify(example)) as PlanInput),
  serviceFixes: [{ kind: 'env', container: 'system', file: '/opt/gbo/conf/botserver.env', key: 'DB_PASSWORD', set: { valueRef: 'env:GBO_DB_PASSWORD' } }],
});
const step = phaseSteps(buildRunbook(plan), 'fixes')[0]!;
const hosts: StepInput['hosts'] = {
  source: { role: 'source', address: plan.hosts.source.address, port: 22, user: 'root', sshKey: 'agent' },
  destination: { role: 'destination', address: plan.hosts.destination.address, port: 22, user: 'administrator', sshKey: 'agent' },
};

class Hosts implements CommandExecutor {
  readonly calls: { command: string; stdin?: string }[] = [];
  constructor(private readonly answer: (command: string, stdin: string | undefined) => CommandResult) {}
  async run(_t: HostTarget, command: string, options: RunOptions = {}): Promise<CommandResult> {
    this.calls.push({ command, stdin: options.stdin });
    return this.answer(command, options.stdin);
  }
  async connect(): Promise<void> {}
}

const activities = (live: CommandExecutor) => createActivities({ dryRun: new DryRunExecutor({ keep: false }), live, resolveSecret: async (ref) => (ref === 'env:GBO_DB_PASSWORD' ? SECRET : 'other'), heartbeatIntervalMs: 10 });

test('the step is an env-secret step with only the reference', () => {
  expect(step).toMatchObject({ kind: 'env-secret', params: { valueRef: 'env:GBO_DB_PASSWORD' } });
  expect(JSON.stringify(step)).not.toContain('s3cr3t');
});

test('check and command get the value over stdin, never in a command, the outcome or a heartbeat', async () => {
  const live = new Hosts((c) => ({ exitCode: c.includes(' check /opt/') ? 10 : 0, stdout: '/opt/gbo/conf/botserver.env: changed\n', stderr: '' }));
  const run = inActivity(() => activities(live).writeSecretEnv({ step, hosts, values: {}, mode: 'live' }));
  const outcome = await run.result;
  expect(outcome).toMatchObject({ id: step.id, status: 'done' });
  expect(live.calls.map((c) => c.stdin)).toEqual([`${SECRET}\n`, `${SECRET}\n`]);
  expect(JSON.stringify({ calls: live.calls.map((c) => c.command), outcome, beats: run.beats })).not.toContain('s3cr3t');
});

test('a check that passes leaves the file alone', async () => {
  const live = new Hosts(() => ({ exitCode: 0, stdout: '', stderr: '' }));
  const outcome = await inActivity(() => activities(live).writeSecretEnv({ step, hosts, values: {}, mode: 'live' })).result;
  expect(outcome.status).toBe('already-done');
  expect(live.calls).toHaveLength(1);
});

test('a failure carries no secret, even one the host echoed', async () => {
  const live = new Hosts((c) => (c.includes(' check /opt/') ? { exitCode: 10, stdout: '', stderr: '' } : { exitCode: 3, stdout: `oops ${SECRET}`, stderr: `gbo: error near ${SECRET}; nothing changed\n` }));
  const err = await inActivity(() => activities(live).writeSecretEnv({ step, hosts, values: {}, mode: 'live' })).result.catch((e: unknown) => e);
  expect(String((err as Error).message)).toContain('nothing changed');
  expect(JSON.stringify(err, Object.getOwnPropertyNames(err as object))).not.toContain('s3cr3t');
});

test('a multi-line secret is refused before anything runs', async () => {
  const live = new Hosts(() => ({ exitCode: 1, stdout: '', stderr: '' }));
  const acts = createActivities({ dryRun: new DryRunExecutor({ keep: false }), live, resolveSecret: async () => 'a\nb' });
  const err = await inActivity(() => acts.writeSecretEnv({ step, hosts, values: {}, mode: 'live' })).result.catch((e: unknown) => e);
  expect(String((err as Error).message)).toMatch(/more than one line/);
  expect(live.calls).toHaveLength(0);
});
