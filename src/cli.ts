#!/usr/bin/env node
/**
 * gbo-migrate: validate and print plans, start and steer migrations.
 * Exit codes: 0 ok, 1 failure, 2 invalid plan or usage.
 */
import { WorkflowFailedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { Command, CommanderError, Option } from 'commander';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connectClient, startMigration } from './client';
import { temporalConfig, type TemporalConfig } from './config';
import { clientIdentity, defaultOperator } from './operator/identity';
import { environmentHelp, packageVersion } from './operator/help';
import { listMigrations, PHASE_VALUES, renderMigrations } from './operator/list';
import { auditTimeline, renderAudit } from './operator/audit';
import { fetchMigrationHistories } from './operator/migration-history';
import { auditReport, renderReportMarkdown } from './operator/report';
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
program
  .name('gbo-migrate')
  .description('Migrate a General Bots tenant from an LXD host to an Incus host, durably, on Temporal.')
  .version(packageVersion())
  .addHelpText('after', environmentHelp())
  .exitOverride();

/** Every command that takes a tenant takes `--dry-run`: that tenant's dry-run migration instead of its live one. */
const DRY_RUN_OPTION = ['--dry-run', "the tenant's dry-run migration (migrate-<tenant>-dry-run) instead of its live one"] as const;
const migrationIdOf = (tenant: string, opts: { dryRun?: boolean }): string => workflowIdOf(tenant, opts.dryRun ? 'dry-run' : 'live');

/** `--by` on every decision: optional, the operator by default (GBO_OPERATOR, else the OS user). */
const byOption = (who: string) => ['--by <name>', `${who} (default: $GBO_OPERATOR, else the OS user)`] as const;
const byOf = (opts: { by?: string }): string => opts.by ?? defaultOperator();

/**
 * Warns at once when no worker polls the task queue: the migration would wait there in silence.
 * The task queue type left unset is the workflow task queue, the one a worker must poll first.
 */
async function warnIfNoWorker(client: Client, cfg: TemporalConfig, workflowId: string): Promise<void> {
  let pollers;
  try {
    ({ pollers } = await client.workflowService.describeTaskQueue({ namespace: cfg.namespace, taskQueue: { name: cfg.taskQueue } }));
  } catch (err) {
    // The start stands either way; a server that will not describe queues (permissions) only loses the check.
    console.error(`warning: could not check for workers on task queue "${cfg.taskQueue}" at ${cfg.address}: ${(err as Error).message}`);
    return;
  }
  if ((pollers ?? []).length > 0) return;
  console.error(
    `warning: no worker polls task queue "${cfg.taskQueue}" on ${cfg.address}: ${workflowId} is started and waits until one does; ` +
      `start one with \`gbo-migrate worker\` (TEMPORAL_ADDRESS=${cfg.address} GBO_TASK_QUEUE=${cfg.taskQueue})`,
  );
}

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
    await warnIfNoWorker(client, cfg, handle.workflowId);
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
  .option(...DRY_RUN_OPTION)
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
  .option(...byOption('who approves'))
  .requiredOption('--reason <text>', 'why')
  .option('--override', 'cut over although the verification matrix is red (recorded)')
  .option(...DRY_RUN_OPTION)
  .description('approve a gate of a running migration')
  .action(async (tenant: string, opts: { gate: GateName; by?: string; reason: string; override?: boolean; dryRun?: boolean }) => {
    if (!GATE_NAMES.includes(opts.gate)) throw new CommanderError(2, 'gbo-migrate.gate', `--gate: expected ${GATE_NAMES.join(', ')}, got ${JSON.stringify(opts.gate)}`);
    const args = { gate: opts.gate, by: byOf(opts), reason: opts.reason, ...(opts.override ? { override: true } : {}) };
    await operate(tenant, opts, approveUpdate, args, (a) => `approved ${a.gate} by ${a.by} at ${a.at}${a.override ? ' (override of a red matrix)' : ''}`);
  });

/**
 * Runs one operator update against the tenant's migration and prints its answer; a refusal says
 * why. The client's identity names the same operator as `by`, for the server's record of the update.
 */
