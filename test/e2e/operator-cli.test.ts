/**
 * The operator's day on the lab, through the CLI only: a worker started with `gbo-migrate worker`,
 * the migration with `migrate`, followed with `status --watch` (a progress bar on a transfer of
 * more than 200 MB), the gates approved and the verification window woken with `approve` and
 * `wake` under the default operator identity, then audited with `history` and `report`. The Web
 * UI's timeline of that run, in a real browser, names each step.
 *
 * Needs root (namespaces, LXD, Incus) and Chromium: skipped without them, failed under CI=true.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { parse, stringify } from 'yaml';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps } from '../../src/runbook/model';
import { loadPlan } from '../../src/plan/load';
import type { AuditTimeline, StepRecord, TimerRecord } from '../../src/operator/audit';
import type { AuditReport } from '../../src/operator/report';
import { stepSummary } from '../../src/workflows/details';
import type { MigrationStatus } from '../../src/workflows/messages';
import { rootSuite } from '../harness/needs-root';
import { namesAStep } from '../harness/timeline';
import { startTestServer, type TestServer } from '../harness/temporal-server';

const REPO = join(__dirname, '..', '..');
const ROOT = process.env.GBO_LAB_ROOT ?? '/var/lib/gbo-lab';
const CHROMIUM = '/usr/bin/chromium';
/** The lab's data, so that the largest container's share (system, 25 %) is a transfer of 256 MB. */
const DATA_MB = 1024;
const OPERATOR = 'erin';
const OUT = join(REPO, '.data', 'operator-cli');
const suite = rootSuite('the CLI-driven lab migration');

