/**
 * The migration report, from its histories: the final status matrix (the guide's "Final Status"
 * table: container, service, port, status), downtime per container and for the tenant, the data
 * moved and verified, the waits, approvals, operator decisions, skipped steps with their reasons.
 * What the history does not hold is said to be unknown, never guessed.
 */
import { matrixEntryOf, type MatrixEntry, type SkippedStep, type ChildReport, type Approval } from '../workflows/messages';
import type { MigrationReport } from '../workflows/migrate-tenant';
import { auditTimeline, childResults, type AuditTimeline, type OperatorAction, type StepRecord, type TimerRecord } from './audit';
import { decode, timeOf, type MigrationHistories } from './migration-history';

export interface ContainerDowntime {
  container: string;
  /** The source container stopped (`stoppedAt:<container>`, recorded as the stop phase began). */
  stoppedAt?: string;
  /** Its required probes all answered on the destination; or its source was started again by a cancel. */
  backAt?: string;
  back?: 'answering' | 'source-restarted';
  ms?: number;
  /** No service of the container is probed: its downtime is not measured. */
  unprobed?: true;
}

export interface DataMoved {
  container: string;
  /** The source manifest taken after the stop: `files=N sha256=…`. */
  sourceManifest?: string;
  /** Bytes rsync reported on its last progress line, per pull (warm pre-sync, final delta). */
  presyncBytes?: number;
  finalSyncBytes?: number;
  /** The pulled copy against the source manifest (exit 0: identical). */
  transferVerified?: StepRecord['status'] | 'not run';
  /** Inside the container: the checksum check's and the owner check's own summaries. */
  filesCheck?: string;
  ownersCheck?: string;
}

export interface WaitSummary {
  stepId?: string;
  container?: string;
  kind: 'poll' | 'timer';
  what: string;
  startedAt: string;
  endedAt?: string;
  ms?: number;
  attempts?: number;
  end: string;
}

export interface AuditReport {
  workflowId: string;
  runId?: string;
  tenant: string;
  mode?: string;
  status: AuditTimeline['status'];
  startedAt: string;
  closedAt?: string;
  /** `result`: the completed run's own matrix; `probes`: rebuilt from the last verification run; `none`: nothing verified. */
  matrixSource: 'result' | 'probes' | 'none';
  matrix: MatrixEntry[];
  downtime: {
    /** First source stop → every required cell green (the moment the workflow saw it), or so far. */
    tenant: { from?: string; to?: string; ms?: number; over: boolean };
    containers: ContainerDowntime[];
  };
  data: { sourceBytes?: number; destinationFreeBytes?: number; containers: DataMoved[]; notDerivable: string[] };
  waits: WaitSummary[];
  approvals: (Approval & { identity?: string })[];
  decisions: { action: string; stepId?: string; by?: string; reason?: string; at: string; outcome: string }[];
  skipped: SkippedStep[];
  pauses: { action: string; by?: string; reason?: string; at: string }[];
  cancels: { at: string; identity?: string; cause?: string }[];
  failedSteps: { stepId: string; container?: string; at: string; failure: string }[];
  steps: { total: number; byStatus: Record<string, number> };
}

const WAIT_ACTIVITIES = new Set(['checkDns', 'checkDelegation', 'checkCertificate']);

/** Every value the run learned, as the children reported them and the steps captured them. */
function learnedValues(h: MigrationHistories, steps: StepRecord[], result: MigrationReport | undefined): Record<string, string> {
  const values: Record<string, string> = {};
  for (const e of h.tenant.events) {
    const s = e.workflowExecutionSignaledEventAttributes;
    if (s?.signalName === 'childReport') Object.assign(values, decode<ChildReport>(s.input)?.values ?? {});
  }
  for (const r of childResults(h.tenant).values()) Object.assign(values, r.log.values);
  for (const s of steps) if (s.captured) values[s.captured.key] ??= s.captured.value;
  return { ...values, ...(result?.values ?? {}) };
}

/** Verify-phase probe runs in order: a run ends where a probe repeats (a re-verification at the gate starts the next). */
function verificationRuns(steps: StepRecord[]): StepRecord[][] {
  const runs: StepRecord[][] = [];
  let current: StepRecord[] = [];
  for (const s of steps.filter((x) => x.stepId.startsWith('verify/') && x.activity === 'probe' && x.status !== 'running')) {
    if (current.some((x) => x.stepId === s.stepId)) {
      runs.push(current);
      current = [];
    }
    current.push(s);
  }
  if (current.length) runs.push(current);
  return runs;
}

