/**
 * The Web UI, in a real browser (Debian's headless Chromium, driven by playwright-core): a dry-run
 * migration run on a dev server shows up in its workflow list, completed, findable by tenant.
 * Chromium comes from Debian's packages (scripts/test.sh installs it as root): without it the test
 * is skipped, and under CI=true that is a failure.
 */
import { ApplicationFailure, Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startMigration } from '../../src/client';
import { loadPlan, parsePlan, PlanError } from '../../src/plan/load';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps } from '../../src/runbook/model';
import { createWorker } from '../../src/worker';
import { stepSummary } from '../../src/workflows/details';
import { workflowIdOf } from '../../src/workflows/messages';
import { quietRuntime } from '../harness/quiet-runtime';
import { namesAStep } from '../harness/timeline';
import { startTestServer, type TestServer } from '../harness/temporal-server';

const CHROMIUM = '/usr/bin/chromium';
const haveBrowser = existsSync(CHROMIUM);

if (!haveBrowser) {
  if (process.env.CI === 'true') {
    test('the Web UI test needs Chromium', () => {
      throw new Error(`CI=true: ${CHROMIUM} is missing (apt-get install chromium; scripts/test.sh does it as root)`);
    });
  } else {
    test.skip(`the Web UI test needs ${CHROMIUM} (apt-get install chromium): skipped`, () => undefined);
  }
}

const root = join(__dirname, '..', '..');
const exampleText = readFileSync(join(root, 'examples', 'pragmatismo.yaml'), 'utf8');
const screenshot = (page: Page, name: string) => {
  mkdirSync(join(root, '.data'), { recursive: true });
  return page.screenshot({ path: join(root, '.data', name), fullPage: true });
};

