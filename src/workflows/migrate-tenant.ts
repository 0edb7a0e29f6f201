/**
 * migrateTenant: the operations guide as a durable workflow. Reads like the runbook: preflight,
 * the containers (a child workflow each, bounded parallelism, canaries first), network, proxy,
 * fixes, verification, the cutover gate and DNS, certificates, the cleanup gate and cleanup.
 * Cancelled before cutover, it puts the source back as it was. What operators see and steer lives
 * in `operator-state.ts`; what a cancel undoes, in `compensation.ts`.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  isCancellation,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Mode, StepOutcome } from '../activities/steps';
import { PlanError } from '../plan/validate';
import { buildRunbook } from '../runbook/build';
import { phaseSteps, type GateName, type PhaseId, type Step } from '../runbook/model';
import { compensate } from './compensation';
import { oneLine } from './details';
import { checkInput, type CheckedInput, type MigrateTenantInput } from './input';
import { matrixEntryOf, TENANT_ATTR, workflowIdOf, type Approval, type MatrixEntry, type SkippedStep } from './messages';
import { migrateContainer } from './migrate-container';
import { MigrationState } from './operator-state';
import { runSteps, STEP_FAILED } from './run-steps';
import { durationMs } from './wait-steps';

export type { MigrateTenantInput } from './input';

/** Failure types of a refused start: nothing ran, and retrying the same input cannot help. */
export const INVALID_INPUT = 'InvalidPlan';
export const WRONG_WORKFLOW_ID = 'WrongWorkflowId';

export interface MigrationReport {
  tenant: string;
  mode: Mode;
  phases: { id: PhaseId; steps: StepOutcome[] }[];
  approvals: Approval[];
  skipped: SkippedStep[];
  matrix: MatrixEntry[];
  /** Source stopped → services answering on the destination. */
  downtimeMs?: number;
  values: Record<string, string>;
}

