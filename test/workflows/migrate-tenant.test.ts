/**
 * The migration workflow in dry-run mode on a real Temporal dev server (started by the harness):
 * started through the client, run by the worker, its activities recording commands.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { join } from 'node:path';
import { DryRunExecutor } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps } from '../../src/runbook/model';
import { createWorker } from '../../src/worker';
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
