/**
 * The cutover's long waits on the real Temporal dev server, with hosts that keep state and a fake
 * CA behind the destination's Caddy: DNS that lags, the old records' TTL, a CA that rate-limits,
 * the verification window and the cleanup gate. Each wait shows in status with what it waits for
 * and until when; `wake` and `extend` work, are refused where they must be, and are recorded; a
 * wait's history cost does not grow with its length.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { DryRunExecutor } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import type { Plan } from '../../src/plan/schema';
import { createWorker } from '../../src/worker';
import { approveUpdate, extendUpdate, statusQuery, wakeUpdate, type MigrationStatus, type WaitRecord } from '../../src/workflows/messages';
import type { migrateTenant } from '../../src/workflows';
import { suiteClients, untilStatus } from '../harness/suite-clients';
import { StatefulHosts, testPlan } from '../harness/stateful-hosts';

const t = suiteClients();

const REPO = join(__dirname, '..', '..');
/** The CLI as operators run it, against the test run's server (asynchronously: this process's worker answers its queries). */
const cli = (...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile('node', [join(REPO, 'dist', 'src', 'cli.js'), ...args], { cwd: REPO, encoding: 'utf8', env: { ...process.env, TEMPORAL_ADDRESS: process.env.TEMPORAL_TEST_ADDRESS } }, (err, stdout, stderr) =>
      resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
beforeAll(() => execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'pipe' }), 5 * 60_000);

const refusal = async (p: Promise<unknown>) => (((await p.then(() => undefined, (e: Error) => e)) as Error | undefined)?.cause as Error | undefined)?.message;
const open = (s: MigrationStatus, id: string): WaitRecord | undefined => s.waits.find((w) => w.id === id && w.state === 'waiting');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The example tenant with waits a test can see: 1 s polls, an hour of old TTL, Caddy's log read. */
function waitPlan(overrides: Partial<Plan> = {}): Plan {
  const base = testPlan();
  return testPlan({
    dns: { ...base.dns, oldTtlSeconds: 3600, wait: { pollInterval: '1s', maxWait: '7d' } },
    caddy: { ...base.caddy!, logFile: '/opt/gbo/logs/caddy.log' },
    certificates: { ...base.certificates!, wait: { pollInterval: '1s', maxWait: '7d' } },
    approvals: { ...base.approvals, cutover: false, verificationWindow: '1h', gateTimeout: '1h' },
    ...overrides,
  });
}

/**
 * The events a poll activity cost its workflow's history, from its scheduling to its completion
 * (nothing else runs at the cutover), and the attempt that completed it.
 */
async function pollCost(client: Client, workflowId: string, activity: string): Promise<{ events: number; attempt: number }> {
  const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity);
  if (!scheduled) throw new Error(`no ${activity} activity in ${workflowId}'s history`);
  const id = Number(scheduled.eventId);
  const started = events.find((e) => Number(e.activityTaskStartedEventAttributes?.scheduledEventId) === id);
  const completed = events.find((e) => Number(e.activityTaskCompletedEventAttributes?.scheduledEventId) === id);
  if (!started || !completed) throw new Error(`${activity} in ${workflowId} did not complete`);
  return { events: Number(completed.eventId) - id + 1, attempt: started.activityTaskStartedEventAttributes!.attempt ?? 0 };
}

