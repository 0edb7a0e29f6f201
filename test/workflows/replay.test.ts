/**
 * Determinism: recorded histories of migrateTenant and migrateContainer must replay on the current
 * workflow code. A change that would break migrations already running (they replay on every
 * worker restart) fails here; such a change needs `patched()`. `UPDATE_HISTORIES=1` records new
 * fixtures from a dry run on the test server (only when a change is meant to be incompatible).
 */
import { Client, Connection } from '@temporalio/client';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils';
import { NativeConnection, Worker } from '@temporalio/worker';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import { createWorker } from '../../src/worker';
import { quietRuntime } from '../harness/quiet-runtime';

const FIXTURES = join(__dirname, '..', 'fixtures');
const fixture = (name: string) => join(FIXTURES, `${name}.history.json`);
const workflowsPath = require.resolve('../../src/workflows');

async function record(): Promise<void> {
  const address = process.env.TEMPORAL_TEST_ADDRESS!;
  const native = await NativeConnection.connect({ address });
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const taskQueue = `replay-${Date.now()}`;
  const plan = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
  const worker = await createWorker({ connection: native, taskQueue });
  await worker.runUntil(async () => {
    const handle = await startMigration(client, plan, 'dry-run', taskQueue);
    await handle.result();
    writeFileSync(fixture('migrate-tenant'), historyToJSON(await handle.fetchHistory()));
    writeFileSync(fixture('migrate-container'), historyToJSON(await client.workflow.getHandle(`${handle.workflowId}-tables`).fetchHistory()));
  });
  await connection.close();
  await native.close();
}

beforeAll(async () => {
  quietRuntime();
  if (process.env.UPDATE_HISTORIES === '1') await record();
}, 120_000);

/**
 * Child workflow IDs derive from the parent's, so a replay needs the recorded workflow ID. The
 * `lab-` histories are of a live migration on the lab, recorded by test/e2e/lab-migration.test.ts
 * with UPDATE_HISTORIES=1: failures, retries, heartbeats and the children's reports as they really come;
 * `lab-certificates-` by test/e2e/certificates.test.ts (the waits, a CA rate limit, wakes, a worker
 * kill and a server restart).
 */
const recordedIds: Record<string, string> = {
  'migrate-tenant': 'migrate-pragmatismo-dry-run',
  'migrate-container': 'migrate-pragmatismo-dry-run-tables',
  'lab-migrate-tenant': 'migrate-pragmatismo',
  'lab-migrate-container': 'migrate-pragmatismo-proxy',
  'lab-certificates-migrate-tenant': 'migrate-pragmatismo',
};

test.each(Object.keys(recordedIds))('the recorded %s history replays on the current code', async (name) => {
  if (!existsSync(fixture(name))) throw new Error(`${fixture(name)} is missing: record it with UPDATE_HISTORIES=1`);
  const history = historyFromJSON(JSON.parse(readFileSync(fixture(name), 'utf8')));
  expect(history.events?.length).toBeGreaterThan(20);
  await Worker.runReplayHistory({ workflowsPath }, history, recordedIds[name]);
});
