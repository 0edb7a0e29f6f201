/**
 * Follows a migration's history on the server, the parent and every child run, with long polls:
 * which step each activity runs, when it was scheduled, started (its last attempt) and closed,
 * and with what outcome. The server answers without a worker, so this keeps working while the
 * worker is dead; while the server is down, the polls retry.
 */
import type { Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { setMaxListeners } from 'node:events';
import { sleep, timeout } from './processes';

interface Payload {
  metadata?: Record<string, Uint8Array> | null;
  data?: Uint8Array | null;
}
interface Payloads {
  payloads?: Payload[] | null;
}
type LongLike = number | string | { toString(): string } | null | undefined;
interface Timestamp {
  seconds?: LongLike;
  nanos?: number | null;
}
/** The fields of a history event this module reads (protobufjs objects, loosely typed). */
interface Event {
  eventId?: LongLike;
  eventTime?: Timestamp | null;
  activityTaskScheduledEventAttributes?: { activityId?: string | null; activityType?: { name?: string | null } | null; input?: Payloads | null } | null;
  activityTaskStartedEventAttributes?: { scheduledEventId?: LongLike; attempt?: number | null } | null;
  activityTaskCompletedEventAttributes?: { scheduledEventId?: LongLike; result?: Payloads | null } | null;
  activityTaskFailedEventAttributes?: { scheduledEventId?: LongLike; failure?: { message?: string | null } | null } | null;
  activityTaskTimedOutEventAttributes?: { scheduledEventId?: LongLike; failure?: { message?: string | null } | null } | null;
  activityTaskCanceledEventAttributes?: { scheduledEventId?: LongLike } | null;
  childWorkflowExecutionStartedEventAttributes?: { workflowExecution?: { workflowId?: string | null; runId?: string | null } | null } | null;
  workflowExecutionCompletedEventAttributes?: unknown;
  workflowExecutionFailedEventAttributes?: { failure?: { message?: string | null } | null } | null;
  workflowExecutionTimedOutEventAttributes?: unknown;
  workflowExecutionCanceledEventAttributes?: unknown;
  workflowExecutionTerminatedEventAttributes?: { reason?: string | null } | null;
  workflowExecutionContinuedAsNewEventAttributes?: unknown;
}

export interface StepResult {
  id?: string;
  status?: string;
  output?: string;
  ok?: boolean;
}

export interface ActivityRecord {
  workflowId: string;
  runId: string;
  scheduledEventId: number;
  activityType: string;
  /** The runbook step named by the activity's input. */
  stepId?: string;
  scheduledAt: number;
  /** The last attempt's start (the server writes it when the attempt closes). */
  startedAt?: number;
  /** The attempt that closed the activity; above 1 means earlier attempts failed or timed out. */
  attempt?: number;
  closedAt?: number;
  closed?: 'completed' | 'failed' | 'timed-out' | 'canceled';
  result?: StepResult;
  failure?: string;
}

export interface ExecutionRecord {
  workflowId: string;
  runId: string;
  closed?: 'completed' | 'failed' | 'timed-out' | 'canceled' | 'terminated' | 'continued-as-new';
  closedAt?: number;
  failure?: string;
}

function num(v: LongLike): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : Number(v.toString());
}

export function timeOf(ts: Timestamp | null | undefined): number {
  if (!ts) return 0;
  return num(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);
}

function decode<T>(p: Payloads | null | undefined): T | undefined {
  const first = p?.payloads?.[0];
  if (!first) return undefined;
  try {
    return defaultPayloadConverter.fromPayload<T>(first as Parameters<typeof defaultPayloadConverter.fromPayload>[0]);
  } catch {
    return undefined;
  }
}

