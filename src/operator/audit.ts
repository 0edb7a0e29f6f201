/**
 * The audit timeline of a migration, from its histories alone: every step that ran (where, the
 * exact command, exit code, duration, attempts, output), every operator action (approve, retry,
 * skip, pause, resume, reverify, wake, extend, cancel) with who, when and why, the timers its waits
 * set, the children's starts and ends, and how the run ended.
 *
 * Retries of an activity are not events: the history keeps the attempt count and the last failed
 * attempt's failure on the attempt that followed it, and that is all this can show of them.
 */
import type { HostTarget } from '../activities/executor';
import type { StepInput, StepOutcome } from '../activities/steps';
import { hostCommand } from '../runbook/shell';
import type { MigrateContainerResult } from '../workflows/migrate-container';
import { childRunsOf, decode, idOf, msOf, timeOf, type HistoryEvent, type MigrationHistories, type WorkflowRun } from './migration-history';

export type StepStatus = StepOutcome['status'] | 'failed' | 'timed-out' | 'cancelled' | 'running';

export interface StepRecord {
  kind: 'step';
  at: string;
  workflowId: string;
  /** The container's child that ran it; absent for the tenant's own steps. */
  container?: string;
  stepId: string;
  title?: string;
  activity?: string;
  /** The step's host role: source, destination or worker. */
  host: string;
  /** Where that role was reached: user@address:port (the address preflight pinned). */
  target?: string;
  /** Exactly as run (placeholders filled) when the step ended with an outcome; else the step's command. */
  command: string;
  status: StepStatus;
  exitCode?: number;
  ok?: boolean;
  /** The command's own time (last attempt), from its outcome. */
  durationMs?: number;
  /** Scheduled → closed: all attempts and the waits between them. */
  elapsedMs?: number;
  /** Undefined when only the child's result is left (its own history is gone). */
  attempts?: number;
  /** What made the attempt before the last fail (the only retry the history keeps). */
  lastRetryFailure?: string;
  failure?: string;
  /** Trimmed and redacted by the worker before it entered history. */
  output?: string;
  captured?: { key: string; value: string };
  retryAt?: string;
  afterSkipped?: string[];
  /** The step's parameters (service, port, probe, ...): what the report needs of a probe. */
  params?: Record<string, unknown>;
}

export interface OperatorAction {
  kind: 'operator';
  at: string;
  workflowId: string;
  /** The update's name: approve, retryStep, skipStep, pause, resume, reverify, wake, extend. */
  action: string;
  by?: string;
  reason?: string;
  args: Record<string, unknown>;
  /** The client's identity as the server recorded it (user@host of the CLI by default). */
  identity?: string;
  outcome: 'ok' | 'refused' | 'pending';
  answer?: unknown;
  error?: string;
}

export interface CancelRequest {
  kind: 'cancel';
  at: string;
  workflowId: string;
  container?: string;
  identity?: string;
  cause?: string;
}

export interface TimerRecord {
  kind: 'timer';
  at: string;
  workflowId: string;
  container?: string;
  timerId: string;
  plannedMs?: number;
  /** What the timer is for, when the workflow labelled it. */
  summary?: string;
  end: 'fired' | 'canceled' | 'open';
  endedAt?: string;
}

export interface RunEvent {
  kind: 'run';
  at: string;
  workflowId: string;
  container?: string;
  event: 'started' | 'completed' | 'failed' | 'canceled' | 'terminated' | 'timed-out' | 'continued-as-new';
  identity?: string;
  detail?: string;
}

export type AuditEntry = StepRecord | OperatorAction | CancelRequest | TimerRecord | RunEvent;

export interface AuditTimeline {
  workflowId: string;
  runId?: string;
  tenant: string;
  mode?: string;
  status: 'running' | RunEvent['event'];
  startedAt: string;
  closedAt?: string;
  entries: AuditEntry[];
  /** Containers whose child history the server no longer has: a completed one's steps come from its result, without attempts. */
  childrenWithoutHistory: string[];
}

const iso = (ms: number) => new Date(ms).toISOString();

/** A failure's message with its causes, one line each. */
function failureText(f: { message?: string | null; cause?: unknown } | null | undefined): string | undefined {
  const parts: string[] = [];
  for (let c = f as { message?: string | null; cause?: unknown } | null | undefined; c; c = c.cause as typeof c) if (c.message && !parts.includes(c.message)) parts.push(c.message);
  return parts.length ? parts.join('\n  caused by: ') : undefined;
}

