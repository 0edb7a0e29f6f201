/**
 * A migration's histories as the Temporal server keeps them: the tenant's run first, then the run of
 * each container's child workflow it started. The audit and the report are rendered from these
 * alone, so they work as well for a migration that closed long ago, failed or was cancelled as for
 * one still running. Nothing here asks the workflow itself (a closed run answers no query).
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';

export type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type Payloads = temporal.api.common.v1.IPayloads | null | undefined;

/** One workflow run's events, as fetchHistory gives them (or a recorded fixture, through historyFromJSON). */
export interface WorkflowRun {
  workflowId: string;
  runId?: string;
  events: HistoryEvent[];
}

export interface MigrationHistories {
  tenant: WorkflowRun;
  /** By container, each child run the tenant's run started; absent when the server no longer has it. */
  children: Map<string, WorkflowRun>;
}

/** A tenant with no migration of that ID (or one the namespace's retention has already dropped). */
export class MigrationNotFoundError extends Error {
  constructor(workflowId: string, namespace: string, address: string) {
    const dryRunHint = workflowId.endsWith('-dry-run') ? '' : '; for a dry run add --dry-run';
    super(`no migration ${workflowId} in namespace ${namespace} on the Temporal server at ${address} (never started, or past the namespace's retention${dryRunHint})`);
    this.name = 'MigrationNotFoundError';
  }
}

/** The first payload of a list, decoded as the SDK encoded it (JSON here: no codec is configured). */
export function decode<T = unknown>(payloads: Payloads): T | undefined {
  const first = payloads?.payloads?.[0];
  return first ? defaultPayloadConverter.fromPayload<T>(first) : undefined;
}

/** Event IDs and seconds are int64: a Long from the server, a number from a JSON fixture; small enough for a number either way. */
export const idOf = (id: unknown): number => Number(String(id ?? 0));

/** A protobuf Timestamp or Duration in ms (the SDK's own helpers expect a Long and fail on a fixture's number). */
export const msOf = (t: { seconds?: unknown; nanos?: number | null } | null | undefined): number => idOf(t?.seconds) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

/** An event's time in ms since the epoch. */
export const timeOf = (e: HistoryEvent): number => msOf(e.eventTime);

/** The children a tenant's run started, by container: `<tenant workflow ID>-<container>` (migrate-tenant.ts `migrateOne`). */
export function childRunsOf(tenant: WorkflowRun): { container: string; workflowId: string; runId?: string }[] {
  const prefix = `${tenant.workflowId}-`;
  return tenant.events.flatMap((e) => {
    const a = e.childWorkflowExecutionStartedEventAttributes;
    const id = a?.workflowExecution?.workflowId;
    if (!id?.startsWith(prefix)) return [];
    return [{ container: id.slice(prefix.length), workflowId: id, ...(a?.workflowExecution?.runId ? { runId: a.workflowExecution.runId } : {}) }];
  });
}

function notFound(err: unknown): boolean {
  const e = err as { name?: string; code?: number; cause?: { code?: number } };
  // gRPC NOT_FOUND (5), as the client reports it directly or wrapped.
  return e?.name === 'WorkflowNotFoundError' || e?.code === 5 || e?.cause?.code === 5;
}

/**
 * Fetches the latest run of `workflowId` and every child run it started. A child the server no
 * longer has is left out (its result, if it completed, is still in the tenant's history).
 */
export async function fetchMigrationHistories(client: Client, workflowId: string, address: string): Promise<MigrationHistories> {
  const namespace = client.options.namespace;
  let tenant: WorkflowRun;
  try {
    const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
    const runId = events[0]?.workflowExecutionStartedEventAttributes?.originalExecutionRunId ?? undefined;
    tenant = { workflowId, ...(runId ? { runId } : {}), events };
  } catch (err) {
    if (notFound(err)) throw new MigrationNotFoundError(workflowId, namespace, address);
    throw new Error(`fetching the history of ${workflowId} from ${address} (namespace ${namespace}): ${(err as Error).message}`);
  }
  const children = new Map<string, WorkflowRun>();
  for (const c of childRunsOf(tenant)) {
    try {
      const history = await client.workflow.getHandle(c.workflowId, c.runId).fetchHistory();
      children.set(c.container, { workflowId: c.workflowId, ...(c.runId ? { runId: c.runId } : {}), events: history.events ?? [] });
    } catch (err) {
      if (!notFound(err)) throw new Error(`fetching the history of ${c.workflowId} from ${address} (namespace ${namespace}): ${(err as Error).message}`);
    }
  }
  return { tenant, children };
}