(haveBrowser ? describe : describe.skip)('the Temporal Web UI', () => {
  let server: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    quietRuntime();
    server = await startTestServer({ ui: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    server?.process.kill('SIGTERM');
  });

  test('shows the dry-run migration, completed, with its tenant search attribute', async () => {
    const plan = { ...loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml')), tenant: `ui${Date.now() % 100000}` };
    const native = await NativeConnection.connect({ address: server.address });
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    const taskQueue = `ui-${Date.now()}`;
    const worker = await createWorker({ connection: native, taskQueue });
    const workflowId = await worker.runUntil(async () => {
      const handle = await startMigration(client, plan, 'dry-run', taskQueue);
      await handle.result();
      return handle.workflowId;
    });
    await connection.close();
    await native.close();

    const page = await browser.newPage();
    const query = encodeURIComponent(`GboTenant="${plan.tenant}"`);
    await page.goto(`${server.uiUrl}/namespaces/default/workflows?query=${query}`, { waitUntil: 'domcontentloaded' });
    await page.getByText(workflowId, { exact: true }).first().waitFor({ timeout: 60_000 });
    mkdirSync(join(__dirname, '..', '..', '.data'), { recursive: true });
    await page.screenshot({ path: join(__dirname, '..', '..', '.data', 'web-ui.png') });
    const row = await page.locator('body').innerText();
    expect(row).toContain('migrateTenant');
    expect(row).toMatch(/completed/i);
  }, 180_000);

  /**
   * The UI's own "Start Workflow" form, as an operator fills it in: ID, task queue, type, and the
   * plan file pasted as planYaml into the input editor (CodeMirror; `fill` types into it as a paste
   * would, without the editor's bracket auto-closing). Returns once the UI says it started.
   */
  async function startFromUi(page: Page, form: { workflowId: string; taskQueue: string; input: string }): Promise<void> {
    await page.goto(`${server.uiUrl}/namespaces/default/workflows`, { waitUntil: 'domcontentloaded' });
    // The list's own button, not a deep link: this is how an operator gets to the form.
    await page.getByRole('link', { name: 'Start Workflow' }).first().click();
    await page.locator('#workflowId').waitFor({ timeout: 30_000 });
    await page.locator('#workflowId').fill(form.workflowId);
    await page.locator('#taskQueue').fill(form.taskQueue);
    await page.locator('#workflowType').fill('migrateTenant');
    const editor = page.locator('.cm-content').first();
    await editor.fill(form.input);
    // What the editor holds is what the server will get: a mangled paste would fail the test here, not later.
    expect(JSON.parse(await editor.innerText())).toEqual(JSON.parse(form.input));
    await page.getByTestId('start-workflow-button').click();
    await page.getByRole('link', { name: 'Workflow started successfully' }).waitFor({ timeout: 30_000 });
  }

  /** Opens a workflow's page in the UI (its latest run) and waits for `text` to show. */
  async function openWorkflow(page: Page, client: Client, workflowId: string, text: string | RegExp): Promise<string> {
    const { runId } = await client.workflow.getHandle(workflowId).describe();
    await page.goto(`${server.uiUrl}/namespaces/default/workflows/${encodeURIComponent(workflowId)}/${runId}/history`, { waitUntil: 'domcontentloaded' });
    await page.getByText(text).first().waitFor({ timeout: 60_000 });
    return page.locator('body').innerText();
  }

  test('a migration started from the UI\'s Start Workflow form with the plan file as planYaml completes (dry run)', async () => {
    const tenant = `uistart${Date.now() % 100000}`;
    const workflowId = workflowIdOf(tenant, 'dry-run');
    const input = JSON.stringify({ planYaml: exampleText.replace(/^tenant: pragmatismo$/m, `tenant: ${tenant}`), mode: 'dry-run' });
    const native = await NativeConnection.connect({ address: server.address });
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    const taskQueue = `ui-start-${Date.now()}`;
    const worker = await createWorker({ connection: native, taskQueue });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    try {
      const report = await worker.runUntil(async () => {
        await startFromUi(page, { workflowId, taskQueue, input });
        await screenshot(page, 'web-ui-start-form.png');
        return client.workflow.getHandle(workflowId).result();
      });
      expect(report).toMatchObject({ tenant, mode: 'dry-run' });
      const started = (await client.workflow.getHandle(workflowId).fetchHistory()).events?.[0]?.workflowExecutionStartedEventAttributes;
      expect(started?.taskQueue?.name).toBe(taskQueue);
      // Newest event first: the history has loaded once its closing event shows.
      const body = await openWorkflow(page, client, workflowId, 'Workflow Execution Completed');
      expect(body).toContain('COMPLETED');
      await screenshot(page, 'web-ui-started-from-form.png');
      expect(body).toContain(workflowId);
      expect(body).toContain('migrateTenant');
    } finally {
      await page.close();
      await connection.close();
      await native.close();
    }
  }, 180_000);

  test('the timeline of a finished migration names its steps; its metadata shows the plan it ran and its current details', async () => {
    const plan = { ...loadPlan(join(root, 'examples', 'pragmatismo.yaml')), tenant: `uitl${Date.now() % 100000}` };
    const native = await NativeConnection.connect({ address: server.address });
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    const taskQueue = `ui-timeline-${Date.now()}`;
    const worker = await createWorker({ connection: native, taskQueue });
    const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
    try {
      // The worker keeps running while the UI is looked at: the current details are a query it answers.
      await worker.runUntil(async () => {
        const handle = await startMigration(client, plan, 'dry-run', taskQueue);
        await handle.result();
        await openWorkflow(page, client, handle.workflowId, 'Workflow Execution Completed');
        const base = `${server.uiUrl}/namespaces/default/workflows/${encodeURIComponent(handle.workflowId)}/${handle.firstExecutionRunId}`;
        await page.goto(`${base}/timeline`, { waitUntil: 'domcontentloaded' });
        await page.getByText('runStep • cleanup/table-editor/delete-container: ').first().waitFor({ timeout: 60_000 });
        await screenshot(page, 'web-ui-timeline.png');
        // Every activity row the timeline draws is `<activity type> • <step ID>: <step title>`.
        const rows = (await page.locator('span', { hasText: /^\w+ • / }).allTextContents()).map((t) => t.trim());
        const summaries = allSteps(buildRunbook(plan)).map((st) => stepSummary(st));
        expect(rows.length).toBeGreaterThanOrEqual(10);
        for (const row of rows) expect(namesAStep(row, summaries) || row).toBe(true);

        // The summary, the details and the current details are Markdown, each rendered in its own frame.
        await page.getByText('User Metadata', { exact: true }).first().click();
        await page.getByText('Current Details').first().waitFor({ timeout: 30_000 });
        let text = '';
        for (const deadline = Date.now() + 30_000; Date.now() < deadline && !text.includes('phase done'); await page.waitForTimeout(500)) {
          text = (await Promise.all(page.frames().map((f) => f.locator('body').innerText().catch(() => '')))).join('\n');
        }
        await screenshot(page, 'web-ui-metadata.png');
        expect(text).toMatch(new RegExp(`${plan.tenant} · dry-run · plan sha256:[0-9a-f]{12}`));
        expect(text).toContain(`Containers (10): ${plan.containers.map((c) => c.name).join(', ')}`);
        expect(text).toContain(`${plan.tenant} · dry-run · phase done`);
        expect(text).toContain('Approvals: cutover by dry-run');
      });
    } finally {
      await page.close();
      await connection.close();
      await native.close();
    }
  }, 180_000);

  test('a broken plan started from the UI fails at once, its problems (path, value, expected) in the UI\'s failure view', async () => {
    const tenant = `uibad${Date.now() % 100000}`;
    const workflowId = workflowIdOf(tenant, 'dry-run');
    const yaml = exampleText.replace(/^tenant: pragmatismo$/m, `tenant: ${tenant}`).replace('name: alm-ci', 'name: "alm ci; reboot"').replace('bridgeSubnet: 10.107.115.0/24', 'bridgeSubnet: 10.107.115.0/33');
    // What `gbo-migrate validate` prints for this file, problem by problem.
    const expected = (() => {
      try {
        parsePlan(yaml);
      } catch (err) {
        if (err instanceof PlanError) return err.problems;
      }
      throw new Error('the broken plan validated');
    })();
    const native = await NativeConnection.connect({ address: server.address });
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    const taskQueue = `ui-bad-${Date.now()}`;
    const worker = await createWorker({ connection: native, taskQueue });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    try {
      const failure = await worker.runUntil(async () => {
        await startFromUi(page, { workflowId, taskQueue, input: JSON.stringify({ planYaml: yaml, mode: 'dry-run' }) });
        return client.workflow.getHandle(workflowId).result().then(() => undefined, (e: Error) => e.cause as ApplicationFailure | undefined);
      });
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure).toMatchObject({ type: 'InvalidPlan', nonRetryable: true });
      const history = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
      expect(history.filter((e) => e.activityTaskScheduledEventAttributes || e.startChildWorkflowExecutionInitiatedEventAttributes || e.workflowTaskFailedEventAttributes)).toEqual([]);

      // The failure view: the run marked failed, and its failed event opened shows the message
      // line by line (the "Call Stack" panel renders it unescaped), as `validate` prints it.
      await openWorkflow(page, client, workflowId, 'Workflow Execution Failed');
      await page.getByText('Workflow Execution Failed').first().click();
      await page.getByText('Call Stack').first().waitFor({ timeout: 30_000 });
      const body = await page.locator('body').innerText();
      await screenshot(page, 'web-ui-invalid-plan.png');
      expect(body).toContain('FAILED');
      expect(body).toContain('refused before any step: planYaml: invalid plan');
      expect(expected.length).toBeGreaterThanOrEqual(2);
      for (const p of expected) expect(body).toContain(`  - ${p.path}: got ${p.value}, expected ${p.expected}\n`);
    } finally {
      await page.close();
      await connection.close();
      await native.close();
    }
  }, 180_000);
});