/**
 * A step's command as its activity builds it from the recorded input (placeholders filled, sudo
 * applied), for an attempt that ended without an outcome to say it. Worker-side steps (probes from
 * the worker, waits) keep their description.
 */
function builtCommand(input: StepInput): string {
  const { step } = input;
  if (step.host === 'worker') return step.command;
  try {
    return hostCommand(step.command, input.values ?? {}, step.sudo);
  } catch {
    return step.command;
  }
}

function targetOf(input: StepInput | undefined, host: string): string | undefined {
  const t: HostTarget | undefined = (input?.hosts as Record<string, HostTarget> | undefined)?.[host];
  return t ? `${t.user}@${t.address}:${t.port}` : undefined;
}

/** The activities of one run, each with its attempts and how it ended. */
function stepsOf(run: WorkflowRun, container: string | undefined): StepRecord[] {
  const byScheduled = new Map<number, StepRecord>();
  for (const e of run.events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      const input = decode<StepInput>(s.input);
      const step = input?.step;
      byScheduled.set(idOf(e.eventId), {
        kind: 'step',
        at: iso(timeOf(e)),
        workflowId: run.workflowId,
        ...(container ? { container } : {}),
        stepId: step?.id ?? `activity ${s.activityId}`,
        ...(step?.title ? { title: step.title } : {}),
        activity: s.activityType?.name ?? '?',
        host: step?.host ?? '?',
        ...(input ? { target: targetOf(input, step?.host ?? '') } : {}),
        command: input ? builtCommand(input) : '',
        status: 'running',
        ...(step?.params ? { params: step.params } : {}),
      });
      continue;
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const r = byScheduled.get(idOf(started.scheduledEventId));
      if (!r) continue;
      r.attempts = started.attempt ?? 1;
      const last = failureText(started.lastFailure);
      if (last) r.lastRetryFailure = last;
      continue;
    }
    const closed = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? e.activityTaskCanceledEventAttributes;
    if (!closed) continue;
    const r = byScheduled.get(idOf(closed.scheduledEventId));
    if (!r) continue;
    r.elapsedMs = timeOf(e) - Date.parse(r.at);
    if (e.activityTaskCompletedEventAttributes) {
      const o = decode<StepOutcome>(e.activityTaskCompletedEventAttributes.result);
      if (o) Object.assign(r, outcomeFields(o));
    } else if (e.activityTaskFailedEventAttributes) {
      r.status = 'failed';
      r.failure = failureText(e.activityTaskFailedEventAttributes.failure) ?? 'failed';
    } else if (e.activityTaskTimedOutEventAttributes) {
      r.status = 'timed-out';
      r.failure = failureText(e.activityTaskTimedOutEventAttributes.failure) ?? 'timed out';
    } else {
      r.status = 'cancelled';
    }
  }
  return [...byScheduled.values()];
}

function outcomeFields(o: StepOutcome): Partial<StepRecord> {
  return {
    status: o.status,
    host: o.host,
    ...(o.command ? { command: o.command } : {}),
    ...(o.exitCode !== undefined ? { exitCode: o.exitCode } : {}),
    ...(o.ok !== undefined ? { ok: o.ok } : {}),
    durationMs: o.durationMs,
    ...(o.output !== undefined ? { output: o.output } : {}),
    ...(o.captured ? { captured: o.captured } : {}),
    ...(o.retryAt ? { retryAt: o.retryAt } : {}),
    ...(o.afterSkipped ? { afterSkipped: o.afterSkipped } : {}),
  };
}

/**
 * A child whose own history is gone: its steps as its result recorded them (no attempts, no
 * failures), each host where the tenant's steps reached it (children connect where preflight pinned).
 */
function stepsFromResult(run: WorkflowRun, container: string, result: MigrateContainerResult, targets: Map<string, string>): StepRecord[] {
  return result.log.outcomes.map((o) => {
    const target = targets.get(o.host);
    return { kind: 'step', at: o.startedAt, workflowId: `${run.workflowId}-${container}`, container, stepId: o.id, command: o.command, ...outcomeFields(o), host: o.host, ...(target ? { target } : {}), status: o.status };
  });
}

