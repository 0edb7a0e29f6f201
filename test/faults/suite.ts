/**
 * The fault suite: one whole live migration of the lab tenant during which the worker is killed
 * (SIGKILL) at seeded points spread over every phase and started again, the Temporal server is
 * stopped and started again once on the same database, and the destination→source link is cut
 * for 20 s during the data transfer. Afterwards: the migration completed, every file matches the
 * source manifest, no destructive step ran twice (history and the hosts' command logs), the bytes
 * re-sent after the cut and the stall after each kill are reported.
 *
 * Entry points: test/faults/faults.test.ts (short, CI) and test/faults/main.ts (`npm run faults`).
 * Needs root and the lab up (lab/up.sh), and dist/ built (the worker runs from it).
 */
import { Client, Connection } from '@temporalio/client';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import type { Plan } from '../../src/plan/schema';
import { buildRunbook } from '../../src/runbook/build';
import { CONTAINER_PHASES, type PhaseId, type Runbook } from '../../src/runbook/model';
import { approveUpdate, statusQuery, type MigrationStatus } from '../../src/workflows/messages';
import {
  checkCommandLog,
  checkDestructiveHistory,
  checkFiles,
  median,
  progressBytes,
  rewrittenFiles,
  RSYNC_STEP,
  treeBytes,
  type CommandLogCheck,
  type DestructiveStep,
  type FileCheck,
} from './checks';
import { HistoryWatcher, type ActivityRecord } from './history';
import { DevServer, freePort, sleep, WorkerProcess } from './processes';
import { activitySteps, buildSchedule, type FaultSchedule } from './schedule';

export const OPERATOR = 'fault-suite';
const NETNS = 'gbo-dst';

export interface FaultOptions {
  seed: number;
  kills: number;
  repo: string;
  labRoot: string;
  /** Where `<seed>.json` goes. */
  reportDir: string;
  /** Progress lines (the seed first). */
  log: (line: string) => void;
  /** Default 20 s. */
  linkCutMs?: number;
  /** The whole migration; default 60 min. */
  deadlineMs?: number;
}

export interface KillResult {
  n: number;
  target: string;
  /** The target was never scheduled before a later step of its chain: this kill fired on that step instead. */
  substitute?: string;
  phase: PhaseId;
  seenAt: number;
  killedAt: number;
  delayMs: number;
  restartDelayMs: number;
  /** The new worker polls its queue. */
  workerReadyAt?: number;
  /** Steps (activities) open at the kill, as the history shows them afterwards. */
  running: { stepId: string; attempt: number; outcome: string }[];
  /** The phase of what the kill hit: the target's if a step of it was running, else the first running step's (none: the target's). */
  hitPhase?: PhaseId;
  /** Kill → the next step completing (ActivityTaskCompleted event time), any step, or the migration completing after its last step. */
  stallMs?: number;
  /** Kill → the last of the steps that were running at the kill completing. */
  runningRecoveredMs?: number;
}

export interface FaultReport {
  seed: number;
  killsPlanned: number;
  dataBytes: number;
  labRoot: string;
  workflowId: string;
  runId: string;
  startedAt: string;
  durationMs: number;
  completed: boolean;
  failure?: string;
  downtimeMs?: number;
  schedule: FaultSchedule;
  kills: KillResult[];
  killsNotReached: string[];
  workerSelfExits: { at: number; code: number | null; signal: string | null }[];
  stall: { medianMs?: number; maxMs?: number; runningRecoveredMedianMs?: number; runningRecoveredMaxMs?: number; goalMs: number };
  serverRestart?: { stepId: string; signal: string; stoppedAt: number; upAt: number; downMs: number; recoveredMs?: number };
  linkCut?: {
    stepId: string;
    container: string;
    mode: 'in-flight' | 'at-start';
    cutAt: number;
    restoredAt: number;
    stagingBytesAtCut?: number;
    containerBytes: number;
    /** History: the cut step's completing attempt (above 1: the cut interrupted it). */
    completingAttempt?: number;
    interrupted: boolean;
    reportedByRetryBytes?: number;
    resentBytes?: number;
    /** Other rsync steps whose completing attempt came after failed ones in the cut window. */
    otherInterrupted: string[];
    /** Every completed rsync attempt (presync and final sync), as progress2 reported it. */
    rsyncTotalReportedBytes: number;
    how: string;
  };
  files: { verified: number; containers: FileCheck[]; excluded: string[]; ok: boolean };
  destructive: { history: DestructiveStep[]; commandLogs: CommandLogCheck[]; commandLogNote: string; ok: boolean };
  operatorApprovals: string[];
  pollErrors: number;
  tempDir: string;
}

