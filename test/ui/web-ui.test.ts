/**
 * The Web UI, in a real browser (Debian's headless Chromium, driven by playwright-core): a dry-run
 * migration run on a dev server shows up in its workflow list, completed, findable by tenant.
 * Chromium comes from Debian's packages (scripts/test.sh installs it as root): without it the test
 * is skipped, and under CI=true that is a failure.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import { createWorker } from '../../src/worker';
import { quietRuntime } from '../harness/quiet-runtime';
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
});
