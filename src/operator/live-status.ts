/**
 * What `status` shows, gathered from the server: the migration's status query, its description
 * and that of each running container child. A step's activity runs in its container's child, so
 * its attempts, last failure and heartbeat progress (rsync's bytes, percent and rate) are in that
 * child's description, not the migration's; the query knows none of them (they are not in the
 * history).
 */
import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { Progress } from '../activities/heartbeat';
import { statusQuery, workflowIdOf, type MigrationStatus } from '../workflows/messages';
import { msOf } from './migration-history';

export interface WorkflowView {
  id: string;
  runId: string;
  /** RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, TIMED_OUT, ... */
  status: string;
  taskQueue: string;
  startTime: string;
  closeTime?: string;
}

/** One activity the server holds as pending: running, or between attempts. */
export interface ActivityView {
  /** The container whose child runs it; absent for the migration's own (tenant-wide) steps. */
  container?: string;
  workflowId: string;
  activityId: string;
  type: string;
  state: 'scheduled' | 'started' | 'cancel-requested' | 'paused' | 'unknown';
  attempt: number;
  lastFailure?: string;
  nextAttemptAt?: string;
  lastHeartbeatAt?: string;
  /** The last heartbeat's details. */
  progress?: Progress;
}

export interface LiveStatus {
  tenant: string;
  mode: 'dry-run' | 'live';
  workflow: WorkflowView;
  /** The status query's answer; absent when it did not answer (then `queryError` says why). */
  status?: MigrationStatus;
  queryError?: string;
  /** The query got no answer in time (no worker polls the task queue, or none can replay the run). */
  queryTimedOut?: true;
  activities: ActivityView[];
  /** When this was gathered (ISO 8601). */
  at: string;
}

export type Gathered = { found: true; live: LiveStatus } | { found: false; workflowId: string };

export interface GatherOptions {
  tenant: string;
  mode: 'dry-run' | 'live';
  /**
   * How long the status query may take. A query needs a worker (of a closed run too): without
   * one the server would hold it until its own timeout, and `status` should say so sooner.
   */
  queryTimeoutMs?: number;
}

const ACTIVITY_STATES: Record<number, ActivityView['state']> = { 1: 'scheduled', 2: 'started', 3: 'cancel-requested', 4: 'paused', 5: 'paused' };

type Timestamp = { seconds?: unknown; nanos?: number | null } | null | undefined;
const isoOf = (ts: Timestamp): string | undefined => (ts?.seconds == null ? undefined : new Date(msOf(ts)).toISOString());

type PendingActivity = NonNullable<WorkflowExecutionDescription['raw']['pendingActivities']>[number];

function activityOf(a: PendingActivity, workflowId: string, container: string | undefined): ActivityView {
  const details = a.heartbeatDetails?.payloads?.[0];
  let progress: Progress | undefined;
  if (details) {
    try {
      progress = defaultPayloadConverter.fromPayload<Progress>(details);
    } catch {
      // A beat from another kind of worker (not JSON): the activity still shows, without progress.
    }
  }
  const nextAttemptAt = isoOf(a.nextAttemptScheduleTime);
  const lastHeartbeatAt = isoOf(a.lastHeartbeatTime);
  return {
    ...(container ? { container } : {}),
    workflowId,
    activityId: a.activityId ?? '',
    type: a.activityType?.name ?? 'activity',
    state: ACTIVITY_STATES[Number(a.state ?? 0)] ?? 'unknown',
    attempt: a.attempt ?? 1,
    ...(a.lastFailure?.message ? { lastFailure: a.lastFailure.message } : {}),
    ...(nextAttemptAt ? { nextAttemptAt } : {}),
    ...(lastHeartbeatAt ? { lastHeartbeatAt } : {}),
    ...(progress ? { progress } : {}),
  };
}

/** The status query, bounded: its answer, or why there is none. */
async function queryStatus(client: Client, workflowId: string, runId: string, timeoutMs: number): Promise<{ status: MigrationStatus } | { queryError: string; queryTimedOut?: true }> {
  const timeout = AbortSignal.timeout(timeoutMs);
  try {
    const status = await client.connection.withAbortSignal(timeout, () => client.workflow.getHandle(workflowId, runId).query(statusQuery));
    return { status };
  } catch (err) {
    if (timeout.aborted) return { queryError: `no answer within ${Math.round(timeoutMs / 1000)} s`, queryTimedOut: true };
    // The client wraps the server's error ("Failed to query Workflow"): the cause says what happened.
    return { queryError: [err as Error, (err as Error).cause as Error | undefined].flatMap((e) => (e?.message ? [e.message] : [])).join(': ') };
  }
}

/**
 * Everything `status` shows of the tenant's migration (`migrate-<tenant>` or its dry run). The
 * description first: it answers without a worker, and says whether the run is over.
 */
export async function gatherStatus(client: Client, options: GatherOptions): Promise<Gathered> {
  const workflowId = workflowIdOf(options.tenant, options.mode);
  let desc: WorkflowExecutionDescription;
  try {
    desc = await client.workflow.getHandle(workflowId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { found: false, workflowId };
    throw new Error(`describing ${workflowId}: ${(err as Error).message}`);
  }
  const running = desc.status.name === 'RUNNING';
  // Children are described only while the run is: a closed run has no pending activities.
  const children = running ? (desc.raw.pendingChildren ?? []).map((c) => c.workflowId ?? '').filter((id) => id.startsWith(`${workflowId}-`)) : [];
  const [query, ...childDescs] = await Promise.all([
    queryStatus(client, workflowId, desc.runId, options.queryTimeoutMs ?? 5000),
    // A child that ended since the parent's description has nothing pending: no error for that.
    ...children.map((id) => client.workflow.getHandle(id).describe().catch(() => undefined)),
  ]);
  const activities = [
    ...(desc.raw.pendingActivities ?? []).map((a) => activityOf(a, workflowId, undefined)),
    ...childDescs.flatMap((d, i) => (d ? (d.raw.pendingActivities ?? []).map((a) => activityOf(a, d.workflowId, children[i]!.slice(workflowId.length + 1))) : [])),
  ];
  const closeTime = desc.closeTime?.toISOString();
  return {
    found: true,
    live: {
      tenant: options.tenant,
      mode: options.mode,
      workflow: { id: workflowId, runId: desc.runId, status: desc.status.name, taskQueue: desc.taskQueue, startTime: desc.startTime.toISOString(), ...(closeTime ? { closeTime } : {}) },
      ...query,
      activities,
      at: new Date().toISOString(),
    },
  };
}
