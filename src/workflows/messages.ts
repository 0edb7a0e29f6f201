/**
 * Operator messages, defined once and imported by the workflow and the client alike.
 * Updates answer (and validate), the query reports progress, signals fire and forget.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { GateName, PhaseId } from '../runbook/model';

/** Search attributes that make migrations findable in the Web UI (registered by the dev-server script). */
export const TENANT_ATTR = defineSearchAttributeKey('GboTenant', SearchAttributeType.KEYWORD);
export const PHASE_ATTR = defineSearchAttributeKey('GboPhase', SearchAttributeType.KEYWORD);

/** Workflow IDs are business IDs: one migration per tenant at a time; dry runs never block a live one. */
export const workflowIdOf = (tenant: string, mode: 'dry-run' | 'live' = 'live'): string =>
  mode === 'live' ? `migrate-${tenant}` : `migrate-${tenant}-dry-run`;

export type StepState = 'pending' | 'running' | 'recorded' | 'done' | 'already-done' | 'skipped' | 'failed';

/** One cell of the verification matrix: container × service × port (or a required file). */
export interface MatrixEntry {
  container: string;
  service: string;
  port?: number;
  protocol?: string;
  path?: string;
  required: boolean;
  ok: boolean;
}

export interface MigrationStatus {
  tenant: string;
  mode: 'dry-run' | 'live';
  phase: PhaseId | 'done' | 'compensating' | 'compensated';
  paused: boolean;
  /** What the migration waits for right now, if anything. */
  waitingFor?: string;
  steps: Record<string, StepState>;
  failures: Record<string, string>;
  skipped: { id: string; by: string; reason: string }[];
  pauses: { by: string; reason: string; at: string }[];
  containers: Record<string, { phase: PhaseId | 'done' | 'pending' | 'failed'; ip?: string }>;
  matrix: MatrixEntry[];
  approvals: Approval[];
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
