/**
 * migrateTenant: the operations guide as a durable workflow. Reads like the runbook: preflight,
 * the containers (a child workflow each, bounded parallelism, canaries first), network, proxy,
 * fixes, verification, the cutover gate and DNS, certificates, the cleanup gate and cleanup.
 * Cancelled before cutover, it puts the source back as it was.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  executeChild,
  isCancellation,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Mode, StepOutcome } from '../activities/steps';
import type { Plan } from '../plan/schema';
import { buildRunbook, networkCompensationSteps } from '../runbook/build';
import { allSteps, phaseSteps, type GateName, type PhaseId, type Step } from '../runbook/model';
import {
  approveUpdate,
  PHASE_ATTR,
  pauseUpdate,
  resumeUpdate,
  retryStepUpdate,
  skipStepUpdate,
  statusQuery,
  TENANT_ATTR,
  valuesQuery,
  type Approval,
  type Decision,
  type MatrixEntry,
  type MigrationStatus,
} from './messages';
import { compensate, migrateContainer } from './migrate-container';
import { hostTargets, newStepLog, runSteps, STEP_FAILED, waitFor, type RunContext, type SkippedStep } from './run-steps';

export interface MigrateTenantInput {
  /** A validated plan (the client validates before starting; the workflow trusts its shape). */
  plan: Plan;
  mode: Mode;
  /** `wait` (default): a failed step waits for an operator's retry or skip; `fail`: the run fails. */
  onFailure?: 'wait' | 'fail';
}

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

