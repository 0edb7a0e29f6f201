/**
 * The main job: a whole migration of a plan on the local Temporal dev server, with a worker in
 * this process, printing the Web UI address to follow it.
 *
 *   demo <plan> [--dry-run] [--approve-as NAME] [--without-certificates]
 *
 * `--dry-run` records the commands instead of running them. `--approve-as` approves each gate
 * when the migration reaches it, under that name, once the verification matrix is green (as an
 * operator would after looking). `--without-certificates` drops the plan's certificate waits.
 */
import { NativeConnection, Runtime } from '@temporalio/worker';
import { connectClient, startMigration } from './client';
import { temporalConfig } from './config';
import { loadPlan } from './plan/load';
import { SshPool } from './ssh/pool';
import { secretPolicyFromEnv } from './ssh/secrets';
import { createWorker, WorkerLogger } from './worker';
import { approveUpdate, statusQuery, type MigrationStatus } from './workflows/messages';

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const dryRun = args.includes('--dry-run');
  const approver = option(args, '--approve-as');
  const file = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--approve-as');
  if (!file) throw new Error('usage: demo <plan> [--dry-run] [--approve-as NAME] [--without-certificates]');
  const loaded = loadPlan(file);
  const plan = args.includes('--without-certificates') ? { ...loaded, certificates: undefined } : loaded;
  const cfg = temporalConfig();
  Runtime.install({ logger: new WorkerLogger('WARN') });
  const connection = await NativeConnection.connect({ address: cfg.address });
  const client = await connectClient(cfg.address, cfg.namespace);
  // GBO_SECRETS_DIRS / GBO_SECRETS_ENV_PREFIX (scripts/demo.sh points them at the lab's keys).
  const secrets = secretPolicyFromEnv();
  const pool = new SshPool({ secrets });
  const worker = await createWorker({ connection, namespace: cfg.namespace, taskQueue: cfg.taskQueue, deps: { live: pool }, secrets });
  const started = Date.now();
  const report = await worker.runUntil(async () => {
    const handle = await startMigration(client, plan, dryRun ? 'dry-run' : 'live', cfg.taskQueue);
    console.log(`Started ${handle.workflowId} (${dryRun ? 'dry run' : 'live'}) for tenant ${plan.tenant}.`);
    console.log(`Web UI: ${cfg.uiUrl}/namespaces/${cfg.namespace}/workflows/${handle.workflowId}/${handle.firstExecutionRunId}/history`);
    const result = handle.result();
    let last = '';
    let done = false;
    void result.finally(() => (done = true)).catch(() => undefined);
    while (!done) {
      // The query can miss while the workflow completes; the loop ends on the result then.
      const s: MigrationStatus | undefined = await handle.query(statusQuery).catch(() => undefined);
      if (s) {
        const line = `  phase ${s.phase}${s.waitingFor ? `, waiting for ${s.waitingFor}` : ''}`;
        if (line !== last) console.log(line);
        last = line;
        const failed = Object.entries(s.failures);
        if (failed.length) throw new Error(`step failed, the migration waits for an operator (retryStep/skipStep):\n${failed.map(([k, v]) => `${k}: ${v}`).join('\n')}`);
        const gate = s.waitingFor?.match(/approval of the (cutover|cleanup) gate/)?.[1] as 'cutover' | 'cleanup' | undefined;
        if (gate && approver) {
          const red = s.matrix.filter((m) => m.required && !m.ok);
          if (gate === 'cutover' && red.length) throw new Error(`the verification matrix is red: ${red.map((m) => `${m.container} ${m.service} ${m.port ?? ''}`).join(', ')}`);
          const a = await handle.executeUpdate(approveUpdate, { args: [{ gate, by: approver, reason: gate === 'cutover' ? `matrix green (${s.matrix.length} checks)` : 'verification window over' }] });
          console.log(`  approved ${a.gate} as ${a.by}`);
        }
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    return result;
  });
  for (const p of report.phases) console.log(`  ${p.id.padEnd(13)} ${String(p.steps.length).padStart(4)} steps`);
  const green = report.matrix.filter((m) => m.ok).length;
  console.log(
    `Completed in ${((Date.now() - started) / 1000).toFixed(1)} s: ${report.phases.reduce((n, p) => n + p.steps.length, 0)} steps ${dryRun ? 'recorded' : 'run'}` +
      (dryRun ? '' : `, matrix ${green}/${report.matrix.length} green, downtime ${((report.downtimeMs ?? 0) / 1000).toFixed(1)} s`) +
      `, approvals: ${report.approvals.map((a) => `${a.gate} by ${a.by}`).join(', ')}.`,
  );
  console.log(`Web UI (all migrations): ${cfg.uiUrl}/namespaces/${cfg.namespace}/workflows`);
  const dry = dryRun ? ' --dry-run' : '';
  console.log(`Audit it: node dist/src/cli.js history ${plan.tenant}${dry}   |   node dist/src/cli.js report ${plan.tenant}${dry}`);
  await pool.close();
  await client.connection.close();
  await connection.close();
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(err.name === 'PlanError' ? 2 : 1);
});
