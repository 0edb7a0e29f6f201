import type { TestServer } from './temporal-server';

export default async function globalTeardown(): Promise<void> {
  const server = (globalThis as { __temporal?: TestServer }).__temporal;
  if (!server) return;
  const exited = new Promise((r) => server.process.once('exit', r));
  server.process.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (server.process.exitCode === null) server.process.kill('SIGKILL');
  server.process.stderr?.destroy();
}
