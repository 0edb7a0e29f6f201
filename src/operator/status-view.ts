/**
 * `status` as an operator reads it: what the migration does now, what it waits for and until
 * when, and for everything that needs a decision, the exact command that makes it. Pure: a frame
 * is a function of what was gathered and of the time, so tests render any moment.
 */
import type { Progress } from '../activities/heartbeat';
import { CONTAINER_PHASES, type PhaseId } from '../runbook/model';
import type { MatrixEntry, MigrationStatus, WaitRecord } from '../workflows/messages';
import type { ActivityView, LiveStatus } from './live-status';

// ---- numbers -----------------------------------------------------------------------------------

/**
 * rsync's units are powers of 1024 under the names kB, MB, GB (its `--info=progress2` rate);
 * bytes are shown the same way so that they read against the rate.
 */
const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'] as const;

/** `1.21 GB`, `64.0 MB`, `512 kB`: three significant digits. */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${Math.round(v)} B`;
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${UNITS[u]}`;
}

/** rsync's rate (`64.00MB/s`, `980.12kB/s`, `1.02GB/s`) in bytes per second; undefined if unreadable. */
export function parseRate(rate: string | undefined): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([kMGT]?)B\/s$/.exec(rate ?? '');
  if (!m) return undefined;
  return Number(m[1]) * 1024 ** ' kMGT'.indexOf(m[2] || ' ');
}

/** `64.0 MB/s`. */
export const formatRate = (bytesPerS: number): string => `${formatBytes(bytesPerS)}/s`;

/**
 * Seconds left of a transfer: what remains of the total (bytes over percent) at the current
 * rate. Undefined when it cannot be told: no percent yet, or nothing moving.
 */
export function etaSeconds(p: Pick<Progress, 'bytes' | 'percent' | 'rate'>): number | undefined {
  if (p.percent !== undefined && p.percent >= 100) return 0;
  const rate = parseRate(p.rate);
  if (p.bytes === undefined || !p.percent || !rate) return undefined;
  const total = (p.bytes * 100) / p.percent;
  return Math.max(0, Math.round((total - p.bytes) / rate));
}

/** A clock duration: `0:19`, `12:05`, `1:02:03`. */
export function formatClock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const two = (n: number) => String(n).padStart(2, '0');
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