/** The matrix as the workflow builds it, from one run of probes. */
function matrixOf(run: StepRecord[]): MatrixEntry[] {
  return run.map((s) => matrixEntryOf(s.stepId.split('/')[1] ?? '', s.params ?? {}, s.ok === true));
}

const endOf = (s: StepRecord) => Date.parse(s.at) + (s.elapsedMs ?? 0);
const red = (m: MatrixEntry[]) => m.filter((x) => x.required && !x.ok && !x.notProbed);
const iso = (ms: number) => new Date(ms).toISOString();

function downtime(h: MigrationHistories, steps: StepRecord[], values: Record<string, string>, containers: string[]): AuditReport['downtime'] {
  const runs = verificationRuns(steps);
  const perContainer = containers.map((container): ContainerDowntime => {
    const stoppedAt = values[`stoppedAt:${container}`];
    // The first verification run in which all of its required cells answered.
    const green = runs.find((r) => {
      const mine = r.filter((s) => s.stepId.split('/')[1] === container);
      return mine.length > 0 && red(matrixOf(mine)).length === 0;
    });
    const unprobed = !steps.some((s) => s.stepId.startsWith(`verify/${container}/`) && s.activity === 'probe');
    const restarted = steps.find((s) => s.stepId === `undo/${container}/start-source` && (s.status === 'done' || s.status === 'already-done'));
    const backMs = green ? Math.max(...green.filter((s) => s.stepId.split('/')[1] === container).map(endOf)) : restarted ? endOf(restarted) : undefined;
    return {
      container,
      ...(stoppedAt ? { stoppedAt } : {}),
      ...(backMs !== undefined ? { backAt: iso(backMs), back: green ? ('answering' as const) : ('source-restarted' as const) } : {}),
      ...(stoppedAt && backMs !== undefined ? { ms: backMs - Date.parse(stoppedAt) } : {}),
      ...(unprobed ? { unprobed: true as const } : {}),
    };
  });
  const stops = perContainer.flatMap((c) => (c.stoppedAt ? [Date.parse(c.stoppedAt)] : []));
  const greenRun = runs.find((r) => red(matrixOf(r)).length === 0);
  // The workflow takes the time it saw the green matrix: its next workflow task after the run's last probe.
  const last = greenRun ? Math.max(...greenRun.map(endOf)) : undefined;
  const seen = last === undefined ? undefined : h.tenant.events.find((e) => e.workflowTaskStartedEventAttributes && timeOf(e) >= last);
  const to = seen ? timeOf(seen) : last;
  const from = stops.length ? Math.min(...stops) : undefined;
  return {
    tenant: { ...(from !== undefined ? { from: iso(from) } : {}), ...(to !== undefined ? { to: iso(to) } : {}), ...(from !== undefined && to !== undefined ? { ms: to - from } : {}), over: to !== undefined },
    containers: perContainer,
  };
}

/** rsync --info=progress2: the first number of its last progress line is what it transferred. */
export function rsyncBytes(output: string | undefined): number | undefined {
  const lines = (output ?? '').split('\n').filter((l) => /^\s*[\d,]+\s+\d+%/.test(l));
  const m = lines.at(-1)?.match(/^\s*([\d,]+)/);
  return m ? Number(m[1]!.replace(/,/g, '')) : undefined;
}

function dataMoved(steps: StepRecord[], values: Record<string, string>, containers: string[]): DataMoved[] {
  // The last attempt of a step counts (an operator's retry runs it again).
  const last = (id: string) => [...steps].reverse().find((s) => s.stepId === id);
  return containers
    .filter((c) => steps.some((s) => s.stepId === `presync/${c}/rsync` || s.stepId === `data/${c}/final-sync`))
    .map((c) => {
      const presync = last(`presync/${c}/rsync`);
      const final = last(`data/${c}/final-sync`);
      const pre = rsyncBytes(presync?.output);
      const fin = rsyncBytes(final?.output);
      const transfer = last(`data/${c}/verify-transfer`);
      const files = last(`data/${c}/verify`);
      const owners = last(`data/${c}/verify-owners`);
      return {
        container: c,
        ...(values[`digest:${c}`] ? { sourceManifest: values[`digest:${c}`] } : {}),
        ...(pre !== undefined ? { presyncBytes: pre } : {}),
        ...(fin !== undefined ? { finalSyncBytes: fin } : {}),
        transferVerified: transfer?.status ?? 'not run',
        ...(files ? { filesCheck: files.output?.trim() || files.status } : {}),
        ...(owners ? { ownersCheck: owners.output?.trim() || owners.status } : {}),
      };
    });
}

