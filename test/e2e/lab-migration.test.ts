/**
 * End to end on the lab (real LXD, Incus, sshd, rsync, iptables, Caddy, NSD) with the real Temporal
 * dev server: a cancel before cutover puts the source back exactly as it was; then the whole
 * migration runs, every file and service is checked on the destination, every step run a second
 * time changes nothing, and the gates are approved through to source cleanup.
 *
 * Needs root (namespaces, LXD, Incus): skipped without it, failed without it under CI=true.
 */
import { Client, Connection, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { join } from 'node:path';
import { createActivities } from '../../src/activities';
import { DryRunExecutor } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import type { Plan } from '../../src/plan/schema';
import { buildRunbook, MANIFEST_SCRIPT } from '../../src/runbook/build';
import { phaseSteps, type PhaseId } from '../../src/runbook/model';
import { q } from '../../src/runbook/shell';
import { SshPool } from '../../src/ssh/pool';
import type { SecretPolicy } from '../../src/ssh/secrets';
import { createWorker, resolveSecretValue } from '../../src/worker';
import { approveUpdate, statusQuery, valuesQuery, type MigrationStatus } from '../../src/workflows/messages';
import { hostTargets } from '../../src/workflows/run-steps';
import { rootSuite } from '../harness/needs-root';
import { quietRuntime } from '../harness/quiet-runtime';
import { httpGet, tcpConnect } from '../harness/net';

const REPO = join(__dirname, '..', '..');
const ROOT = process.env.GBO_LAB_ROOT ?? '/var/lib/gbo-lab';
/** The lab plan's keys and known_hosts are file:$GBO_LAB_ROOT/ssh/...: the worker here resolves only those. */
const LAB_SECRETS: SecretPolicy = { dirs: [join(ROOT, 'ssh')], envPrefix: 'GBO_' };
const suite = rootSuite('the end-to-end lab migration');

suite('migrating the lab tenant', () => {
  let plan: Plan;
  let native: NativeConnection;
  let connection: Connection;
  let client: Client;
  let pool: SshPool;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = `lab-${Date.now()}`;

  const ssh = (host: string, command: string, input?: string): string => {
    const r = spawnSync('ssh', ['-i', `${ROOT}/ssh/id_ed25519`, '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${ROOT}/ssh/known_hosts`, '-o', 'StrictHostKeyChecking=yes', `root@${host}`, command], {
      encoding: 'utf8',
      input,
      timeout: 120_000,
    });
    if (r.status !== 0) throw new Error(`ssh ${host} ${command}: exit ${r.status}\n${r.stderr}`);
    return r.stdout;
  };
  const src = (cmd: string, input?: string) => ssh(plan.hosts.source.address, cmd, input);
  const dst = (cmd: string, input?: string) => ssh(plan.hosts.destination.address, cmd, input);
  const sourceName = (c: string) => `${plan.source.containerPrefix}${c}`;

  /** What "the source as it was" means: each container's devices, config keys and status, and the data. */
  const sourceState = () =>
    Object.fromEntries(
      plan.containers.map((c) => {
        const i = JSON.parse(src(`lxc query /1.0/instances/${sourceName(c.name)}`)) as { status: string; devices: unknown; config: Record<string, string> };
        const config = Object.fromEntries(Object.entries(i.config).filter(([k]) => !k.startsWith('volatile.')));
        return [c.name, { status: i.status, devices: i.devices, config }];
      }),
    );
  const sourceDataIntact = () => execFileSync('sh', ['-c', `cd ${q(plan.data.sourceRoot)} && sha256sum -c --quiet ${q(`${ROOT}/src/manifest.sha256`)}`], { encoding: 'utf8' });
  const destinationNames = () => dst('incus list --format csv -c n').split('\n').filter(Boolean);

  /** Polls the status until `pred`; a failed step (unless `failuresExpected`) or the deadline ends the migration and the test. */
  async function until(handle: WorkflowHandle, what: string, pred: (s: MigrationStatus) => boolean, ms = 8 * 60_000, failuresExpected = false) {
    const deadline = Date.now() + ms;
    for (;;) {
      const s = await handle.query(statusQuery);
      if (pred(s)) return s;
      const failed = failuresExpected ? [] : Object.entries(s.failures);
      if (failed.length || Date.now() > deadline) {
        // Cancel, so the workflow puts the source back for the next test; terminate if that hangs.
        await handle.cancel().catch(() => undefined);
        await Promise.race([handle.result().catch(() => undefined), new Promise((r) => setTimeout(r, 120_000))]);
        await handle.terminate(`test: ${what} not reached`).catch(() => undefined);
        if (failed.length) throw new Error(`waiting for ${what}: failed steps: ${failed.map(([k, v]) => `${k}: ${v}`).join('\n')}`);
        throw new Error(`timed out waiting for ${what}; phase ${s.phase}, waiting for ${s.waitingFor}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  const atCutoverGate = (s: MigrationStatus) => s.gate?.name === 'cutover';

  beforeAll(async () => {
    execFileSync('bash', [join(REPO, 'lab', 'up.sh')], { stdio: 'inherit', timeout: 15 * 60_000 });
    const lab = loadPlan(`${ROOT}/plan.yaml`);
    // Certificates have their own test (test/e2e/certificates.test.ts); the verification window is seconds here, days in production.
    plan = { ...lab, certificates: undefined, approvals: { ...lab.approvals, verificationWindow: '3s' } };
    quietRuntime();
    native = await NativeConnection.connect({ address: process.env.TEMPORAL_TEST_ADDRESS! });
    connection = await Connection.connect({ address: process.env.TEMPORAL_TEST_ADDRESS! });
    client = new Client({ connection });
    pool = new SshPool({ secrets: LAB_SECRETS });
    worker = await createWorker({ connection: native, taskQueue, deps: { live: pool }, secrets: LAB_SECRETS });
    running = worker.run();
  }, 20 * 60_000);

  afterAll(async () => {
    // A failed test may leave its migration waiting for an operator: end it before the worker goes.
    await client?.workflow.getHandle(`migrate-${plan?.tenant}`).terminate('test over').catch(() => undefined);
    worker?.shutdown();
    await running;
    await pool?.close();
    await connection?.close();
    await native?.close();
  });

  test('a cancel before cutover leaves the source exactly as it was, and running', async () => {
    const before = sourceState();
    expect(Object.values(before).every((s) => s.status === 'Running')).toBe(true);
    const handle = await startMigration(client, plan, 'live', taskQueue);
    await until(handle, 'the cutover gate', atCutoverGate);
    // Everything up to the gate happened: the copies exist on the destination.
    expect(destinationNames().sort()).toEqual(plan.containers.map((c) => c.name).sort());
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
    const status = await handle.query(statusQuery);
    expect(status.phase).toBe('compensated');
    expect(sourceState()).toEqual(before);
    expect(destinationNames()).toEqual([]);
    sourceDataIntact();
  }, 15 * 60_000);

  test('a step fails inside a child after its source stopped, then cancel: the source exactly as recorded, and running', async () => {
    const before = sourceState();
    const canary = plan.containers.find((c) => c.canary) ?? plan.containers[0]!;
    // A file where the tenant's data folder goes on the destination: the canary's data move fails
    // (after its source was stopped and copied), and the failure waits for the operator.
    const blocker = `${plan.data.tenantsRoot}/${plan.tenant}`;
    dst(`mkdir -p ${q(plan.data.tenantsRoot)} && rm -rf ${q(blocker)} && touch ${q(blocker)}`);
    try {
      const handle = await startMigration(client, plan, 'live', taskQueue);
      const failed = await until(handle, `a failed data/${canary.name}/move`, (s) => s.steps[`data/${canary.name}/move`] === 'failed', 5 * 60_000, true);
      expect(failed.waitingFor).toMatch(new RegExp(`retryStep or skipStep data/${canary.name}/move`));
      expect(sourceState()[canary.name]?.status).toBe('Stopped');
      await handle.cancel();
      await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
      const status = await handle.query(statusQuery);
      expect(status.phase).toBe('compensated');
      expect(status.undoFailures).toEqual([]);
    } finally {
      dst(`rm -f ${q(blocker)}`);
    }
    expect(sourceState()).toEqual(before);
    expect(destinationNames()).toEqual([]);
    sourceDataIntact();
  }, 15 * 60_000);

  test('the whole migration: files, services, matrix, idempotent steps, gates, cleanup', async () => {
    // What the migration does to the hosts stays on the lab's hosts: this machine's firewall is untouched.
    const machineFirewall = () => ['filter', 'nat'].map((t) => execFileSync('iptables', ['-t', t, '-S'], { encoding: 'utf8' }));
    const firewallBefore = machineFirewall();
    const handle = await startMigration(client, plan, 'live', taskQueue);
    const atGate = await until(handle, 'the cutover gate', atCutoverGate);

    // The matrix is green, and the gate refuses an approval without who and why.
    expect(atGate.matrix.length).toBeGreaterThan(20);
    expect(atGate.matrix.filter((m) => !m.ok)).toEqual([]);
    expect(atGate.downtimeOver).toBe(true);
    expect(atGate.downtimeMs).toBeGreaterThan(0);
    const refusal = await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: '', reason: 'x' }] }).catch((e: Error) => e);
    expect(((refusal as Error).cause as Error | undefined)?.message).toMatch(/by: who approves is required/);

    // Every file on the destination containers matches the source's checksum manifest, except the
    // ones the migration rewrites on purpose (Caddy's upstreams, the service fixes' env files).
    const manifest = readFileSync(`${ROOT}/src/manifest.sha256`, 'utf8').split('\n').filter(Boolean);
    const rewritten = new Set([
      ...(plan.caddy ? [`${plan.caddy.container}:${plan.caddy.configPath}`] : []),
      ...plan.serviceFixes.flatMap((f) => (f.kind === 'env' ? [`${f.container}:${f.file}`] : [])),
    ]);
    for (const c of plan.containers) {
      const folder = c.sourceFolder ?? c.name;
      const lines = manifest
        .filter((l) => l.split(/\s+/)[1]?.startsWith(`${folder}/`))
        .map((l) => l.replace(`  ${folder}/`, '  '))
        .filter((l) => !rewritten.has(`${c.name}:${plan.data.containerPath}/${l.split(/\s+/)[1]}`));
      expect(lines.length).toBeGreaterThan(0);
      dst(`incus exec ${c.name} -- sh -c 'cd /opt/gbo && sha256sum -c -s -'`, lines.join('\n') + '\n');
    }

    // Every forwarded port answers through NAT on the destination's address, and Caddy serves its vhosts there.
    const pub = plan.destination.publicAddress;
    for (const f of plan.portForwards.filter((x) => x.protocol === 'tcp')) await tcpConnect(pub, f.port);
    const vhost = await httpGet(pub, 80, `chat.${plan.dns.zone}`);
    expect(vhost.status).toBe(200);
    expect(vhost.body).toMatch(/system/);

    // Each step run a second time changes nothing.
    const values = await handle.query(valuesQuery);
    const snapshot = () => ({
      instances: dst('incus list --format csv -c n4s'),
      nat: dst('iptables-save -t nat | grep -v "^#"'),
      caddy: plan.caddy ? dst(`incus exec ${plan.caddy.container} -- cat ${plan.caddy.configPath}`) : '',
      // The data the steps act on (the final copies); inside the containers, services write as they run.
      data: plan.containers.map((c) => dst(`sh -c ${q(MANIFEST_SCRIPT)} manifest ${plan.data.tenantsRoot}/${plan.tenant}/${c.name} ${c.dataDirs.join(' ')}`)),
      source: sourceState(),
    });
    const before = snapshot();
    const acts = createActivities({ dryRun: new DryRunExecutor(), live: pool, resolveSecret: (ref) => resolveSecretValue(ref, LAB_SECRETS) });
    const runbook = buildRunbook(plan);
    const hosts = hostTargets(plan);
    const rerun: Record<string, string> = {};
    const changedAgain: string[] = [];
    for (const phase of ['preflight', 'presync', 'record', 'stop', 'copy', 'data', 'network', 'proxy', 'fixes', 'verify'] as PhaseId[]) {
      for (const step of phaseSteps(runbook, phase)) {
        const input = { step, values, hosts, mode: 'live' as const };
        const out =
          step.kind === 'probe'
            ? await acts.probe(input)
            : step.kind === 'caddy-rewrite'
              ? await acts.rewriteCaddy(input)
              : step.kind === 'verify-host-keys'
                ? await acts.verifyHostKeys(input)
                : await acts.runStep(input);
        rerun[step.id] = out.status;
        if (step.check !== undefined && out.status !== 'already-done') changedAgain.push(`${step.id}: ${out.status}`);
      }
    }
    // Every step with a check finds its effect in place; the others (probes, captures, syncs) ran without effect.
    expect(changedAgain).toEqual([]);
    expect(Object.keys(rerun).length).toBeGreaterThan(100);
    expect(snapshot()).toEqual(before);

    // Cutover: approved, DNS updated and answering through NAT, verification window, cleanup approved.
    const approval = await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: 'e2e', reason: 'matrix green' }] });
    expect(approval).toMatchObject({ gate: 'cutover', by: 'e2e' });
    await until(handle, 'the cleanup gate', (s) => s.gate?.name === 'cleanup', 5 * 60_000);
    // Nothing destructive touched the source before its gate: its data is intact.
    sourceDataIntact();
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cleanup', by: 'e2e', reason: 'verified' }] });
    const report = await handle.result();
    if (process.env.UPDATE_HISTORIES === '1') {
      // A live lab history for the replay test (test/workflows/replay.test.ts).
      writeFileSync(join(REPO, 'test', 'fixtures', 'lab-migrate-tenant.history.json'), historyToJSON(await handle.fetchHistory()));
      const child = client.workflow.getHandle(`${handle.workflowId}-${plan.containers[0]!.name}`);
      writeFileSync(join(REPO, 'test', 'fixtures', 'lab-migrate-container.history.json'), historyToJSON(await child.fetchHistory()));
    }

    expect(report.approvals.map((a) => `${a.gate}:${a.by}`)).toEqual(['cutover:e2e', 'cleanup:e2e']);
    expect(report.downtimeMs).toBeGreaterThan(0);
    expect(report.matrix.every((m) => m.ok)).toBe(true);
    for (const c of plan.containers) {
      expect(spawnSync('test', ['-e', `${plan.data.sourceRoot}/${c.sourceFolder ?? c.name}`]).status).not.toBe(0);
    }
    expect(src('lxc list --format csv -c n')).not.toMatch(new RegExp(`^${plan.source.containerPrefix}`, 'm'));
    expect(destinationNames().sort()).toEqual(plan.containers.map((c) => c.name).sort());
    expect(machineFirewall()).toEqual(firewallBefore);
  }, 20 * 60_000);
});

