/**
 * The processes the fault suite kills: its own Temporal dev server (SQLite in a temp dir, so a
 * restart on the same port keeps every workflow) and the worker, a separate `node
 * dist/src/cli.js worker` process that can be SIGKILLed and started again.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A bound for a race: does not keep the process alive (jest waits for live timers). */
export const timeout = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** A Temporal dev server on a fixed port over a SQLite file: stop it and start it again at will. */
export class DevServer {
  private child?: ChildProcess;
  private log?: WriteStream;
  readonly address: string;

  constructor(
    private readonly cli: string,
    private readonly port: number,
    private readonly dir: string,
  ) {
    this.address = `127.0.0.1:${port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    this.log = createWriteStream(join(this.dir, 'temporal.log'), { flags: 'a' });
    const child = spawn(
      this.cli,
      ['server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(this.port), '--log-level', 'error',
        '--db-filename', join(this.dir, 'temporal.sqlite'), '--search-attribute', 'GboTenant=Keyword', '--search-attribute', 'GboPhase=Keyword'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.pipe(this.log, { end: false });
    child.stderr?.pipe(this.log, { end: false });
    this.child = child;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`temporal dev server exited (${child.exitCode}); see ${join(this.dir, 'temporal.log')}`);
      try {
        await execFileP(this.cli, ['operator', 'cluster', 'health', '--address', this.address], { timeout: 10_000 });
        await execFileP(this.cli, ['operator', 'search-attribute', 'list', '--address', this.address], { timeout: 10_000 });
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`temporal dev server not healthy after 60 s; see ${join(this.dir, 'temporal.log')}`);
        await sleep(250);
      }
    }
  }

  /** SIGTERM (a clean stop, SIGKILL after 15 s) or SIGKILL (a crash). */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child) return;
    const done = exited(child);
    child.kill(signal);
    await Promise.race([done, timeout(15_000)]);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await done;
    }
    this.child = undefined;
    this.log?.end();
    this.log = undefined;
  }
}

export interface WorkerExit {
  n: number;
  at: number;
  code: number | null;
  signal: string | null;
  /** Killed by the suite (vs. exited by itself). */
  killed: boolean;
}

/**
 * The worker as its own process. `start()` resolves once it polls its task queue; `kill()` is a
 * SIGKILL. A worker that exits by itself is recorded (and started again by the suite).
 */
export class WorkerProcess {
  private child?: ChildProcess;
  private killing = false;
  private starts = 0;
  readonly exits: WorkerExit[] = [];
  ready = false;

  constructor(
    private readonly repo: string,
    private readonly dir: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts a worker and waits (up to 2 minutes) until it polls; a worker that dies first is started again. */
  async start(): Promise<void> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const n = ++this.starts;
      const log = createWriteStream(join(this.dir, `worker-${String(n).padStart(2, '0')}.log`));
      const child = spawn(process.execPath, [join(this.repo, 'dist', 'src', 'cli.js'), 'worker'], {
        cwd: this.repo,
        env: { ...process.env, ...this.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.child = child;
      this.ready = false;
      this.killing = false;
      child.stderr?.pipe(log, { end: false });
      const polling = new Promise<boolean>((resolve) => {
        let out = '';
        child.stdout?.on('data', (d: Buffer) => {
          log.write(d);
          out += d.toString();
          if (out.includes('worker: polling task queue')) resolve(true);
        });
        child.once('exit', (code, signal) => {
          this.exits.push({ n, at: Date.now(), code, signal, killed: this.killing });
          this.ready = false;
          log.end();
          resolve(false);
        });
      });
      if (await polling) {
        this.ready = true;
        return;
      }
      if (Date.now() > deadline) throw new Error(`the worker does not start; see ${join(this.dir, `worker-${n}.log`)}`);
      await sleep(1000);
    }
  }

  /** SIGKILL; resolves once the process is gone. Returns the kill time. */
  async kill(): Promise<number> {
    const child = this.child;
    if (!child || !this.alive) return Date.now();
    this.killing = true;
    this.ready = false;
    const done = exited(child);
    child.kill('SIGKILL');
    const at = Date.now();
    await done;
    return at;
  }

  /** The end of the run: SIGTERM, then SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.alive) return;
    this.killing = true;
    const done = exited(child);
    child.kill('SIGTERM');
    await Promise.race([done, timeout(10_000)]);
    if (this.alive) {
      child.kill('SIGKILL');
      await done;
    }
  }
}
