/**
 * The paths real migrations hit, on the real Temporal dev server with hosts that keep state (a
 * stopped container stays stopped, a removed device is gone): a step failing inside a container's
 * child and then retried, or the run cancelled; a cancel in the middle of a child; a pause during
 * the container phase; a silent step longer than the heartbeat timeout; a deterministic failure
 * reaching the operator on its first attempt; the matrix verified again at the cutover gate; an
 * undo step that fails.
 */
import { Client, Connection, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { CommandExecutor, CommandResult, HostTarget, RunOptions } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import type { Plan } from '../../src/plan/schema';
import type { NetProbes } from '../../src/probe/probes';
import { createWorker } from '../../src/worker';
import {
  approveUpdate,
  pauseUpdate,
  resumeUpdate,
  retryStepUpdate,
  reverifyUpdate,
  skipStepUpdate,
  statusQuery,
  valuesQuery,
  type MigrationStatus,
} from '../../src/workflows/messages';
import { quietRuntime } from '../harness/quiet-runtime';
import { hostTargetsOf, StatefulHosts, testPlan } from '../harness/stateful-hosts';

const address = process.env.TEMPORAL_TEST_ADDRESS!;
let native: NativeConnection;
let connection: Connection;
let client: Client;
let worker: Worker;
let running: Promise<void>;
const taskQueue = `unhappy-${Date.now()}`;

/** The worker's hosts: each test puts its own in place. */
const hostsOfTest: { current?: StatefulHosts } = {};
const delegate: CommandExecutor & { connect(t: HostTarget): Promise<void> } = {
  run: (t: HostTarget, c: string, o?: RunOptions): Promise<CommandResult> => hostsOfTest.current!.run(t, c, o),
  connect: (t: HostTarget) => hostsOfTest.current!.connect(t),
};

/**
 * The current test's network (the fake's): a migration approved past its gate runs the DNS and
 * certificate checks until the test ends it, and those must never reach the plan's real addresses.
 */
const net: NetProbes = {
  tcpProbe: (...a) => hostsOfTest.current!.net().tcpProbe(...a),
  dnsQuery: (...a) => hostsOfTest.current!.net().dnsQuery(...a),
  udpProbe: (...a) => hostsOfTest.current!.net().udpProbe(...a),
  httpProbe: (...a) => hostsOfTest.current!.net().httpProbe(...a),
  tlsCertificate: (...a) => hostsOfTest.current!.net().tlsCertificate(...a),
  resolve4: (name) => hostsOfTest.current!.net().resolve4(name),
};

beforeAll(async () => {
  quietRuntime();
  native = await NativeConnection.connect({ address });
  connection = await Connection.connect({ address });
  client = new Client({ connection });
  worker = await createWorker({ connection: native, taskQueue, deps: { live: delegate, net } });
  running = worker.run();
});
afterAll(async () => {
  worker?.shutdown();
  await running;
  await connection?.close();
  await native?.close();
});

const started: WorkflowHandle[] = [];
afterEach(async () => {
  // A failed assertion may leave a migration waiting: end it so the next test starts clean.
  for (const h of started.splice(0)) await h.terminate('test over').catch(() => undefined);
});

async function start(plan: Plan, hosts: StatefulHosts) {
  hostsOfTest.current = hosts;
  const handle = await startMigration(client, plan, 'live', taskQueue);
  started.push(handle);
  return handle;
}

async function until(handle: WorkflowHandle, what: string, pred: (s: MigrationStatus) => boolean, ms = 90_000): Promise<MigrationStatus> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await handle.query(statusQuery);
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify({ phase: s.phase, waitingFor: s.waitingFor, failures: s.failures, containers: s.containers })}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const refusal = async (p: Promise<unknown>) => (((await p.then(() => undefined, (e: Error) => e)) as Error | undefined)?.cause as Error | undefined)?.message;
const ran = (hosts: StatefulHosts, re: RegExp) => hosts.log.filter((l) => re.test(l.command)).length;
const atCutoverGate = (s: MigrationStatus) => s.phase === 'cutover' && (s.waitingFor ?? '').includes('approval of the cutover gate');