function waits(steps: StepRecord[], timers: TimerRecord[]): WaitSummary[] {
  const polls = steps
    .filter((s) => s.activity !== undefined && WAIT_ACTIVITIES.has(s.activity))
    .map((s): WaitSummary => ({
      stepId: s.stepId,
      kind: 'poll',
      what: s.title ?? s.stepId,
      startedAt: s.at,
      ...(s.elapsedMs !== undefined ? { endedAt: iso(endOf(s)), ms: s.elapsedMs } : {}),
      ...(s.attempts !== undefined ? { attempts: s.attempts } : {}),
      end: s.status === 'cancelled' ? 'cancelled (woken, or past its end)' : s.status === 'running' ? 'still polling' : s.ok === false ? `answered: ${(s.output ?? '').split('\n')[0]}` : s.status,
    }));
  const sleeps = timers.map((t): WaitSummary => ({
    ...(t.container ? { container: t.container } : {}),
    kind: 'timer',
    what: t.summary ?? `timer ${t.timerId} of ${t.plannedMs === undefined ? '?' : `${Math.round(t.plannedMs / 1000)}s`}`,
    startedAt: t.at,
    ...(t.endedAt ? { endedAt: t.endedAt, ms: Date.parse(t.endedAt) - Date.parse(t.at) } : {}),
    end: t.end === 'open' ? 'still running' : t.end === 'fired' ? 'ran its full time' : 'ended early (what it guarded happened, or an operator acted)',
  }));
  return [...polls, ...sleeps].sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt));
}

