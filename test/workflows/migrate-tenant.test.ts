/**
 * The migration workflow in dry-run mode on a real Temporal dev server (started by the harness):
 * started through the client, run by the worker, its activities recording commands.
 */
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { join } from 'node:path';
import { DryRunExecutor } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps } from '../../src/runbook/model';
import { createWorker } from '../../src/worker';
import { stepSummary } from '../../src/workflows/details';
import { statusQuery } from '../../src/workflows/messages';
import { quietRuntime } from '../harness/quiet-runtime';

const address = process.env.TEMPORAL_TEST_ADDRESS!;
const plan = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));

let nativeConnection: NativeConnection;
let connection: Connection;
let client: Client;

beforeAll(async () => {
  quietRuntime();
  nativeConnection = await NativeConnection.connect({ address });
  connection = await Connection.connect({ address });
  client = new Client({ connection });
});

afterAll(async () => {
  await connection?.close();
  await nativeConnection?.close();
});

async function withWorker<T>(taskQueue: string, recorder: DryRunExecutor, f: (w: Worker) => Promise<T>): Promise<T> {
  const worker = await createWorker({ connection: nativeConnection, taskQueue, deps: { dryRun: recorder } });
  return worker.runUntil(f(worker));
}

test('the dry-run migration records every command of the runbook, in order, on the real server', async () => {
  const taskQueue = `dry-run-${Date.now()}`;
  const tenantPlan = { ...plan, tenant: `pragmatismo${Date.now() % 100000}` };
  const recorder = new DryRunExecutor();
  const report = await withWorker(taskQueue, recorder, async () => {
    const handle = await startMigration(client, tenantPlan, 'dry-run', taskQueue);
    expect(handle.workflowId).toBe(`migrate-${tenantPlan.tenant}-dry-run`);
    const result = await handle.result();
    const status = await handle.query(statusQuery);
    expect(status.phase).toBe('done');
    expect(Object.values(status.containers).map((c) => c.phase)).toEqual(plan.containers.map(() => 'done'));
    const description = await handle.describe();
    expect(description.searchAttributes).toMatchObject({ GboTenant: [tenantPlan.tenant], GboPhase: ['done'] });
    return result;
  });

  const runbook = buildRunbook(tenantPlan);
  const expected = allSteps(runbook).filter((s) => s.kind !== 'gate');
  const reported = report.phases.flatMap((p) => p.steps);
  expect(reported.map((s) => s.id).sort()).toEqual(expected.map((s) => s.id).sort());
  expect(reported.every((s) => s.status === 'recorded')).toBe(true);
  // Phases come back in runbook order, and within the tenant-wide phases the steps keep their order.
  expect(report.phases.map((p) => p.id)).toEqual(runbook.phases.map((p) => p.id));
  expect(report.phases.find((p) => p.id === 'network')!.steps.map((s) => s.id)).toEqual(runbook.phases.find((p) => p.id === 'network')!.steps.map((s) => s.id));
  // The activities really recorded commands for the hosts, with the run's timestamp filled in.
  const commands = recorder.recorded.map((r) => `${r.host}: ${r.command}`);
  expect(commands).toContain('source: lxc stop pragmatismo-system');
  // A half-made copy an earlier attempt left (unmarked) goes before the copy runs again; the mark
  // comes once the copy is whole.
  expect(commands).toContain(
    "destination: sudo -n sh -c 'if incus query /1.0/instances/system >/dev/null 2>&1; then incus delete --force system || exit 1; fi; " +
      `incus copy --instance-only lxd-source:pragmatismo-system system --storage default && incus config set system user.gbo-migrate.tenant=${tenantPlan.tenant}'`,
  );
  expect(commands.find((c) => c.includes('config.bak-'))).toMatch(/config\.bak-\d{12}/);
  // A dry run records the domains gate and the removal it guards too (a live run asks only if a domain is dead).
  expect(report.approvals.map((a) => `${a.gate}:${a.by}`)).toEqual(['cutover:dry-run', 'domains:dry-run', 'cleanup:dry-run']);
  // Each container's steps ran in its own child workflow and before the network phase.
  const firstNetwork = commands.findIndex((c) => c.includes('net.ipv4.ip_forward'));
  const lastPush = commands.map((c, i) => (c.includes('tar -C /opt/gbo --numeric-owner -xpf -') ? i : -1)).reduce((a, b) => Math.max(a, b));
  expect(lastPush).toBeGreaterThan(0);
  expect(firstNetwork).toBeGreaterThan(lastPush);
});