test('a deterministic failure in a child reaches the operator at once; retry resumes at that step with the record intact', async () => {
  const plan = testPlan({ concurrency: { containers: 3 } });
  const hosts = new StatefulHosts(plan);
  const before = hosts.sourceSnapshot();
  // After the stop: "command not found" cannot succeed on a retry.
  hosts.failNext(/incus copy --instance-only lxd-source:\S+-tables /, { exitCode: 127, stderr: 'sh: 1: incus: not found' });
  const handle = await start(plan, hosts);

  const failed = await until(handle, 'the failed copy', (s) => s.steps['copy/tables/copy'] === 'failed');
  expect(ran(hosts, /incus copy --instance-only lxd-source:\S+-tables /)).toBe(1);
  expect(failed.failures['copy/tables/copy']).toMatch(/exit 127[\s\S]*incus: not found/);
  expect(failed.waitingFor).toMatch(/retryStep or skipStep copy\/tables\/copy/);
  expect(failed.containers.tables?.phase).toBe('failed');
  // The record the parent holds was taken before the stop, and reached it when it was learned.
  const recorded = JSON.parse((await handle.query(valuesQuery))['instance:tables']!) as { status: string; devices: Record<string, unknown> };
  expect(recorded.status).toBe('Running');
  expect(recorded.devices).toEqual(before.tables?.devices);
  expect(hosts.sourceSnapshot().tables?.status).toBe('Stopped');

  await handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'copy/tables/copy', by: 'ops' }] });
  expect(await refusal(handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'copy/tables/copy', by: 'ops' }] }))).toMatch(/not failed/);
  const gate = await until(handle, 'the cutover gate', atCutoverGate);
  expect(gate.failures).toEqual({});
  expect(gate.steps['copy/tables/copy']).toBe('done');
  expect(gate.decisions).toEqual([expect.objectContaining({ stepId: 'copy/tables/copy', action: 'retry', by: 'ops' })]);
  // The source was recorded once, never again from the stopped host.
  expect(ran(hosts, /^lxc query \/1\.0\/instances\/\S+-tables$/)).toBe(1);
  expect(JSON.parse((await handle.query(valuesQuery))['instance:tables']!)).toEqual(recorded);
  expect(hosts.unscripted).toEqual([]);
});

test('a failure in a child, then cancel: every touched container is undone from the record and its source runs as before', async () => {
  const plan = testPlan({ concurrency: { containers: 2 } });
  const hosts = new StatefulHosts(plan);
  const before = hosts.sourceSnapshot();
  hosts.failNext(/incus start tables$/, { exitCode: 1, stderr: 'Error: Failed to start device "eth0": No such file or directory' });
  const handle = await start(plan, hosts);
  await until(handle, 'the failed start', (s) => s.steps['copy/tables/start'] === 'failed');
  expect(hosts.sourceSnapshot().tables).toMatchObject({ status: 'Stopped', devices: {} });

  await handle.cancel();
  await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
  const status = await handle.query(statusQuery);
  expect(status.undoFailures).toEqual([]);
  expect(status.phase).toBe('compensated');
  // Sources exactly as they were (status, devices, config, data), destination copies gone.
  expect(hosts.sourceSnapshot()).toEqual(before);
  expect(Object.keys(hosts.destinationSnapshot().instances ?? {})).toEqual([]);
  expect(hosts.unscripted).toEqual([]);
});

test('a cancel in the middle of a child ends its running command first, then undoes it (a half-made copy included)', async () => {
  const plan = testPlan({ concurrency: { containers: 1 } });
  const hosts = new StatefulHosts(plan);
  const before = hosts.sourceSnapshot();
  // The canary's copy hangs silently, the copy half made on the destination.
  hosts.hang(/incus copy --instance-only lxd-source:\S+-tables /, { halfDone: true });
  const handle = await start(plan, hosts);
  await until(handle, 'the copy running', (s) => s.containers.tables?.step === 'copy/tables/copy');
  await sleep(500);
  expect(hosts.running().some((c) => c.includes('incus copy'))).toBe(true);

  await handle.cancel();
  await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
  expect(hosts.running()).toEqual([]);
  expect((await handle.query(statusQuery)).phase).toBe('compensated');
  expect(hosts.sourceSnapshot()).toEqual(before);
  expect(Object.keys(hosts.destinationSnapshot().instances ?? {})).toEqual([]);
});

test('pause holds every running child at its next step boundary; nothing new starts on any host until resume', async () => {
  const plan = testPlan({ concurrency: { containers: 4 } });
  const hosts = new StatefulHosts(plan);
  const handle = await start(plan, hosts);
  await until(handle, 'containers running', (s) => Object.values(s.containers).filter((c) => c.step !== undefined).length >= 2);
  await handle.executeUpdate(pauseUpdate, { args: [{ by: 'ops', reason: 'lunch' }] });
  // Steps already running end; then the hosts stay quiet.
  await sleep(1500);
  const quietFrom = hosts.log.length;
  const stopsAtPause = ran(hosts, /^lxc stop /);
  await sleep(4000);
  expect(hosts.log.slice(quietFrom).map((l) => l.command)).toEqual([]);
  expect(ran(hosts, /^lxc stop /)).toBe(stopsAtPause);
  const paused = await handle.query(statusQuery);
  expect(paused.paused).toBe(true);

  await handle.executeUpdate(resumeUpdate, { args: [{ by: 'ops' }] });
  await until(handle, 'the cutover gate', atCutoverGate);
  expect(ran(hosts, /^lxc stop /)).toBe(plan.containers.length);
});