export function auditReport(h: MigrationHistories, timeline: AuditTimeline = auditTimeline(h)): AuditReport {
  const completed = h.tenant.events.find((e) => e.workflowExecutionCompletedEventAttributes);
  const result = decode<MigrationReport>(completed?.workflowExecutionCompletedEventAttributes?.result);
  const steps = timeline.entries.filter((e): e is StepRecord => e.kind === 'step');
  const actions = timeline.entries.filter((e): e is OperatorAction => e.kind === 'operator');
  const timers = timeline.entries.filter((e): e is TimerRecord => e.kind === 'timer');
  const values = learnedValues(h, steps, result);
  const plan = (decode<{ plan?: { containers?: { name: string }[] } }>(h.tenant.events[0]?.workflowExecutionStartedEventAttributes?.input)?.plan?.containers ?? []).map((c) => c.name);
  const containers = plan.length ? plan : [...new Set(Object.keys(values).filter((k) => k.startsWith('stoppedAt:')).map((k) => k.slice('stoppedAt:'.length)))];
  const runs = verificationRuns(steps);
  const matrix = result?.matrix.length ? result.matrix : runs.length ? matrixOf(runs.at(-1)!) : [];
  const ok = (a: OperatorAction) => a.outcome === 'ok';
  const approvals = new Map<string, AuditReport['approvals'][number]>();
  for (const a of result?.approvals ?? []) approvals.set(a.gate, a);
  for (const a of actions.filter((x) => x.action === 'approve' && ok(x))) {
    const answer = a.answer as Approval | undefined;
    if (answer?.gate) approvals.set(answer.gate, { ...answer, ...(a.identity ? { identity: a.identity } : {}) });
  }
  const skipped = new Map<string, SkippedStep>();
  for (const a of actions.filter((x) => x.action === 'skipStep' && ok(x))) skipped.set(String(a.args.stepId), { id: String(a.args.stepId), by: a.by ?? '?', reason: a.reason ?? '' });
  for (const s of result?.skipped ?? []) skipped.set(s.id, s);
  const byStatus: Record<string, number> = {};
  for (const s of steps) byStatus[s.status] = (byStatus[s.status] ?? 0) + 1;
  const number = (k: string) => (values[k] !== undefined && /^\d+$/.test(values[k]!) ? Number(values[k]) : undefined);
  const sourceBytes = number('bytes:source-data');
  const destinationFreeBytes = number('bytes:destination-free');
  return {
    workflowId: timeline.workflowId,
    ...(timeline.runId ? { runId: timeline.runId } : {}),
    tenant: timeline.tenant,
    ...(timeline.mode ? { mode: timeline.mode } : {}),
    status: timeline.status,
    startedAt: timeline.startedAt,
    ...(timeline.closedAt ? { closedAt: timeline.closedAt } : {}),
    matrixSource: result?.matrix.length ? 'result' : runs.length ? 'probes' : 'none',
    matrix,
    downtime: downtime(h, steps, values, containers),
    data: {
      ...(sourceBytes !== undefined ? { sourceBytes } : {}),
      ...(destinationFreeBytes !== undefined ? { destinationFreeBytes } : {}),
      containers: dataMoved(steps, values, containers),
      notDerivable: [
        'bytes pushed into each container (tar prints nothing; the checks inside the container count files and owners instead)',
        'bytes of each container copy (incus copy prints a rate, not a total)',
      ],
    },
    waits: waits(steps, timers),
    approvals: [...approvals.values()],
    decisions: actions
      .filter((a) => a.action === 'retryStep' || a.action === 'skipStep' || a.action === 'reverify' || a.action === 'wake' || a.action === 'extend')
      .map((a) => ({ action: a.action, ...(typeof a.args.stepId === 'string' ? { stepId: a.args.stepId } : typeof a.args.wait === 'string' ? { stepId: a.args.wait } : {}), ...(a.by ? { by: a.by } : {}), ...(a.reason ? { reason: a.reason } : {}), at: a.at, outcome: a.outcome === 'refused' ? `refused: ${a.error}` : a.outcome })),
    skipped: [...skipped.values()],
    pauses: actions.filter((a) => a.action === 'pause' || a.action === 'resume').map((a) => ({ action: a.action, ...(a.by ? { by: a.by } : {}), ...(a.reason ? { reason: a.reason } : {}), at: a.at })),
    cancels: timeline.entries.flatMap((e) => (e.kind === 'cancel' && !e.container ? [{ at: e.at, ...(e.identity ? { identity: e.identity } : {}), ...(e.cause ? { cause: e.cause } : {}) }] : [])),
    failedSteps: steps.flatMap((s) => (s.failure ? [{ stepId: s.stepId, ...(s.container ? { container: s.container } : {}), at: s.at, failure: s.failure }] : [])),
    steps: { total: steps.length, byStatus },
  };
}

// ---- Markdown -----------------------------------------------------------------------------------