test('every wait shows what it waits for and until when; wake and extend steer it and are recorded', async () => {
  const plan = waitPlan();
  const hosts = new StatefulHosts(plan);
  // DNS lags behind the reload, and the CA refuses new certificates for an hour.
  hosts.holdDns = true;
  hosts.acme.rateLimitedUntil = Date.now() + 3_600_000;
  const taskQueue = `waits-${Date.now()}`;
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
  const report = await worker.runUntil(async () => {
    const handle: WorkflowHandle<typeof migrateTenant> = await startMigration(t.client, plan, 'live', taskQueue);

    // DNS propagation: polled every second, shown with its deadline (the plan's 7 days).
    const dns = await untilStatus(handle, 'the DNS wait', (s) => open(s, 'cutover/tenant/dns-propagated') !== undefined, 90_000);
    const dnsWait = open(dns, 'cutover/tenant/dns-propagated')!;
    expect(dnsWait).toMatchObject({ kind: 'poll', what: expect.stringContaining('to answer the new records authoritatively') });
    expect(Date.parse(dnsWait.until) - Date.parse(dnsWait.since)).toBe(7 * 86_400_000);
    expect(dns.waitingFor).toContain('cutover/tenant/dns-propagated');
    // Refusals name what is wrong.
    expect(await refusal(handle.executeUpdate(wakeUpdate, { args: [{ wait: 'no/such', by: 'ops', reason: 'x' }] }))).toMatch(/no open wait "no\/such"; open: cutover\/tenant\/dns-propagated/);
    expect(await refusal(handle.executeUpdate(wakeUpdate, { args: [{ by: 'ops', reason: ' ' }] }))).toMatch(/reason: a reason is required/);
    expect(await refusal(handle.executeUpdate(extendUpdate, { args: [{ for: 'soon', by: 'ops', reason: 'x' }] }))).toMatch(/for: expected a duration like 90s, 30m, 2h or 3d, got "soon"/);
    // Extend: the end moves by the duration, recorded with who and why.
    const extended = await handle.executeUpdate(extendUpdate, { args: [{ for: '1d', by: 'ops', reason: 'registrar is slow' }] });
    expect(Date.parse(extended.until) - Date.parse(dnsWait.until)).toBe(86_400_000);
    // A few polls go by; then the servers catch up and the wait ends by itself.
    await sleep(4000);
    hosts.releaseDns();

    // The old records' TTL (an hour): woken by the operator, recorded.
    const ttl = await untilStatus(handle, 'the TTL wait', (s) => open(s, 'cutover/tenant/dns-propagated/old-ttl') !== undefined, 30_000);
    expect(ttl.waits.find((w) => w.id === 'cutover/tenant/dns-propagated')).toMatchObject({ state: 'over', actions: [{ action: 'extend', by: 'ops', reason: 'registrar is slow' }] });
    expect(Date.parse(open(ttl, 'cutover/tenant/dns-propagated/old-ttl')!.until) - Date.now()).toBeGreaterThan(3_500_000);
    await handle.executeUpdate(wakeUpdate, { args: [{ by: 'ops', reason: 'resolvers checked by hand' }] });

    // The CA rate-limits for an hour: the wait sleeps until the CA's retry time, shown in status.
    const limited = await untilStatus(handle, 'the rate-limit wait', (s) => s.waits.some((w) => w.id.endsWith('/rate-limit-1') && w.state === 'waiting'), 30_000);
    const limit = limited.waits.find((w) => w.id.endsWith('/rate-limit-1'))!;
    expect(limit.what).toMatch(/the CA's rate limit for .* to end/);
    expect(Math.abs(Date.parse(limit.until) - hosts.acme.rateLimitedUntil)).toBeLessThan(1000);
    // The limit is lifted early at the CA in 3 s: the operator wakes the wait; Caddy is made to
    // retry at once, meets the (shorter) limit again, and the next wait ends by itself.
    hosts.acme.rateLimitedUntil = Date.now() + 3000;
    const attempts = hosts.acme.attempts;
    await handle.executeUpdate(wakeUpdate, { args: [{ wait: limit.id, by: 'ops', reason: 'the CA lifted the limit' }] });
    await untilStatus(handle, 'the second rate-limit wait', (s) => s.waits.some((w) => w.id.endsWith('/rate-limit-2')), 30_000);
    expect(hosts.acme.attempts).toBeGreaterThan(attempts);

    // The verification window (an hour): woken; the cleanup gate: extended, never woken, then approved.
    await untilStatus(handle, 'the verification window', (s) => open(s, 'cleanup/tenant/verification-window') !== undefined, 60_000);
    await handle.executeUpdate(wakeUpdate, { args: [{ by: 'ops', reason: 'checked by the tenant' }] });
    const atGate = await untilStatus(handle, 'the cleanup gate', (s) => s.gate?.name === 'cleanup', 30_000);
    expect(open(atGate, 'gate/cleanup')).toMatchObject({ kind: 'gate' });
    expect(await refusal(handle.executeUpdate(wakeUpdate, { args: [{ wait: 'gate/cleanup', by: 'ops', reason: 'x' }] }))).toMatch(/gate\/cleanup is a gate; approve it/);
    const gateExtended = await handle.executeUpdate(extendUpdate, { args: [{ wait: 'gate/cleanup', for: '2h', by: 'ops', reason: 'owner on leave' }] });
    expect(Date.parse(gateExtended.until) - Date.parse(open(atGate, 'gate/cleanup')!.until)).toBe(7_200_000);
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cleanup', by: 'ops', reason: 'verified' }] });
    const result = await handle.result();
    // A rate-limit round's cost: from one forced Caddy retry to the next (poll, timer, retry).
    const events = (await handle.fetchHistory()).events ?? [];
    const retries = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'retryCertificates').map((e) => Number(e.eventId));
    expect(retries.length).toBe(2);
    console.log(`a rate-limit round of a certificate wait: ${retries[1]! - retries[0]!} history events; the whole migration: ${events.length}`);
    expect(retries[1]! - retries[0]!).toBeLessThan(20);
    const done = await handle.query(statusQuery);
    expect(done.waits.filter((w) => w.state === 'waiting')).toEqual([]);
    expect(done.waits.flatMap((w) => w.actions.map((a) => `${w.id} ${a.action} ${a.by}: ${a.reason}`))).toEqual([
      'cutover/tenant/dns-propagated extend ops: registrar is slow',
      'cutover/tenant/dns-propagated/old-ttl wake ops: resolvers checked by hand',
      expect.stringMatching(/^certificates\/tenant\/.*\/rate-limit-1 wake ops: the CA lifted the limit$/),
      'cleanup/tenant/verification-window wake ops: checked by the tenant',
      'gate/cleanup extend ops: owner on leave',
    ]);
    return result;
  });

  // Every domain got its certificate; the first waited out two limits, the rest came with its retry.
  const certs = report.phases.find((p) => p.id === 'certificates')!.steps;
  expect(certs.filter((s) => s.ok).map((s) => s.id).sort()).toEqual(plan.certificates!.domains.map((d) => `certificates/tenant/${d.replace(/\./g, '-')}`).sort());
  expect(certs.find((s) => /rate-limited until/.test(s.output ?? ''))?.output).toMatch(/rate-limited until .*; rate-limited until .*; .*valid until/);
  for (const d of plan.certificates!.domains) expect(hosts.acme.issued.has(d)).toBe(true);
});

