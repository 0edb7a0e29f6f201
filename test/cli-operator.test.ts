/**
 * The CLI's operator basics, run compiled as operators run it: --version, the environment in
 * --help, an unreachable server named, migrate's warning when no worker polls, cancel of a closed
 * or absent migration, `list` by tenant and phase, and the operator's default identity in an
 * update's `by` and in the server's record of it. Commands run asynchronously: while this
 * process's worker runs, a synchronous child would stop it from answering.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DryRunExecutor } from '../src/activities/executor';
import type { MigrationRow } from '../src/operator/list';
import { createWorker } from '../src/worker';
import { statusQuery } from '../src/workflows/messages';
import { StatefulHosts, testPlan } from './harness/stateful-hosts';
import { suiteClients, untilStatus } from './harness/suite-clients';

const t = suiteClients();
const root = join(__dirname, '..');
const example = join(root, 'examples', 'pragmatismo.yaml');

beforeAll(async () => {
  await new Promise<void>((resolve, reject) => execFile('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root }, (err) => (err ? reject(err) : resolve())));
}, 5 * 60_000);

/** The compiled CLI against the test server, without GBO_OPERATOR unless given. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const base: NodeJS.ProcessEnv = { ...process.env, TEMPORAL_ADDRESS: process.env.TEMPORAL_TEST_ADDRESS! };
  delete base.GBO_OPERATOR;
  return new Promise((resolve) => {
    execFile('node', [join(root, 'dist', 'src', 'cli.js'), ...args], { cwd: root, encoding: 'utf8', env: { ...base, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** `list --json` until `pred` holds on its rows: the server's visibility is eventually consistent. */
