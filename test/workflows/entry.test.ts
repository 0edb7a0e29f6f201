/**
 * Any entry point: migrateTenant started straight through a Temporal client (as the Web UI, the
 * `temporal` CLI or a script would, not through startMigration) checks its own input before any
 * step, on the real dev server. A refusal ends the run at once (no workflow task failing forever),
 * non-retryably, with the messages `gbo-migrate validate` prints; nothing runs.
 */
import { ApplicationFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DryRunExecutor } from '../../src/activities/executor';
import { MigrationAlreadyRunningError, startMigration } from '../../src/client';
import { loadPlan, PlanError, parsePlan, validatePlan } from '../../src/plan/load';
import type { Plan } from '../../src/plan/schema';
import { createWorker } from '../../src/worker';
import { workflowIdOf } from '../../src/workflows/messages';
import { suiteClients } from '../harness/suite-clients';

const exampleFile = join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml');
const exampleText = readFileSync(exampleFile, 'utf8');
const example = loadPlan(exampleFile);

const t = suiteClients();

let seq = 0;
const uniqueTenant = () => `entry${Date.now() % 100000}x${++seq}`;
const withTenant = (text: string, tenant: string) => text.replace(/^tenant: pragmatismo$/m, `tenant: ${tenant}`);

/**
 * Starts migrateTenant by its type name with `input` as given (unchecked, as any client could),
 * runs a dry-run worker until the run closes, and returns the outcome, what the activities
 * recorded and the history.
 */
async function run(input: unknown, workflowId: string) {
  const taskQueue = `entry-${Date.now()}-${++seq}`;
  const recorder = new DryRunExecutor();
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: recorder } });
  const handle: WorkflowHandle = await t.client.workflow.start('migrateTenant', { taskQueue, workflowId, args: [input] });
  const outcome = await worker.runUntil(handle.result().then((value: unknown) => ({ value, error: undefined }), (error: unknown) => ({ value: undefined, error })));
  const events = (await handle.fetchHistory()).events ?? [];
  return { ...outcome, recorded: recorder.recorded, events, handle };
}

/** The run's own failure (the ApplicationFailure under the client's WorkflowFailedError). */
function failureOf(error: unknown): ApplicationFailure {
  expect(error).toBeInstanceOf(WorkflowFailedError);
  const cause = (error as WorkflowFailedError).cause;
  expect(cause).toBeInstanceOf(ApplicationFailure);
  return cause as ApplicationFailure;
}

/** Refused before any step: no activity, no child, and the first workflow task already failed the run (no task failure, no retry). */
function expectNothingRan(r: Awaited<ReturnType<typeof run>>) {
  expect(r.recorded).toEqual([]);
  expect(r.events.filter((e) => e.activityTaskScheduledEventAttributes || e.startChildWorkflowExecutionInitiatedEventAttributes)).toEqual([]);
  expect(r.events.filter((e) => e.workflowTaskFailedEventAttributes)).toEqual([]);
  expect(r.events.filter((e) => e.workflowTaskCompletedEventAttributes)).toHaveLength(1);
  expect(r.events.at(-1)?.workflowExecutionFailedEventAttributes).toBeTruthy();
}

/** The lines `gbo-migrate validate` prints for a problem ("  - path: got value, expected ..."). */
function validateLinesOf(f: () => unknown): string[] {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(PlanError);
    return (err as PlanError).message.split('\n').slice(1);
  }
  throw new Error('expected the plan to be refused');
}

test('(a) a bad plan object fails at once, non-retryably, with the path, value and expected of each problem; nothing runs', async () => {
  const tenant = uniqueTenant();
  const bad = JSON.parse(JSON.stringify({ ...example, tenant })) as Record<string, unknown> & Plan;
  (bad.containers[8] as { name: string }).name = 'alm ci; reboot';
  (bad.hosts.source as { port: unknown }).port = '22';
  const r = await run({ plan: bad, mode: 'dry-run' }, workflowIdOf(tenant, 'dry-run'));

  const failure = failureOf(r.error);
  expect(failure.type).toBe('InvalidPlan');
  expect(failure.nonRetryable).toBe(true);
  expect(failure.message).toMatch(/^refused before any step/);
  expect(failure.message).toContain('containers[8].name: got "alm ci; reboot", expected a container name');
  expect(failure.message).toContain('hosts.source.port: got "22", expected a value of type number');
  // The same lines `gbo-migrate validate` prints for the same plan, and the problems as data.
  const lines = validateLinesOf(() => validatePlan(bad));
  expect(lines).toHaveLength(2);
  for (const line of lines) expect(failure.message).toContain(line);
  expect(failure.details?.[0]).toEqual({ problems: expect.arrayContaining([{ path: 'containers[8].name', value: '"alm ci; reboot"', expected: expect.stringMatching(/^a container name/) }]) });
  expectNothingRan(r);
});