const cell = (v: unknown) => String(v ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
const row = (cells: unknown[]) => `| ${cells.map(cell).join(' | ')} |`;
const table = (head: string[], rows: unknown[][]) => [row(head), `|${head.map(() => '---').join('|')}|`, ...rows.map(row)];
const dur = (ms: number | undefined) => (ms === undefined ? 'unknown' : ms < 1000 ? `${ms} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : ms < 7_200_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 3_600_000).toFixed(1)} h`);
const bytes = (n: number | undefined) => (n === undefined ? 'unknown' : `${n.toLocaleString('en-US')} B`);

function statusCell(m: MatrixEntry): string {
  if (m.notProbed) return '– declared not probed';
  if (m.ok) return '✓ Running';
  return m.required ? '❌ Not answering' : '⚠️ Not answering (optional)';
}

export function renderReportMarkdown(r: AuditReport): string {
  const out: string[] = [
    `# Migration report: ${r.tenant}`,
    '',
    `${r.workflowId}${r.runId ? ` (run ${r.runId})` : ''}, ${r.mode ?? ''} migration, **${r.status}**; started ${r.startedAt}${r.closedAt ? `, closed ${r.closedAt}` : ''}.`,
    `Steps: ${r.steps.total} (${Object.entries(r.steps.byStatus).map(([k, v]) => `${v} ${k}`).join(', ')}).`,
    '',
    '## Final status',
    '',
  ];
  if (r.matrix.length === 0) out.push(r.mode === 'dry-run' ? 'A dry run probes nothing: no matrix.' : 'No verification ran: no matrix.');
  else {
    out.push(r.matrixSource === 'result' ? 'As the completed run recorded it.' : 'Rebuilt from the last verification run in the history (the run did not complete).', '');
    out.push(...table(['Container', 'Service', 'Port', 'Status'], r.matrix.map((m) => [m.container, m.service, m.port !== undefined ? `${m.port}/${m.protocol ?? 'tcp'}` : (m.path ?? '-'), statusCell(m)])));
  }
  const t = r.downtime.tenant;
  out.push('', '## Downtime', '', `Tenant: **${t.ms !== undefined ? dur(t.ms) : 'unknown'}**${t.from ? `, first source stop ${t.from}` : ''}${t.to ? ` → every required service answering ${t.to}` : t.from ? ', not over in this history (no all-green verification)' : ''}.`, '');
  out.push(...table(['Container', 'Source stopped', 'Back', 'Downtime'], r.downtime.containers.map((c) => [c.container, c.stoppedAt ?? 'not stopped', c.backAt ? `${c.backAt} (${c.back === 'answering' ? 'its services answered' : 'source started again'})` : c.unprobed ? 'no service of it is probed: not measured' : c.stoppedAt ? 'not back in this history' : '-', c.ms !== undefined ? dur(c.ms) : '-'])));
  out.push('', '## Data moved and verified', '', `Source data at preflight: ${bytes(r.data.sourceBytes)}; destination free space then: ${bytes(r.data.destinationFreeBytes)}.`, '');
  out.push(...table(['Container', 'Source manifest', 'Warm pull (rsync)', 'Final pull (rsync)', 'Copy vs manifest', 'Files in container', 'Owners in container'], r.data.containers.map((d) => [d.container, d.sourceManifest ?? 'unknown', bytes(d.presyncBytes), bytes(d.finalSyncBytes), d.transferVerified === 'done' ? 'identical' : d.transferVerified, d.filesCheck ?? 'not run', d.ownersCheck ?? 'not run'])));
  out.push('', `Not in the history: ${r.data.notDerivable.join('; ')}.`);
  out.push('', '## Waits', '');
  if (r.waits.length === 0) out.push('None.');
  else out.push(...table(['Wait', 'Kind', 'Started', 'Lasted', 'Attempts', 'End'], r.waits.map((w) => [`${w.container ? `[${w.container}] ` : ''}${w.stepId ? `${w.stepId}: ` : ''}${w.what}`, w.kind, w.startedAt, dur(w.ms), w.attempts ?? '-', w.end])));
  out.push('', '## Approvals', '');
  if (r.approvals.length === 0) out.push('None.');
  else out.push(...table(['Gate', 'By', 'When', 'Reason'], r.approvals.map((a) => [a.gate, `${a.by}${a.identity ? ` (client ${a.identity})` : ''}`, a.at, `${a.reason}${a.override ? ' (override of a red matrix)' : ''}`])));
  out.push('', '## Operator decisions', '');
  const acts = [...r.decisions.map((d) => [d.at, d.action, d.stepId ?? '', d.by ?? '?', d.reason ?? '', d.outcome]), ...r.pauses.map((p) => [p.at, p.action, '', p.by ?? '?', p.reason ?? '', 'ok']), ...r.cancels.map((c) => [c.at, 'cancel', '', c.identity ?? '?', c.cause ?? '', 'requested'])].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  if (acts.length === 0) out.push('None.');
  else out.push(...table(['When', 'Action', 'Step or wait', 'By', 'Reason', 'Outcome'], acts));
  out.push('', '## Skipped steps', '');
  if (r.skipped.length === 0) out.push('None.');
  else out.push(...table(['Step', 'By', 'Reason'], r.skipped.map((s) => [s.id, s.by, s.reason])));
  if (r.failedSteps.length) {
    out.push('', '## Failed attempts', '');
    out.push(...table(['When', 'Step', 'Failure'], r.failedSteps.map((f) => [f.at, `${f.container ? `[${f.container}] ` : ''}${f.stepId}`, f.failure.split('\n').slice(0, 2).join(' ').slice(0, 300)])));
  }
  return out.join('\n') + '\n';
}