test('a second migration of the same tenant is refused while one runs', async () => {
  const taskQueue = `no-worker-${Date.now()}`;
  const tenantPlan = { ...plan, tenant: `dup${Date.now() % 100000}` };
  const first = await startMigration(client, tenantPlan, 'live', taskQueue);
  // The server's refusal, turned into one that names the running migration (test/workflows/entry.test.ts has the details).
  await expect(startMigration(client, tenantPlan, 'live', taskQueue)).rejects.toThrow(new RegExp(`already running as migrate-${tenantPlan.tenant} \\(run ${first.firstExecutionRunId}`));
  await first.terminate('test over');
});

/** The one-line summaries the Web UI's timeline shows, by event type, from a run's history. */
async function summariesOf(workflowId: string): Promise<{ type: string; summary: string }[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((e) => {
    const p = e.userMetadata?.summary;
    if (!p) return [];
    const type = e.activityTaskScheduledEventAttributes ? 'activity' : e.timerStartedEventAttributes ? 'timer' : e.startChildWorkflowExecutionInitiatedEventAttributes ? 'child' : 'other';
    return [{ type, summary: defaultPayloadConverter.fromPayload<string>(p) }];
  });
}

test('the Web UI reads like the runbook: every activity and child names its step, the start its plan, the details the phase', async () => {
  const taskQueue = `labels-${Date.now()}`;
  const tenantPlan = { ...plan, tenant: `labels${Date.now() % 100000}` };
  const handle = await withWorker(taskQueue, new DryRunExecutor(), async () => {
    const h = await startMigration(client, tenantPlan, 'dry-run', taskQueue);
    await h.result();
    // The current details are the workflow's (Markdown), kept up to date as it runs; at the end, the final phase.
    const meta = await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(meta.currentDetails).toContain(`**${tenantPlan.tenant}** · dry-run · phase **done**`);
    expect(meta.currentDetails).toMatch(/\| system \| done \|/);
    expect(meta.currentDetails).toContain('Approvals: cutover by dry-run');
    return h;
  });
  const description = await handle.describe();
  expect(await description.staticSummary()).toMatch(new RegExp(`^${tenantPlan.tenant} · dry-run · plan sha256:[0-9a-f]{12}$`));
  expect(await description.staticDetails()).toContain(`Containers (10): ${plan.containers.map((c) => c.name).join(', ')}`);

  const runbook = buildRunbook(tenantPlan);
  const tenant = await summariesOf(handle.workflowId);
  const children = (await Promise.all(plan.containers.map((c) => summariesOf(`${handle.workflowId}-${c.name}`)))).flat();
  // Every step that ran is an activity labelled `<step id>: <its title>`, and nothing is labelled otherwise.
  const activities = [...tenant, ...children].filter((s) => s.type === 'activity').map((s) => s.summary);
  const steps = allSteps(runbook).filter((s) => s.kind !== 'gate');
  expect(activities.sort()).toEqual(steps.map((s) => stepSummary(s)).sort());
  expect(activities.find((a) => a.startsWith('copy/system/'))).toMatch(/^copy\/system\/[a-z-]+: \S/);
  expect(tenant.filter((s) => s.type === 'child').map((s) => s.summary.split(':')[0]).sort()).toEqual(plan.containers.map((c) => c.name).sort());
});
