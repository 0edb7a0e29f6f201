/**
 * migrateTenant: the operations guide as a durable workflow. Reads like the runbook: preflight,
 * the containers (a child workflow each, bounded parallelism, canaries first), network, proxy,
 * fixes, verification, the cutover gate and DNS, certificates, the cleanup gate and cleanup.
 */
import {
  ApplicationFailure,
  condition,
  executeChild,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Mode, StepOutcome } from '../activities/steps';
import type { Plan } from '../plan/schema';
import { buildRunbook } from '../runbook/build';
import { phaseSteps, type GateName, type PhaseId, type Step } from '../runbook/model';
import {
  approveUpdate,
  PHASE_ATTR,
  pauseSignal,
  resumeSignal,
  statusQuery,
  TENANT_ATTR,
  type Approval,
  type MigrationStatus,
} from './messages';
import { migrateContainer } from './migrate-container';
import { hostTargets, newStepLog, runSteps } from './run-steps';

export interface MigrateTenantInput {
  /** A validated plan (the client validates before starting; the workflow trusts its shape). */
  plan: Plan;
  mode: Mode;
}

export interface MigrationReport {
  tenant: string;
  mode: Mode;
  phases: { id: PhaseId; steps: StepOutcome[] }[];
  approvals: Approval[];
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
  const log = newStepLog({ 'stamp:run': stampOf(workflowInfo().startTime) });
  const approvals: Approval[] = [];
  const byPhase = new Map<PhaseId, StepOutcome[]>();
  let phase: PhaseId | 'done' = 'preflight';
  let paused = false;
  let waitingFor: string | undefined;
  const containers: MigrationStatus['containers'] = Object.fromEntries(plan.containers.map((c) => [c.name, { phase: 'pending' as const }]));

  setHandler(statusQuery, () => ({ tenant: plan.tenant, mode, phase, paused, waitingFor, steps: { ...log.states }, containers, approvals }));
  setHandler(
    approveUpdate,
    ({ gate, by, reason }) => {
      const approval = { gate, by, reason, at: new Date().toISOString() };
      approvals.push(approval);
      return approval;
    },
    {
      validator: ({ gate, by, reason }) => {
        if (gate !== 'cutover' && gate !== 'cleanup') throw new Error(`gate: expected "cutover" or "cleanup", got ${JSON.stringify(gate)}`);
        if (!by?.trim()) throw new Error('by: who approves is required');
        if (!reason?.trim()) throw new Error('reason: a reason is required');
        if (approvals.some((a) => a.gate === gate)) throw new Error(`gate "${gate}" is already approved`);
      },
    },
  );
  setHandler(pauseSignal, () => void (paused = true));
  setHandler(resumeSignal, () => void (paused = false));

  const runPhase = async (id: PhaseId, steps: Step[] = phaseSteps(runbook, id)) => {
    phase = id;
    setPhaseAttr(id);
    if (paused) {
      waitingFor = 'resume';
      await condition(() => !paused);
      waitingFor = undefined;
    }
    const before = log.outcomes.length;
    await runSteps(steps, mode, log, hostTargets(plan));
    byPhase.set(id, [...(byPhase.get(id) ?? []), ...log.outcomes.slice(before)]);
  };

  const gate = async (name: GateName) => {
    if (mode === 'dry-run') {
      approvals.push({ gate: name, by: 'dry-run', reason: 'dry run: gates pass without waiting', at: new Date().toISOString() });
      return;
    }
    waitingFor = `approval of ${name}`;
    const approved = await condition(() => approvals.some((a) => a.gate === name), plan.approvals.gateTimeout as `${number}d`);
    waitingFor = undefined;
    if (!approved) throw ApplicationFailure.nonRetryable(`no approval for the ${name} gate within ${plan.approvals.gateTimeout}`, 'GateTimeout');
  };

  setTenantAttr(plan.tenant);

  // 1. Preflight
  await runPhase('preflight');

  // 2–4. Containers: canaries alone first, then the rest with bounded parallelism.
  phase = 'presync';
  setPhaseAttr('presync');
  const canaries = plan.containers.filter((c) => c.canary).map((c) => c.name);
  const rest = plan.containers.filter((c) => !c.canary).map((c) => c.name);
  const migrateOne = async (name: string) => {
    containers[name] = { phase: 'presync' };
    const result = await executeChild(migrateContainer, {
      workflowId: `${workflowInfo().workflowId}-${name}`,
      args: [{ plan, container: name, mode, values: log.values }],
    });
    Object.assign(log.states, result.log.states);
    for (const [k, v] of Object.entries(result.log.values)) log.values[k] = v;
    for (const o of result.log.outcomes) {
      const p = o.id.split('/')[0] as PhaseId;
      byPhase.set(p, [...(byPhase.get(p) ?? []), o]);
    }
    containers[name] = { phase: 'done', ip: log.values[`ip:${name}`] };
  };
  for (const name of canaries) await migrateOne(name);
  await boundedAll(rest, plan.concurrency.containers, migrateOne);

  // 5–8. Network, reverse proxy, service fixes, verification.
  await runPhase('network');
  await runPhase('proxy');
  await runPhase('fixes');
  await runPhase('verify');

  // 9. Cutover gate, then DNS.
  phase = 'cutover';
  setPhaseAttr('cutover');
  await gate('cutover');
  await runPhase('cutover', phaseSteps(runbook, 'cutover').filter((s) => s.kind !== 'gate'));

  // 10. Certificates.
  await runPhase('certificates');

  // 11. Verification window, cleanup gate, source cleanup.
  const cleanupSteps = phaseSteps(runbook, 'cleanup');
  await runPhase('cleanup', cleanupSteps.filter((s) => s.kind === 'wait-window'));
  await gate('cleanup');
  await runPhase('cleanup', cleanupSteps.filter((s) => s.kind !== 'wait-window' && s.kind !== 'gate'));

  phase = 'done';
  setPhaseAttr('done');
  return {
    tenant: plan.tenant,
    mode,
    phases: runbook.phases.map((p) => ({ id: p.id, steps: byPhase.get(p.id) ?? [] })),
    approvals,
    values: log.values,
  };
}

function setTenantAttr(tenant: string): void {
  upsertSearchAttributes([{ key: TENANT_ATTR, value: tenant }]);
}

function setPhaseAttr(phase: PhaseId | 'done'): void {
  upsertSearchAttributes([{ key: PHASE_ATTR, value: phase }]);
}

/** Runs `f` over `items` with at most `limit` at once; the first failure fails the whole. */
async function boundedAll<T>(items: T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const lanes = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await f(item);
  });
  await Promise.all(lanes);
}