test('(a) the input around the plan is checked too: mode, onFailure, unknown fields, plan and planYaml together', async () => {
  const tenant = uniqueTenant();
  const r = await run({ plan: { ...example, tenant }, planYaml: 'x', mode: 'lve', onFailure: 'retry', dryRun: true }, workflowIdOf(tenant, 'dry-run'));
  const failure = failureOf(r.error);
  expect(failure.type).toBe('InvalidPlan');
  expect(failure.nonRetryable).toBe(true);
  expect(failure.message).toContain('mode: got "lve", expected one of "dry-run", "live"');
  expect(failure.message).toContain('onFailure: got "retry", expected one of "wait", "fail"');
  expect(failure.message).toContain('dryRun: got true, expected no unknown field (dryRun)');
  expect(failure.message).toContain('planYaml: got text, expected either "plan" or "planYaml", not both');
  expectNothingRan(r);

  const none = await run({ mode: 'live' }, `entry-none-${++seq}`);
  expect(failureOf(none.error).message).toContain('plan: got nothing, expected the plan: "plan" (an object) or "planYaml"');
  expectNothingRan(none);

  const text = await run('plan.yaml', `entry-text-${++seq}`);
  expect(failureOf(text.error).message).toContain('(input): got "plan.yaml", expected an object');
  expectNothingRan(text);
});

test('(a) broken YAML text: the messages `validate` prints for that file', async () => {
  const tenant = uniqueTenant();
  const yaml = withTenant(exampleText, tenant).replace('name: alm-ci', 'name: "alm ci; reboot"').replace('bridgeSubnet: 10.107.115.0/24', 'bridgeSubnet: 10.107.115.0/33');
  const r = await run({ planYaml: yaml, mode: 'live' }, workflowIdOf(tenant));
  const failure = failureOf(r.error);
  expect(failure.type).toBe('InvalidPlan');
  const lines = validateLinesOf(() => parsePlan(yaml));
  expect(lines).toContainEqual(expect.stringContaining('destination.bridgeSubnet: got "10.107.115.0/33"'));
  expect(lines).toContainEqual(expect.stringContaining('containers[8].name: got "alm ci; reboot"'));
  for (const line of lines) expect(failure.message).toContain(line);
  expectNothingRan(r);

  const unparseable = await run({ planYaml: 'tenant: [unclosed', mode: 'dry-run' }, `entry-yaml-${++seq}`);
  expect(failureOf(unparseable.error).message).toMatch(/\(file\): got unparseable text, expected YAML or JSON/);
  expectNothingRan(unparseable);
});

test('(b) the plan file text as planYaml, dry run: completes, every step of the plan recorded', async () => {
  const tenant = uniqueTenant();
  const r = await run({ planYaml: withTenant(exampleText, tenant), mode: 'dry-run' }, workflowIdOf(tenant, 'dry-run'));
  expect(r.error).toBeUndefined();
  const report = r.value as { tenant: string; mode: string; phases: { steps: { status: string }[] }[] };
  expect(report).toMatchObject({ tenant, mode: 'dry-run' });
  expect(report.phases.flatMap((p) => p.steps).length).toBeGreaterThan(250);
  expect(r.recorded.map((c) => c.command)).toContain('lxc stop pragmatismo-system');
});

test('(c) planYaml with its defaults left out: the workflow applies them', async () => {
  const tenant = uniqueTenant();
  // Fields whose value in the example is the schema's default; without them the run must be the same.
  const stripped = withTenant(exampleText, tenant)
    .split('\n')
    .filter((l) => !/^\s+(remoteName|apiPort|bridge|storagePool|sourceRoot|tenantsRoot|containerPath):/.test(l))
    .join('\n');
  expect(stripped).not.toMatch(/storagePool|remoteName|tenantsRoot/);
  const withDefaults = parsePlan(stripped);
  expect(withDefaults.destination).toMatchObject({ storagePool: 'default', bridge: 'incusbr0' });
  const r = await run({ planYaml: stripped, mode: 'dry-run' }, workflowIdOf(tenant, 'dry-run'));
  expect(r.error).toBeUndefined();
  const commands = r.recorded.map((c) => c.command);
  expect(commands).toContainEqual(expect.stringContaining('incus copy --instance-only lxd-source:pragmatismo-system system --storage default'));
  expect(commands).toContainEqual(expect.stringContaining('/opt/gbo/tenants/' + tenant));
  expect(commands).not.toContainEqual(expect.stringContaining('undefined'));
});

