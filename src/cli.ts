#!/usr/bin/env node
/**
 * gbo-migrate: validate and print plans, start and steer migrations.
 * Exit codes: 0 ok, 1 failure, 2 invalid plan or usage.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { Command, CommanderError, Option } from 'commander';
import { writeFileSync } from 'node:fs';
import { connectClient, startMigration } from './client';
import { temporalConfig } from './config';
import { parseWatchSeconds, runStatus } from './operator/status-command';
import { planJsonSchema } from './plan/json-schema';
import { loadPlan, PlanError } from './plan/load';
import { buildRunbook } from './runbook/build';
import { GATE_NAMES, type GateName } from './runbook/model';
import { renderRunbook } from './runbook/print';
import { runWorker } from './worker';
import type { UpdateDefinition } from '@temporalio/common';
import { approveUpdate, extendUpdate, pauseUpdate, resumeUpdate, retryStepUpdate, reverifyUpdate, skipStepUpdate, wakeUpdate, workflowIdOf } from './workflows/messages';

const program = new Command();
program.name('gbo-migrate').description('Migrate a General Bots tenant from an LXD host to an Incus host, durably, on Temporal.').exitOverride();

program
  .command('validate')
  .argument('<plan>', 'tenant plan, YAML or JSON')
  .description('check a plan; nothing connects anywhere')
  .action((file: string) => {
    const plan = loadPlan(file);
    console.log(`${file}: valid plan for tenant ${plan.tenant} (${plan.containers.length} containers, ${plan.portForwards.length} port forwards)`);
  });

program
  .command('plan')
  .argument('<plan>', 'tenant plan, YAML or JSON')
  .description('dry run: print every step, phase by phase, with its host and exact command')
  .option('--json', 'print the step model as JSON')
  .action((file: string, opts: { json?: boolean }) => {
    const plan = loadPlan(file);
    const runbook = buildRunbook(plan);
    console.log(opts.json ? JSON.stringify(runbook, null, 2) : renderRunbook(plan, runbook));
  });

program
  .command('schema')
  .description('print the plan JSON Schema (for editors)')
  .option('-o, --out <file>', 'write it to a file instead')
  .action((opts: { out?: string }) => {
    const text = JSON.stringify(planJsonSchema(), null, 2) + '\n';
    if (opts.out) writeFileSync(opts.out, text);
    else process.stdout.write(text);
  });

program
  .command('migrate')
  .argument('<plan>', 'tenant plan, YAML or JSON')
  .description('start the migration workflow (a worker must be running)')
  .option('--dry-run', 'record the commands instead of running them')
  .option('--no-wait', 'return once started')
  .action(async (file: string, opts: { dryRun?: boolean; wait: boolean }) => {
    const plan = loadPlan(file);
    const cfg = temporalConfig();
    const client = await connectClient(cfg.address, cfg.namespace);
    let handle;
    try {
      handle = await startMigration(client, plan, opts.dryRun ? 'dry-run' : 'live', cfg.taskQueue, { uiUrl: cfg.uiUrl });
    } catch (err) {
      // A refusal (that tenant's migration is running) names the run and where to watch it; main prints it.
      await client.connection.close();
      throw err;
    }
    console.log(`started ${handle.workflowId} (${opts.dryRun ? 'dry run' : 'live'}): ${cfg.uiUrl}/namespaces/${cfg.namespace}/workflows/${handle.workflowId}`);
    if (opts.wait) {
      const report = await handle.result();
      const steps = report.phases.reduce((n, p) => n + p.steps.length, 0);
      console.log(`${handle.workflowId}: completed, ${steps} steps ${report.mode === 'dry-run' ? 'recorded' : 'run'}`);
    }
    await client.connection.close();
  });

program
  .command('status')
  .argument('<tenant>')
  .option('--dry-run', 'the dry-run migration of that tenant')
  .addOption(new Option('--watch [seconds]', 'redraw every few seconds (default 2) until the run closes; exit 0 if it completed').preset('2').argParser(parseWatchSeconds))
  .option('--json', 'one JSON object {status, workflow, activities} (with --watch, one line per refresh)')
  .description("a migration's phase, each container's running step, transfers, waits, gates, failures and the commands that steer them")
  .action(async (tenant: string, opts: { dryRun?: boolean; watch?: number; json?: boolean }) => {
    const cfg = temporalConfig();
    const client = await connectClient(cfg.address, cfg.namespace);
    try {
      process.exitCode = await runStatus(client, {
        tenant,
        mode: opts.dryRun ? 'dry-run' : 'live',
        json: opts.json ?? false,
        ...(opts.watch !== undefined ? { watchS: opts.watch } : {}),
        address: cfg.address,
        namespace: cfg.namespace,
        write: (text) => process.stdout.write(text),
        tty: process.stdout.isTTY === true,
      });
    } finally {
      await client.connection.close();
    }
  });

program
  .command('approve')
  .argument('<tenant>')
  .requiredOption('--gate <gate>', 'cutover, dns (DNS hosted elsewhere: the records are changed at the provider), domains (remove the proxy domains no DNS record points here) or cleanup')
  .requiredOption('--by <name>', 'who approves')
  .requiredOption('--reason <text>', 'why')
  .option('--override', 'cut over although the verification matrix is red (recorded)')
  .description('approve a gate of a running migration')
  .action(async (tenant: string, opts: { gate: GateName; by: string; reason: string; override?: boolean }) => {
    if (!GATE_NAMES.includes(opts.gate)) throw new CommanderError(2, 'gbo-migrate.gate', `--gate: expected ${GATE_NAMES.join(', ')}, got ${JSON.stringify(opts.gate)}`);
    const cfg = temporalConfig();
    const client = await connectClient(cfg.address, cfg.namespace);
    try {
      const approval = await client.workflow.getHandle(workflowIdOf(tenant)).executeUpdate(approveUpdate, { args: [opts] });
      console.log(`approved ${approval.gate} by ${approval.by} at ${approval.at}${approval.override ? ' (override of a red matrix)' : ''}`);
    } catch (err) {
      throw new Error(((err as Error).cause as Error | undefined)?.message ?? (err as Error).message);
    } finally {
      await client.connection.close();
    }
  });

/** Runs one operator update against `migrate-<tenant>` and prints its answer; a refusal says why. */
async function operate<A extends object, R>(tenant: string, def: UpdateDefinition<R, [A]>, args: A, show: (r: R) => string = String): Promise<void> {
  const cfg = temporalConfig();
  const client = await connectClient(cfg.address, cfg.namespace);
  try {
    console.log(show(await client.workflow.getHandle(workflowIdOf(tenant)).executeUpdate(def, { args: [args] })));
  } catch (err) {
    throw new Error(((err as Error).cause as Error | undefined)?.message ?? (err as Error).message);
  } finally {
    await client.connection.close();
  }
}

