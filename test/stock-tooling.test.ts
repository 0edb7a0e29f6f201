/**
 * README's "Stock Temporal tooling": the `temporal workflow ...` command lines are read from
 * README.md itself (so they cannot drift) and run, as written, against the test run's dev server:
 * a dry run started and queried, and every operator action on a live migration over the stateful
 * fake hosts, each one's effect seen in the status and its `--identity` in the server's history.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DryRunExecutor } from '../src/activities/executor';
import { createWorker } from '../src/worker';
import { statusQuery, type MigrationStatus } from '../src/workflows/messages';
import { hostTargetsOf, StatefulHosts, testPlan } from './harness/stateful-hosts';
import { suiteClients, untilStatus } from './harness/suite-clients';

const t = suiteClients();
const root = join(__dirname, '..');

/** The README block: its setup lines, and each command line under its `# label` comment. */
function readmeCommands(): { setup: string; commands: Map<string, string> } {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /### Stock Temporal tooling\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error('README.md: no ```sh block under "### Stock Temporal tooling"');
  const lines = block.split('\n');
  const firstLabel = lines.findIndex((l) => l.startsWith('# '));
  const commands = new Map<string, string>();
  for (let i = firstLabel; i < lines.length; i++) {
    if (!lines[i]!.startsWith('# ')) continue;
    // The label up to its first parenthesis: "status (the dry run's: ...)" is "status".
    commands.set(lines[i]!.slice(2).replace(/\s*\(.*$/, ''), lines[i + 1]!);
  }
  return { setup: lines.slice(0, firstLabel).join('\n'), commands };
}

const { setup, commands } = readmeCommands();

/**
 * Runs the README's line for `label` with bash, after its setup lines, for this tenant and plan
 * file. Asynchronous: this process's worker must keep answering while the command waits.
 */
function run(label: string, tenant: string, plan: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const line = commands.get(label);
  if (line === undefined) throw new Error(`README.md: no command labelled "# ${label}"; labels: ${[...commands.keys()].join(' | ')}`);
  const script = `set -euo pipefail\n${setup}\ntenant=${tenant} plan=${plan}\n${line}\n`;
  return new Promise((resolve) => {
    execFile('bash', ['-c', script], { cwd: root, encoding: 'utf8', env: { ...process.env, TEMPORAL_ADDRESS: process.env.TEMPORAL_TEST_ADDRESS!, TEMPORAL_NAMESPACE: 'default' } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function ok(label: string, tenant: string, plan: string): Promise<string> {
  const r = await run(label, tenant, plan);
  if (r.code !== 0) throw new Error(`README's "${label}" exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Who the server recorded for each accepted update and for the cancel request, in order. */
async function recordedIdentities(workflowId: string): Promise<string[]> {
  const events = (await t.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  return events.flatMap((e) => {
    const u = e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest;
    if (u) return [`${u.input?.name} ${u.meta?.identity}`];
    const c = e.workflowExecutionCancelRequestedEventAttributes;
    return c ? [`cancel ${c.identity}`] : [];
  });
}

test('the README lists a command line for every operator action', () => {
  expect([...commands.keys()]).toEqual([
    'start a dry run from a plan file',
    'start the live migration from a plan file',
    'status',
    'values learned',
    'approve a gate',
    'retry a failed step',
    'skip a failed step',
    'pause',
    'resume',
    'reverify at the cutover gate',
    'wake a wait',
    'extend a wait, gates included',
    'cancel',
    'show the history',
  ]);
  expect(setup).toContain('temporal=$(bash scripts/temporal-cli.sh)');
});

/** The README builds the start input with jq (Debian's; scripts/test.sh installs it as root). */
const haveJq = ['/usr/bin/jq', '/bin/jq'].some((p) => existsSync(p));
if (!haveJq && process.env.CI === 'true') {
  test("the README's command lines need jq", () => {
    throw new Error('CI=true: jq is missing (apt-get install jq; scripts/test.sh does it as root)');
  });
}

(haveJq ? test : test.skip)("the README's command lines start, query and steer migrations on the server, recording who acted" + (haveJq ? '' : ' (skipped: needs jq)'), async () => {
  // The example tenant over hosts that keep state; no certificates, an hour's verification window to wake.
  const base = testPlan();
  const plan = testPlan({ certificates: undefined, concurrency: { containers: 4 }, approvals: { ...base.approvals, cutover: true, cleanup: true, verificationWindow: '1h', gateTimeout: '1h' } });
  const file = join(mkdtempSync(join(tmpdir(), 'gbo-stock-')), 'plan.yaml');
  writeFileSync(file, stringify(plan));
  const hosts = new StatefulHosts(plan);
  // The two failures the README's retry and skip lines name.
  hosts.failNext((c) => c.startsWith('test "$(sh -c') && c.includes(' manifest ') && c.includes('/tables '), { exitCode: 1, stderr: 'rsync: write failed: No space left on device' });
  hosts.failNext(/incus config device add drive eth0 nic/, { exitCode: 1, stderr: 'Error: Permission denied' });
  const { tenant } = plan;
  const live = t.client.workflow.getHandle(`migrate-${tenant}`);
  const dry = t.client.workflow.getHandle(`migrate-${tenant}-dry-run`);

  // The README's task queue, as written; no other test uses it.
  const worker = await createWorker({ connection: t.native, taskQueue: 'gbo-migrate', deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
  await worker.runUntil(async () => {
    // Dry run: started from the plan file's text, validated by the workflow, queried once done.
    expect(await ok('start a dry run from a plan file', tenant, file)).toContain(`migrate-${tenant}-dry-run`);
    const report = await dry.result();
    expect(report.mode).toBe('dry-run');
    // The dry run's ID is the live one's with "-dry-run", as the README's comment says.
    const dryOut = await ok('status', `${tenant}-dry-run`, file);
    expect(dryOut).toContain('"mode":"dry-run"');
    expect(dryOut).toContain('"phase":"done"');

    // Live: started the same way; a failed step waits for retry, another for skip.
    expect(await ok('start the live migration from a plan file', tenant, file)).toContain(`migrate-${tenant}`);
    const decisions: Promise<string>[] = [];
    let retried = false;
    let skipped = false;
    await untilStatus(
      live,
      'both failed steps decided and the cutover gate',
      (s: MigrationStatus) => {
        if (!retried && s.steps['data/tables/verify-transfer'] === 'failed') {
          retried = true;
          decisions.push(ok('retry a failed step', tenant, file));
        }
        if (!skipped && s.steps['copy/drive/nic'] === 'failed') {
          skipped = true;
          // The operator adds the NIC and starts the container by hand, then skips the step.
          hosts.addNicByHand('drive');
          decisions.push(hosts.run(hostTargetsOf(plan).destination, "sudo -n sh -c 'incus start drive'").then(() => ok('skip a failed step', tenant, file)));
        }
        return s.gate?.name === 'cutover';
      },
      120_000,
    );
    await Promise.all(decisions);
    const atGate = await live.query(statusQuery);
    expect(atGate.decisions.map((d) => `${d.stepId} ${d.action} ${d.by}`).sort()).toEqual(['copy/drive/nic skip alice', 'data/tables/verify-transfer retry alice']);
    expect(atGate.skipped).toEqual([{ id: 'copy/drive/nic', by: 'alice', reason: 'NIC added by hand' }]);
    expect(atGate.steps['data/tables/verify-transfer']).toBe('done');

    // The values query answers as JSON text.
    expect(await ok('values learned', tenant, file)).toContain('ip:tables');

    // Pause and resume at the gate; reverify; the gate extended by two hours.
    await ok('pause', tenant, file);
    expect(await live.query(statusQuery)).toMatchObject({ paused: true, pauses: [{ by: 'alice', reason: 'lunch' }] });
    await ok('resume', tenant, file);
    expect((await live.query(statusQuery)).paused).toBe(false);
    await ok('reverify at the cutover gate', tenant, file);
    const gateWait = (s: MigrationStatus) => s.waits.find((w) => w.id === 'gate/cutover' && w.state === 'waiting');
    const reverified = await untilStatus(live, 'the matrix run again, back at the gate', (s) => s.reverifications.length === 1 && gateWait(s) !== undefined);
    expect(reverified.reverifications[0]).toMatchObject({ by: 'alice', reason: 'restarted postgres by hand' });
    const before = gateWait(reverified)!.until;
    await ok('extend a wait, gates included', tenant, file);
    const extended = gateWait(await live.query(statusQuery))!;
    expect(Date.parse(extended.until) - Date.parse(before)).toBe(2 * 3600_000);
    expect(extended.actions).toMatchObject([{ action: 'extend', by: 'alice', reason: 'owner on leave' }]);

    // A refusal ends the command with the validator's message: that step is done, not failed.
    const refused = await run('retry a failed step', tenant, file);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('data/tables/verify-transfer is done, not failed');

    await ok('approve a gate', tenant, file);
    expect((await live.query(statusQuery)).approvals).toMatchObject([{ gate: 'cutover', by: 'alice', reason: 'matrix green' }]);

    // After the cutover the verification window (an hour) is woken.
    await untilStatus(live, 'the verification window', (s) => s.waits.some((w) => w.id === 'cleanup/tenant/verification-window' && w.state === 'waiting'), 90_000);
    await ok('wake a wait', tenant, file);
    const atCleanup = await untilStatus(live, 'the cleanup gate', (s) => s.gate?.name === 'cleanup', 60_000);
    expect(atCleanup.waits.find((w) => w.id === 'cleanup/tenant/verification-window')).toMatchObject({ state: 'woken', actions: [{ action: 'wake', by: 'alice', reason: 'checked by hand' }] });

    // Cancelled at the cleanup gate (past the cutover nothing is undone): the run ends cancelled.
    await ok('cancel', tenant, file);
    await expect(live.result()).rejects.toThrow();
    expect((await live.describe()).status.name).toBe('CANCELLED');

    const history = await ok('show the history', tenant, file);
    expect(history).toContain('WorkflowExecutionUpdateAccepted');
    expect(history).toContain('WorkflowExecutionCancelRequested');
  });

  // The server recorded the identity of each update and of the cancel.
  const who = await recordedIdentities(`migrate-${tenant}`);
  // The two failures are decided in whichever order they happened.
  expect(who.slice(0, 2).sort()).toEqual(['retryStep alice', 'skipStep alice']);
  expect(who.slice(2)).toEqual([
    'pause alice',
    'resume alice',
    'reverify alice',
    'extend alice',
    'approve alice',
    'wake alice',
    'cancel alice',
  ]);
}, 300_000);
