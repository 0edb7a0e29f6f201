/**
 * What the fault suite checks after the migration: every file against the source manifest, no
 * destructive step run twice (history and the hosts' command logs), the bytes re-sent after the
 * link cut, and the stall after each kill.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Plan } from '../../src/plan/schema';
import type { Runbook } from '../../src/runbook/model';
import type { ActivityRecord } from './history';

/** Sum of the sizes of the regular files under `dir` (0 if it does not exist). */
export function treeBytes(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      try {
        const st = lstatSync(p);
        if (st.isDirectory()) walk(p);
        else if (st.isFile()) total += st.size;
      } catch {
        // Gone meanwhile (rsync renames its temp files).
      }
    }
  };
  walk(dir);
  return total;
}

export function sshTo(labRoot: string, host: string, command: string, input?: string, timeoutMs = 300_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(
    'ssh',
    ['-i', `${labRoot}/ssh/id_ed25519`, '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${labRoot}/ssh/known_hosts`, '-o', 'StrictHostKeyChecking=yes', `root@${host}`, command],
    { encoding: 'utf8', input, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
  );
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

// ------------------------------------------------------------------ files

export interface FileCheck {
  container: string;
  files: number;
  ok: boolean;
  failures: string[];
}

/** Files the migration rewrites on purpose (Caddy's upstreams, env fixes, the zone at cutover): compared elsewhere, not here. */
export function rewrittenFiles(plan: Plan): string[] {
  return [
    ...(plan.caddy ? [`${plan.caddy.container}:${plan.caddy.configPath}`] : []),
    ...(plan.dns.container ? [`${plan.dns.container}:${plan.dns.zoneFile}`] : []),
    ...plan.serviceFixes.flatMap((f) => (f.kind === 'env' ? [`${f.container}:${f.file}`] : [])),
  ];
}

/** Every manifest file, inside each destination container's /opt/gbo, over SSH to the destination. */
export function checkFiles(plan: Plan, labRoot: string): FileCheck[] {
  const manifest = readFileSync(`${labRoot}/src/manifest.sha256`, 'utf8').split('\n').filter(Boolean);
  const rewritten = new Set(rewrittenFiles(plan));
  return plan.containers.map((c) => {
    const folder = c.sourceFolder ?? c.name;
    const lines = manifest
      .filter((l) => l.split(/\s+/)[1]?.startsWith(`${folder}/`))
      .map((l) => l.replace(`  ${folder}/`, '  '))
      .filter((l) => !rewritten.has(`${c.name}:${plan.data.containerPath}/${l.split(/\s+/)[1]}`));
    const cmd = (quiet: boolean) => `incus exec ${c.name} -- sh -c 'cd ${plan.data.containerPath} && sha256sum -c ${quiet ? '-s ' : ''}-'`;
    const r = sshTo(labRoot, plan.hosts.destination.address, cmd(true), lines.join('\n') + '\n');
    if (r.status === 0 && lines.length > 0) return { container: c.name, files: lines.length, ok: true, failures: [] };
    const detail = sshTo(labRoot, plan.hosts.destination.address, cmd(false), lines.join('\n') + '\n');
    const failures = (detail.stdout + detail.stderr)
      .split('\n')
      .filter((l) => l && !/: OK$/.test(l))
      .slice(0, 20);
    return { container: c.name, files: lines.length, ok: false, failures: lines.length === 0 ? ['no manifest lines for this container'] : failures };
  });
}

// ------------------------------------------------------------------ destructive steps

/** The steps whose effect must happen once: deletes, stops, device removals, copies, pushes, DNAT rules. */
export const DESTRUCTIVE = /^(cleanup\/[^/]+\/delete-[^/]+|stop\/[^/]+\/stop|stop\/[^/]+\/remove-devices|copy\/[^/]+\/copy|data\/[^/]+\/push|network\/tenant\/dnat-.+)$/;

export interface DestructiveStep {
  stepId: string;
  /** Completed activities of the step, with their status and the attempt that completed. */
  completions: { status: string; attempt: number }[];
  done: number;
  /** At most one completion did the step (`done`); the others found it done (`already-done`). */
  ok: boolean;
}

export function checkDestructiveHistory(runbook: Runbook, activities: ActivityRecord[]): DestructiveStep[] {
  const ids = runbook.phases.flatMap((p) => p.steps.map((s) => s.id)).filter((id) => DESTRUCTIVE.test(id));
  return ids.map((stepId) => {
    const completions = activities
      .filter((a) => a.stepId === stepId && a.closed === 'completed')
      .sort((a, b) => (a.closedAt ?? 0) - (b.closedAt ?? 0))
      .map((a) => ({ status: a.result?.status ?? '?', attempt: a.attempt ?? 1 }));
    const done = completions.filter((c) => c.status === 'done').length;
    return { stepId, completions, done, ok: done <= 1 };
  });
}

export interface CommandLogCheck {
  host: 'source' | 'destination';
  file: string;
  present: boolean;
  /** Lines of this migration (since it started). */
  lines: number;
  keys: number;
  starts: number;
  /** Starts whose earlier attempt was still open: stopped by the guard, or after a worker kill. */
  restartsAfterKill: number;
  stoppedPrevious: number;
  /** Non-destructive steps whose command ran again after it had exited 0 (a kill between the exit and the report; allowed). */
  rerunAfterSuccess: string[];
  violations: string[];
}

interface LogLine {
  at: number;
  key: string;
  what: 'start' | 'exit' | 'stop-previous';
  rc?: number;
  text: string;
}

function parseLogLine(line: string): LogLine | undefined {
  const m = /^(\S+)\s+(\S+)\s+(start|exit|stop-previous)(?:\s+(-?\d+))?\s*$/.exec(line);
  if (!m) return undefined;
  const raw = m[1] as string;
  const at = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw);
  if (!Number.isFinite(at)) return undefined;
  return { at, key: m[2] as string, what: m[3] as LogLine['what'], ...(m[4] !== undefined && m[3] === 'exit' ? { rc: Number(m[4]) } : {}), text: line };
}

/**
 * The SSH pool's step guard logs `<UTC time> <key> start|exit <rc>|stop-previous <pid>` to
 * `~/.gbo-migrate/commands.log` on each host, key `<workflow id>.<step id>` (`/` → `_`). Checked:
 * no two starts of one key overlap unless the guard stopped the earlier one or a worker kill came
 * between them (the killed attempt's process ended); a destructive step never starts again after
 * it exited 0. Times have one-second resolution, hence the 1 s slack around kills.
 */
export function checkCommandLog(host: 'source' | 'destination', file: string, since: number, kills: number[], runbook: Runbook): CommandLogCheck {
  const base: CommandLogCheck = { host, file, present: existsSync(file), lines: 0, keys: 0, starts: 0, restartsAfterKill: 0, stoppedPrevious: 0, rerunAfterSuccess: [], violations: [] };
  if (!base.present) return base;
  const sanitized = new Map<string, string>();
  for (const s of runbook.phases.flatMap((p) => p.steps)) sanitized.set(s.id.replace(/[^A-Za-z0-9._-]/g, '_'), s.id);
  const stepOf = (key: string) => {
    for (let i = key.indexOf('.'); i >= 0; i = key.indexOf('.', i + 1)) {
      const id = sanitized.get(key.slice(i + 1));
      if (id) return id;
    }
    return undefined;
  };
  const entries = readFileSync(file, 'utf8')
    .split('\n')
    .map(parseLogLine)
    .filter((l): l is LogLine => l !== undefined && l.at >= since - 2000);
  base.lines = entries.length;
  const byKey = new Map<string, LogLine[]>();
  for (const l of entries) byKey.set(l.key, [...(byKey.get(l.key) ?? []), l]);
  base.keys = byKey.size;
  const killBetween = (a: number, b: number) => kills.some((k) => k >= a - 1000 && k <= b + 1000);
  for (const [key, lines] of byKey) {
    const stepId = stepOf(key);
    const destructive = stepId !== undefined && DESTRUCTIVE.test(stepId);
    let open: LogLine | undefined;
    let stopped = false;
    let succeeded: LogLine | undefined;
    for (const l of lines) {
      if (l.what === 'stop-previous') {
        stopped = true;
        base.stoppedPrevious++;
        continue;
      }
      if (l.what === 'exit') {
        if (l.rc === 0) succeeded = l;
        open = undefined;
        continue;
      }
      base.starts++;
      if (!destructive && succeeded && !base.rerunAfterSuccess.includes(stepId ?? key)) base.rerunAfterSuccess.push(stepId ?? key);
      if (destructive && succeeded) base.violations.push(`${key}: started again at ${new Date(l.at).toISOString()} after it exited 0 at ${new Date(succeeded.at).toISOString()}`);
      if (open) {
        if (stopped || killBetween(open.at, l.at)) base.restartsAfterKill++;
        else base.violations.push(`${key}: started at ${new Date(l.at).toISOString()} while the start at ${new Date(open.at).toISOString()} had no exit, no guard stop and no worker kill between`);
      }
      open = l;
      stopped = false;
    }
  }
  return base;
}

// ------------------------------------------------------------------ rsync bytes

/** rsync's `--info=progress2` total (the largest byte count it printed), from a step's kept output. */
export function progressBytes(output: string | undefined): number | undefined {
  if (!output) return undefined;
  const counts = [...output.matchAll(/(?:^|\n)\s*([\d,]+)\s+\d{1,3}%/g)].map((m) => Number((m[1] as string).replace(/,/g, '')));
  return counts.length ? Math.max(...counts) : undefined;
}

export const RSYNC_STEP = /^(presync\/[^/]+\/rsync|data\/[^/]+\/final-sync)$/;

// ------------------------------------------------------------------ stats

export function median(xs: number[]): number | undefined {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