test('(d) concurrency.containers: 0 is refused before any step (it used to "complete" with nothing migrated)', async () => {
  const tenant = uniqueTenant();
  const r = await run({ plan: { ...example, tenant, concurrency: { containers: 0 } }, mode: 'dry-run' }, workflowIdOf(tenant, 'dry-run'));
  const failure = failureOf(r.error);
  expect(failure.type).toBe('InvalidPlan');
  expect(failure.nonRetryable).toBe(true);
  expect(failure.message).toContain('concurrency.containers: got 0, expected at least 1');
  expectNothingRan(r);
});

test('(e) under any workflow ID but the one the tenant implies, the run is refused and names the right one', async () => {
  const tenant = uniqueTenant();
  const r = await run({ planYaml: withTenant(exampleText, tenant), mode: 'live' }, `${tenant}-by-hand`);
  const failure = failureOf(r.error);
  expect(failure.type).toBe('WrongWorkflowId');
  expect(failure.nonRetryable).toBe(true);
  expect(failure.message).toContain(`must run under workflow ID "migrate-${tenant}", not "${tenant}-by-hand"`);
  expectNothingRan(r);

  // A dry run under the live ID would hold the live migration's ID (and the reverse race it).
  const dry = await run({ planYaml: withTenant(exampleText, tenant), mode: 'dry-run' }, `migrate-${tenant}`);
  expect(failureOf(dry.error).message).toContain(`must run under workflow ID "migrate-${tenant}-dry-run"`);
  expectNothingRan(dry);
});

test('(f) a second start while the tenant\'s migration runs is refused with which run it is and how to watch it; a finished one may start again', async () => {
  const tenant = uniqueTenant();
  const plan = { ...example, tenant };
  // No worker polls this queue: the first run stays open, as a live migration at a gate would.
  const taskQueue = `entry-idle-${Date.now()}`;
  const first = await startMigration(t.client, plan, 'live', taskQueue, { uiUrl: 'http://127.0.0.1:8233' });
  try {
    const refused = await startMigration(t.client, plan, 'live', taskQueue, { uiUrl: 'http://127.0.0.1:8233' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(MigrationAlreadyRunningError);
    const err = refused as MigrationAlreadyRunningError;
    expect(err.workflowId).toBe(`migrate-${tenant}`);
    expect(err.runId).toBe(first.firstExecutionRunId);
    expect(err.message).toContain(`a live migration of tenant ${tenant} is already running as migrate-${tenant} (run ${first.firstExecutionRunId}`);
    expect(err.message).toContain(`gbo-migrate status ${tenant}\``);
    expect(err.message).toContain(`http://127.0.0.1:8233/namespaces/default/workflows/migrate-${tenant}/${first.firstExecutionRunId}`);
    // The dry run has its own ID and does not block the live one (nor is blocked by it).
    const dry = await startMigration(t.client, plan, 'dry-run', taskQueue);
    await dry.terminate('test over');
  } finally {
    await first.terminate('test over');
  }
  const again = await startMigration(t.client, plan, 'live', taskQueue);
  expect(again.firstExecutionRunId).not.toBe(first.firstExecutionRunId);
  await again.terminate('test over');
});

test('migrateContainer started on its own (not by its tenant\'s migration) is refused before any step', async () => {
  const tenant = uniqueTenant();
  const plan = { ...example, tenant };
  const taskQueue = `entry-${Date.now()}-${++seq}`;
  const recorder = new DryRunExecutor();
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: recorder } });
  const handle: WorkflowHandle = await t.client.workflow.start('migrateContainer', {
    taskQueue,
    workflowId: `${workflowIdOf(tenant, 'dry-run')}/proxy`,
    args: [{ plan, container: 'proxy', mode: 'dry-run', values: {} }],
  });
  const error = await worker.runUntil(handle.result().then(() => undefined, (e: unknown) => e));
  const f = failureOf(error);
  expect(f.type).toBe('NotAChildOfItsMigration');
  expect(f.nonRetryable).toBe(true);
  expect(f.message).toContain(`only as a child of its tenant's migration (${workflowIdOf(tenant, 'dry-run')})`);
  expect(recorder.recorded).toEqual([]);
});
