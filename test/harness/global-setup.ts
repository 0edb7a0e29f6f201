import { startTestServer } from './temporal-server';

/** One dev server for the whole run; test files read its address from the environment. */
export default async function globalSetup(): Promise<void> {
  const server = await startTestServer();
  process.env.TEMPORAL_TEST_ADDRESS = server.address;
  (globalThis as { __temporal?: typeof server }).__temporal = server;
}