/** The run's timestamp for backups: `YYYYMMDDHHMM` of the workflow's start, stable across replays. */
function stampOf(date: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${date.getUTCFullYear()}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}`;
}

/**
 * The input checked before anything else. A PlanError thrown in workflow code would fail the
 * workflow task, which Temporal retries forever (the run hangs, nothing says why); a non-retryable
 * ApplicationFailure ends the run at once with the problems in its message and its details.
 */
function admit(input: unknown): CheckedInput {
  let checked: CheckedInput;
  try {
    checked = checkInput(input);
  } catch (err) {
    // Anything else is a bug in the check itself: the failing task waits for a fixed worker.
    if (!(err instanceof PlanError)) throw err;
    throw ApplicationFailure.create({
      type: INVALID_INPUT,
      nonRetryable: true,
      message: `refused before any step: ${err.message}`,
      details: [{ problems: err.problems }],
    });
  }
  // One migration per tenant and mode: the server refuses a second run only under the same ID, so
  // a run under any other ID (a typo in the Web UI's form, a script) would race the real one.
  const expected = workflowIdOf(checked.plan.tenant, checked.mode);
  const actual = workflowInfo().workflowId;
  if (actual !== expected) {
    throw ApplicationFailure.create({
      type: WRONG_WORKFLOW_ID,
      nonRetryable: true,
      message:
        `refused before any step: a ${checked.mode} migration of tenant ${checked.plan.tenant} must run under workflow ID "${expected}", ` +
        `not "${actual}" (one migration per tenant at a time); start it again with workflow ID "${expected}"`,
      details: [{ expected, actual }],
    });
  }
  return checked;
}

export async function migrateTenant(input: MigrateTenantInput): Promise<MigrationReport> {
  const checked = admit(input);
  const { plan, mode } = checked;
  const runbook = buildRunbook(plan);
  const state = new MigrationState(plan, mode, runbook, { 'stamp:run': stampOf(workflowInfo().startTime) });
  state.installHandlers();
  const { log } = state;
  const byPhase = new Map<PhaseId, StepOutcome[]>();
  const ctx = state.runContext(plan, mode, checked.onFailure);

  const runPhase = async (id: PhaseId, steps: Step[] = phaseSteps(runbook, id)) => {
    state.enter(id);
    const before = log.outcomes.length;
    await runSteps(steps, ctx);
    byPhase.set(id, [...(byPhase.get(id) ?? []), ...log.outcomes.slice(before)]);
  };

  /** The verification matrix, from a fresh run of the verify phase's probes. */
  const verify = async () => {
    const before = log.outcomes.length;
    await runPhase('verify');
    if (mode !== 'live') return;
    state.matrix = matrixOf(phaseSteps(runbook, 'verify'), log.outcomes.slice(before));
    if (state.redCells().length === 0) state.servicesAnsweringAt ??= Date.now();
    state.refresh();
  };

  const gate = async (name: GateName, title?: string) => {
    if (mode === 'dry-run') {
      state.approvals.push({ gate: name, by: 'dry-run', reason: 'dry run: gates pass without waiting', at: new Date().toISOString() });
      return;
    }
    // A plan may waive the human gate, never the matrix: a red matrix still needs a recorded override.
    // The dns gate is never waived: only the operator knows the provider's records were changed.
    const waived = name === 'cutover' ? !plan.approvals.cutover && state.redCells().length === 0 : name === 'cleanup' ? !plan.approvals.cleanup : false;
    if (waived) {
      state.approvals.push({ gate: name, by: 'plan', reason: `approvals.${name} is false in the plan`, at: new Date().toISOString() });
      return;
    }
    const approved = () => state.approvals.some((a) => a.gate === name);
    let deadline = Date.now() + durationMs(plan.approvals.gateTimeout);
    state.atGate = name;
    state.gateTitle = title;
    for (;;) {
      const waited = await state.waits.gate(`gate/${name}`, `approval of the ${name} gate${title ? `: ${title}` : ''}`, deadline, () => approved() || state.reverifyPending);
      if (!waited.passed) throw ApplicationFailure.nonRetryable(`no approval for the ${name} gate within ${plan.approvals.gateTimeout} (the plan's approvals.gateTimeout, with any extensions)`, 'GateTimeout');
      if (approved()) break;
      deadline = waited.until;
      // An operator fixed something by hand and asked for the matrix again; the gate sees the new one.
      await verify();
      state.enter('cutover');
      state.reverifyPending = false;
    }
    state.atGate = undefined;
    state.gateTitle = undefined;
    state.refresh();
  };

  /** One container's child: its failures wait inside it for the operator; its progress reaches `state` as it happens. */
  const migrateOne = async (name: string) => {
    await state.whilePaused();
    state.containers[name] = { phase: 'presync' };
    const child = await startChild(migrateContainer, {
      workflowId: `${workflowInfo().workflowId}-${name}`,
      staticSummary: oneLine(`${name}: container of ${plan.tenant}${mode === 'dry-run' ? ' (dry run)' : ''}: pre-sync, record, stop, copy, data`),
      args: [{ plan, container: name, mode, values: valuesOf(name, log.values), onFailure: ctx.onFailure, paused: state.paused }],
    });
    state.children.set(name, child);
    try {
      const result = await child.result();
      state.merge({ container: name, states: result.log.states, values: result.log.values, skipped: result.log.skipped, current: null });
      for (const o of result.log.outcomes) {
        const p = o.id.split('/')[0] as PhaseId;
        byPhase.set(p, [...(byPhase.get(p) ?? []), o]);
      }
      state.containers[name] = { phase: 'done', ip: log.values[`ip:${name}`] };
    } catch (err) {
      state.containers[name] = { ...state.containers[name], phase: isCancellation(err) ? 'cancelled' : 'failed' };
      throw stepFailureOf(err) ?? err;
    } finally {
      state.children.delete(name);
    }
  };

  upsertSearchAttributes([{ key: TENANT_ATTR, value: plan.tenant }]);
  const children: Promise<void>[] = [];
  const tracked = (name: string) => {
    const p = migrateOne(name);
    children.push(p);
    return p;
  };
  try {
    // 1. Preflight
    await runPhase('preflight');

    // 2–4. Containers: canaries alone first, then the rest with bounded parallelism.
    state.enter('presync');
    for (const c of plan.containers.filter((x) => x.canary)) await tracked(c.name);
    await boundedAll(plan.containers.filter((x) => !x.canary).map((x) => x.name), plan.concurrency.containers, tracked);

    // 5–8. Network, reverse proxy, service fixes, verification.
    await runPhase('network');
    await runPhase('proxy');
    await runPhase('fixes');
    await verify();

    // 9. Cutover gate (the matrix can be run again while waiting), then DNS.
    state.enter('cutover');
    await gate('cutover');
  } catch (err) {
    if (isCancellation(err) && mode === 'live') {
      await CancellationScope.nonCancellable(async () => {
        // Children end their running step first (the cancel reaches them too); then one undo from the record.
        await Promise.allSettled(children);
        state.enter('compensating');
        state.undoFailures.push(...(await compensate(plan, log)));
        state.enter(state.undoFailures.length ? 'compensation-incomplete' : 'compensated');
      });
      if (state.undoFailures.length) {
        throw ApplicationFailure.nonRetryable(
          `cancelled, but ${state.undoFailures.length} undo step(s) failed; finish them by hand:\n` +
            state.undoFailures.map((f) => `${f.id} on ${f.host}: ${f.error.split('\n')[0]}\n  $ ${f.byHand}`).join('\n'),
          'CompensationIncomplete',
          state.undoFailures,
        );
      }
    }
    throw err;
  }
  // The rest of the cutover; a gate among its steps (DNS hosted elsewhere: the records changed at
  // the provider) waits for its approval where it stands.
  let pending: Step[] = [];
  for (const s of phaseSteps(runbook, 'cutover').filter((x) => x.gate !== 'cutover')) {
    if (s.kind !== 'gate') {
      pending.push(s);
      continue;
    }
    await runPhase('cutover', pending);
    pending = [];
    state.enter('cutover');
    await gate(s.gate ?? 'cutover', s.title);
  }
  await runPhase('cutover', pending);

  // 10. Certificates. First the proxy's domains no DNS record points here: removed only after the
  // domains gate, and only if there are any (a dry run records every step); their certificate
  // waits are skipped, recorded with the approver and why.
  const certs = phaseSteps(runbook, 'certificates');
  const removal = certs.filter((s) => s.gate === 'domains' && s.kind !== 'gate');
  await runPhase('certificates', certs.filter((s) => s.kind === 'find-dead-domains'));
  const dead = (log.values['dead-domains'] ?? '').split(',').filter(Boolean);
  if (dead.length > 0 || (mode === 'dry-run' && removal.length > 0)) {
    await gate('domains', `remove ${dead.join(', ') || 'the dead domains'} from the proxy config (no DNS record points at ${plan.destination.publicAddress}); then Caddy restarts`);
    await runPhase('certificates', removal);
    const approval = state.approvals.find((a) => a.gate === 'domains')!;
    for (const s of certs.filter((x) => x.kind === 'wait-cert' && dead.includes(String(x.params?.domain)))) {
      log.states[s.id] = 'skipped';
      log.skipped.push({ id: s.id, by: approval.by, reason: `no DNS record points at ${plan.destination.publicAddress}; removed from the proxy config (${approval.reason})` });
    }
  }
  await runPhase('certificates', certs.filter((s) => s.kind !== 'find-dead-domains' && s.gate !== 'domains'));

  // 11. Verification window, cleanup gate, source cleanup.
  const cleanup = phaseSteps(runbook, 'cleanup');
  await runPhase('cleanup', cleanup.filter((s) => s.kind === 'wait-window'));
  await gate('cleanup');
  await runPhase('cleanup', cleanup.filter((s) => s.kind !== 'wait-window' && s.kind !== 'gate'));

  state.enter('done');
  return {
    tenant: plan.tenant,
    mode,
    phases: runbook.phases.map((p) => ({ id: p.id, steps: byPhase.get(p.id) ?? [] })),
    approvals: state.approvals,
    skipped: log.skipped,
    matrix: state.matrix,
    downtimeMs: state.servicesAnsweringAt === undefined ? undefined : state.downtimeMs(),
    values: log.values,
  };
}

