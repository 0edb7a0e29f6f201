/**
 * What the workflow suites share: connections to the test run's Temporal server, opened before a
 * suite's tests and closed after, and waiting on a migration's status.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { statusQuery, type MigrationStatus } from '../../src/workflows/messages';
import { quietRuntime } from './quiet-runtime';

export interface SuiteClients {
  /** For workers. */
  native: NativeConnection;
  connection: Connection;
  client: Client;
}

/** Connects in `beforeAll` and closes in `afterAll`; read the fields inside tests. */
export function suiteClients(): SuiteClients {
  const clients = {} as SuiteClients;
  beforeAll(async () => {
    quietRuntime();
    const address = process.env.TEMPORAL_TEST_ADDRESS!;
    clients.native = await NativeConnection.connect({ address });
    clients.connection = await Connection.connect({ address });
    clients.client = new Client({ connection: clients.connection });
  });
  afterAll(async () => {
    await clients.connection?.close();
    await clients.native?.close();
  });
  return clients;
}

/**
 * Polls the status query until `pred` holds; on timeout the error shows what the migration was
 * doing (phase, wait, failures, gate, containers), which is what a failing test needs to say.
 */
export async function untilStatus(
  handle: { query: (q: typeof statusQuery) => Promise<MigrationStatus> },
  what: string,
  pred: (s: MigrationStatus) => boolean,
  ms = 60_000,
): Promise<MigrationStatus> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await handle.query(statusQuery);
    if (pred(s)) return s;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify({ phase: s.phase, waitingFor: s.waitingFor, failures: s.failures, gate: s.gate, containers: s.containers, matrix: s.matrix })}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}
