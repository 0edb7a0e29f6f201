/**
 * `history` and `report` as operators run them: the compiled CLI against the real dev server,
 * after a migration over hosts that keep state in which a step fails and is retried, another is
 * skipped, the run is paused and resumed, the cutover approved and the run then cancelled. What
 * the CLI prints is checked against the raw histories, decoded here with the SDK alone.
 */
import { defaultPayloadConverter } from '@temporalio/common';
import { DryRunExecutor } from '../../src/activities/executor';
import type { StepOutcome } from '../../src/activities/steps';
import { startMigration } from '../../src/client';
import type { AuditReport } from '../../src/operator/report';
import { createWorker } from '../../src/worker';
import { approveUpdate, pauseUpdate, resumeUpdate, retryStepUpdate, skipStepUpdate } from '../../src/workflows/messages';
import { hostTargetsOf, StatefulHosts, testPlan } from '../harness/stateful-hosts';
import { suiteClients, untilStatus } from '../harness/suite-clients';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const t = suiteClients();
const root = join(__dirname, '..', '..');

beforeAll(() => {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'pipe' });
}, 180_000);

/** The CLI, asynchronously: a synchronous call would block the in-process worker the CLI's server calls wait on. */
async function cli(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const env = { ...process.env, TEMPORAL_ADDRESS: process.env.TEMPORAL_TEST_ADDRESS!, TEMPORAL_NAMESPACE: 'default' };
  try {
    const r = await promisify(execFile)('node', [join(root, 'dist', 'src', 'cli.js'), ...args], { cwd: root, env, maxBuffer: 64 << 20 });
    return { ...r, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

test('history lists every command with its exit code and every operator action with its author; report renders the matrix and downtime', async () => {
  const plan = testPlan({ concurrency: { containers: 4 } });
  const hosts = new StatefulHosts(plan);
  // "command not found": the operator fixes the host and retries; the NIC the operator adds by hand, then skips.
  hosts.failNext(/incus copy --instance-only lxd-source:\S+-tables /, { exitCode: 127, stderr: 'sh: 1: incus: not found' });
  hosts.failNext(/incus config device add drive eth0 nic/, { exitCode: 1, stderr: 'Error: Permission denied' });
  const taskQueue = `history-${Date.now()}`;
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
  const handle = await startMigration(t.client, plan, 'live', taskQueue);
  let atGate: Awaited<ReturnType<typeof untilStatus>> | undefined;
  await worker.runUntil(async () => {
    // tables is the canary: it fails alone; drive fails once the others run.
    await untilStatus(handle, 'the failed copy', (s) => s.steps['copy/tables/copy'] === 'failed');
    await handle.executeUpdate(pauseUpdate, { args: [{ by: 'carol', reason: 'checking the hosts' }] });
    await handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'copy/tables/copy', by: 'alice' }] });
    await handle.executeUpdate(resumeUpdate, { args: [{ by: 'carol' }] });
    await untilStatus(handle, 'the failed nic step', (s) => s.steps['copy/drive/nic'] === 'failed', 90_000);
    hosts.addNicByHand('drive');
    expect((await hosts.run(hostTargetsOf(plan).destination, "sudo -n sh -c 'incus start drive'")).exitCode).toBe(0);
    await handle.executeUpdate(skipStepUpdate, { args: [{ stepId: 'copy/drive/nic', by: 'bob', reason: 'added by hand' }] });
    atGate = await untilStatus(handle, 'the cutover gate', (s) => s.gate?.name === 'cutover', 90_000);
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: 'dave', reason: 'matrix green' }] });
    await untilStatus(handle, 'the cutover under way', (s) => s.phase !== 'cutover' || Object.entries(s.steps).some(([id, st]) => id.startsWith('cutover/') && st !== 'pending'));
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow();
    // While the worker still runs: the CLI reads histories only, but a dead worker must not be what makes it work.
    const history = await cli('history', plan.tenant);
    expect(history.stderr).toBe('');
    expect(history.code).toBe(0);

    // Every activity of the tenant and of each child, from the raw histories: its step, host and exit code on one line, its command under it.
    const runs = [{ id: handle.workflowId, container: undefined as string | undefined }, ...plan.containers.map((c) => ({ id: `${handle.workflowId}-${c.name}`, container: c.name as string | undefined }))];
    let commands = 0;
    for (const r of runs) {
      const events = (await t.client.workflow.getHandle(r.id).fetchHistory()).events ?? [];
      for (const e of events) {
        const done = e.activityTaskCompletedEventAttributes;
        if (done) {
          const o = defaultPayloadConverter.fromPayload<StepOutcome>(done.result!.payloads![0]!);
          const where = `${r.container ? `\\[${escape(r.container)}\\] ` : ''}${escape(o.id)}( \\(\\w+\\))? on ${o.host}`;
          expect(history.stdout).toMatch(new RegExp(`${where}[^\\n]*: ${o.status}${o.exitCode !== undefined ? `, exit ${o.exitCode}` : ''}[^\\n]*\\n {27}\\$ ${escape(o.command.split('\n')[0]!)}`));
          commands++;
        }
      }
    }
    expect(commands).toBeGreaterThan(100);
    // The failed attempt: its exit code and why, where it failed.
    expect(history.stdout).toMatch(/\[tables\] copy\/tables\/copy on destination [^\n]*: failed, [^\n]*\n {27}\$ sudo -n sh -c '[^\n]*incus copy --instance-only lxd-source:\S+-tables [^\n]*\n {27}! [^\n]*exit 127/);
    expect(history.stdout).toMatch(/\[drive\] copy\/drive\/nic on destination [^\n]*: failed[\s\S]*?! [^\n]*exit 1\b/);
    // Every operator action with its author.
    expect(history.stdout).toMatch(/ pause {5}by carol: "checking the hosts" \(client \d+@[^)]+\): ok/);
    expect(history.stdout).toMatch(/ retryStep stepId=copy\/tables\/copy by alice \(client [^)]+\): ok/);
    expect(history.stdout).toMatch(/ skipStep {2}stepId=copy\/drive\/nic by bob: "added by hand" \(client [^)]+\): ok/);
    expect(history.stdout).toMatch(/ resume {4}by carol \(client [^)]+\): ok/);
    expect(history.stdout).toMatch(/ approve {3}gate=cutover by dave: "matrix green" \(client [^)]+\): ok/);
    expect(history.stdout).toMatch(/ cancel {4}requested by \d+@\S+/);
    expect(history.stdout).toMatch(new RegExp(`run {7}${escape(handle.workflowId)} canceled`));
    const json = JSON.parse((await cli('history', plan.tenant, '--json')).stdout) as { status: string; entries: { kind: string }[] };
    expect(json.status).toBe('canceled');
  });

  // The report: the matrix the workflow showed at the gate, the downtime it measured, the skip with its reason.
  const md = await cli('report', plan.tenant);
  expect(md.code).toBe(0);
  expect(md.stdout).toContain('| Container | Service | Port | Status |');
  expect(atGate!.matrix.length).toBeGreaterThan(10);
  for (const m of atGate!.matrix) expect(md.stdout).toContain(`| ${m.container} | ${m.service} | ${m.port !== undefined ? `${m.port}/${m.protocol}` : m.path} | ${m.ok ? '✓ Running' : '❌ Not answering'} |`);
  expect(md.stdout).toMatch(/^Tenant: \*\*\d+(\.\d)? (ms|s)\*\*, first source stop /m);
  expect(md.stdout).toContain('| copy/drive/nic | bob | added by hand |');
  const report = JSON.parse((await cli('report', plan.tenant, '--json')).stdout) as AuditReport;
  expect(report.status).toBe('canceled');
  expect(report.matrixSource).toBe('probes');
  expect(report.downtime.tenant.ms).toBe(atGate!.downtimeMs);
  expect(atGate!.downtimeOver).toBe(true);
  for (const c of report.downtime.containers.filter((x) => !x.unprobed)) expect(c.ms).toBeGreaterThan(0);
  expect(report.approvals.map((a) => [a.gate, a.by])).toEqual([['cutover', 'dave']]);
  expect(report.pauses.map((p) => [p.action, p.by])).toEqual([['pause', 'carol'], ['resume', 'carol']]);

  // A tenant with no migration: the workflow ID and the server named, exit 1.
  const none = await cli('history', 'no-such-tenant');
  expect(none.code).toBe(1);
  expect(none.stderr).toContain(`no migration migrate-no-such-tenant in namespace default on the Temporal server at ${process.env.TEMPORAL_TEST_ADDRESS}`);
}, 300_000);
