/**
 * The main job: a whole migration of a plan on the local Temporal dev server, with a worker in
 * this process, printing the Web UI address to follow it. `--dry-run` records the commands
 * instead of running them.
 */
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { connectClient, startMigration } from './client';
import { temporalConfig } from './config';
import { loadPlan } from './plan/load';
import { createWorker } from './worker';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const dryRun = args.includes('--dry-run');
  const file = args.find((a) => !a.startsWith('--'));
  if (!file) throw new Error('usage: demo <plan> [--dry-run]');
  const plan = loadPlan(file);
  const cfg = temporalConfig();
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const connection = await NativeConnection.connect({ address: cfg.address });
  const client = await connectClient(cfg.address, cfg.namespace);
  const worker = await createWorker({ connection, namespace: cfg.namespace, taskQueue: cfg.taskQueue });
  const started = Date.now();
  const report = await worker.runUntil(async () => {
    const handle = await startMigration(client, plan, dryRun ? 'dry-run' : 'live', cfg.taskQueue);
    console.log(`Started ${handle.workflowId} (${dryRun ? 'dry run' : 'live'}) for tenant ${plan.tenant}.`);
    console.log(`Web UI: ${cfg.uiUrl}/namespaces/${cfg.namespace}/workflows/${handle.workflowId}/${handle.firstExecutionRunId}/history`);
    return handle.result();
  });
  const steps = report.phases.flatMap((p) => p.steps);
  for (const p of report.phases) console.log(`  ${p.id.padEnd(13)} ${String(p.steps.length).padStart(4)} steps`);
  console.log(
    `Completed in ${((Date.now() - started) / 1000).toFixed(1)} s: ${steps.length} steps ${dryRun ? 'recorded' : 'run'}, ` +
      `approvals: ${report.approvals.map((a) => `${a.gate} by ${a.by}`).join(', ')}.`,
  );
  console.log(`Web UI (all migrations): ${cfg.uiUrl}/namespaces/${cfg.namespace}/workflows`);
  await client.connection.close();
  await connection.close();
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(err.name === 'PlanError' ? 2 : 1);
});