async function listUntil(args: string[], pred: (rows: MigrationRow[]) => boolean, ms = 30_000): Promise<MigrationRow[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await cli(['list', ...args, '--json']);
    if (r.code !== 0) throw new Error(`list exited ${r.code}: ${r.stderr}`);
    const rows = JSON.parse(r.stdout) as MigrationRow[];
    if (pred(rows)) return rows;
    if (Date.now() > deadline) throw new Error(`list ${args.join(' ')}: still ${JSON.stringify(rows)}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

function planFile(tenant: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'gbo-cli-')), 'plan.yaml');
  writeFileSync(file, readFileSync(example, 'utf8').replace(/^tenant: pragmatismo$/m, `tenant: ${tenant}`));
  return file;
}

const user = userInfo().username;

test('--version prints the package version', async () => {
  const r = await cli(['--version']);
  expect(r.stdout.trim()).toBe((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version);
  expect(r.code).toBe(0);
});

test('--help names every environment variable read, with its default', async () => {
  const r = await cli(['--help']);
  expect(r.code).toBe(0);
  const env = r.stdout.slice(r.stdout.indexOf('Environment:'));
  expect(env).toMatch(/TEMPORAL_ADDRESS .*default 127\.0\.0\.1:7233/);
  expect(env).toMatch(/TEMPORAL_NAMESPACE .*default default/);
  expect(env).toMatch(/GBO_TASK_QUEUE .*default gbo-migrate/);
  expect(env).toMatch(/TEMPORAL_UI_URL .*default http:\/\/127\.0\.0\.1:8233/);
  expect(env).toMatch(/GBO_OPERATOR .*default: the OS user/);
  expect(env).toMatch(/GBO_SECRETS_DIRS .*default ~\/\.ssh:~\/\.gbo-migrate\/secrets/);
  expect(env).toMatch(/GBO_SECRETS_ENV_PREFIX .*default GBO_/);
  expect(env).toContain('SSH_AUTH_SOCK');
});

test('a server that cannot be reached is named, with its address, within seconds, for any command', async () => {
  // A loopback port nobody listens on any more.
  const port = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = srv.address() as { port: number };
      srv.close(() => resolve(p));
    });
  });
  for (const args of [['list'], ['status', 'pragmatismo'], ['pause', 'pragmatismo', '--reason', 'x'], ['cancel', 'pragmatismo', '--reason', 'x']]) {
    const started = Date.now();
    const r = await cli(args, { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });
    expect([args[0], r.code, r.stderr.trim()]).toEqual([args[0], 1, `error: could not reach the Temporal server at 127.0.0.1:${port} (TEMPORAL_ADDRESS, namespace default): connect ECONNREFUSED 127.0.0.1:${port}`]);
    expect(Date.now() - started).toBeLessThan(10_000);
  }
});

test('migrate with no worker on the queue warns at once and the start stands; list finds it; cancel of a closed or absent migration says so and sends nothing', async () => {
  const tenant = `cliq${Date.now() % 100000}`;
  const queue = `nobody-polls-${tenant}`;
  const r = await cli(['migrate', planFile(tenant), '--no-wait'], { GBO_TASK_QUEUE: queue });
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(`started migrate-${tenant} (live)`);
  expect(r.stderr).toContain(`warning: no worker polls task queue "${queue}" on ${process.env.TEMPORAL_TEST_ADDRESS}: migrate-${tenant} is started and waits until one does`);
  expect(r.stderr).toContain('gbo-migrate worker');
  const handle = t.client.workflow.getHandle(`migrate-${tenant}`);
  expect((await handle.describe()).status.name).toBe('RUNNING');

  const running = await listUntil(['--tenant', tenant, '--running'], (rows) => rows.length === 1);
  expect(running[0]).toMatchObject({ workflowId: `migrate-${tenant}`, tenant, mode: 'live', phase: 'preflight', state: 'running' });
  const table = await cli(['list', '--tenant', tenant]);
  expect(table.stdout).toMatch(new RegExp(`^WORKFLOW ID +TENANT +MODE +PHASE +STATE +STARTED +CLOSED\\nmigrate-${tenant} +${tenant} +live +preflight +running +\\S+ +-\n$`));

  await handle.terminate('test over');
  const closed = await handle.describe();
  const again = await cli(['cancel', tenant, '--reason', 'too late']);
  expect(again.code).toBe(1);
  expect(again.stderr.trim()).toBe(`error: migrate-${tenant} (run ${closed.runId}) is already closed: terminated at ${closed.closeTime!.toISOString()}; nothing sent`);
  const events = (await handle.fetchHistory()).events ?? [];
  expect(events.some((e) => e.workflowExecutionCancelRequestedEventAttributes)).toBe(false);
  await listUntil(['--tenant', tenant], (rows) => rows[0]?.state === 'terminated');
  expect(await listUntil(['--tenant', tenant, '--running'], (rows) => rows.length === 0)).toEqual([]);

  const absent = await cli(['cancel', `${tenant}x`, '--dry-run', '--reason', 'x']);
  expect([absent.code, absent.stderr.trim()]).toEqual([1, `error: no dry-run migration of tenant ${tenant}x (migrate-${tenant}x-dry-run) on ${process.env.TEMPORAL_TEST_ADDRESS}, namespace default`]);
  const badPhase = await cli(['list', '--phase', 'lunch']);
  expect(badPhase.stderr).toContain('--phase: expected one of preflight, presync,');
  expect(badPhase.stderr).toContain('got "lunch"');
});

test('the operator defaults to the OS user (GBO_OPERATOR overrides) in the update and in the identity the server records; cancel records who and why', async () => {
  const base = testPlan();
  const plan = testPlan({ certificates: undefined, concurrency: { containers: 4 }, approvals: { ...base.approvals, cutover: true, cleanup: true, verificationWindow: '0s' } });
  const hosts = new StatefulHosts(plan);
  const taskQueue = `cli-operator-${plan.tenant}`;
  const file = join(mkdtempSync(join(tmpdir(), 'gbo-cli-')), 'plan.yaml');
  writeFileSync(file, stringify(plan));
  const { tenant } = plan;
  const handle = t.client.workflow.getHandle(`migrate-${tenant}`);
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
  await worker.runUntil(async () => {
    const started = await cli(['migrate', file, '--no-wait'], { GBO_TASK_QUEUE: taskQueue });
    expect([started.code, started.stderr]).toEqual([0, '']);
    await untilStatus(handle, 'the cutover gate', (s) => s.gate?.name === 'cutover', 120_000);
    expect(await listUntil(['--tenant', tenant, '--phase', 'cutover'], (rows) => rows.length === 1)).toMatchObject([{ tenant, phase: 'cutover', state: 'running' }]);

    const paused = await cli(['pause', tenant, '--reason', 'lunch']);
    expect(paused.code).toBe(0);
    const resumed = await cli(['resume', tenant], { GBO_OPERATOR: 'carol' });
    expect(resumed.code).toBe(0);
    const approved = await cli(['approve', tenant, '--gate', 'cutover', '--reason', 'matrix green']);
    expect(approved.stdout).toMatch(new RegExp(`^approved cutover by ${user} at `));
    const s = await handle.query(statusQuery);
    expect(s.pauses).toMatchObject([{ by: user, reason: 'lunch' }]);
    expect(s.approvals).toMatchObject([{ gate: 'cutover', by: user, reason: 'matrix green' }]);

    await untilStatus(handle, 'the cleanup gate', (st) => st.gate?.name === 'cleanup', 60_000);
    expect(await listUntil(['--tenant', tenant, '--phase', 'cleanup'], (rows) => rows.length === 1)).toMatchObject([{ phase: 'cleanup', state: 'running' }]);
    const cancelled = await cli(['cancel', tenant, '--reason', 'tenant asked to stay'], { GBO_OPERATOR: 'carol' });
    expect(cancelled.stdout).toContain(`cancel requested for migrate-${tenant}`);
    expect(cancelled.stdout).toContain('by carol');
    await expect(handle.result()).rejects.toThrow();
  });

  const events = (await handle.fetchHistory()).events ?? [];
  const updates = events.flatMap((e) => {
    const u = e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest;
    return u ? [`${u.input?.name} ${u.meta?.identity}`] : [];
  });
  expect(updates).toEqual([`pause ${user}@${hostname()} gbo-migrate`, `resume carol@${hostname()} gbo-migrate`, `approve ${user}@${hostname()} gbo-migrate`]);
  expect(events.find((e) => e.workflowExecutionCancelRequestedEventAttributes)?.workflowExecutionCancelRequestedEventAttributes).toMatchObject({
    identity: `carol@${hostname()} gbo-migrate`,
    cause: 'tenant asked to stay',
  });
  await listUntil(['--tenant', tenant], (rows) => rows[0]?.state === 'cancelled' && rows[0].closed !== undefined);
  const again = await cli(['cancel', tenant, '--reason', 'twice']);
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(new RegExp(`is already closed: cancelled at \\d{4}-.*; nothing sent`));
}, 300_000);