function operatorActions(run: WorkflowRun): OperatorAction[] {
  const byUpdate = new Map<string, OperatorAction>();
  for (const e of run.events) {
    const a = e.workflowExecutionUpdateAcceptedEventAttributes;
    if (a) {
      const name = a.acceptedRequest?.input?.name ?? '?';
      const args = decode<Record<string, unknown>>(a.acceptedRequest?.input?.args) ?? {};
      const action: OperatorAction = {
        kind: 'operator',
        at: iso(timeOf(e)),
        workflowId: run.workflowId,
        action: name,
        ...(typeof args.by === 'string' ? { by: args.by } : {}),
        ...(typeof args.reason === 'string' ? { reason: args.reason } : {}),
        args,
        ...(a.acceptedRequest?.meta?.identity ? { identity: a.acceptedRequest.meta.identity } : {}),
        outcome: 'pending',
      };
      byUpdate.set(a.acceptedRequest?.meta?.updateId ?? a.protocolInstanceId ?? String(e.eventId), action);
      continue;
    }
    const c = e.workflowExecutionUpdateCompletedEventAttributes;
    if (!c) continue;
    const action = byUpdate.get(c.meta?.updateId ?? '');
    if (!action) continue;
    if (c.outcome?.failure) {
      action.outcome = 'refused';
      action.error = failureText(c.outcome.failure) ?? 'failed';
    } else {
      action.outcome = 'ok';
      const answer = decode(c.outcome?.success);
      if (answer !== undefined) action.answer = answer;
    }
  }
  return [...byUpdate.values()];
}

function timers(run: WorkflowRun, container: string | undefined): TimerRecord[] {
  const byId = new Map<string, TimerRecord>();
  for (const e of run.events) {
    const s = e.timerStartedEventAttributes;
    if (s?.timerId) {
      const summary = decode<string>(e.userMetadata?.summary ? { payloads: [e.userMetadata.summary] } : undefined);
      const planned = s.startToFireTimeout ? msOf(s.startToFireTimeout) : undefined;
      byId.set(s.timerId, { kind: 'timer', at: iso(timeOf(e)), workflowId: run.workflowId, ...(container ? { container } : {}), timerId: s.timerId, ...(planned !== undefined ? { plannedMs: planned } : {}), ...(summary ? { summary } : {}), end: 'open' });
      continue;
    }
    const end = e.timerFiredEventAttributes ?? e.timerCanceledEventAttributes;
    const t = end?.timerId ? byId.get(end.timerId) : undefined;
    if (!t) continue;
    t.end = e.timerFiredEventAttributes ? 'fired' : 'canceled';
    t.endedAt = iso(timeOf(e));
  }
  return [...byId.values()];
}

/** The run's start, its close, cancel requests, and its children's ends as the tenant's history records them. */
function lifecycle(run: WorkflowRun, container?: string): (RunEvent | CancelRequest)[] {
  const out: (RunEvent | CancelRequest)[] = [];
  const ev = (e: HistoryEvent, event: RunEvent['event'], extra: Partial<RunEvent> = {}): RunEvent => ({ kind: 'run', at: iso(timeOf(e)), workflowId: run.workflowId, ...(container ? { container } : {}), event, ...extra });
  for (const e of run.events) {
    const started = e.workflowExecutionStartedEventAttributes;
    if (started) out.push(ev(e, 'started', started.identity ? { identity: started.identity } : {}));
    if (e.workflowExecutionCompletedEventAttributes) out.push(ev(e, 'completed'));
    const failed = e.workflowExecutionFailedEventAttributes;
    if (failed) out.push(ev(e, 'failed', { detail: failureText(failed.failure) ?? 'failed' }));
    if (e.workflowExecutionCanceledEventAttributes) out.push(ev(e, 'canceled'));
    const terminated = e.workflowExecutionTerminatedEventAttributes;
    if (terminated) out.push(ev(e, 'terminated', { ...(terminated.identity ? { identity: terminated.identity } : {}), ...(terminated.reason ? { detail: terminated.reason } : {}) }));
    if (e.workflowExecutionTimedOutEventAttributes) out.push(ev(e, 'timed-out'));
    if (e.workflowExecutionContinuedAsNewEventAttributes) out.push(ev(e, 'continued-as-new'));
    const cancel = e.workflowExecutionCancelRequestedEventAttributes;
    if (cancel) out.push({ kind: 'cancel', at: iso(timeOf(e)), workflowId: run.workflowId, ...(container ? { container } : {}), ...(cancel.identity ? { identity: cancel.identity } : {}), ...(cancel.cause ? { cause: cancel.cause } : {}) });
  }
  return out;
}

