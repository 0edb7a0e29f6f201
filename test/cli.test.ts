/** The CLI as operators run it: the compiled entry point, real files, exit codes. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planJsonSchema } from '../src/plan/json-schema';

const root = join(__dirname, '..');
const example = join(root, 'examples', 'pragmatismo.yaml');

beforeAll(() => {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'pipe' });
});

const cli = (...args: string[]) => spawnSync('node', [join(root, 'dist', 'src', 'cli.js'), ...args], { cwd: root, encoding: 'utf8' });

test('validate accepts the example', () => {
  const r = cli('validate', example);
  expect(r.stdout).toContain('valid plan for tenant pragmatismo (10 containers, 12 port forwards)');
  expect(r.status).toBe(0);
});

test('validate rejects a broken plan with the path and the value, exit 2, and nothing else runs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gbo-plan-'));
  const file = join(dir, 'broken.yaml');
  writeFileSync(file, readFileSync(example, 'utf8').replace('name: alm-ci', 'name: "alm ci; reboot"'));
  const r = cli('validate', file);
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/containers\[8\]\.name: got "alm ci; reboot", expected a container name/);
  const p = cli('plan', file);
  expect(p.status).toBe(2);
  expect(p.stdout).toBe('');
});

test('plan prints the whole runbook for pragmatismo, phase by phase, with hosts and commands', () => {
  const r = cli('plan', example);
  expect(r.status).toBe(0);
  const phases = [...r.stdout.matchAll(/^== \d+\. ([a-z]+):/gm)].map((m) => m[1]);
  expect(phases).toEqual(['preflight', 'presync', 'record', 'stop', 'copy', 'data', 'network', 'proxy', 'fixes', 'verify', 'cutover', 'certificates', 'cleanup']);
  expect(r.stdout).toMatch(/destination administrator@63\.141\.255\.9 \$ sudo -n sh -c '.*; iptables -t nat -A PREROUTING -d 63\.141\.255\.9 -p udp --dport 53 -j DNAT --to-destination \{\{ip:dns\}\}:53'/);
  expect(r.stdout).toContain('source root@82.29.59.188 $ rm -rf --one-file-system /opt/gbo/system');
  const json = JSON.parse(cli('plan', example, '--json').stdout) as { phases: { steps: unknown[] }[] };
  expect(json.phases.flatMap((p) => p.steps).length).toBeGreaterThan(250);
});

test('the checked-in JSON Schema matches the zod schema', () => {
  const onDisk = JSON.parse(readFileSync(join(root, 'schema', 'tenant-plan.schema.json'), 'utf8'));
  expect(onDisk).toEqual(planJsonSchema());
});

test('migrate refuses a second start while that tenant\'s migration runs: which run, how to watch it, exit 1', async () => {
  const { Client, Connection } = await import('@temporalio/client');
  const dir = mkdtempSync(join(tmpdir(), 'gbo-plan-'));
  const tenant = `cli${Date.now() % 100000}`;
  const file = join(dir, 'plan.yaml');
  writeFileSync(file, readFileSync(example, 'utf8').replace(/^tenant: pragmatismo$/m, `tenant: ${tenant}`));
  // No worker polls this queue: the first start stays running.
  const env = { ...process.env, TEMPORAL_ADDRESS: process.env.TEMPORAL_TEST_ADDRESS!, GBO_TASK_QUEUE: `cli-idle-${tenant}`, TEMPORAL_UI_URL: 'http://ui.example:8233' };
  const migrate = () => spawnSync('node', [join(root, 'dist', 'src', 'cli.js'), 'migrate', file, '--no-wait'], { cwd: root, encoding: 'utf8', env });
  const first = migrate();
  // Started all the same; the warning that nobody polls is test/cli-operator.test.ts's.
  expect(first.stderr).toContain(`warning: no worker polls task queue "cli-idle-${tenant}"`);
  expect(first.status).toBe(0);
  expect(first.stdout).toContain(`started migrate-${tenant} (live)`);
  const second = migrate();
  const connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS });
  try {
    const running = await new Client({ connection }).workflow.getHandle(`migrate-${tenant}`).describe();
    expect(second.status).toBe(1);
    expect(second.stdout).toBe('');
    expect(second.stderr).toContain(`a live migration of tenant ${tenant} is already running as migrate-${tenant} (run ${running.runId}`);
    expect(second.stderr).toContain(`gbo-migrate status ${tenant}`);
    expect(second.stderr).toContain(`http://ui.example:8233/namespaces/default/workflows/migrate-${tenant}/${running.runId}`);
  } finally {
    await new Client({ connection }).workflow.getHandle(`migrate-${tenant}`).terminate('test over');
    await connection.close();
  }
});
