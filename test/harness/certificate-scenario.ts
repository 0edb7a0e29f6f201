/**
 * The certificate wait on the lab, across a CA rate limit: the lab tenant migrated on its own
 * Temporal dev server (SQLite, so it can be restarted) by a worker process (so it can be killed),
 * with the lab's ACME CA (pebble behind the lab's rate-limiting front, lab/acme-front.mjs)
 * refusing new certificates for `windowS` seconds from the moment DNS has propagated.
 *
 * Measured in the same run: how long after the CA's limit ended every certificate was served and
 * verified over TLS, and when Caddy on its own would have retried (its `will retry` lines).
 * Used by the e2e test (with a worker kill and a server restart during the wait) and the benchmark.
 */
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import type { Plan } from '../../src/plan/schema';
import type { MigrationReport } from '../../src/workflows/migrate-tenant';
import { approveUpdate, statusQuery, wakeUpdate, type MigrationStatus, type WaitRecord } from '../../src/workflows/messages';
import { DevServer, freePort, sleep, WorkerProcess } from '../faults/processes';

export interface CertificateScenarioOptions {
  repo: string;
  labRoot: string;
  /** The CA refuses new certificates this long after DNS has propagated. */
  windowS: number;
  /** During the rate-limit wait: SIGKILL the worker, restart the Temporal server, start a worker again. */
  faults: boolean;
  log: (line: string) => void;
}

export interface CertificateScenarioResult {
  report: MigrationReport;
  /** The rate-limit wait as status showed it, and the status then. */
  limitWait: WaitRecord;
  statusDuringWait: MigrationStatus;
  /** Status after the faults, still in the wait. */
  statusAfterFaults?: MigrationStatus;
  limitEndsAt: number;
  /** The first domain's certificate, and every one, verified over TLS, this long after the limit ended. */
  firstVerifiedAfterMs: number;
  verifiedAfterMs: number;
  /** The first certificate Caddy obtained (any name) after the limit ended, from its log. */
  caddyFirstObtainedAfterMs?: number;
  /** Caddy's own next attempt for the first domain after the limit, as its `will retry` lines announced. */
  caddyOwnRetryAfterMs?: number;
  caddyAttemptsDuringLimit: number;
  faults?: { workerKilledAt: number; serverDownMs: number; workerBackAt: number };
}

/** The lab plan with the certificate phase on: 1 s polls, a short verification window. */
export function certificatePlan(labRoot: string): Plan {
  const lab = loadPlan(`${labRoot}/plan.yaml`);
  if (!lab.certificates || !lab.caddy?.logFile) throw new Error(`${labRoot}/plan.yaml has no certificates or caddy.logFile: an older lab? run lab/up.sh`);
  return {
    ...lab,
    certificates: { ...lab.certificates, wait: { pollInterval: '1s', maxWait: '30m' } },
    dns: { ...lab.dns, wait: { pollInterval: '1s', maxWait: '30m' } },
    approvals: { ...lab.approvals, cutover: false, verificationWindow: '3s' },
  };
}

const openWait = (s: MigrationStatus, f: (w: WaitRecord) => boolean) => s.waits.find((w) => w.state === 'waiting' && f(w));

/** `tls.obtain` lines of the destination's Caddy (the proxy container's log), parsed. */
interface ObtainLine {
  ts: number;
  msg: string;
  retrying_in?: number;
  identifier?: string;
  error?: string;
}