/** The completed children's results in the tenant's history, by container. */
export function childResults(tenant: WorkflowRun): Map<string, MigrateContainerResult> {
  const out = new Map<string, MigrateContainerResult>();
  for (const e of tenant.events) {
    const r = decode<MigrateContainerResult>(e.childWorkflowExecutionCompletedEventAttributes?.result);
    if (r?.container) out.set(r.container, r);
  }
  return out;
}

/** The input the run was started with: the plan (or its YAML text) and the mode. */
export function startInput(tenant: WorkflowRun): { plan?: { tenant?: string }; mode?: string } {
  const started = tenant.events.find((e) => e.workflowExecutionStartedEventAttributes)?.workflowExecutionStartedEventAttributes;
  return decode<{ plan?: { tenant?: string }; mode?: string }>(started?.input) ?? {};
}

export function auditTimeline(h: MigrationHistories): AuditTimeline {
  const { tenant } = h;
  const own = stepsOf(tenant, undefined);
  const targets = new Map(own.flatMap((s) => (s.target ? [[s.host, s.target] as const] : [])));
  const entries: AuditEntry[] = [...own, ...operatorActions(tenant), ...timers(tenant, undefined), ...lifecycle(tenant)];
  const results = childResults(tenant);
  const childrenWithoutHistory: string[] = [];
  for (const { container } of childRunsOf(tenant)) {
    const run = h.children.get(container);
    const result = results.get(container);
    if (run) {
      entries.push(...stepsOf(run, container), ...timers(run, container), ...lifecycle(run, container));
    } else {
      // Gone from the server: a completed child's steps are still in its result; a failed or cancelled one's are not.
      childrenWithoutHistory.push(container);
      if (result) entries.push(...stepsFromResult(tenant, container, result, targets));
    }
  }
  entries.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const life = lifecycle(tenant).filter((x): x is RunEvent => x.kind === 'run');
  const close = life.find((x) => x.event !== 'started');
  const input = startInput(tenant);
  return {
    workflowId: tenant.workflowId,
    ...(tenant.runId ? { runId: tenant.runId } : {}),
    tenant: input.plan?.tenant ?? tenant.workflowId.replace(/^migrate-/, '').replace(/-dry-run$/, ''),
    ...(input.mode ? { mode: input.mode } : {}),
    status: close?.event ?? 'running',
    startedAt: life[0]?.at ?? iso(timeOf(tenant.events[0] ?? {})),
    ...(close ? { closedAt: close.at } : {}),
    entries,
    childrenWithoutHistory,
  };
}

// ---- text ---------------------------------------------------------------------------------------

const OUTPUT_LINES = 4;
const LINE_CHARS = 200;

