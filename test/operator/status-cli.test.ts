/**
 * `gbo-migrate status` as operators run it (the compiled CLI) against a migration on the real dev
 * server, over the stateful fake hosts: a slow data pull reports rsync's progress through the
 * real heartbeat code, and the live view shows the container's running step and a progress bar
 * with bytes, rate and ETA; `--json` parses; a failed step shows its retry and skip commands;
 * `--watch` prints frames until the run closes; a tenant with no migration is named as such; a
 * run without a worker is still described.
 */
import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DryRunExecutor } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import type { LiveStatus } from '../../src/operator/live-status';
import { createWorker } from '../../src/worker';
import { StatefulHosts, testPlan } from '../harness/stateful-hosts';
import { suiteClients, untilStatus } from '../harness/suite-clients';

const t = suiteClients();
const root = join(__dirname, '..', '..');
const execFileAsync = promisify(execFile);

beforeAll(() => {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'pipe' });
});

/**
 * The CLI, asynchronously: a synchronous child would block this process, and with it the
 * in-process worker that answers the CLI's queries.
 */
function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> & { child: ChildProcess } {
  const env = { ...process.env, TEMPORAL_ADDRESS: process.env.TEMPORAL_TEST_ADDRESS! };
  const running = execFileAsync('node', [join(root, 'dist', 'src', 'cli.js'), ...args], { cwd: root, env, timeout: 60_000 });
  const result = running.then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
  return Object.assign(result, { child: running.child });
}

/** Runs `status` until its output matches `re`; on timeout says what it showed last. */
async function statusUntil(args: string[], re: RegExp, ms = 30_000): Promise<string> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    const r = await cli('status', ...args);
    last = `exit ${r.code}\n${r.stdout}${r.stderr}`;
    if (r.code === 0 && re.test(r.stdout)) return r.stdout;
    await new Promise((res) => setTimeout(res, 300));
  }
  throw new Error(`status never matched ${re}; it showed last:\n${last}`);
}

/** `[#########-----------] 45%  115 MB  25.6 MB/s  ETA 0:05` */
const BAR = /\[[#-]{20}\] \d{1,3}%  \d+(?:\.\d+)? (?:kB|MB)  \d+(?:\.\d+)? MB\/s  ETA \d+:\d{2}/;

test('status shows the running step with a progress bar, --json parses, a failed step shows retry and skip, --watch ends with the run', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan);
  // The canary's warm pull moves "256 MB" in 10 s, printing rsync's progress all along.
  hosts.slowTransfer((c) => c.includes('rsync -aHAX') && c.includes('/tables'), { bytes: 256 * 1024 ** 2, ms: 10_000 });
  // Then the canary's pulled copy does not match the source (a refusal: it waits for the operator).
  hosts.failNext((c) => c.startsWith('test "$(sh -c') && c.includes(' manifest ') && c.includes('/tables '), { exitCode: 1, stderr: 'rsync: write failed: No space left on device' });
  const taskQueue = `status-cli-${Date.now()}`;
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net(), heartbeatIntervalMs: 300 } });
  await worker.runUntil(async () => {
    const handle = await startMigration(t.client, plan, 'live', taskQueue);

    // Watched from the start of the transfer to the end of the run, frame after frame (not a terminal: a separator line each).
    const watching = cli('status', plan.tenant, '--watch', '0.5');
    let seen = '';
    watching.child.stdout?.on('data', (chunk: Buffer) => (seen += chunk.toString()));

    const frame = await statusUntil([plan.tenant], BAR);
    expect(frame).toContain(`migrate-${plan.tenant} (live), run ${handle.firstExecutionRunId}: RUNNING`);
    expect(frame).toMatch(new RegExp(`^tenant ${plan.tenant}  mode live  phase presync`, 'm'));
    expect(frame).toMatch(/^ {2}tables +presync +presync\/tables\/rsync$/m);
    expect(frame).toMatch(new RegExp(`^  tables: presync/tables/rsync, command, \\d+s\\n    ${BAR.source}$`, 'm'));

    const json = await cli('status', plan.tenant, '--json');
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as Pick<LiveStatus, 'status' | 'workflow' | 'activities'>;
    expect(parsed.workflow).toMatchObject({ id: `migrate-${plan.tenant}`, runId: handle.firstExecutionRunId, status: 'RUNNING' });
    expect(parsed.status?.tenant).toBe(plan.tenant);
    expect(parsed.status?.containers.tables?.step).toBe('presync/tables/rsync');
    const pull = parsed.activities.find((a) => a.container === 'tables' && a.progress?.step === 'presync/tables/rsync');
    expect(pull?.workflowId).toBe(`migrate-${plan.tenant}-tables`);
    expect(pull?.progress?.bytes).toBeGreaterThan(0);
    expect(pull?.progress?.rate).toBe('25.60MB/s');

    await untilStatus(handle, 'the failed transfer check', (s) => s.steps['data/tables/verify-transfer'] === 'failed', 90_000);
    const failed = await statusUntil([plan.tenant], /failures:/);
    expect(failed).toContain('  data/tables/verify-transfer (waits for a decision)\n');
    expect(failed).toContain('No space left on device');
    expect(failed).toContain(`    retry with: gbo-migrate retry ${plan.tenant} data/tables/verify-transfer\n`);
    expect(failed).toContain(`    skip with:  gbo-migrate skip ${plan.tenant} data/tables/verify-transfer --reason <text>\n`);
    expect(failed).toMatch(/^ {2}tables +failed +data\/tables\/verify-transfer$/m);
    expect(failed).not.toContain('$ sudo');

    // The watch goes on until the run closes, then exits non-zero: it did not complete.
    for (const deadline = Date.now() + 30_000; !/retry with:[^]*$/.test(seen.split(/^--- /m).at(-1) ?? '') && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 200));
    await handle.terminate('status test over');
    const watched = await watching;
    expect(watched.code).toBe(1);
    const frames = watched.stdout.split(/^--- \S+ ---$/m).filter((f) => f.trim());
    // The bar moved from frame to frame during the transfer, and the failure showed before the end.
    const percents = new Set(frames.flatMap((f) => (/\] (\d+)%/.exec(f) ?? []).slice(1)));
    expect(percents.size).toBeGreaterThanOrEqual(2);
    expect(frames.some((f) => BAR.test(f) && /^ {2}tables +presync +presync\/tables\/rsync$/m.test(f))).toBe(true);
    expect(frames.some((f) => f.includes('retry with:'))).toBe(true);
    expect(frames.at(-1)).toMatch(new RegExp(`run ${handle.firstExecutionRunId}: TERMINATED at \\S+`));
    expect(frames.at(-1)).toContain(`gbo-migrate history ${plan.tenant}`);
    expect(frames.at(-1)).not.toContain('retry with:');
    expect(hosts.unscripted).toEqual([]);
  });
}, 180_000);