function caddyObtainLines(plan: Plan, labRoot: string): ObtainLine[] {
  const r = spawnSync(
    'ssh',
    ['-i', `${labRoot}/ssh/id_ed25519`, '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${labRoot}/ssh/known_hosts`, `root@${plan.hosts.destination.address}`, `incus exec ${plan.caddy!.container} -- cat ${plan.caddy!.logFile!}`],
    { encoding: 'utf8', timeout: 60_000, maxBuffer: 256 * 1024 * 1024 },
  );
  if (r.status !== 0) throw new Error(`reading Caddy's log: exit ${r.status} ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.includes('"tls.obtain"'))
    .map((l) => JSON.parse(l) as ObtainLine);
}

export async function runCertificateScenario(o: CertificateScenarioOptions): Promise<CertificateScenarioResult> {
  const { labRoot, log } = o;
  const plan = certificatePlan(labRoot);
  const limitFile = join(labRoot, 'acme', 'rate-limited-until');
  writeFileSync(limitFile, '');
  const dir = mkdtempSync(join(tmpdir(), 'gbo-certs-'));
  const cli = execFileSync('bash', [join(o.repo, 'scripts', 'temporal-cli.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  const server = new DevServer(cli, await freePort(), dir);
  const taskQueue = `certs-${Date.now()}`;
  const worker = new WorkerProcess(o.repo, dir, { TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: 'default', GBO_TASK_QUEUE: taskQueue, GBO_SECRETS_DIRS: join(labRoot, 'ssh') });
  let connection: Connection | undefined;
  try {
    await server.start();
    await worker.start();
    connection = await Connection.connect({ address: server.address });
    let client = new Client({ connection });
    const handle = await startMigration(client, plan, 'live', taskQueue);
    log(`started ${handle.workflowId} on ${server.address} (worker pid ${worker.pid})`);
    const until = async (what: string, pred: (s: MigrationStatus) => boolean, ms = 10 * 60_000): Promise<MigrationStatus> => {
      const deadline = Date.now() + ms;
      for (;;) {
        const s = await client.workflow.getHandle(handle.workflowId).query(statusQuery).catch(() => undefined);
        if (s && pred(s)) return s;
        const failed = Object.entries(s?.failures ?? {});
        if (failed.length) throw new Error(`waiting for ${what}: failed: ${failed.map(([k, v]) => `${k}: ${v}`).join('\n')}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: phase ${s?.phase}, waiting for ${s?.waitingFor}`);
        await sleep(500);
      }
    };

    // DNS has propagated; the old records' TTL wait begins. From now the CA refuses for windowS.
    await until('the old TTL wait', (s) => openWait(s, (w) => w.id === 'cutover/tenant/dns-propagated/old-ttl') !== undefined);
    const limitEndsAt = Math.ceil((Date.now() + o.windowS * 1000) / 1000) * 1000;
    writeFileSync(limitFile, `${new Date(limitEndsAt).toISOString().replace(/\.000Z$/, 'Z')}\n`);
    log(`the CA rate-limits until ${new Date(limitEndsAt).toISOString()}`);
    // The lab's resolvers cache nothing: the TTL wait is woken, as an operator would, recorded.
    await client.workflow.getHandle(handle.workflowId).executeUpdate(wakeUpdate, { args: [{ by: 'certificate-scenario', reason: 'the lab has no caching resolvers' }] });

    const statusDuringWait = await until('the rate-limit wait', (s) => openWait(s, (w) => /\/rate-limit-\d+$/.test(w.id)) !== undefined, 5 * 60_000);
    const limitWait = openWait(statusDuringWait, (w) => /\/rate-limit-\d+$/.test(w.id))!;
    log(`status: waiting for ${limitWait.what} until ${limitWait.until} (${statusDuringWait.waitingFor})`);

    let faults: CertificateScenarioResult['faults'];
    let statusAfterFaults: MigrationStatus | undefined;
    if (o.faults) {
      const workerKilledAt = await worker.kill();
      log('worker SIGKILLed during the wait');
      await connection.close();
      const down = Date.now();
      await server.stop('SIGTERM');
      await server.start();
      const serverDownMs = Date.now() - down;
      log(`Temporal server restarted (down ${(serverDownMs / 1000).toFixed(1)} s)`);
      connection = await Connection.connect({ address: server.address });
      client = new Client({ connection });
      await worker.start();
      const workerBackAt = Date.now();
      log(`worker back (pid ${worker.pid})`);
      faults = { workerKilledAt, serverDownMs, workerBackAt };
      statusAfterFaults = await until('the wait after the restarts', (s) => s.waits.some((w) => w.id === limitWait.id));
      if (Date.now() > limitEndsAt) log(`warning: the faults took past the end of the limit; the window (${o.windowS} s) is too short for them`);
    }

    await until('the cleanup gate', (s) => s.gate?.name === 'cleanup', 10 * 60_000);
    await client.workflow.getHandle(handle.workflowId).executeUpdate(approveUpdate, { args: [{ gate: 'cleanup', by: 'certificate-scenario', reason: 'certificates verified' }] });
    const report = (await client.workflow.getHandle(handle.workflowId).result()) as MigrationReport;
    if (process.env.UPDATE_HISTORIES === '1') {
      // A live history with the certificate waits, a worker kill and a server restart in it, for the replay test.
      writeFileSync(join(o.repo, 'test', 'fixtures', 'lab-certificates-migrate-tenant.history.json'), historyToJSON(await client.workflow.getHandle(handle.workflowId).fetchHistory()));
    }

    // The certificate waits, in the plan's order; the first is the one that slept through the limit.
    const domains = plan.certificates!.domains;
    const certSteps = report.phases.find((p) => p.id === 'certificates')!.steps.filter((s) => domains.some((d) => s.id === `certificates/tenant/${d.replace(/[^a-z0-9]+/g, '-')}`));
    const ends = certSteps.map((s) => Date.parse(s.startedAt) + s.durationMs);
    const lines = caddyObtainLines(plan, labRoot);
    const firstLimited = lines.find((l) => l.error?.includes('rateLimited'));
    // Caddy's own schedule for that first domain: each `will retry` line announces its next
    // attempt; the first one at or after the limit's end is when Caddy alone would have tried.
    const first = domains[0]!;
    const retriesBefore = lines.filter((l) => l.msg === 'will retry' && l.error?.includes(`[${first}]`) && l.ts * 1000 < limitEndsAt && l.error.includes('rateLimited') && typeof l.retrying_in === 'number');
    const ownNext = retriesBefore.map((l) => l.ts * 1000 + l.retrying_in! * 1000).filter((t) => t >= limitEndsAt);
    // Caddy lets 10 orders through every 10 s (its own throttle): of many names, some come later.
    const obtained = lines.filter((l) => l.msg === 'certificate obtained successfully' && l.ts * 1000 >= limitEndsAt).map((l) => l.ts * 1000);
    return {
      report,
      limitWait,
      statusDuringWait,
      ...(statusAfterFaults ? { statusAfterFaults } : {}),
      limitEndsAt,
      firstVerifiedAfterMs: ends[0]! - limitEndsAt,
      verifiedAfterMs: Math.max(...ends) - limitEndsAt,
      ...(ownNext.length ? { caddyOwnRetryAfterMs: Math.min(...ownNext) - limitEndsAt } : {}),
      ...(obtained.length ? { caddyFirstObtainedAfterMs: Math.min(...obtained) - limitEndsAt } : {}),
      caddyAttemptsDuringLimit: lines.filter((l) => l.msg === 'obtaining certificate' && l.ts * 1000 >= (firstLimited?.ts ?? 0) * 1000 && l.ts * 1000 < limitEndsAt).length,
      ...(faults ? { faults } : {}),
    };
  } finally {
    writeFileSync(limitFile, '');
    await worker.stop();
    await connection?.close().catch(() => undefined);
    await server.stop('SIGTERM');
  }
}