export async function migrateTenant(input: MigrateTenantInput): Promise<MigrationReport> {
  const { plan, mode } = input;
  const runbook = buildRunbook(plan);
  const known = new Set(allSteps(runbook).map((s) => s.id));
  const log = newStepLog({ 'stamp:run': stampOf(workflowInfo().startTime) });
  const approvals: Approval[] = [];
  const decisions = new Map<string, Decision>();
  const byPhase = new Map<PhaseId, StepOutcome[]>();
  const matrix: MatrixEntry[] = [];
  let phase: MigrationStatus['phase'] = 'preflight';
  let paused = false;
  let waitingFor: string | undefined;
  let servicesAnsweringAt: number | undefined;
  /** The gate the migration waits at right now: approvals are only taken there. */
  let atGate: GateName | undefined;
  const containers: MigrationStatus['containers'] = Object.fromEntries(plan.containers.map((c) => [c.name, { phase: 'pending' as const }]));
  const setWaiting = (w: string | undefined) => void (waitingFor = w);

  const firstStop = (): number | undefined => {
    const stops = Object.entries(log.values).filter(([k]) => k.startsWith('stoppedAt:')).map(([, v]) => Date.parse(v));
    return stops.length ? Math.min(...stops) : undefined;
  };
  const downtime = (): number | undefined => {
    const from = firstStop();
    return from === undefined ? undefined : (servicesAnsweringAt ?? Date.now()) - from;
  };
  const redCells = () => matrix.filter((m) => m.required && !m.ok);

  setHandler(statusQuery, () => ({
    tenant: plan.tenant,
    mode,
    phase,
    paused,
    waitingFor,
    steps: { ...log.states },
    failures: { ...log.failures },
    skipped: [...log.skipped],
    pauses: [...log.pauses],
    containers,
    matrix,
    approvals,
    downtimeMs: downtime(),
    downtimeOver: servicesAnsweringAt !== undefined,
  }));
  setHandler(valuesQuery, () => ({ ...log.values }));
  setHandler(
    approveUpdate,
    ({ gate, by, reason, override }) => {
      const approval: Approval = { gate, by, reason, at: new Date().toISOString(), ...(override ? { override: true } : {}) };
      approvals.push(approval);
      return approval;
    },
    {
      validator: ({ gate, by, reason, override }) => {
        if (gate !== 'cutover' && gate !== 'cleanup') throw new Error(`gate: expected "cutover" or "cleanup", got ${JSON.stringify(gate)}`);
        if (!by?.trim()) throw new Error('by: who approves is required');
        if (!reason?.trim()) throw new Error('reason: a reason is required');
        if (approvals.some((a) => a.gate === gate)) throw new Error(`gate "${gate}" is already approved`);
        if (atGate !== gate) throw new Error(`gate "${gate}": the migration is in phase "${phase}", not waiting at the ${gate} gate`);
        if (gate === 'cutover' && redCells().length > 0 && !override) {
          throw new Error(`gate "cutover": the verification matrix is red (${redCells().map((m) => `${m.container} ${m.service}${m.port ? ` ${m.port}` : ''}`).join(', ')}); approve with override to cut over anyway`);
        }
      },
    },
  );
  const failedStep = (stepId: string) => {
    if (!known.has(stepId)) throw new Error(`stepId: no step ${JSON.stringify(stepId)} in this migration`);
    if (log.states[stepId] !== 'failed') throw new Error(`stepId: ${stepId} is ${log.states[stepId] ?? 'pending'}, not failed`);
  };
  setHandler(
    retryStepUpdate,
    ({ stepId, by }) => {
      decisions.set(stepId, { action: 'retry', by });
      return `retrying ${stepId}`;
    },
    {
      validator: ({ stepId, by }) => {
        failedStep(stepId);
        if (!by?.trim()) throw new Error('by: who decides is required');
      },
    },
  );
  setHandler(
    skipStepUpdate,
    ({ stepId, by, reason }) => {
      decisions.set(stepId, { action: 'skip', by, reason });
      return `skipping ${stepId}`;
    },
    {
      validator: ({ stepId, by, reason }) => {
        failedStep(stepId);
        if (!by?.trim()) throw new Error('by: who decides is required');
        if (!reason?.trim()) throw new Error('reason: skipping a step needs a reason; it is recorded');
      },
    },
  );
  setHandler(
    pauseUpdate,
    ({ by, reason }) => {
      paused = true;
      log.pauses.push({ by, reason, at: new Date().toISOString() });
      return `paused by ${by}`;
    },
    {
      validator: ({ by, reason }) => {
        if (paused) throw new Error('the migration is already paused');
        if (!by?.trim()) throw new Error('by: who pauses is required');
        if (!reason?.trim()) throw new Error('reason: a reason is required');
      },
    },
  );
  setHandler(
    resumeUpdate,
    ({ by }) => {
      paused = false;
      return `resumed by ${by}`;
    },
    {
      validator: ({ by }) => {
        if (!paused) throw new Error('the migration is not paused');
        if (!by?.trim()) throw new Error('by: who resumes is required');
      },
    },
  );

  const whilePaused = async () => {
    if (paused) await waitFor('resume (paused by an operator)', setWaiting, () => !paused);
  };
  const decide = async (stepId: string): Promise<Decision> => {
    await waitFor(`an operator: retryStep or skipStep ${stepId}`, setWaiting, () => decisions.has(stepId));
    const d = decisions.get(stepId)!;
    decisions.delete(stepId);
    return d;
  };
  const ctx: RunContext = { mode, hosts: hostTargets(plan), log, onFailure: input.onFailure ?? 'wait', decide, whilePaused };

  const enter = (id: MigrationStatus['phase']) => {
    phase = id;
    upsertSearchAttributes([{ key: PHASE_ATTR, value: id }]);
  };
  const runPhase = async (id: PhaseId, steps: Step[] = phaseSteps(runbook, id)) => {
    enter(id);
    const before = log.outcomes.length;
    await runSteps(steps, ctx);
    byPhase.set(id, [...(byPhase.get(id) ?? []), ...log.outcomes.slice(before)]);
  };
  const gate = async (name: GateName) => {
    if (mode === 'dry-run') {
      approvals.push({ gate: name, by: 'dry-run', reason: 'dry run: gates pass without waiting', at: new Date().toISOString() });
      return;
    }
    // A plan may waive the human gate, never the matrix: a red matrix still needs a recorded override.
    const waived = name === 'cutover' ? !plan.approvals.cutover && redCells().length === 0 : !plan.approvals.cleanup;
    if (waived) {
      approvals.push({ gate: name, by: 'plan', reason: `approvals.${name} is false in the plan`, at: new Date().toISOString() });
      return;
    }
    atGate = name;
    const ok = await waitFor(`approval of the ${name} gate`, setWaiting, () => approvals.some((a) => a.gate === name), plan.approvals.gateTimeout);
    atGate = undefined;
    if (!ok) throw ApplicationFailure.nonRetryable(`no approval for the ${name} gate within ${plan.approvals.gateTimeout}`, 'GateTimeout');
  };

  /** One container's child workflow, re-run on an operator's retry or skip of one of its steps. */
  const migrateOne = async (name: string) => {
    const skip: SkippedStep[] = [];
    for (;;) {
      containers[name] = { phase: 'presync' };
      try {
        const result = await executeChild(migrateContainer, {
          workflowId: `${workflowInfo().workflowId}-${name}`,
          args: [{ plan, container: name, mode, values: log.values, skip }],
        });
        Object.assign(log.states, result.log.states);
        for (const id of Object.keys(result.log.states)) delete log.failures[id];
        Object.assign(log.values, result.log.values);
        log.skipped.push(...result.log.skipped.filter((s) => !log.skipped.some((x) => x.id === s.id)));
        for (const o of result.log.outcomes) {
          const p = o.id.split('/')[0] as PhaseId;
          byPhase.set(p, [...(byPhase.get(p) ?? []), o]);
        }
        containers[name] = { phase: 'done', ip: log.values[`ip:${name}`] };
        return;
      } catch (err) {
        const stepId = failedStepOf(err);
        if (isCancellation(err) || stepId === undefined || ctx.onFailure === 'fail') throw err;
        containers[name] = { phase: 'failed' };
        log.states[stepId] = 'failed';
        log.failures[stepId] = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
        const d = await decide(stepId);
        if (d.action === 'skip') skip.push({ id: stepId, by: d.by, reason: d.reason ?? '' });
      }
    }
  };

  upsertSearchAttributes([{ key: TENANT_ATTR, value: plan.tenant }]);
  try {
    // 1. Preflight
    await runPhase('preflight');

    // 2–4. Containers: canaries alone first, then the rest with bounded parallelism.
    enter('presync');
    for (const c of plan.containers.filter((x) => x.canary)) await migrateOne(c.name);
    await boundedAll(plan.containers.filter((x) => !x.canary).map((x) => x.name), plan.concurrency.containers, migrateOne);

    // 5–8. Network, reverse proxy, service fixes, verification.
    await runPhase('network');
    await runPhase('proxy');
    await runPhase('fixes');
    await runPhase('verify');
    if (mode === 'live') {
      matrix.push(...matrixOf(phaseSteps(runbook, 'verify'), byPhase.get('verify') ?? []));
      if (redCells().length === 0) servicesAnsweringAt = Date.now();
    }

    // 9. Cutover gate, then DNS.
    enter('cutover');
    await gate('cutover');
  } catch (err) {
    if (isCancellation(err) && mode === 'live') {
      enter('compensating');
      await CancellationScope.nonCancellable(() => compensateAll(plan, log, Object.keys(log.states).some((id) => id.startsWith('network/'))));
      enter('compensated');
    }
    throw err;
  }
  await runPhase('cutover', phaseSteps(runbook, 'cutover').filter((s) => s.kind !== 'gate'));

  // 10. Certificates.
  await runPhase('certificates');

  // 11. Verification window, cleanup gate, source cleanup.
  const cleanup = phaseSteps(runbook, 'cleanup');
  await runPhase('cleanup', cleanup.filter((s) => s.kind === 'wait-window'));
  await gate('cleanup');
  await runPhase('cleanup', cleanup.filter((s) => s.kind !== 'wait-window' && s.kind !== 'gate'));

  enter('done');
  return {
    tenant: plan.tenant,
    mode,
    phases: runbook.phases.map((p) => ({ id: p.id, steps: byPhase.get(p.id) ?? [] })),
    approvals,
    skipped: log.skipped,
    matrix,
    downtimeMs: servicesAnsweringAt === undefined ? undefined : downtime(),
    values: log.values,
  };
}