/** A child that failed on a step (onFailure `fail`): the step's own failure, not the child's wrapper. */
function stepFailureOf(err: unknown): ApplicationFailure | undefined {
  if (!(err instanceof ChildWorkflowFailure)) return undefined;
  const cause = err.cause;
  return cause instanceof ApplicationFailure && cause.type === STEP_FAILED ? cause : undefined;
}

/** The verification matrix from the verify phase's probe outcomes. */
function matrixOf(steps: Step[], outcomes: StepOutcome[]): MatrixEntry[] {
  return steps.map((s) => matrixEntryOf(s.container ?? '', s.params ?? {}, outcomes.find((x) => x.id === s.id)?.ok === true));
}

/** What a container's child needs of the record: the run's timestamp and that container's own values. */
function valuesOf(container: string, values: Record<string, string>): Record<string, string> {
  // The recorded host addresses too: a child connects where the parent's preflight pinned them.
  return Object.fromEntries(Object.entries(values).filter(([k]) => k === 'stamp:run' || k.startsWith('addr:') || k.endsWith(`:${container}`)));
}

/** Runs `f` over `items` with at most `limit` at once; after the first failure nothing new starts. */
async function boundedAll<T>(items: T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  let failed = false;
  const lanes = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    for (let item = queue.shift(); item !== undefined && !failed; item = queue.shift()) {
      await f(item).catch((err: unknown) => {
        failed = true;
        throw err;
      });
    }
  });
  await Promise.all(lanes);
}