suite('an operator drives a lab migration with the CLI alone', () => {
  let server: TestServer;
  let worker: ChildProcess;
  let planFile: string;
  const taskQueue = `cli-${Date.now()}`;
  let env: NodeJS.ProcessEnv;

  /** The compiled CLI as an operator runs it (asynchronous: the watch runs meanwhile). */
  const cli = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('node', [join(REPO, 'dist', 'src', 'cli.js'), ...args], { cwd: REPO, env, encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const ok = async (...args: string[]) => {
    const r = await cli(...args);
    if (r.code !== 0) throw new Error(`gbo-migrate ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing (apt-get install chromium; scripts/test.sh does it as root)`);
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'inherit', timeout: 10 * 60_000 });
    execFileSync('bash', [join(REPO, 'lab', 'up.sh')], { stdio: 'inherit', timeout: 20 * 60_000, env: { ...process.env, GBO_LAB_DATA_MB: String(DATA_MB) } });
    // The lab's plan, less the certificates (test/e2e/certificates.test.ts has them).
    const doc = parse(readFileSync(join(ROOT, 'plan.yaml'), 'utf8')) as Record<string, unknown>;
    delete doc.certificates;
    // The warm pull runs at 40 MiB/s, as a production source serving its users would be spared:
    // the 256 MB transfer lasts long enough (about 6 s) for a watch to see it move.
    (doc.data as Record<string, unknown>).warmBandwidthLimit = '40M';
    planFile = join(mkdtempSync(join(tmpdir(), 'gbo-cli-')), 'plan.yaml');
    writeFileSync(planFile, stringify(doc));
    server = await startTestServer({ ui: true });
    env = { ...process.env, TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: 'default', GBO_TASK_QUEUE: taskQueue, TEMPORAL_UI_URL: server.uiUrl, GBO_OPERATOR: OPERATOR, GBO_SECRETS_DIRS: join(ROOT, 'ssh') };
    worker = spawn('node', [join(REPO, 'dist', 'src', 'cli.js'), 'worker'], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'inherit'] });
    mkdirSync(OUT, { recursive: true });
  }, 30 * 60_000);

  afterAll(async () => {
    // A migration a failed test left running is cancelled, so the source is put back.
    if (planFile && env) await cli('cancel', loadPlan(planFile).tenant, '--reason', 'test over');
    worker?.kill('SIGTERM');
    server?.process.kill('SIGTERM');
    // The next lab test brings the lab up at its own size.
  });

  test('start, watch with a progress bar, approve, wake, then history and report; the Web UI names every step', async () => {
    const plan = loadPlan(planFile);
    const tenant = plan.tenant;
    const systemBytes = Number(execFileSync('du', ['-sb', join(plan.data.sourceRoot, 'system')], { encoding: 'utf8' }).split('\t')[0]);
    expect(systemBytes).toBeGreaterThan(200 * 1e6);

    const started = await ok('migrate', planFile, '--no-wait');
    expect(started).toContain(`started migrate-${tenant} (live)`);

    // The watch runs from the start to the end of the run, as an operator's terminal would.
    let watched = '';
    const watch = spawn('node', [join(REPO, 'dist', 'src', 'cli.js'), 'status', tenant, '--watch', '1'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'inherit'] });
    watch.stdout!.on('data', (d: Buffer) => (watched += d.toString()));
    const watchEnded = new Promise<number>((resolve) => watch.on('exit', (code) => resolve(code ?? 1)));

    // The operator's side: read the status, act where the migration waits for a person.
    const acted: string[] = [];
    const deadline = Date.now() + 25 * 60_000;
    for (let done = false; !done; ) {
      if (Date.now() > deadline) throw new Error(`the migration did not finish in time; last watch frame:\n${watched.slice(-3000)}`);
      const r = await cli('status', tenant, '--json');
      if (r.code === 0) {
        const s = (JSON.parse(r.stdout) as { status?: MigrationStatus; workflow: { status: string } });
        done = s.workflow.status !== 'RUNNING';
        const st = s.status;
        if (st && Object.keys(st.failures).length) throw new Error(`a step failed: ${JSON.stringify(st.failures)}`);
        if (st?.gate && !acted.includes(st.gate.name)) {
          expect(st.matrix.filter((m) => m.required && !m.ok && !m.notProbed)).toEqual([]);
          acted.push(st.gate.name);
          await ok('approve', tenant, '--gate', st.gate.name, '--reason', `${st.gate.name}: matrix ${st.matrix.filter((m) => m.ok).length}/${st.matrix.length} green`);
        }
        const window = st?.waits.find((w) => w.state === 'waiting' && w.kind === 'timer' && w.id.startsWith('cleanup/'));
        if (window && !acted.includes(window.id)) {
          acted.push(window.id);
          await ok('wake', tenant, '--wait', window.id, '--reason', 'services checked by hand');
        }
      }
      await new Promise((res) => setTimeout(res, 1500));
    }
    expect(await watchEnded).toBe(0);
    writeFileSync(join(OUT, 'status-watch.txt'), watched);
    expect(acted).toEqual(expect.arrayContaining(['cutover', 'cleanup']));

    // The watch showed the big transfer as it ran: a bar with bytes, a rate and an ETA, more than once.
    const bars = [...watched.matchAll(/\[([#-]{20})\] +(\d+)% +([\d.]+ [kMG]B) +([\d.]+ [kMG]B\/s) +ETA (\d+:\d\d)/g)];
    expect(bars.length).toBeGreaterThanOrEqual(2);
    expect(new Set(bars.map((b) => b[2])).size).toBeGreaterThanOrEqual(2);
    expect(watched).toMatch(/system: presync\/system\/rsync, command, \d+s\n +\[[#-]{20}\] +\d+% +[\d.]+ MB/);
    expect(watched).toContain(`migrate-${tenant} (live)`);
    expect(watched).toMatch(/COMPLETED/);

    // history: every command that ran with its exit code, every operator action with its author.
    const history = await ok('history', tenant);
    writeFileSync(join(OUT, 'history.txt'), history);
    const timeline = JSON.parse(await ok('history', tenant, '--json')) as AuditTimeline;
    writeFileSync(join(OUT, 'history.json'), JSON.stringify(timeline, null, 2));
    const steps = timeline.entries.filter((e): e is StepRecord => e.kind === 'step');
    const hostSteps = steps.filter((e) => e.host === 'source' || e.host === 'destination');
    expect(hostSteps.length).toBeGreaterThan(100);
    for (const e of hostSteps) {
      expect(e.command).toBeTruthy();
      // Ran (exit 0), or found in place by its check (the check's exit code).
      expect([e.status, e.exitCode]).toEqual([e.status, e.status === 'done' ? 0 : expect.any(Number)]);
      expect(history).toContain(e.command!.split('\n')[0]!.slice(0, 60));
    }
    // Every planned step that ran is in the audit, by ID; the verification window is the workflow's own timer, labelled with its step.
    const ran = new Set(steps.map((e) => e.stepId));
    const timers = timeline.entries.filter((e): e is TimerRecord => e.kind === 'timer').map((e) => e.summary ?? '');
    for (const s of allSteps(buildRunbook(plan)).filter((x) => x.kind !== 'gate')) {
      if (s.kind === 'wait-window') expect(timers.find((t) => t.startsWith(`${s.id}: `)) ?? s.id).toMatch(/: the verification window/);
      else expect(ran.has(s.id) || s.id).toBe(true);
    }
    expect(history).toMatch(new RegExp(`approve +gate=cutover by ${OPERATOR}`));
    expect(history).toMatch(new RegExp(`approve +gate=cleanup by ${OPERATOR}`));
    expect(history).toMatch(new RegExp(`wake +.*by ${OPERATOR}: "services checked by hand"`));
    expect(history).toMatch(/exit 0/);

    // report: the matrix like the guide's Final Status table, and the downtime.
    const report = await ok('report', tenant);
    writeFileSync(join(OUT, 'report.md'), report);
    expect(report).toContain('| Container | Service | Port | Status |');
    expect(report).toMatch(/Tenant: \*\*\d[^*]* (s|min)\*\*/);
    const json = JSON.parse(await ok('report', tenant, '--json')) as AuditReport;
    writeFileSync(join(OUT, 'report.json'), JSON.stringify(json, null, 2));
    // One row per cell of the verification matrix: every probe of the verify phase, each answering.
    expect(json.matrix).toHaveLength(allSteps(buildRunbook(plan)).filter((x) => x.phase === 'verify' && x.kind === 'probe').length);
    for (const m of json.matrix) expect(report).toContain(`| ${m.container} | ${m.service} | ${m.port !== undefined ? `${m.port}/${m.protocol}` : m.path} | ✓ Running |`);
    expect(json.downtime.tenant.ms).toBeGreaterThan(0);
    for (const c of json.downtime.containers.filter((x) => !x.unprobed)) expect(c.ms).toBeGreaterThan(0);

    // The Web UI's timeline of this run: each activity row is `<type> • <step ID>: <title>`.
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1600, height: 1400 } });
      const { stdout } = await cli('list', '--tenant', tenant, '--json');
      const runId = (JSON.parse(stdout) as { runId: string; workflowId: string }[]).find((m) => m.workflowId === `migrate-${tenant}`)!.runId;
      await page.goto(`${server.uiUrl}/namespaces/default/workflows/migrate-${tenant}/${runId}/timeline`, { waitUntil: 'domcontentloaded' });
      await page.getByText(/^runStep • cleanup\//).first().waitFor({ timeout: 60_000 });
      await page.screenshot({ path: join(OUT, 'web-ui-timeline.png'), fullPage: true });
      const rows = (await page.locator('span', { hasText: /^\w+ • / }).allTextContents()).map((t) => t.trim());
      const summaries = allSteps(buildRunbook(plan)).map((s) => stepSummary(s));
      expect(rows.length).toBeGreaterThanOrEqual(10);
      for (const row of rows) expect(namesAStep(row, summaries) || row).toBe(true);
    } finally {
      await browser.close();
    }
  }, 40 * 60_000);
});
