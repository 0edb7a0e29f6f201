/**
 * Builds the runbook (the step model) from a validated plan: the operations guide, step by step,
 * one module per phase, every argument quoted where the command is built. Pure: imported by the
 * workflow bundle.
 */
import type { ContainerPlan, Plan } from '../plan/schema';
import { context, type Ctx } from './commands';
import { copy } from './copy';
import { certificates } from './certificates';
import { cleanup } from './cleanup';
import { cutover } from './cutover';
import { data, presync } from './data';
import { fixes } from './fixes';
import { PHASES, type Phase, type PhaseId, type Runbook, type Step } from './model';
import { network, networkCompensationSteps } from './network';
import { preflight } from './preflight';
import { proxy } from './proxy';
import { record, stop } from './record-stop';
import { compensationSteps } from './undo';
import { verify } from './verify';

export { OWNER_KEY } from './commands';
export { networkCompensationSteps, restoreUnit } from './network';
export { CONTAINER_CHECK_SCRIPT, LISTING_SCRIPT, MANIFEST_SCRIPT, PATHS_SCRIPT } from './scripts';
export { compensationSteps, type DeviceMap } from './undo';

/** The whole runbook for a plan, phase by phase. Containers in plan order, canaries first. */
export function buildRunbook(plan: Plan): Runbook {
  const ctx = context(plan);
  const ordered = [...plan.containers.filter((c) => c.canary), ...plan.containers.filter((c) => !c.canary)];
  const perContainer = (f: (ctx: Ctx, c: ContainerPlan) => Step[]) => ordered.flatMap((c) => f(ctx, c));
  const byPhase: Record<PhaseId, Step[]> = {
    preflight: preflight(ctx),
    presync: perContainer(presync),
    record: perContainer(record),
    stop: perContainer(stop),
    copy: perContainer(copy),
    data: perContainer(data),
    network: network(ctx),
    proxy: proxy(ctx),
    fixes: fixes(ctx),
    verify: verify(ctx),
    cutover: cutover(ctx),
    certificates: certificates(ctx),
    cleanup: cleanup(ctx),
  };
  const phases: Phase[] = PHASES.map((p) => ({ id: p.id, title: p.title, steps: byPhase[p.id] }));
  return { tenant: plan.tenant, phases, compensation: [...networkCompensationSteps(plan), ...ordered.flatMap((c) => compensationSteps(plan, c.name))] };
}