test('a tenant with no migration: the workflow ID and the server, exit 1; a bad --watch: exit 2', async () => {
  const r = await cli('status', 'nosuchtenant', '--dry-run');
  expect(r.code).toBe(1);
  expect(r.stdout).toBe(`no migration migrate-nosuchtenant-dry-run on ${process.env.TEMPORAL_TEST_ADDRESS} (namespace default): none was started with that ID, or its history has been deleted\n`);
  const json = await cli('status', 'nosuchtenant', '--json');
  expect(json.code).toBe(1);
  expect(JSON.parse(json.stdout)).toMatchObject({ status: null, workflow: { id: 'migrate-nosuchtenant', status: 'NOT_FOUND' } });
  const bad = await cli('status', 'nosuchtenant', '--watch', 'often');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain("option '--watch [seconds]' argument 'often' is invalid. expected seconds between 0.5 and 3600");
});

test('without a worker: the running and then the closed run are still described, the query bounded', async () => {
  const plan = testPlan();
  const taskQueue = `status-idle-${Date.now()}`;
  const handle = await startMigration(t.client, plan, 'live', taskQueue);
  try {
    const running = await cli('status', plan.tenant);
    expect(running.code).toBe(0);
    expect(running.stdout).toContain(`migrate-${plan.tenant} (live), run ${handle.firstExecutionRunId}: RUNNING`);
    expect(running.stdout).toContain(`the status query did not answer (no answer within 5 s): is a worker polling task queue ${taskQueue}?`);
  } finally {
    await handle.terminate('status test over');
  }
  const closed = await cli('status', plan.tenant);
  expect(closed.code).toBe(0);
  expect(closed.stdout).toMatch(new RegExp(`run ${handle.firstExecutionRunId}: TERMINATED at \\S+`));
  expect(closed.stdout).toContain(`the run is over: its steps and events with \`gbo-migrate history ${plan.tenant}\``);
  // Terminated before any worker ran it: the server says no query can be answered.
  expect(closed.stdout).toContain('its final status is not available (Failed to query Workflow: 9 FAILED_PRECONDITION: Workflow execution closed before WorkflowTaskStarted event)');
});