export class HistoryWatcher {
  readonly activities = new Map<string, ActivityRecord>();
  readonly executions = new Map<string, ExecutionRecord>();
  /** Event times of every ActivityTaskCompleted, in arrival order. */
  readonly completions: number[] = [];
  /** First time each step was scheduled. */
  readonly firstScheduled = new Map<string, number>();
  /** Poll errors (the server down), counted. */
  pollErrors = 0;
  private stopped = false;
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];

  constructor(
    private readonly connection: Connection,
    private readonly namespace = 'default',
  ) {
    // One long poll per execution (the parent and a child per container) listens on it.
    setMaxListeners(0, this.abort.signal);
  }

  watch(workflowId: string, runId: string): void {
    const key = `${workflowId}/${runId}`;
    if (this.executions.has(key)) return;
    const ex: ExecutionRecord = { workflowId, runId };
    this.executions.set(key, ex);
    this.loops.push(this.follow(ex));
  }

  execution(workflowId: string, runId: string): ExecutionRecord | undefined {
    return this.executions.get(`${workflowId}/${runId}`);
  }

  /** Activities open now (as far as the history shows): scheduled, not closed. */
  open(): ActivityRecord[] {
    return [...this.activities.values()].filter((a) => a.closed === undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await Promise.race([Promise.all(this.loops), timeout(5000)]);
  }

  /** Waits until every watched execution has closed and its history is read to the end. */
  async drain(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const before = this.loops.length;
      await Promise.race([Promise.all(this.loops), timeout(Math.max(0, deadline - Date.now()))]);
      if (this.loops.length === before || Date.now() >= deadline) return;
    }
  }

  private async follow(ex: ExecutionRecord): Promise<void> {
    let token: Uint8Array | undefined;
    let lastId = 0;
    while (!this.stopped) {
      try {
        const res = (await this.connection.withAbortSignal(this.abort.signal, () =>
          this.connection.withDeadline(Date.now() + 30_000, () =>
            this.connection.workflowService.getWorkflowExecutionHistory({
              namespace: this.namespace,
              execution: { workflowId: ex.workflowId, runId: ex.runId },
              maximumPageSize: 1000,
              waitNewEvent: true,
              ...(token ? { nextPageToken: token } : {}),
            }),
          ),
        )) as { history?: { events?: Event[] | null } | null; nextPageToken?: Uint8Array | null };
        for (const e of res.history?.events ?? []) {
          const id = num(e.eventId);
          if (id <= lastId) continue;
          lastId = id;
          this.apply(ex, e);
        }
        token = res.nextPageToken && res.nextPageToken.length > 0 ? res.nextPageToken : undefined;
        if (!token) {
          if (ex.closed) return;
          // No token while open: read again from the start (events already seen are skipped).
          await sleep(200);
        }
      } catch (err) {
        if (this.stopped) return;
        const code = (err as { code?: number }).code;
        // 4 = DEADLINE_EXCEEDED: the long poll just ended; anything else (server down) starts over.
        if (code !== 4) {
          this.pollErrors++;
          token = undefined;
          await sleep(500);
        }
      }
    }
  }

  private apply(ex: ExecutionRecord, e: Event): void {
    const at = timeOf(e.eventTime);
    const key = (scheduledEventId: LongLike) => `${ex.workflowId}/${ex.runId}/${num(scheduledEventId)}`;
    if (e.activityTaskScheduledEventAttributes) {
      const a = e.activityTaskScheduledEventAttributes;
      const input = decode<{ step?: { id?: string } }>(a.input);
      const stepId = input?.step?.id;
      const scheduledEventId = num(e.eventId);
      this.activities.set(key(scheduledEventId), {
        workflowId: ex.workflowId,
        runId: ex.runId,
        scheduledEventId,
        activityType: a.activityType?.name ?? '',
        ...(stepId ? { stepId } : {}),
        scheduledAt: at,
      });
      if (stepId && !this.firstScheduled.has(stepId)) this.firstScheduled.set(stepId, at);
      return;
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const r = this.activities.get(key(started.scheduledEventId));
      if (r) {
        r.startedAt = at;
        r.attempt = started.attempt ?? 1;
      }
      return;
    }
    const close = (scheduledEventId: LongLike, how: NonNullable<ActivityRecord['closed']>, extra: Partial<ActivityRecord>) => {
      const r = this.activities.get(key(scheduledEventId));
      if (!r) return;
      Object.assign(r, { closed: how, closedAt: at, ...extra });
    };
    if (e.activityTaskCompletedEventAttributes) {
      const c = e.activityTaskCompletedEventAttributes;
      const result = decode<StepResult>(c.result);
      close(c.scheduledEventId, 'completed', result ? { result } : {});
      this.completions.push(at);
      return;
    }
    if (e.activityTaskFailedEventAttributes) {
      const f = e.activityTaskFailedEventAttributes;
      close(f.scheduledEventId, 'failed', { failure: f.failure?.message ?? '' });
      return;
    }
    if (e.activityTaskTimedOutEventAttributes) {
      const f = e.activityTaskTimedOutEventAttributes;
      close(f.scheduledEventId, 'timed-out', { failure: f.failure?.message ?? '' });
      return;
    }
    if (e.activityTaskCanceledEventAttributes) {
      close(e.activityTaskCanceledEventAttributes.scheduledEventId, 'canceled', {});
      return;
    }
    const child = e.childWorkflowExecutionStartedEventAttributes?.workflowExecution;
    if (child?.workflowId && child.runId) {
      this.watch(child.workflowId, child.runId);
      return;
    }
    const closed: ExecutionRecord['closed'] | undefined = e.workflowExecutionCompletedEventAttributes
      ? 'completed'
      : e.workflowExecutionFailedEventAttributes
        ? 'failed'
        : e.workflowExecutionTimedOutEventAttributes
          ? 'timed-out'
          : e.workflowExecutionCanceledEventAttributes
            ? 'canceled'
            : e.workflowExecutionTerminatedEventAttributes
              ? 'terminated'
              : e.workflowExecutionContinuedAsNewEventAttributes
                ? 'continued-as-new'
                : undefined;
    if (closed) {
      ex.closed = closed;
      ex.closedAt = at;
      const why = e.workflowExecutionFailedEventAttributes?.failure?.message ?? e.workflowExecutionTerminatedEventAttributes?.reason;
      if (why) ex.failure = why;
    }
  }
}