program
  .command('retry')
  .argument('<tenant>')
  .argument('<step>', 'id of the failed step, as status shows it')
  .requiredOption('--by <name>', 'who decides')
  .description('re-run a failed step (after fixing what made it fail)')
  .action((tenant: string, stepId: string, opts: { by: string }) => operate(tenant, retryStepUpdate, { stepId, by: opts.by }));

program
  .command('skip')
  .argument('<tenant>')
  .argument('<step>', 'id of the failed step, as status shows it')
  .requiredOption('--by <name>', 'who decides')
  .requiredOption('--reason <text>', 'why going on without it is safe (recorded)')
  .description('go on without a failed step')
  .action((tenant: string, stepId: string, opts: { by: string; reason: string }) => operate(tenant, skipStepUpdate, { stepId, by: opts.by, reason: opts.reason }));

program
  .command('pause')
  .argument('<tenant>')
  .requiredOption('--by <name>', 'who pauses')
  .requiredOption('--reason <text>', 'why')
  .description('hold the migration before its next step')
  .action((tenant: string, opts: { by: string; reason: string }) => operate(tenant, pauseUpdate, opts));

program
  .command('resume')
  .argument('<tenant>')
  .requiredOption('--by <name>', 'who resumes')
  .description('resume a paused migration')
  .action((tenant: string, opts: { by: string }) => operate(tenant, resumeUpdate, opts));

program
  .command('reverify')
  .argument('<tenant>')
  .requiredOption('--by <name>', 'who asks')
  .requiredOption('--reason <text>', 'what was fixed (recorded)')
  .description('run the verification matrix again at the cutover gate (after fixing a service by hand)')
  .action((tenant: string, opts: { by: string; reason: string }) => operate(tenant, reverifyUpdate, opts));

program
  .command('wake')
  .argument('<tenant>')
  .option('--wait <id>', 'the wait to end, as status shows it (needed when several are open)')
  .requiredOption('--by <name>', 'who decides')
  .requiredOption('--reason <text>', 'why waiting longer is not needed (recorded)')
  .description('end a wait now (DNS propagation, old TTLs, a CA rate limit, a certificate, the verification window)')
  .action((tenant: string, opts: { wait?: string; by: string; reason: string }) =>
    operate(tenant, wakeUpdate, { ...(opts.wait ? { wait: opts.wait } : {}), by: opts.by, reason: opts.reason }, (w) => `woke ${w.id} (${w.what}) by ${opts.by}`),
  );

program
  .command('extend')
  .argument('<tenant>')
  .option('--wait <id>', 'the wait to extend, as status shows it (needed when several are open)')
  .requiredOption('--for <duration>', 'how much longer, from its current end: 30m, 2h, 3d')
  .requiredOption('--by <name>', 'who decides')
  .requiredOption('--reason <text>', 'why (recorded)')
  .description('make a wait longer (gates included)')
  .action((tenant: string, opts: { wait?: string; for: string; by: string; reason: string }) =>
    operate(tenant, extendUpdate, { ...(opts.wait ? { wait: opts.wait } : {}), for: opts.for, by: opts.by, reason: opts.reason }, (w) => `extended ${w.id} (${w.what}) until ${w.until}`),
  );

program
  .command('cancel')
  .argument('<tenant>')
  .description('cancel; before cutover the source is put back as it was and started again')
  .action(async (tenant: string) => {
    const cfg = temporalConfig();
    const client = await connectClient(cfg.address, cfg.namespace);
    await client.workflow.getHandle(workflowIdOf(tenant)).cancel();
    console.log(`cancel requested for ${workflowIdOf(tenant)}; \`status ${tenant}\` shows the compensation`);
    await client.connection.close();
  });

program.command('worker').description('run a worker on the configured task queue').action(runWorker);

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof PlanError) {
      console.error(err.message);
      process.exitCode = 2;
    } else if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
    } else if (err instanceof WorkflowFailedError && err.cause) {
      // The run's own failure (an InvalidPlan refusal lists the plan's problems) rather than the SDK's wrapper.
      console.error(`error: ${err.message}: ${err.cause.message}`);
      process.exitCode = 1;
    } else {
      console.error(`error: ${(err as Error).message}`);
      process.exitCode = 1;
    }
  }
}

void main();