test("a wait's history cost does not grow with its length (the server retries the poll)", async () => {
  const cost: Record<string, { events: number; attempt: number }> = {};
  for (const [name, heldMs] of [
    ['short', 0],
    ['long', 15_000],
  ] as const) {
    const plan = waitPlan({ certificates: undefined, approvals: { ...waitPlan().approvals, cleanup: false, verificationWindow: '0s' } });
    const hosts = new StatefulHosts(plan);
    hosts.holdDns = heldMs > 0;
    const taskQueue = `wait-cost-${name}-${Date.now()}`;
    const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
    await worker.runUntil(async () => {
      const handle = await startMigration(t.client, { ...plan, dns: { ...plan.dns, oldTtlSeconds: 1 } }, 'live', taskQueue);
      if (heldMs > 0) {
        await untilStatus(handle, 'the DNS wait', (s) => open(s, 'cutover/tenant/dns-propagated') !== undefined, 90_000);
        await sleep(heldMs);
        hosts.releaseDns();
      }
      await handle.result();
      cost[name] = await pollCost(t.client, handle.workflowId, 'checkDns');
    });
  }
  console.log(`DNS wait: answering at once ${cost.short!.events} history events (attempt ${cost.short!.attempt}); after 15 s of polls ${cost.long!.events} events (attempt ${cost.long!.attempt})`);
  // Polled about once a second (1, 2, 4 … capped at the plan's 1 s), each attempt unrecorded.
  expect(cost.short!.attempt).toBe(1);
  expect(cost.long!.attempt).toBeGreaterThanOrEqual(10);
  // Scheduled, started, completed (and the workflow task around them): the same few events however long the poll.
  expect(cost.long!.events).toBe(cost.short!.events);
  expect(cost.long!.events).toBeLessThanOrEqual(5);
});

