/**
 * Operator messages, defined once and imported by the workflow and the client alike.
 * Updates answer (and validate), the query reports progress, signals fire and forget.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { GateName, PhaseId } from '../runbook/model';
import type { WaitRecord } from './waits';

export type { WaitAction, WaitRecord } from './waits';

/** Search attributes that make migrations findable in the Web UI (registered by the dev-server script). */
export const TENANT_ATTR = defineSearchAttributeKey('GboTenant', SearchAttributeType.KEYWORD);
export const PHASE_ATTR = defineSearchAttributeKey('GboPhase', SearchAttributeType.KEYWORD);

/** Workflow IDs are business IDs: one migration per tenant at a time; dry runs never block a live one. */
export const workflowIdOf = (tenant: string, mode: 'dry-run' | 'live' = 'live'): string =>
  mode === 'live' ? `migrate-${tenant}` : `migrate-${tenant}-dry-run`;

/**
 * `precondition-skipped`: the step's check found its effect in place, but an earlier step it
 * depends on was skipped by an operator, so nothing proves the effect is whole.
 */
export type StepState = 'pending' | 'running' | 'recorded' | 'done' | 'already-done' | 'precondition-skipped' | 'skipped' | 'failed';

/** A step an operator chose to go on without; the reason is recorded. */
export interface SkippedStep {
  id: string;
  by: string;
  reason: string;
}

/** An undo step of a cancel that failed: what is left, and the command that finishes it by hand. */
export interface UndoFailure {
  id: string;
  host: string;
  error: string;
  byHand: string;
}

/** One container while its child workflow runs: its phase and the step running now. */
export interface ContainerStatus {
  phase: PhaseId | 'done' | 'pending' | 'failed' | 'cancelled';
  step?: string;
  ip?: string;
}

/** One cell of the verification matrix: container × service × port (or a required file). */
export interface MatrixEntry {
  container: string;
  service: string;
  port?: number;
  protocol?: string;
  path?: string;
  /** How the port was probed (tcp, http, dns, udp); `none`: declared as not probed. */
  probe?: string;
  /** Declared as not probed: shown as such, never red. */
  notProbed?: boolean;
  required: boolean;
  ok: boolean;
}

/** A verify-phase probe's cell of the matrix, from its step's parameters and whether it answered. */
export function matrixEntryOf(container: string, params: Record<string, unknown>, ok: boolean): MatrixEntry {
  return {
    container,
    service: String(params.service ?? ''),
    ...(typeof params.port === 'number' ? { port: params.port, protocol: String(params.protocol) } : {}),
    ...(typeof params.path === 'string' ? { path: params.path } : {}),
    ...(typeof params.probe === 'string' ? { probe: params.probe } : {}),
    ...(params.probe === 'none' ? { notProbed: true } : {}),
    required: params.required !== false,
    ok,
  };
}

export interface MigrationStatus {
  tenant: string;
  mode: 'dry-run' | 'live';
  phase: PhaseId | 'done' | 'compensating' | 'compensated' | 'compensation-incomplete';
  paused: boolean;
  /** What the migration waits for right now, if anything. */
  waitingFor?: string;
  /** Every wait (open ones first), with what it waits for, since and until when, and who woke or extended it. */
  waits: WaitRecord[];
  steps: Record<string, StepState>;
  failures: Record<string, string>;
  skipped: SkippedStep[];
  pauses: { by: string; reason: string; at: string }[];
  containers: Record<string, ContainerStatus>;
  /** Every operator decision on a failed step, in order. */
  decisions: (Decision & { stepId: string; at: string })[];
  /** Verification runs asked for at the cutover gate. */
  reverifications: { by: string; reason: string; at: string }[];
  /** Undo steps a cancel could not finish (each with the command to finish it by hand). */
  undoFailures: UndoFailure[];
  matrix: MatrixEntry[];
  approvals: Approval[];
  /** The gate the migration waits at, and what it asks (the dns gate names the records to change). */
  gate?: { name: GateName; title: string };
  /** Source stopped → services answering on the destination; so far if not over yet. */
  downtimeMs?: number;
  downtimeOver: boolean;
}

export interface Approval {
  gate: GateName;
  by: string;
  reason: string;
  /** Cutover despite a red verification matrix, recorded as such. */
  override?: boolean;
  at: string;
}

export interface Decision {
  action: 'retry' | 'skip';
  by: string;
  reason?: string;
}

export const statusQuery = defineQuery<MigrationStatus>('status');
/** What the migration learned (addresses, digests, recorded source configs): for audit and re-runs. */
export const valuesQuery = defineQuery<Record<string, string>>('values');
export const approveUpdate = defineUpdate<Approval, [{ gate: GateName; by: string; reason: string; override?: boolean }]>('approve');
/** Re-run a failed step (after fixing what made it fail). */
export const retryStepUpdate = defineUpdate<string, [{ stepId: string; by: string }]>('retryStep');
/** Go on without a failed step; the reason is required and recorded. */
export const skipStepUpdate = defineUpdate<string, [{ stepId: string; by: string; reason: string }]>('skipStep');
/** Hold the migration before its next step (running steps finish). */
export const pauseUpdate = defineUpdate<string, [{ by: string; reason: string }]>('pause');
export const resumeUpdate = defineUpdate<string, [{ by: string }]>('resume');
/** Run the verification matrix again (after fixing a service by hand); only at the cutover gate. */
export const reverifyUpdate = defineUpdate<string, [{ by: string; reason: string }]>('reverify');

/** End a wait now (DNS, old TTLs, a CA's rate limit, a certificate, the verification window), as if it were over. */
export const wakeUpdate = defineUpdate<WaitRecord, [{ wait?: string; by: string; reason: string }]>('wake');
/** Make a wait (gates included) longer by a duration (`for`: 30m, 2h, 3d) from its current end. */
export const extendUpdate = defineUpdate<WaitRecord, [{ wait?: string; for: string; by: string; reason: string }]>('extend');

/**
 * Between a migration and its container children (not for operators): a child reports each step
 * as it starts and ends, and every value it learns, when it learns it; the parent forwards
 * operator decisions and pauses to the child.
 */
export interface ChildReport {
  container: string;
  /** The step running now; null when none is. */
  current?: string | null;
  states?: Record<string, StepState>;
  values?: Record<string, string>;
  failures?: Record<string, string>;
  skipped?: SkippedStep[];
}
export type ChildControl = { kind: 'decision'; stepId: string; decision: Decision } | { kind: 'pause'; paused: boolean };
export const childReportSignal = defineSignal<[ChildReport]>('childReport');
export const childControlSignal = defineSignal<[ChildControl]>('childControl');
