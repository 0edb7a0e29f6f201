/**
 * A real Temporal dev server for the tests: the project's own CLI (scripts/temporal-cli.sh, no
 * download at run time), on free loopback ports, in memory, with the project's search attributes.
 * Health-checked here rather than relying on the SDK's 5 s start-up budget.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');

export function temporalCli(): string {
  return execFileSync('bash', [join(root, 'scripts', 'temporal-cli.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface TestServer {
  address: string;
  uiUrl: string;
  process: ChildProcess;
}

/** `ui`: serve the Web UI too (the browser test); the other tests run headless. */
export async function startTestServer(options: { ui?: boolean } = {}): Promise<TestServer> {
  const cli = temporalCli();
  const port = await freePort();
  const uiPort = await freePort();
  const child = spawn(
    cli,
    ['server', 'start-dev', ...(options.ui ? [] : ['--headless']), '--ip', '127.0.0.1', '--port', String(port), '--ui-port', String(uiPort), '--log-level', 'error',
      '--search-attribute', 'GboTenant=Keyword', '--search-attribute', 'GboPhase=Keyword'],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: false },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const address = `127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`temporal dev server exited (${child.exitCode}): ${stderr.slice(-500)}`);
    try {
      execFileSync(cli, ['operator', 'cluster', 'health', '--address', address], { stdio: 'ignore' });
      // Search attributes registered by the flag become visible a moment after health.
      execFileSync(cli, ['operator', 'search-attribute', 'list', '--address', address], { stdio: 'ignore' });
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`temporal dev server not healthy after 60 s: ${stderr.slice(-500)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  return { address, uiUrl: `http://127.0.0.1:${uiPort}`, process: child };
}