/** A span for people: `45s`, `3m 12s`, `2h 05m`, `3d 4h`. */
export function formatSpan(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** `[#########-----------]` for 45%. */
export function progressBar(percent: number, width = 20): string {
  const filled = Math.min(width, Math.max(0, Math.floor((percent * width) / 100)));
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

/** `[#########-----------] 45%  1.21 GB  64.0 MB/s  ETA 0:19`: what is known of it. */
export function transferLine(p: Pick<Progress, 'bytes' | 'percent' | 'rate'>): string {
  const rate = parseRate(p.rate);
  const eta = etaSeconds(p);
  return [
    p.percent !== undefined ? `${progressBar(p.percent)} ${p.percent}%` : undefined,
    p.bytes !== undefined ? formatBytes(p.bytes) : undefined,
    rate !== undefined ? formatRate(rate) : p.rate,
    eta !== undefined ? `ETA ${formatClock(eta)}` : undefined,
  ]
    .filter(Boolean)
    .join('  ');
}

// ---- commands ----------------------------------------------------------------------------------

/** The CLI's command for this migration: ` --dry-run` when the status is of the dry run. */
const cmd = (live: Pick<LiveStatus, 'tenant' | 'mode'>, verb: string, rest: string): string =>
  `gbo-migrate ${verb} ${live.tenant}${rest ? ` ${rest}` : ''}${live.mode === 'dry-run' ? ' --dry-run' : ''}`;

/** One open wait, with the commands that steer it (a gate takes `extend`, never `wake`: it needs its approval). */
export function describeWait(live: Pick<LiveStatus, 'tenant' | 'mode'>, w: WaitRecord, now: Date): string {
  const left = Date.parse(w.until) - now.getTime();
  const steer =
    w.kind === 'gate'
      ? `extend with: ${cmd(live, 'extend', `--wait ${w.id} --for <30m|2h|3d> --reason <text>`)}`
      : `cut short with: ${cmd(live, 'wake', `--wait ${w.id} --reason <text>`)}\n  extend with:    ${cmd(live, 'extend', `--wait ${w.id} --for <2h> --reason <text>`)}`;
  const acted = w.actions.map((a) => `${a.action} by ${a.by} at ${a.at} (${a.reason})`).join('; ');
  return [
    `waiting for ${w.what}`,
    `  wait ${w.id}: since ${w.since}, until ${w.until} (${left >= 0 ? `${formatSpan(left)} left` : `${formatSpan(-left)} past its end`})${acted ? `; ${acted}` : ''}`,
    `  ${steer}`,
  ].join('\n');
}

/** A failure's first lines: enough to tell what failed where; `history` has the rest. */
function firstLines(message: string, n = 3): string[] {
  const all = message.split('\n').filter((l) => l.trim());
  const shown = all.slice(0, n).map((l) => (l.length > 200 ? `${l.slice(0, 199)}…` : l));
  return all.length > n ? [...shown, `(${all.length - n} more lines)`] : shown;
}

/**
 * A failed step's message as the activities write it (what failed where, `$ <command>`, maybe
 * several lines, then the output that says why) without the command: long, and `plan` and
 * `history` show it. The message's last line is the output's last, the most telling.
 */
function failureLines(message: string): string[] {
  const lines = message.split('\n').filter((l) => l.trim());
  const command = lines.findIndex((l) => l.startsWith('$ '));
  if (command < 0) return firstLines(message, 4);
  return [...firstLines(lines.slice(0, command).join('\n'), 3), '…', ...firstLines(lines.at(-1) ?? '', 1)];
}

// ---- the frame ---------------------------------------------------------------------------------

const cell = (e: MatrixEntry) => `${e.container}/${e.service}${e.port !== undefined ? `:${e.port}/${e.protocol ?? 'tcp'}` : ''}${e.path ? ` ${e.path}` : ''}${e.required ? '' : ' (optional)'}`;

/**
 * The step an activity runs before its first heartbeat says so: its container's running step, or
 * the migration's own running step (the tenant's steps run one at a time).
 */
function stepOf(a: ActivityView, s: MigrationStatus | undefined): string | undefined {
  if (!s) return undefined;
  if (a.container) return s.containers[a.container]?.step;
  const own = Object.entries(s.steps).filter(([id, state]) => state === 'running' && !CONTAINER_PHASES.includes(id.split('/')[0] as PhaseId));
  return own.length === 1 ? own[0]![0] : undefined;
}

/** One running or retrying activity: step, what it does, for how long, its attempts. */
function activityLines(a: ActivityView, s: MigrationStatus | undefined, now: Date): string[] {
  const p = a.progress;
  const who = a.container ?? 'tenant';
  const head = [`${who}: ${p?.step ?? stepOf(a, s) ?? a.type}`, p?.doing, p?.elapsedS !== undefined ? formatSpan(p.elapsedS * 1000) : undefined, a.attempt > 1 ? `attempt ${a.attempt}` : undefined]
    .filter(Boolean)
    .join(', ');
  const out = [`  ${head}`];
  if (p && (p.bytes !== undefined || p.percent !== undefined)) out.push(`    ${transferLine(p)}`);
  if (p?.waiting) out.push(`    not yet: ${firstLines(p.waiting, 1)[0]}`);
  if (a.lastHeartbeatAt && now.getTime() - Date.parse(a.lastHeartbeatAt) > 30_000) out.push(`    last heartbeat ${formatSpan(now.getTime() - Date.parse(a.lastHeartbeatAt))} ago`);
  if (a.lastFailure) {
    // Between attempts (a poll not answered yet, a retried transfer): why, and when it tries again.
    const next = a.nextAttemptAt ? `; next attempt at ${a.nextAttemptAt} (in ${formatSpan(Date.parse(a.nextAttemptAt) - now.getTime())})` : '';
    out.push(`    last failure: ${firstLines(a.lastFailure, 1)[0]}${next}`);
  }
  return out;
}

/** The frame for a tenant with no migration in this mode. */
export function renderMissing(workflowId: string, address: string, namespace: string): string {
  return `no migration ${workflowId} on ${address} (namespace ${namespace}): none was started with that ID, or its history has been deleted`;
}

/** The whole frame: header, containers, running steps and transfers, waits, the gate, failures, matrix, undo. */
export function renderStatus(live: LiveStatus, now: Date = new Date()): string {
  const { workflow: wf, status: s } = live;
  const running = wf.status === 'RUNNING';
  const out: string[] = [];
  const when = wf.closeTime
    ? ` at ${wf.closeTime} (${formatSpan(Date.parse(wf.closeTime) - Date.parse(wf.startTime))} after it started)`
    : `, started ${wf.startTime} (${formatSpan(now.getTime() - Date.parse(wf.startTime))} ago)`;
  out.push(`${wf.id} (${live.mode === 'dry-run' ? 'dry run' : 'live'}), run ${wf.runId}: ${wf.status}${when}`);
  if (!running) out.push(`  the run is over: its steps and events with \`${cmd(live, 'history', '')}\`, its report with \`${cmd(live, 'report', '')}\``);
  if (!s) {
    // A query needs a worker, a closed run's too (it replays the history to answer).
    const hint = live.queryTimedOut ? `: is a worker polling task queue ${wf.taskQueue}?` : '';
    out.push(running ? `  the status query did not answer (${live.queryError})${hint}` : `  its final status is not available (${live.queryError})${hint}`);
    return out.join('\n');
  }

  const pause = s.paused ? s.pauses.at(-1) : undefined;
  const downtime = s.downtimeMs !== undefined ? `  downtime ${formatSpan(s.downtimeMs)}${s.downtimeOver ? '' : running ? ' so far' : ' (not over when the run closed)'}` : '';
  out.push(`tenant ${s.tenant}  mode ${s.mode}  phase ${s.phase}${s.paused ? `  PAUSED${pause ? ` by ${pause.by} at ${pause.at} (${pause.reason})` : ''}` : ''}${downtime}`);
  if (s.paused && running) out.push(`  resume with: ${cmd(live, 'resume', '')}`);

  const containers = Object.entries(s.containers);
  if (containers.length) {
    out.push('', 'containers:');
    const width = Math.max(...containers.map(([n]) => n.length));
    for (const [name, c] of containers) out.push(`  ${name.padEnd(width)}  ${c.phase.padEnd(10)}${c.step ? `  ${c.step}` : ''}${c.ip ? `  ${c.ip}` : ''}`.trimEnd());
  }

  if (live.activities.length) {
    out.push('', 'running:');
    for (const a of live.activities) out.push(...activityLines(a, s, now));
  }

  const open = s.waits.filter((w) => w.state === 'waiting');
  if (open.length) {
    out.push('', 'waits:');
    for (const w of open) out.push(...describeWait(live, w, now).split('\n').map((l) => `  ${l}`));
  }

  if (s.gate) {
    out.push('', `gate ${s.gate.name}: ${s.gate.title}`, `  approve with: ${cmd(live, 'approve', `--gate ${s.gate.name} --reason <text>`)}`);
    if (s.gate.name === 'cutover') out.push(`  verify again after a fix by hand: ${cmd(live, 'reverify', '--reason <text>')}`);
  }

  const failures = Object.entries(s.failures);
  if (failures.length) {
    out.push('', 'failures:');
    for (const [id, message] of failures) {
      const waiting = running && s.steps[id] === 'failed';
      out.push(`  ${id}${waiting ? ' (waits for a decision)' : ''}`, ...failureLines(message).map((l) => `    ${l}`));
      if (waiting) out.push(`    retry with: ${cmd(live, 'retry', `${id}`)}`, `    skip with:  ${cmd(live, 'skip', `${id} --reason <text>`)}`);
    }
  }

  if (s.matrix.length) {
    // A cell declared as not probed is neither green nor red.
    const probed = s.matrix.filter((e) => !e.notProbed);
    const red = probed.filter((e) => !e.ok);
    const unprobed = s.matrix.length - probed.length;
    out.push('', `matrix: ${probed.length - red.length}/${probed.length} green${unprobed ? ` (${unprobed} not probed)` : ''}${red.length ? `; red: ${red.map(cell).join(', ')}` : ''}`);
  }

  if (s.skipped.length) {
    out.push('', 'skipped:');
    for (const k of s.skipped) out.push(`  ${k.id} by ${k.by}: ${k.reason}`);
  }

  if (s.undoFailures.length) {
    out.push('', 'undo failures (finish them by hand):');
    for (const u of s.undoFailures) out.push(`  ${u.id} on ${u.host}: ${firstLines(u.error, 1)[0]}`, `    ${u.byHand}`);
  }
  return out.join('\n');
}

/**
 * `--json`: one object for scripts; `status` is null when the query did not answer. A transfer's
 * rate and ETA come in numbers too (bytes per second, seconds), so that no script parses `64.00MB/s`.
 */
export function statusJson(live: LiveStatus): string {
  const activities = live.activities.map((a) => {
    const rateBytesPerS = parseRate(a.progress?.rate);
    const etaS = a.progress ? etaSeconds(a.progress) : undefined;
    return { ...a, ...(rateBytesPerS !== undefined ? { rateBytesPerS } : {}), ...(etaS !== undefined ? { etaS } : {}) };
  });
  return JSON.stringify({ status: live.status ?? null, ...(live.queryError ? { queryError: live.queryError } : {}), ...(live.queryTimedOut ? { queryTimedOut: true } : {}), workflow: live.workflow, activities, at: live.at });
}
