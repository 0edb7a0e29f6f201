/**
 * A second tenant unlike pragmatismo (test/plans/shop.yaml) migrated completely, live, on the real
 * Temporal dev server with hosts that keep state and a fake network behind them: no Caddy, DNS
 * hosted elsewhere (the dns gate, then propagation), UDP and HTTP probes through NAT, renamed and
 * stateless containers. The cutover, dns and cleanup gates are approved; no step is skipped.
 */
import { DryRunExecutor } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps } from '../../src/runbook/model';
import { createWorker } from '../../src/worker';
import { approveUpdate, statusQuery } from '../../src/workflows/messages';
import { suiteClients, untilStatus } from '../harness/suite-clients';
import { shopPlan, StatefulHosts } from '../harness/stateful-hosts';

const t = suiteClients();

const refusal = async (p: Promise<unknown>) => (((await p.then(() => undefined, (e: Error) => e)) as Error | undefined)?.cause as Error | undefined)?.message;

test('the second tenant migrates completely in live mode with zero skipped steps', async () => {
  const plan = shopPlan();
  const several = [
    { path: 'html/index.html', content: 'root\n', uid: 0, gid: 0, mode: '644' },
    { path: 'html/app.php', content: 'www\n', uid: 33, gid: 33, mode: '640' },
    { path: 'uploads/a.png', content: 'user\n', uid: 1000, gid: 1000, mode: '600' },
    { path: 'uploads/run.sh', content: 'other\n', uid: 1001, gid: 100, mode: '4755' },
  ];
  const hosts = new StatefulHosts(plan, { idmapBase: { web: 1000000, db: 1000000, cache: 1000000 }, extraFiles: { web: several }, udpReplies: { 'game:27015': 'PONG 1 player' } });
  const taskQueue = `any-tenant-${Date.now()}`;
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
  const report = await worker.runUntil(async () => {
    const handle = await startMigration(t.client, plan, 'live', taskQueue);
    const cut = await untilStatus(handle, 'the cutover gate', (s) => s.gate?.name === 'cutover');
    // The matrix: the statsd port is declared as not probed, never red; the rest answer.
    expect(cut.matrix.map((m) => `${m.container} ${m.service} ${m.port} ${m.probe}${m.notProbed ? ' not-probed' : ''} ${m.ok}`)).toEqual([
      'web nginx 8080 http true',
      'db PostgreSQL 5432 tcp true',
      'game Game 27015 udp true',
      'cache memcached 11211 tcp true',
      'cache statsd 9125 none not-probed true',
    ]);
    expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ gate: 'dns', by: 'ops', reason: 'too early' }] }))).toMatch(/not waiting at the dns gate/);
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: 'ops', reason: 'matrix green' }] });

    // DNS hosted elsewhere: status names exactly the records to change at the provider.
    const atDns = await untilStatus(handle, 'the dns gate', (s) => s.gate?.name === 'dns');
    expect(atDns.gate?.title).toBe(`Change at your DNS provider: shop.lab A ${plan.destination.publicAddress}, www.shop.lab A ${plan.destination.publicAddress}; then approve`);
    expect(atDns.waitingFor).toContain('www.shop.lab A 198.18.0.2');
    expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ gate: 'dns', by: 'ops', reason: 'x', override: true }] }))).toMatch(/only the cutover gate takes an override/);
    // The operator changes the records at the provider, then approves.
    hosts.publicDns['shop.lab'] = plan.destination.publicAddress;
    hosts.publicDns['www.shop.lab'] = plan.destination.publicAddress;
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'dns', by: 'ops', reason: 'records changed at the provider' }] });

    await untilStatus(handle, 'the cleanup gate', (s) => s.gate?.name === 'cleanup');
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cleanup', by: 'ops', reason: 'verified for the window' }] });
    const result = await handle.result();
    const status = await handle.query(statusQuery);
    expect(status.phase).toBe('done');
    expect(Object.entries(status.steps).filter(([, st]) => st !== 'done' && st !== 'already-done')).toEqual([]);
    return result;
  });

  expect(report.skipped).toEqual([]);
  expect(report.approvals.map((a) => a.gate)).toEqual(['cutover', 'dns', 'cleanup']);
  const ran = report.phases.flatMap((p) => p.steps);
  const expected = allSteps(buildRunbook(plan)).filter((s) => s.kind !== 'gate');
  expect(ran.map((s) => s.id).sort()).toEqual(expected.map((s) => s.id).sort());
  expect(ran.filter((s) => s.status !== 'done' && s.status !== 'already-done')).toEqual([]);
  // Only the privileged source's steps find their effect in place already.
  expect(ran.filter((s) => s.status === 'already-done').map((s) => s.id).sort()).toEqual(['copy/game/privileged', 'data/game/shift-ids']);
  // NAT answered through the forwards; a UDP forward nobody declares a probe for is reported, not failed.
  expect(ran.find((s) => s.id === 'network/tenant/nat-answers-udp-5000')).toMatchObject({ ok: true, output: expect.stringMatching(/not probed/) });
  expect(ran.find((s) => s.id === 'network/tenant/nat-answers-udp-27015')).toMatchObject({ ok: true, output: expect.stringContaining('PONG') });

  // The world after: the source gone, the renamed copies running with their data, owners kept.
  for (const c of plan.containers) expect(hosts.sourceSnapshot()[c.name]).toMatchObject({ status: 'Absent', data: false });
  const dst = hosts.destinationSnapshot();
  expect(Object.keys(dst.instances).sort()).toEqual(['cache', 'db', 'game', 'web']);
  for (const f of several) expect(hosts.destination.instances.web!.files[`/srv/www/${f.path}`]).toMatchObject({ uid: f.uid, gid: f.gid, mode: f.mode });
  expect(hosts.destination.instances.cache!.files).toEqual({});
  expect(hosts.unscripted).toEqual([]);
  expect(hosts.withoutSudo).toEqual([]);
}, 300_000);

test('in a dry run the dns gate passes like the others', async () => {
  const plan = shopPlan();
  const taskQueue = `any-tenant-dry-${Date.now()}`;
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor() } });
  const report = await worker.runUntil(async () => (await startMigration(t.client, plan, 'dry-run', taskQueue)).result());
  expect(report.approvals.map((a) => `${a.gate}:${a.by}`)).toEqual(['cutover:dry-run', 'dns:dry-run', 'cleanup:dry-run']);
  expect(report.phases.find((p) => p.id === 'cutover')?.steps.map((s) => s.id)).toEqual(['cutover/tenant/dns-propagated']);
  expect(report.phases.find((p) => p.id === 'proxy')?.steps).toEqual([]);
});