test('a silent step longer than the heartbeat timeout is not started twice', async () => {
  const plan = testPlan({ concurrency: { containers: 4 } });
  const hosts = new StatefulHosts(plan);
  // The push prints nothing for longer than the 20 s heartbeat timeout.
  hosts.hang(/tar -C \S+\/system --numeric-owner -cf - \./, { ms: 26_000 });
  const handle = await start(plan, hosts);
  await until(handle, 'the cutover gate', atCutoverGate, 150_000);
  expect(ran(hosts, /tar -C \S+\/system --numeric-owner -cf - \./)).toBe(1);
  expect(hosts.maxConcurrent(/tar -C \S+\/system --numeric-owner -cf - \./)).toBe(1);
}, 180_000);

test('skip: the step is recorded with who and why, its failure leaves status, later steps whose check passes say their precondition was skipped', async () => {
  const plan = testPlan({ concurrency: { containers: 4 } });
  const hosts = new StatefulHosts(plan);
  hosts.failNext(/incus config device add drive eth0 nic/, { exitCode: 1, stderr: 'Error: Permission denied' });
  const handle = await start(plan, hosts);
  await until(handle, 'the failed nic step', (s) => s.steps['copy/drive/nic'] === 'failed');
  // The operator adds the NIC and starts the container by hand, then skips the step.
  hosts.addNicByHand('drive');
  expect((await hosts.run(hostTargetsOf(plan).destination, "sudo -n sh -c 'incus start drive'")).exitCode).toBe(0);
  await handle.executeUpdate(skipStepUpdate, { args: [{ stepId: 'copy/drive/nic', by: 'ops', reason: 'added by hand' }] });
  const gate = await until(handle, 'the cutover gate', atCutoverGate);
  expect(gate.failures).toEqual({});
  expect(gate.skipped).toEqual([{ id: 'copy/drive/nic', by: 'ops', reason: 'added by hand' }]);
  expect(gate.steps['copy/drive/nic']).toBe('skipped');
  // The start step's check passes, but nothing this run did proves the container whole: it says so.
  expect(gate.steps['copy/drive/start']).toBe('precondition-skipped');
  // Steps that ran are done as usual; other containers are not affected.
  expect(gate.steps['data/drive/push']).toBe('done');
  expect(gate.steps['copy/tables/start']).toBe('done');
});

test('a red matrix: the gate refuses, the operator fixes the service and verifies again, the gate sees the new matrix', async () => {
  const plan = testPlan({ concurrency: { containers: 4 } });
  const hosts = new StatefulHosts(plan);
  hosts.serviceDown('tables', 5432);
  const handle = await start(plan, hosts);
  const red = await until(handle, 'the cutover gate', atCutoverGate);
  expect(red.matrix.filter((m) => !m.ok).map((m) => `${m.container}:${m.port}`)).toEqual(['tables:5432']);
  expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: 'ops', reason: 'go' }] }))).toMatch(/matrix is red \(tables/);

  hosts.serviceUp('tables', 5432);
  await handle.executeUpdate(reverifyUpdate, { args: [{ by: 'ops', reason: 'restarted postgres' }] });
  const green = await until(handle, 'a green matrix', (s) => atCutoverGate(s) && s.matrix.every((m) => m.ok));
  expect(green.reverifications).toEqual([expect.objectContaining({ by: 'ops', reason: 'restarted postgres' })]);
  expect(await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: 'ops', reason: 'green now' }] })).toMatchObject({ gate: 'cutover' });
});

test('an undo step that fails does not abandon the others; the result says what is left and how to finish it', async () => {
  const plan = testPlan({ concurrency: { containers: 4 } });
  const hosts = new StatefulHosts(plan);
  const before = hosts.sourceSnapshot();
  const handle = await start(plan, hosts);
  await until(handle, 'the cutover gate', atCutoverGate);
  hosts.failNext(/^lxc start \S+-proxy$/, { exitCode: 1, stderr: 'Error: Permission denied' }, 100);
  await handle.cancel();
  const err = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const failure = err.cause as ApplicationFailure;
  expect(failure.type).toBe('CompensationIncomplete');
  expect(failure.message).toMatch(/undo\/proxy\/start-source[\s\S]*\$ lxc start \S+-proxy/);
  const status = await handle.query(statusQuery);
  expect(status.phase).toBe('compensation-incomplete');
  expect(status.undoFailures.map((f) => f.id)).toEqual(['undo/proxy/start-source']);
  // Every other container is back as it was; the proxy has its devices back and waits for a hand start.
  const after = hosts.sourceSnapshot();
  for (const c of plan.containers.filter((x) => x.name !== 'proxy')) expect(after[c.name]).toEqual(before[c.name]);
  expect(after.proxy).toEqual({ ...before.proxy, status: 'Stopped' });
});