async function operate<A extends { by: string }, R>(tenant: string, opts: { dryRun?: boolean }, def: UpdateDefinition<R, [A]>, args: A, show: (r: R) => string = String): Promise<void> {
  const cfg = temporalConfig();
  const client = await connectClient(cfg.address, cfg.namespace, clientIdentity(args.by));
  try {
    console.log(show(await client.workflow.getHandle(migrationIdOf(tenant, opts)).executeUpdate(def, { args: [args] })));
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
  .option(...byOption('who decides'))
  .option(...DRY_RUN_OPTION)
  .description('re-run a failed step (after fixing what made it fail)')
  .action((tenant: string, stepId: string, opts: { by?: string; dryRun?: boolean }) => operate(tenant, opts, retryStepUpdate, { stepId, by: byOf(opts) }));

program
  .command('skip')
  .argument('<tenant>')
  .argument('<step>', 'id of the failed step, as status shows it')
  .option(...byOption('who decides'))
  .requiredOption('--reason <text>', 'why going on without it is safe (recorded)')
  .option(...DRY_RUN_OPTION)
  .description('go on without a failed step')
  .action((tenant: string, stepId: string, opts: { by?: string; reason: string; dryRun?: boolean }) => operate(tenant, opts, skipStepUpdate, { stepId, by: byOf(opts), reason: opts.reason }));

program
  .command('pause')
  .argument('<tenant>')
  .option(...byOption('who pauses'))
  .requiredOption('--reason <text>', 'why')
  .option(...DRY_RUN_OPTION)
  .description('hold the migration before its next step')
  .action((tenant: string, opts: { by?: string; reason: string; dryRun?: boolean }) => operate(tenant, opts, pauseUpdate, { by: byOf(opts), reason: opts.reason }));

program
  .command('resume')
  .argument('<tenant>')
  .option(...byOption('who resumes'))
  .option(...DRY_RUN_OPTION)
  .description('resume a paused migration')
  .action((tenant: string, opts: { by?: string; dryRun?: boolean }) => operate(tenant, opts, resumeUpdate, { by: byOf(opts) }));

program
  .command('reverify')
  .argument('<tenant>')
  .option(...byOption('who asks'))
  .requiredOption('--reason <text>', 'what was fixed (recorded)')
  .option(...DRY_RUN_OPTION)
  .description('run the verification matrix again at the cutover gate (after fixing a service by hand)')
  .action((tenant: string, opts: { by?: string; reason: string; dryRun?: boolean }) => operate(tenant, opts, reverifyUpdate, { by: byOf(opts), reason: opts.reason }));

program
  .command('wake')
  .argument('<tenant>')
  .option('--wait <id>', 'the wait to end, as status shows it (needed when several are open)')
  .option(...byOption('who decides'))
  .requiredOption('--reason <text>', 'why waiting longer is not needed (recorded)')
  .option(...DRY_RUN_OPTION)
  .description('end a wait now (DNS propagation, old TTLs, a CA rate limit, a certificate, the verification window)')
  .action((tenant: string, opts: { wait?: string; by?: string; reason: string; dryRun?: boolean }) => {
    const by = byOf(opts);
    return operate(tenant, opts, wakeUpdate, { ...(opts.wait ? { wait: opts.wait } : {}), by, reason: opts.reason }, (w) => `woke ${w.id} (${w.what}) by ${by}`);
  });

program
  .command('extend')
  .argument('<tenant>')
  .option('--wait <id>', 'the wait to extend, as status shows it (needed when several are open)')
  .requiredOption('--for <duration>', 'how much longer, from its current end: 30m, 2h, 3d')
  .option(...byOption('who decides'))
  .requiredOption('--reason <text>', 'why (recorded)')
  .option(...DRY_RUN_OPTION)
  .description('make a wait longer (gates included)')
  .action((tenant: string, opts: { wait?: string; for: string; by?: string; reason: string; dryRun?: boolean }) =>
    operate(tenant, opts, extendUpdate, { ...(opts.wait ? { wait: opts.wait } : {}), for: opts.for, by: byOf(opts), reason: opts.reason }, (w) => `extended ${w.id} (${w.what}) until ${w.until}`),
  );

program
  .command('cancel')
  .argument('<tenant>')
  .option(...byOption('who cancels'))
  .requiredOption('--reason <text>', 'why (recorded on the cancel request)')
  .option(...DRY_RUN_OPTION)
  .description('cancel; before cutover the source is put back as it was and started again')
  .action(async (tenant: string, opts: { by?: string; reason: string; dryRun?: boolean }) => {
    const cfg = temporalConfig();
    const identity = clientIdentity(byOf(opts));
    const client = await connectClient(cfg.address, cfg.namespace, identity);
    const workflowId = migrationIdOf(tenant, opts);
    try {
      // Described first: a closed migration is said to be so, and nothing is sent to it.
      let run;
      try {
        run = await client.workflow.getHandle(workflowId).describe();
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw new Error(`no ${opts.dryRun ? 'dry-run' : 'live'} migration of tenant ${tenant} (${workflowId}) on ${cfg.address}, namespace ${cfg.namespace}`);
        throw err;
      }
      if (run.status.name !== 'RUNNING') {
        throw new Error(`${workflowId} (run ${run.runId}) is already closed: ${run.status.name.toLowerCase()} at ${run.closeTime?.toISOString() ?? 'an unknown time'}; nothing sent`);
      }
      // The handle's cancel() carries no reason: the service call records who and why on the event.
      await client.workflowService.requestCancelWorkflowExecution({
        namespace: cfg.namespace,
        workflowExecution: { workflowId, runId: run.runId },
        identity,
        requestId: randomUUID(),
        reason: opts.reason,
      });
      // Only a live run has something to undo; a dry run just stops.
      const watch = opts.dryRun ? `\`status ${tenant} --dry-run\` shows where it stopped` : `\`status ${tenant}\` shows the compensation`;
      console.log(`cancel requested for ${workflowId} (run ${run.runId}) by ${byOf(opts)}; ${watch}`);
    } finally {
      await client.connection.close();
    }
  });

program
  .command('list')
  .option('--tenant <tenant>', "only this tenant's migrations")
  .option('--phase <phase>', `only those in this phase: ${PHASE_VALUES.join(', ')}`)
  .option('--running', 'only running ones')
  .option('--json', 'print them as JSON')
  .description("the migrations the server knows, newest first: tenant, mode, phase, state (the server's visibility lags a second or so)")
  .action(async (opts: { tenant?: string; phase?: string; running?: boolean; json?: boolean }) => {
    const cfg = temporalConfig();
    const client = await connectClient(cfg.address, cfg.namespace);
    try {
      const rows = await listMigrations(client, opts);
      console.log(opts.json ? JSON.stringify(rows, null, 2) : renderMigrations(rows));
    } finally {
      await client.connection.close();
    }
  });

program
  .command('history')
  .argument('<tenant>')
  .option(...DRY_RUN_OPTION)
  .option('--json', 'the timeline as JSON (whole recorded outputs)')
  .description('the audit timeline from the workflow histories: every command with host, exit code and output; every operator action with who, when and why')
  .action(async (tenant: string, opts: { dryRun?: boolean; json?: boolean }) => {
    const cfg = temporalConfig();
    const client = await connectClient(cfg.address, cfg.namespace);
    try {
      const timeline = auditTimeline(await fetchMigrationHistories(client, migrationIdOf(tenant, opts), cfg.address));
      console.log(opts.json ? JSON.stringify(timeline, null, 2) : renderAudit(timeline));
    } finally {
      await client.connection.close();
    }
  });

program
  .command('report')
  .argument('<tenant>')
  .option(...DRY_RUN_OPTION)
  .option('--json', 'the report as JSON instead of Markdown')
  .option('-o, --out <file>', 'write it to a file instead')
  .description('the migration report from the workflow histories: final status matrix, downtime, data moved and verified, waits, approvals, skipped steps')
  .action(async (tenant: string, opts: { dryRun?: boolean; json?: boolean; out?: string }) => {
    const cfg = temporalConfig();
    const client = await connectClient(cfg.address, cfg.namespace);
    try {
      const report = auditReport(await fetchMigrationHistories(client, migrationIdOf(tenant, opts), cfg.address));
      const text = opts.json ? JSON.stringify(report, null, 2) + '\n' : renderReportMarkdown(report);
      if (opts.out) writeFileSync(opts.out, text);
      else process.stdout.write(text);
    } finally {
      await client.connection.close();
    }
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
      // Commander prints its own usage errors; ours (an unknown gate) are printed here.
      if (err.code.startsWith('gbo-migrate.')) console.error(`error: ${err.message}`);
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