/** In reverse: NAT rules if the network phase began, then the containers whose child finished (a cancelled child undid its own). */
async function compensateAll(plan: Plan, log: ReturnType<typeof newStepLog>, networkTouched: boolean): Promise<void> {
  if (networkTouched) await runSteps(networkCompensationSteps(plan), { mode: 'live', hosts: hostTargets(plan), log, onFailure: 'fail' });
  const finished = plan.containers.filter((c) => log.values[`ip:${c.name}`] !== undefined).reverse();
  for (const c of finished) await compensate(plan, c.name, log);
}

/** The step a failed child names (`StepFailed` details), if any. */
function failedStepOf(err: unknown): string | undefined {
  if (!(err instanceof ChildWorkflowFailure)) return undefined;
  const cause = err.cause;
  if (!(cause instanceof ApplicationFailure) || cause.type !== STEP_FAILED) return undefined;
  return (cause.details?.[0] as { stepId?: string } | undefined)?.stepId;
}

/** The verification matrix from the verify phase's probe outcomes. */
function matrixOf(steps: Step[], outcomes: StepOutcome[]): MatrixEntry[] {
  return steps.map((s) => {
    const o = outcomes.find((x) => x.id === s.id);
    const p = s.params ?? {};
    return {
      container: s.container ?? '',
      service: String(p.service ?? ''),
      ...(typeof p.port === 'number' ? { port: p.port, protocol: String(p.protocol) } : {}),
      ...(typeof p.path === 'string' ? { path: p.path } : {}),
      required: p.required !== false,
      ok: o?.ok === true,
    };
  });
}

/** Runs `f` over `items` with at most `limit` at once; the first failure fails the whole. */
async function boundedAll<T>(items: T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const lanes = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await f(item);
  });
  await Promise.all(lanes);
}
