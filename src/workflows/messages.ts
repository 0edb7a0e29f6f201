/**
 * Operator messages, defined once and imported by the workflow and the client alike.
 * Updates answer (and validate), the query reports progress, signals fire and forget.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { GateName, PhaseId } from '../runbook/model';

export const TASK_QUEUE = 'gbo-migrate';

/** Search attributes that make migrations findable in the Web UI (registered by the dev-server script). */
export const TENANT_ATTR = defineSearchAttributeKey('GboTenant', SearchAttributeType.KEYWORD);
export const PHASE_ATTR = defineSearchAttributeKey('GboPhase', SearchAttributeType.KEYWORD);

/** Workflow IDs are business IDs: one migration per tenant at a time; dry runs never block a live one. */
export const workflowIdOf = (tenant: string, mode: 'dry-run' | 'live' = 'live'): string =>
  mode === 'live' ? `migrate-${tenant}` : `migrate-${tenant}-dry-run`;

export type StepState = 'pending' | 'running' | 'recorded' | 'done' | 'already-done' | 'skipped' | 'failed';

export interface MigrationStatus {
  tenant: string;
  mode: 'dry-run' | 'live';
  phase: PhaseId | 'done';
  paused: boolean;
  /** What the migration waits for right now, if anything. */
  waitingFor?: string;
  steps: Record<string, StepState>;
  containers: Record<string, { phase: PhaseId | 'done' | 'pending'; ip?: string }>;
  approvals: Approval[];
}

export interface Approval {
  gate: GateName;
  by: string;
  reason: string;
  at: string;
}

export const statusQuery = defineQuery<MigrationStatus>('status');
export const approveUpdate = defineUpdate<Approval, [{ gate: GateName; by: string; reason: string }]>('approve');
export const pauseSignal = defineSignal<[{ by: string; reason?: string }]>('pause');
export const resumeSignal = defineSignal<[{ by: string }]>('resume');