test('a proxy domain no DNS record points here is removed after the domains gate, then Caddy restarts; its certificate wait is skipped, recorded', async () => {
  const base = waitPlan();
  const dead = 'old-brand.example.net';
  const plan = waitPlan({
    dns: { ...base.dns, oldTtlSeconds: 1 },
    certificates: { ...base.certificates!, domains: [...base.certificates!.domains.slice(0, 2), dead] },
    approvals: { ...base.approvals, verificationWindow: '0s' },
  });
  const hosts = new StatefulHosts(plan);
  const config = plan.caddy!.configPath;
  const taskQueue = `dead-domains-${Date.now()}`;
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
  const report = await worker.runUntil(async () => {
    const handle = await startMigration(t.client, plan, 'live', taskQueue);
    const atGate = await untilStatus(handle, 'the domains gate', (s) => s.gate?.name === 'domains', 90_000);
    expect(atGate.gate!.title).toBe(`remove ${dead} from the proxy config (no DNS record points at ${plan.destination.publicAddress}); then Caddy restarts`);
    // Nothing is removed before the approval.
    expect(hosts.destination.instances[plan.caddy!.container]!.files[config]!.content).toContain(dead);
    const from = hosts.effects.length;
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'domains', by: 'ops', reason: 'brand retired' }] });
    await untilStatus(handle, 'the cleanup gate', (s) => s.gate?.name === 'cleanup', 60_000);
    const effects = hosts.effects.slice(from).map((e) => e.what);
    // Installed, then restarted (not reloaded): the guide's order.
    const installed = effects.indexOf(`mv ${plan.caddy!.container}:${config}.new ${config}`);
    const restarted = effects.indexOf(`systemctl restart caddy in ${plan.caddy!.container}`);
    expect(installed).toBeGreaterThan(-1);
    expect(restarted).toBeGreaterThan(installed);
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cleanup', by: 'ops', reason: 'verified' }] });
    return handle.result();
  });
  const text = hosts.destination.instances[plan.caddy!.container]!.files[config]!.content;
  expect(text).not.toContain(dead);
  for (const d of plan.certificates!.domains.slice(0, 2)) expect(text).toContain(d);
  expect(report.skipped).toEqual([{ id: `certificates/tenant/${dead.replace(/\./g, '-')}`, by: 'ops', reason: `no DNS record points at ${plan.destination.publicAddress}; removed from the proxy config (brand retired)` }]);
  const certs = report.phases.find((p) => p.id === 'certificates')!.steps;
  expect(certs.find((s) => s.id === 'certificates/tenant/find-dead-domains')?.output).toBe(`no DNS record points at ${plan.destination.publicAddress}: ${dead}`);
  expect(certs.filter((s) => s.ok).length).toBe(2);
});