/** The lab plan the suite migrates: no certificate phase (test/e2e/certificates.test.ts has its own), a short verification window. */
export function suitePlan(labRoot: string): Plan {
  const lab = loadPlan(`${labRoot}/plan.yaml`);
  return { ...lab, certificates: undefined, approvals: { ...lab.approvals, verificationWindow: '3s' } };
}

function cutRule(op: '-I' | '-D' | '-C', sourceAddress: string): string[] {
  return ['netns', 'exec', NETNS, 'iptables', op, 'OUTPUT', '-p', 'tcp', '-d', sourceAddress, '--dport', '22', '-j', 'REJECT', '--reject-with', 'tcp-reset'];
}

/** Removes every copy of the cut rule (a crashed earlier run may have left one). */
export function restoreLink(sourceAddress: string): void {
  for (let i = 0; i < 10 && spawnSync('ip', cutRule('-C', sourceAddress), { stdio: 'ignore' }).status === 0; i++) {
    spawnSync('ip', cutRule('-D', sourceAddress), { stdio: 'ignore' });
  }
}

const fmtS = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
const fmtB = (b: number | undefined) => (b === undefined ? '-' : `${(b / 1048576).toFixed(1)} MiB`);

/** Chain of a step: its container for the per-container phases, else the tenant. */
function chainOf(runbook: Runbook): Map<string, { chain: string; index: number }> {
  const m = new Map<string, { chain: string; index: number }>();
  runbook.phases.flatMap((p) => p.steps).forEach((s, index) => m.set(s.id, { chain: CONTAINER_PHASES.includes(s.phase) ? `c:${s.container}` : 'tenant', index }));
  return m;
}

