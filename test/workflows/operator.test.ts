/**
 * Operator messages on the real Temporal dev server, with hosts that keep state standing in for the
 * real ones (the lab tests run those): a failed step waits for retryStep or skipStep, the
 * validators refuse what they must, pause holds even a retry, and a cancel before cutover undoes
 * the copies and puts the sources back as they were.
 */
import { DryRunExecutor } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import { createWorker } from '../../src/worker';
import { approveUpdate, pauseUpdate, resumeUpdate, retryStepUpdate, skipStepUpdate, statusQuery } from '../../src/workflows/messages';
import { suiteClients, untilStatus } from '../harness/suite-clients';
import { StatefulHosts, testPlan } from '../harness/stateful-hosts';

const t = suiteClients();

const updateRefusal = async (p: Promise<unknown>) => (((await p.then(() => undefined, (e: Error) => e)) as Error | undefined)?.cause as Error | undefined)?.message;

test('a failed step waits for the operator; retry re-runs it; gates and cancel behave as the guide demands', async () => {
  const plan = testPlan({ concurrency: { containers: 4 } });
  const hosts = new StatefulHosts(plan);
  const initial = hosts.sourceSnapshot();
  // The canary's pulled copy does not match the source's checksums once (a refusal of the guide's).
  hosts.failNext((c) => c.startsWith('test "$(sh -c') && c.includes(' manifest ') && c.includes('/tables '), { exitCode: 1, stderr: 'rsync: write failed: No space left on device' });
  const taskQueue = `operator-${Date.now()}`;
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
  await worker.runUntil(async () => {
    const handle = await startMigration(t.client, plan, 'live', taskQueue);

    // The canary's pulled data does not match (a refusal, not retried blindly): the run waits for a decision.
    const failed = await untilStatus(handle, 'the failed transfer check', (s) => s.steps['data/tables/verify-transfer'] === 'failed' && (s.waitingFor ?? '').includes('data/tables/verify-transfer'));
    expect(failed.failures['data/tables/verify-transfer']).toMatch(/refused[\s\S]*exit 1[\s\S]*No space left on device/);
    expect(await updateRefusal(handle.executeUpdate(skipStepUpdate, { args: [{ stepId: 'data/tables/verify-transfer', by: 'ops', reason: ' ' }] }))).toMatch(/reason: skipping a step needs a reason/);
    expect(await updateRefusal(handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'preflight/tenant/source-version', by: 'ops' }] }))).toMatch(/preflight\/tenant\/source-version is done, not failed/);
    expect(await updateRefusal(handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'no/such/step', by: 'ops' }] }))).toMatch(/no step "no\/such\/step"/);

    // Pause before retrying: the retry waits for the resume, like everything else.
    await handle.executeUpdate(pauseUpdate, { args: [{ by: 'ops', reason: 'lunch' }] });
    await handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'data/tables/verify-transfer', by: 'ops' }] });
    await new Promise((r) => setTimeout(r, 1000));
    expect((await handle.query(statusQuery)).steps['data/tables/verify-transfer']).toBe('pending');
    await handle.executeUpdate(resumeUpdate, { args: [{ by: 'ops' }] });

    const gate = await untilStatus(handle, 'the cutover gate', (s) => s.gate?.name === 'cutover');
    expect(gate.steps['data/tables/verify-transfer']).toBe('done');
    expect(gate.failures).toEqual({});
    expect(gate.matrix.length).toBeGreaterThan(10);
    expect(gate.downtimeOver).toBe(true);
    expect(await updateRefusal(handle.executeUpdate(approveUpdate, { args: [{ gate: 'cleanup', by: 'ops', reason: 'early' }] }))).toMatch(/not waiting at the cleanup gate/);
    expect(await updateRefusal(handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: 'ops', reason: '' }] }))).toMatch(/reason: a reason is required/);

    // Cancel at the gate: copies deleted (ours), devices restored as recorded, then sources started.
    const from = hosts.log.length;
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow();
    const undo = hosts.log.slice(from).map((l) => `${l.host}: ${l.command}`);
    const restore = undo.indexOf('source: lxc config device add pragmatismo-proxy gbo disk source=/opt/gbo/proxy path=/opt/gbo');
    expect(restore).toBeGreaterThan(-1);
    expect(undo.indexOf('source: lxc start pragmatismo-proxy')).toBeGreaterThan(restore);
    expect((await handle.query(statusQuery)).phase).toBe('compensated');
    expect(hosts.sourceSnapshot()).toEqual(initial);
    expect(Object.keys(hosts.destinationSnapshot().instances ?? {})).toEqual([]);
    // Nothing destructive ever ran on the source.
    expect(hosts.log.filter((l) => l.host === 'source' && /rm -rf|lxc delete/.test(l.command))).toEqual([]);
    expect(hosts.unscripted).toEqual([]);
  });
});