const seconds = (ms: number | undefined) => (ms === undefined ? '?' : ms < 1000 ? `${ms}ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : ms < 3_600_000 ? `${(ms / 60_000).toFixed(1)}m` : `${(ms / 3_600_000).toFixed(1)}h`);
const clip = (line: string) => (line.length > LINE_CHARS ? `${line.slice(0, LINE_CHARS)}…` : line);

/** The last few lines of an output (where rsync's totals and a check's verdict are), each clipped. */
function trimmedLines(text: string): string[] {
  const lines = text.split('\n').filter((l) => l.trim());
  const shown = lines.slice(-OUTPUT_LINES).map(clip);
  return lines.length > OUTPUT_LINES ? [`[${lines.length - OUTPUT_LINES} earlier line(s); --json has the recorded output]`, ...shown] : shown;
}

const INDENT = ' '.repeat(27);

function renderStep(s: StepRecord): string[] {
  // Several activities may act for one step (a certificate wait polls, then makes Caddy retry): name any but the plain one.
  const via = s.activity && s.activity !== 'runStep' ? ` (${s.activity})` : '';
  const where = `${s.container ? `[${s.container}] ` : ''}${s.stepId}${via} on ${s.host}${s.target ? ` ${s.target}` : ''}`;
  const facts = [
    s.status,
    s.exitCode !== undefined ? `exit ${s.exitCode}` : undefined,
    s.ok !== undefined ? (s.ok ? 'answered' : 'no answer') : undefined,
    s.durationMs !== undefined ? seconds(s.durationMs) : undefined,
    s.elapsedMs !== undefined && s.durationMs !== undefined && s.elapsedMs - s.durationMs > 1000 ? `${seconds(s.elapsedMs)} with retries` : undefined,
    s.attempts === undefined ? 'attempts not in history' : `attempt${s.attempts > 1 ? 's' : ''} ${s.attempts}`,
  ].filter(Boolean);
  // The command whole, as it ran (a multi-line argument such as a certificate stays indented under it).
  const lines = [`step      ${where}: ${facts.join(', ')}`, `${INDENT}$ ${s.command.split('\n').join(`\n${INDENT}  `)}`];
  if (s.lastRetryFailure) lines.push(`${INDENT}! attempt ${(s.attempts ?? 2) - 1} failed: ${clip(s.lastRetryFailure.split('\n')[0]!)}`);
  if (s.failure) lines.push(...s.failure.split('\n').slice(0, OUTPUT_LINES + 2).map((l) => `${INDENT}! ${clip(l)}`));
  if (s.output) lines.push(...trimmedLines(s.output).map((l) => `${INDENT}| ${l}`));
  if (s.captured) lines.push(`${INDENT}= ${s.captured.key}: ${clip(s.captured.value.split('\n')[0]!)}`);
  if (s.afterSkipped) lines.push(`${INDENT}  already in place, but after skipped ${s.afterSkipped.join(', ')}`);
  return lines;
}

function renderAction(a: OperatorAction): string {
  const args = Object.entries(a.args)
    .filter(([k]) => k !== 'by' && k !== 'reason')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  // wake and extend answer with the wait they acted on: which one, when no --wait named it.
  const wait = a.answer as { id?: string; what?: string; until?: string } | undefined;
  const acted = a.outcome === 'ok' && wait?.id && wait.what ? `, wait ${wait.id} (${wait.what})${a.action === 'extend' && wait.until ? ` now until ${wait.until}` : ''}` : '';
  const answer = a.outcome === 'refused' ? `refused: ${a.error}` : a.outcome === 'pending' ? 'accepted, not completed yet' : `ok${acted}`;
  return `${a.action.padEnd(9)} ${args ? `${args} ` : ''}by ${a.by ?? '?'}${a.reason ? `: "${a.reason}"` : ''} (client ${a.identity ?? '?'}): ${answer}`;
}

function renderEntry(e: AuditEntry): string[] {
  switch (e.kind) {
    case 'step':
      return renderStep(e);
    case 'operator':
      return [renderAction(e)];
    case 'cancel':
      return [`cancel    ${e.container ? `[${e.container}] ` : ''}requested by ${e.identity ?? '?'}${e.cause ? `: "${e.cause}"` : ''}`];
    case 'timer': {
      const end = e.end === 'open' ? 'still running' : `${e.end} after ${seconds(Date.parse(e.endedAt!) - Date.parse(e.at))}`;
      return [`timer     ${e.container ? `[${e.container}] ` : ''}${e.summary ? `"${e.summary}" ` : ''}${seconds(e.plannedMs)} (timer ${e.timerId}): ${end}`];
    }
    case 'run':
      return [`${e.container ? `child     [${e.container}] ${e.workflowId}` : `run       ${e.workflowId}`} ${e.event}${e.identity ? ` by ${e.identity}` : ''}${e.detail ? `: ${e.detail.split('\n').slice(0, OUTPUT_LINES).map(clip).join(`\n${INDENT}`)}` : ''}`];
  }
}

export function renderAudit(t: AuditTimeline): string {
  const head = [
    `${t.workflowId}${t.runId ? ` (run ${t.runId})` : ''}: ${t.mode ?? ''} migration of tenant ${t.tenant}, ${t.status}`,
    `started ${t.startedAt}${t.closedAt ? `, closed ${t.closedAt}` : ''}`,
    ...(t.childrenWithoutHistory.length ? [`no own history on the server for ${t.childrenWithoutHistory.join(', ')}: the steps of those that completed are shown from their results (no attempts or failures)`] : []),
    '',
  ];
  const body = t.entries.flatMap((e) => {
    const [first = '', ...rest] = renderEntry(e);
    return [`${e.at}  ${first}`, ...rest];
  });
  return [...head, ...body].join('\n');
}