export async function runFaultSuite(o: FaultOptions): Promise<FaultReport> {
  const { seed, labRoot, log } = o;
  const t0 = Date.now();
  const at = (ms: number) => `+${((ms - t0) / 1000).toFixed(1)}s`;
  const say = (line: string) => log(`[${at(Date.now())}] ${line}`);
  log(`fault suite seed ${seed} (replay: --seed ${seed} / GBO_FAULT_SEED=${seed})`);

  const plan = suitePlan(labRoot);
  const runbook = buildRunbook(plan);
  const schedule = buildSchedule(runbook, seed, o.kills, o.linkCutMs ?? 20_000);
  const chains = chainOf(runbook);
  const stepPhase = new Map(runbook.phases.flatMap((p) => p.steps.map((s) => [s.id, s.phase] as const)));
  log(`schedule: ${schedule.kills.length} kills`);
  for (const k of schedule.kills) log(`  kill ${String(k.n).padStart(2)} at ${k.stepId} +${k.delayMs} ms, worker back after ${k.restartDelayMs} ms`);
  log(`  server ${schedule.serverRestart.signal} at ${schedule.serverRestart.stepId} +${schedule.serverRestart.delayMs} ms, down ${schedule.serverRestart.downMs} ms`);
  log(`  link cut ${schedule.linkCut.durationMs / 1000} s at ${schedule.linkCut.stepIds[0]} once ${Math.round(schedule.linkCut.atFraction * 100)} % is pulled (else the next rsync)`);

  const containerBytes = new Map(plan.containers.map((c) => [c.name, treeBytes(`${plan.data.sourceRoot}/${c.sourceFolder ?? c.name}`)]));
  const dataBytes = [...containerBytes.values()].reduce((a, b) => a + b, 0);
  log(`source data: ${fmtB(dataBytes)} in ${plan.containers.length} containers`);

  const dir = mkdtempSync(join(tmpdir(), `gbo-faults-${seed}-`));
  const cli = execFileSync('bash', [join(o.repo, 'scripts', 'temporal-cli.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  const server = new DevServer(cli, await freePort(), dir);
  const taskQueue = `faults-${seed}-${Date.now()}`;
  // The worker resolves the lab plan's file:$GBO_LAB_ROOT/ssh/... references and nothing else.
  const worker = new WorkerProcess(o.repo, dir, { TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: 'default', GBO_TASK_QUEUE: taskQueue, GBO_SECRETS_DIRS: join(labRoot, 'ssh') });
  const src = plan.hosts.source.address;
  restoreLink(src);

  let connection: Connection | undefined;
  let watcher: HistoryWatcher | undefined;
  let handle: Awaited<ReturnType<typeof startMigration>> | undefined;
  let finished = false;
  let failure: string | undefined;
  const kills: KillResult[] = [];
  const approvals: string[] = [];
  let serverRestart: FaultReport['serverRestart'];
  let cut: { stepId: string; container: string; mode: 'in-flight' | 'at-start'; cutAt: number; restoredAt?: number; stagingBytesAtCut?: number } | undefined;
  let cutActive = false;
  let startedAt = 0;
  let migrationResult: { downtimeMs?: number } | undefined;

  try {
    await server.start();
    say(`Temporal dev server on ${server.address} (SQLite in ${dir})`);
    await worker.start();
    say(`worker pid ${worker.pid} polling ${taskQueue}`);
    connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    watcher = new HistoryWatcher(connection);
    const w = watcher;
    startedAt = Date.now();
    const h = await startMigration(client, plan, 'live', taskQueue);
    handle = h;
    say(`started ${h.workflowId} run ${h.firstExecutionRunId}`);
    w.watch(h.workflowId, h.firstExecutionRunId);
    const parent = () => w.execution(h.workflowId, h.firstExecutionRunId);
    const deadline = startedAt + (o.deadlineMs ?? 60 * 60_000);

    // ---- the operator: approves the gates, stops the run on a failed step
    let busyWorker = false; // a kill or restart in progress
    const operator = (async () => {
      while (!finished) {
        await sleep(1000);
        if (!worker.ready || parent()?.closed) continue;
        let s: MigrationStatus | undefined;
        try {
          s = await connection!.withDeadline(Date.now() + 5000, () => h.query(statusQuery));
        } catch {
          continue; // no worker to answer right now: unknown, keep going
        }
        const failed = Object.entries(s.failures ?? {});
        if (failed.length && (s.waitingFor ?? '').includes('retryStep')) {
          failure = `a step failed and waits for an operator: ${failed.map(([k, v]) => `${k}: ${v.split('\n')[0]}`).join('; ')}`;
          say(failure);
          finished = true;
          return;
        }
        const gate = s.waitingFor?.match(/approval of the (cutover|cleanup) gate/)?.[1] as 'cutover' | 'cleanup' | undefined;
        if (!gate || approvals.includes(gate)) continue;
        const red = (s.matrix ?? []).filter((m) => m.required && !m.ok);
        if (gate === 'cutover' && red.length) {
          failure = `the verification matrix is red at the cutover gate: ${red.map((m) => `${m.container} ${m.service} ${m.port ?? m.path ?? ''}`).join(', ')}`;
          say(failure);
          finished = true;
          return;
        }
        try {
          await connection!.withDeadline(Date.now() + 30_000, () =>
            h.executeUpdate(approveUpdate, { args: [{ gate, by: OPERATOR, reason: gate === 'cutover' ? `fault suite: matrix green (${s!.matrix.length} checks)` : 'fault suite: verification window over' }] }),
          );
          approvals.push(gate);
          say(`approved the ${gate} gate as ${OPERATOR}`);
        } catch (err) {
          const msg = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
          if (/already approved/.test(msg)) approvals.push(gate);
        }
      }
    })();

    // ---- the faults
    const fired = new Set<number>();
    let lastFaultAt: number | undefined;
    let idleFrom: number | undefined;
    const recovered = () => lastFaultAt === undefined || w.completions.some((c) => c > lastFaultAt!);
    const idle = () => worker.ready && !busyWorker && !cutActive && recovered();
    let cutDone = false;
    let cutFallback = false;
    let serverDone = false;

    /** When a kill target counts as seen: scheduled, or passed over (a later step of its chain scheduled). */
    const seenOf = (stepId: string): { at: number; substitute?: string } | undefined => {
      const s = w.firstScheduled.get(stepId);
      if (s !== undefined) return { at: s };
      const me = chains.get(stepId);
      if (!me) return undefined;
      let best: { at: number; substitute: string } | undefined;
      for (const [id, t] of w.firstScheduled) {
        const other = chains.get(id);
        if (!other || other.index <= me.index) continue;
        const sameChain = other.chain === me.chain || (me.chain !== 'tenant' && other.chain === 'tenant');
        if (sameChain && (!best || t < best.at)) best = { at: t, substitute: id };
      }
      return best;
    };

    while (!finished) {
      await sleep(100);
      const now = Date.now();
      if (parent()?.closed) break;
      if (now > deadline) {
        failure = `not completed within ${fmtS(o.deadlineMs ?? 60 * 60_000)}`;
        say(failure);
        break;
      }
      // A worker that died by itself (not killed here) is started again.
      if (!worker.alive && !busyWorker) {
        say('worker exited by itself; starting it again');
        busyWorker = true;
        try {
          await worker.start();
        } finally {
          busyWorker = false;
        }
        continue;
      }

      // Link cut: the chosen rsync once it has pulled its share, or the next rsync seen after it ended.
      if (!cutDone && !cutActive) {
        const [first, ...others] = schedule.linkCut.stepIds as [string, ...string[]];
        let fire: { stepId: string; mode: 'in-flight' | 'at-start' } | undefined;
        const firstAct = [...w.activities.values()].find((a) => a.stepId === first);
        if (!cutFallback && firstAct) {
          const container = first.split('/')[1] as string;
          const want = (containerBytes.get(container) ?? 0) * schedule.linkCut.atFraction;
          if (firstAct.closed) cutFallback = true;
          else if ((containerBytes.get(container) ?? 0) < 32 * 1048576) fire = { stepId: first, mode: 'at-start' };
          else if (treeBytes(`${plan.data.staging}/${container}`) >= want) fire = { stepId: first, mode: 'in-flight' };
        }
        if (cutFallback && !fire) {
          const next = [...w.activities.values()].find((a) => a.stepId && others.includes(a.stepId) && !a.closed && a.scheduledAt >= (firstAct?.closedAt ?? 0));
          if (next?.stepId) fire = { stepId: next.stepId, mode: 'at-start' };
        }
        if (fire) {
          const container = fire.stepId.split('/')[1] as string;
          execFileSync('ip', cutRule('-I', src));
          cutActive = true;
          const c = { stepId: fire.stepId, container, mode: fire.mode, cutAt: Date.now() } as NonNullable<typeof cut>;
          cut = c;
          say(`link cut: destination → ${src}:22 rejected (during ${fire.stepId}, ${fire.mode}, ${fmtB(treeBytes(`${plan.data.staging}/${container}`))} pulled)`);
          void (async () => {
            try {
              await sleep(2000);
              c.stagingBytesAtCut = treeBytes(`${plan.data.staging}/${container}`);
              await sleep(schedule.linkCut.durationMs - 2000);
              // The last measure before the link comes back: nothing can have been pulled meanwhile.
              c.stagingBytesAtCut = treeBytes(`${plan.data.staging}/${container}`);
            } finally {
              restoreLink(src);
              c.restoredAt = Date.now();
              cutActive = false;
              cutDone = true;
              say(`link restored after ${fmtS(c.restoredAt - c.cutAt)} (${fmtB(c.stagingBytesAtCut)} of ${container} pulled before the cut)`);
            }
          })();
          continue;
        }
      }

      if (!idle()) {
        idleFrom = undefined;
        continue;
      }
      idleFrom ??= now;

      // Server restart.
      if (!serverDone) {
        const seen = w.firstScheduled.get(schedule.serverRestart.stepId);
        if (seen !== undefined && now >= Math.max(seen, idleFrom) + schedule.serverRestart.delayMs) {
          serverDone = true;
          busyWorker = true;
          try {
            const sig = schedule.serverRestart.signal;
            const stoppedAt = Date.now();
            await server.stop(sig);
            say(`Temporal server stopped (${sig}) at ${schedule.serverRestart.stepId}`);
            await sleep(schedule.serverRestart.downMs);
            await server.start();
            const upAt = Date.now();
            say(`Temporal server up again on ${server.address} after ${fmtS(upAt - stoppedAt)} (same SQLite file)`);
            serverRestart = { stepId: schedule.serverRestart.stepId, signal: sig, stoppedAt, upAt, downMs: upAt - stoppedAt };
            lastFaultAt = stoppedAt;
          } finally {
            busyWorker = false;
          }
          continue;
        }
      }

      // Kills, in the order their targets are seen.
      const due = schedule.kills
        .filter((k) => !fired.has(k.n))
        .map((k) => ({ k, seen: seenOf(k.stepId) }))
        .filter((x): x is { k: (typeof schedule.kills)[number]; seen: { at: number; substitute?: string } } => x.seen !== undefined)
        .sort((a, b) => a.seen.at - b.seen.at)[0];
      if (!due) continue;
      // At the seeded delay after the step was seen, or as soon as it completes if that is sooner
      // (most steps take well under the delay: the kill then lands right after it, in its phase).
      // A target that went by while a fault was being handled: at once if its phase still has a
      // step running, so the kill lands in that phase.
      const target = [...w.activities.values()].find((a) => a.stepId === (due.seen.substitute ?? due.k.stepId));
      const closedEarly = target?.closedAt !== undefined && target.closedAt >= idleFrom - 1000;
      const wentBy =
        target?.closedAt !== undefined && target.closedAt < idleFrom - 1000 && w.open().some((a) => a.stepId !== undefined && stepPhase.get(a.stepId) === due.k.phase);
      if (now < Math.max(due.seen.at, idleFrom) + due.k.delayMs && !closedEarly && !wentBy) continue;
      fired.add(due.k.n);
      busyWorker = true;
      try {
        const killedAt = await worker.kill();
        lastFaultAt = killedAt;
        const open = w.open().map((a) => a.stepId ?? a.activityType);
        say(`kill ${kills.length + 1} (${due.k.stepId}${due.seen.substitute ? ` passed over; at ${due.seen.substitute}` : ''}): worker SIGKILLed; open: ${open.join(', ') || 'none'}`);
        const kr: KillResult = {
          n: kills.length + 1,
          target: due.k.stepId,
          ...(due.seen.substitute ? { substitute: due.seen.substitute } : {}),
          phase: (stepPhase.get(due.seen.substitute ?? due.k.stepId) ?? due.k.phase) as PhaseId,
          seenAt: due.seen.at,
          killedAt,
          delayMs: due.k.delayMs,
          restartDelayMs: due.k.restartDelayMs,
          running: [],
        };
        kills.push(kr);
        await sleep(due.k.restartDelayMs);
        await worker.start();
        kr.workerReadyAt = Date.now();
        say(`worker back (pid ${worker.pid}) ${fmtS(kr.workerReadyAt - killedAt)} after the kill`);
      } finally {
        busyWorker = false;
      }
    }
    finished = true;
    await operator;

    const p = parent();
    if (!failure && p?.closed === 'completed') {
      migrationResult = (await h.result()) as { downtimeMs?: number };
      say(`migration completed in ${fmtS(Date.now() - startedAt)}`);
    } else if (!failure) {
      failure = `the migration ended ${p?.closed ?? 'open'}${p?.failure ? `: ${p.failure}` : ''}`;
    }
    await w.drain(30_000);
  } catch (err) {
    failure = failure ?? (err as Error).message;
    log(`fault suite error: ${(err as Error).stack ?? (err as Error).message}`);
  } finally {
    finished = true;
    restoreLink(src);
    if (handle && (failure || !watcher?.execution(handle.workflowId, handle.firstExecutionRunId)?.closed)) {
      await handle.terminate(`fault suite: ${failure ?? 'stopped'}`).catch(() => undefined);
    }
    await watcher?.stop();
    await worker.stop();
    await server.stop('SIGTERM');
    await connection?.close().catch(() => undefined);
  }

  // ---------------------------------------------------------------- results
  const w = watcher;
  const activities = [...(w?.activities.values() ?? [])];
  const completions = [...(w?.completions ?? [])].sort((a, b) => a - b);
  // A kill after the last step has no next step: the migration completing is the progress it waited for.
  const parent = handle ? w?.execution(handle.workflowId, handle.firstExecutionRunId) : undefined;
  if (parent?.closed === 'completed' && parent.closedAt !== undefined) completions.push(parent.closedAt);
  completions.sort((a, b) => a - b);
  for (const k of kills) {
    const next = completions.find((c) => c > k.killedAt);
    if (next !== undefined) k.stallMs = next - k.killedAt;
    const open = activities.filter((a) => a.scheduledAt <= k.killedAt && (a.closedAt === undefined || a.closedAt > k.killedAt));
    k.running = open.map((a) => ({ stepId: a.stepId ?? a.activityType, attempt: a.attempt ?? 0, outcome: a.closed ? `${a.closed}${a.result?.status ? ` ${a.result.status}` : ''}` : 'open' }));
    const openPhases = open.map((a) => (a.stepId ? stepPhase.get(a.stepId) : undefined)).filter((x): x is PhaseId => x !== undefined);
    k.hitPhase = openPhases.includes(k.phase) ? k.phase : (openPhases[0] ?? k.phase);
    const closes = open.map((a) => a.closedAt).filter((x): x is number => x !== undefined);
    if (open.length && closes.length === open.length) k.runningRecoveredMs = Math.max(...closes) - k.killedAt;
  }
  if (serverRestart) {
    const next = completions.find((c) => c > serverRestart!.stoppedAt);
    if (next !== undefined) serverRestart.recoveredMs = next - serverRestart.stoppedAt;
  }
  const stalls = kills.map((k) => k.stallMs).filter((x): x is number => x !== undefined);
  const recov = kills.map((k) => k.runningRecoveredMs).filter((x): x is number => x !== undefined);

  // Bytes re-sent after the cut.
  let linkCut: FaultReport['linkCut'];
  const rsyncDone = activities.filter((a) => a.stepId && RSYNC_STEP.test(a.stepId) && a.closed === 'completed');
  const rsyncTotal = rsyncDone.reduce((n, a) => n + (progressBytes(a.result?.output) ?? 0), 0);
  if (cut) {
    const c = cut;
    const acts = activities.filter((a) => a.stepId === c.stepId).sort((a, b) => a.scheduledAt - b.scheduledAt);
    const hit = acts.find((a) => a.scheduledAt <= c.cutAt && (a.closedAt === undefined || a.closedAt > c.cutAt));
    const interrupted = hit !== undefined && (hit.attempt ?? 1) > 1 && (hit.startedAt ?? 0) >= c.cutAt;
    const reported = hit?.closed === 'completed' ? progressBytes(hit.result?.output) : undefined;
    const size = containerBytes.get(c.container) ?? 0;
    const landed = interrupted ? (c.stagingBytesAtCut ?? 0) : 0;
    const resent = interrupted && reported !== undefined ? landed + reported - size : interrupted ? undefined : 0;
    const others = activities
      .filter((a) => a !== hit && a.stepId && RSYNC_STEP.test(a.stepId) && (a.attempt ?? 1) > 1 && a.scheduledAt <= (c.restoredAt ?? c.cutAt) && (a.closedAt ?? Infinity) > c.cutAt)
      .map((a) => `${a.stepId} (attempt ${a.attempt})`);
    linkCut = {
      stepId: c.stepId,
      container: c.container,
      mode: c.mode,
      cutAt: c.cutAt,
      restoredAt: c.restoredAt ?? c.cutAt,
      ...(c.stagingBytesAtCut !== undefined ? { stagingBytesAtCut: c.stagingBytesAtCut } : {}),
      containerBytes: size,
      ...(hit?.attempt !== undefined ? { completingAttempt: hit.attempt } : {}),
      interrupted,
      ...(reported !== undefined ? { reportedByRetryBytes: reported } : {}),
      ...(resent !== undefined ? { resentBytes: resent } : {}),
      otherInterrupted: others,
      rsyncTotalReportedBytes: rsyncTotal,
      how:
        'resent = bytes of the container already on the destination when the link came back (staging files, measured on disk during the cut) ' +
        "+ the bytes rsync's --info=progress2 reported for the attempt that completed the step (from its outcome in the history) " +
        "- the container's data size. rsync counts a file it resumes from --partial in full, so this is what rsync processed again; " +
        'the wire carried less for that file. rsyncTotalReported sums what the completed attempts of every rsync step reported; it falls short of the data by what ' +
        'attempts cut short (by the link cut or a worker kill) had already pulled, since the history keeps no output of a failed attempt, and exceeds it by files the running services changed before the final sync.',
    };
  }

  // Files and destructive steps (only worth checking when the migration completed).
  const completed = !failure && migrationResult !== undefined;
  const fileChecks = completed ? checkFiles(plan, labRoot) : [];
  const history = checkDestructiveHistory(runbook, activities);
  const killTimes = kills.map((k) => k.killedAt);
  const logs = [
    checkCommandLog('source', `${labRoot}/src/home/.gbo-migrate/commands.log`, startedAt, killTimes, runbook),
    checkCommandLog('destination', `${labRoot}/dst/home/.gbo-migrate/commands.log`, startedAt, killTimes, runbook),
  ];
  const present = logs.filter((l) => l.present);
  const commandLogNote = present.length === 0 ? 'no host command log' : present
          .map((l) => `${l.host}: ${l.lines} lines, ${l.keys} step keys, ${l.starts} starts, ${l.violations.length} violations${l.rerunAfterSuccess.length ? `, run again after success (not destructive): ${l.rerunAfterSuccess.join(', ')}` : ''}`)
          .join('; ');

  const report: FaultReport = {
    seed,
    killsPlanned: o.kills,
    dataBytes,
    labRoot,
    workflowId: handle?.workflowId ?? '',
    runId: handle?.firstExecutionRunId ?? '',
    startedAt: new Date(startedAt || t0).toISOString(),
    durationMs: Date.now() - (startedAt || t0),
    completed,
    ...(failure ? { failure } : {}),
    ...(migrationResult?.downtimeMs !== undefined ? { downtimeMs: migrationResult.downtimeMs } : {}),
    schedule,
    kills,
    killsNotReached: schedule.kills.filter((k) => !kills.some((x) => x.target === k.stepId)).map((k) => k.stepId),
    workerSelfExits: worker.exits.filter((e) => !e.killed).map((e) => ({ at: e.at, code: e.code, signal: e.signal })),
    stall: { medianMs: median(stalls), maxMs: stalls.length ? Math.max(...stalls) : undefined, runningRecoveredMedianMs: median(recov), runningRecoveredMaxMs: recov.length ? Math.max(...recov) : undefined, goalMs: 30_000 },
    ...(serverRestart ? { serverRestart } : {}),
    ...(linkCut ? { linkCut } : {}),
    files: { verified: fileChecks.filter((f) => f.ok).reduce((n, f) => n + f.files, 0), containers: fileChecks, excluded: completed ? [...new Set(rewrittenFiles(plan))] : [], ok: completed && fileChecks.length > 0 && fileChecks.every((f) => f.ok) },
    destructive: { history, commandLogs: logs, commandLogNote, ok: history.every((d) => d.ok) && logs.every((l) => l.violations.length === 0) },
    operatorApprovals: approvals,
    pollErrors: w?.pollErrors ?? 0,
    tempDir: dir,
  };
  mkdirSync(o.reportDir, { recursive: true });
  writeFileSync(join(o.reportDir, `${seed}.json`), JSON.stringify(report, null, 2) + '\n');
  for (const line of renderReport(report)) log(line);
  log(`report: ${join(o.reportDir, `${seed}.json`)}`);
  if (report.completed && report.files.ok && report.destructive.ok) rmSync(dir, { recursive: true, force: true });
  else log(`kept for inspection: ${dir} (server and worker logs, the SQLite file)`);
  return report;
}


export function renderReport(r: FaultReport): string[] {
  const out: string[] = [];
  out.push(`== fault suite report, seed ${r.seed} ==`);
  out.push(`migration ${r.workflowId}: ${r.completed ? 'completed' : `NOT completed (${r.failure ?? '?'})`} in ${fmtS(r.durationMs)}, data ${fmtB(r.dataBytes)}${r.downtimeMs !== undefined ? `, downtime ${fmtS(r.downtimeMs)}` : ''}`);
  out.push(`kills: ${r.kills.length} of ${r.killsPlanned} planned${r.killsNotReached.length ? ` (not reached: ${r.killsNotReached.join(', ')})` : ''}`);
  for (const k of r.kills) {
    const running = k.running.map((x) => `${x.stepId} [attempt ${x.attempt}, ${x.outcome}]`).join(', ') || 'no step running';
    out.push(`  ${String(k.n).padStart(2)}. ${(k.hitPhase ?? k.phase).padEnd(12)} ${k.substitute ? `${k.target} → ${k.substitute}` : k.target}: hit ${running}; next step done after ${fmtS(k.stallMs)}, hit steps after ${fmtS(k.runningRecoveredMs)}`);
  }
  const phases = [...new Set(r.kills.map((k) => k.hitPhase ?? k.phase))];
  const all = [...new Set(r.schedule.kills.map((k) => k.phase))];
  out.push(`phases hit: ${phases.join(', ')}${all.some((p) => !phases.includes(p)) ? `; targeted but not hit: ${all.filter((p) => !phases.includes(p)).join(', ')}` : ''}`);
  out.push(`stall (kill → next step completed): median ${fmtS(r.stall.medianMs)}, max ${fmtS(r.stall.maxMs)} (goal < ${fmtS(r.stall.goalMs)}); kill → the steps running at the kill completed: median ${fmtS(r.stall.runningRecoveredMedianMs)}, max ${fmtS(r.stall.runningRecoveredMaxMs)}`);
  if (r.workerSelfExits.length) out.push(`worker exits not caused by the suite: ${r.workerSelfExits.length}`);
  if (r.serverRestart) out.push(`server restart: ${r.serverRestart.signal} at ${r.serverRestart.stepId}, down ${fmtS(r.serverRestart.downMs)}, next step done ${fmtS(r.serverRestart.recoveredMs)} after the stop`);
  else out.push('server restart: not done');
  const c = r.linkCut;
  if (c) {
    out.push(`link cut: ${fmtS(c.restoredAt - c.cutAt)} during ${c.stepId} (${c.mode}); ${c.interrupted ? `interrupted it (completed on attempt ${c.completingAttempt})` : 'it was not interrupted'}${c.otherInterrupted.length ? `; also interrupted: ${c.otherInterrupted.join(', ')}` : ''}`);
    out.push(
      `bytes re-sent after the cut: ${fmtB(c.resentBytes)} (${c.resentBytes ?? '-'} B; ${fmtB(c.stagingBytesAtCut)} on the destination at the cut + ${fmtB(c.reportedByRetryBytes)} reported by the completing attempt - ${fmtB(c.containerBytes)} of ${c.container}); ` +
        `completed rsync attempts reported ${fmtB(c.rsyncTotalReportedBytes)} in all for ${fmtB(r.dataBytes)} of data (attempts cut short by kills or the cut leave no output in the history)`,
    );
  } else out.push('link cut: not done');
  if (!r.completed) out.push('files: not checked (the migration did not complete)');
  else out.push(`files verified: ${r.files.verified} in ${r.files.containers.length} containers, ${r.files.ok ? 'all match' : `MISMATCH: ${r.files.containers.filter((f) => !f.ok).map((f) => `${f.container}: ${f.failures.slice(0, 3).join('; ')}`).join(' | ')}`} (rewritten on purpose, not compared: ${r.files.excluded.join(', ')})`);
  const twice = r.destructive.history.filter((d) => !d.ok);
  const retried = r.destructive.history.filter((d) => d.completions.some((x) => x.attempt > 1));
  out.push(
    `destructive steps (history): ${r.destructive.history.length} checked (${r.destructive.history.filter((d) => d.completions.length === 0).length} never completed), ${twice.length ? `VIOLATIONS: ${twice.map((d) => `${d.stepId} ${JSON.stringify(d.completions)}`).join(', ')}` : 'none done twice'}` +
      `${retried.length ? `; completed after a failed attempt: ${retried.map((d) => `${d.stepId} (${d.completions.map((x) => `${x.status}@${x.attempt}`).join(',')})`).join(', ')}` : ''}`,
  );
  out.push(`destructive steps (host command logs): ${r.destructive.commandLogNote}`);
  for (const l of r.destructive.commandLogs.filter((x) => x.violations.length)) for (const v of l.violations.slice(0, 10)) out.push(`  ${l.host}: ${v}`);
  out.push(`approvals: ${r.operatorApprovals.join(', ') || 'none'}; history poll errors (server down): ${r.pollErrors}`);
  return out;
}
