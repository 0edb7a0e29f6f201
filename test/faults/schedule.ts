/**
 * The fault schedule: which steps the worker is killed at, with which delays, where the Temporal
 * server is restarted and where the destination→source link is cut. A pure function of the seed,
 * the runbook and the number of kills, so a seed replays the same schedule.
 */
import type { PhaseId, Runbook, Step } from '../../src/runbook/model';

/** mulberry32: small, fast, good enough to spread faults; the same seed gives the same sequence. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface KillPoint {
  /** 1-based, in schedule order (runbook order of the target steps). */
  n: number;
  /** The step whose start arms this kill. */
  stepId: string;
  phase: PhaseId;
  /** After the step is seen started: 0–0.2 s for the first kill of each phase, else 0–2 s. */
  delayMs: number;
  /** How long the worker stays dead before it is started again. */
  restartDelayMs: number;
}

export interface FaultSchedule {
  seed: number;
  kills: KillPoint[];
  /** The Temporal server is stopped once this step is seen started, down for `downMs`. */
  serverRestart: { stepId: string; phase: PhaseId; delayMs: number; downMs: number; signal: 'SIGTERM' | 'SIGKILL' };
  /**
   * The link is cut for `durationMs` once one of these rsync steps runs and its staging copy holds
   * `atFraction` of the container's data (or at once if the data is too small to catch in flight).
   */
  linkCut: { stepIds: string[]; atFraction: number; durationMs: number };
}

/** Steps the workflow runs as activities: gates and verification windows are workflow-side waits. */
export function activitySteps(runbook: Runbook): Step[] {
  return runbook.phases.flatMap((p) => p.steps).filter((s) => s.kind !== 'gate' && s.kind !== 'wait-window');
}

/** Picks `k` distinct items, uniformly, in the order they were given. */
function pickOrdered<T>(items: T[], k: number, rnd: () => number): T[] {
  const idx = items.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [idx[i], idx[j]] = [idx[j] as number, idx[i] as number];
  }
  return idx
    .slice(0, k)
    .sort((a, b) => a - b)
    .map((i) => items[i] as T);
}

/**
 * Kill points spread over every phase that has activity steps: with at least as many kills as
 * phases, one in each phase and the rest anywhere; with fewer, that many distinct phases. Each
 * kill targets a different step.
 */
export function buildSchedule(runbook: Runbook, seed: number, kills: number, linkCutMs = 20_000): FaultSchedule {
  const rnd = prng(seed);
  const steps = activitySteps(runbook);
  const order = new Map(steps.map((s, i) => [s.id, i]));
  const phases = [...new Set(steps.map((s) => s.phase))];
  const chosenPhases = kills >= phases.length ? phases : pickOrdered(phases, kills, rnd);
  const targets: Step[] = [];
  for (const p of chosenPhases) {
    const inPhase = steps.filter((s) => s.phase === p);
    targets.push(inPhase[Math.floor(rnd() * inPhase.length)] as Step);
  }
  const firstOfPhase = new Set(targets.map((s) => s.id));
  const rest = steps.filter((s) => !targets.includes(s));
  targets.push(...pickOrdered(rest, Math.max(0, kills - targets.length), rnd));
  // The first kill of each phase comes within 0.2 s of its step starting: most steps take well
  // under a second, and a later kill would land after them (a phase of one short step, such as
  // the service fixes, would never be hit). The others come 0–2 s after.
  targets.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
  const killPoints = targets.map((s, i) => ({
    n: i + 1,
    stepId: s.id,
    phase: s.phase,
    delayMs: Math.round(rnd() * (firstOfPhase.has(s.id) ? 200 : 2000)),
    restartDelayMs: 250 + Math.round(rnd() * 2750),
  }));

  // The server goes down once, somewhere between recording the source and verification.
  const middle = steps.filter((s) => ['record', 'stop', 'copy', 'data', 'network', 'proxy', 'fixes', 'verify'].includes(s.phase));
  const serverStep = middle[Math.floor(rnd() * middle.length)] as Step;
  const serverRestart = {
    stepId: serverStep.id,
    phase: serverStep.phase,
    delayMs: Math.round(rnd() * 2000),
    downMs: 2000 + Math.round(rnd() * 4000),
    signal: rnd() < 0.5 ? ('SIGTERM' as const) : ('SIGKILL' as const),
  };

  // The cut: a presync rsync first (the bulk of the data moves there), any rsync after it as a fallback.
  const rsyncs = steps.filter((s) => /^(presync\/[^/]+\/rsync|data\/[^/]+\/final-sync)$/.test(s.id));
  const presyncs = rsyncs.filter((s) => s.phase === 'presync');
  const first = presyncs[Math.floor(rnd() * presyncs.length)] as Step;
  const linkCut = {
    stepIds: [first.id, ...rsyncs.filter((s) => s.id !== first.id).map((s) => s.id)],
    atFraction: (10 + Math.round(rnd() * 50)) / 100,
    durationMs: linkCutMs,
  };
  return { seed, kills: killPoints, serverRestart, linkCut };
}