test('a delegation change at the registrar is named at the registrar gate, then waited for until the parent refers to the new nameservers', async () => {
  const base = waitPlan();
  const plan = waitPlan({
    dns: { ...base.dns, oldTtlSeconds: 1, delegation: { parentServers: ['192.0.2.200'], nameservers: ['ns1.pragmatismo.com.br', 'ns2.pragmatismo.com.br'] } },
    certificates: undefined,
    approvals: { ...base.approvals, cleanup: false, verificationWindow: '0s' },
  });
  const hosts = new StatefulHosts(plan);
  const taskQueue = `registrar-${Date.now()}`;
  const worker = await createWorker({ connection: t.native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts, net: hosts.net() } });
  const report = await worker.runUntil(async () => {
    const handle = await startMigration(t.client, plan, 'live', taskQueue);
    const atGate = await untilStatus(handle, 'the registrar gate', (s) => s.gate?.name === 'registrar', 90_000);
    const ip = plan.destination.publicAddress;
    expect(atGate.gate!.title).toBe(`Change at the registrar of pragmatismo.com.br: NS ns1.pragmatismo.com.br, ns2.pragmatismo.com.br; glue ns1.pragmatismo.com.br A ${ip}, ns2.pragmatismo.com.br A ${ip}; then approve`);
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'registrar', by: 'ops', reason: 'changed at the registrar' }] });
    // The registrar publishes a while later: the wait says what it waits for meanwhile.
    const waiting = await untilStatus(handle, 'the delegation wait', (s) => open(s, 'cutover/tenant/delegation') !== undefined, 30_000);
    expect(open(waiting, 'cutover/tenant/delegation')!.what).toBe('192.0.2.200 to refer pragmatismo.com.br to ns1.pragmatismo.com.br, ns2.pragmatismo.com.br');
    // The CLI shows the wait, why it is not over (the poll's last answer) and steers it (the same updates).
    await sleep(2500);
    const status = await cli('status', plan.tenant);
    expect(status.stdout).toMatch(
      /tenant: cutover\/tenant\/delegation, .*attempt \d+\n +last failure: not yet: 192\.0\.2\.200: NS ns1\.pragmatismo\.com\.br, ns2\.pragmatismo\.com\.br missing \(refers to ns1\.old-provider\.example\).*; next attempt at /,
    );
    expect(status.stdout).toContain('waiting for 192.0.2.200 to refer pragmatismo.com.br to ns1.pragmatismo.com.br, ns2.pragmatismo.com.br\n    wait cutover/tenant/delegation: since ');
    expect(status.stdout).toContain(`cut short with: gbo-migrate wake ${plan.tenant} --wait cutover/tenant/delegation`);
    const extended = await cli('extend', plan.tenant, '--for', '2h', '--by', 'ops', '--reason', 'registrar says 48h');
    expect(extended.stdout).toMatch(/^extended cutover\/tenant\/delegation \(192\.0\.2\.200 to refer .*\) until \d{4}-/);
    const wrong = await cli('wake', plan.tenant, '--wait', 'nope', '--by', 'ops', '--reason', 'x');
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toContain('error: wait: no open wait "nope"; open: cutover/tenant/delegation');
    hosts.parent.ns = ['ns1.pragmatismo.com.br.', 'ns2.pragmatismo.com.br.'];
    hosts.parent.glue = { 'ns1.pragmatismo.com.br': ip, 'ns2.pragmatismo.com.br': ip };
    return handle.result();
  });
  expect(report.approvals.map((a) => a.gate)).toEqual(['cutover', 'registrar', 'cleanup']);
  expect(report.phases.find((p) => p.id === 'cutover')!.steps.find((s) => s.id === 'cutover/tenant/delegation')).toBeDefined();
  const cutover = report.phases.find((p) => p.id === 'cutover')!.steps;
  expect(cutover.find((s) => s.id === 'cutover/tenant/delegation')?.output).toBe('the parent refers pragmatismo.com.br to ns1.pragmatismo.com.br, ns2.pragmatismo.com.br');
});
