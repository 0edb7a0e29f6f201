/**
 * Heartbeats on a timer while an activity runs, whether or not its command prints anything: the
 * heartbeat timeout is how Temporal notices a dead worker, and a heartbeat is how the activity
 * learns of a cancel. Each beat carries the latest progress: the step, the seconds elapsed, what
 * runs now and, from rsync's `--info=progress2`, the bytes moved, the percent and the rate.
 */
import { currentActivity } from './common';
import type { RunOptions } from './executor';

/** Heartbeat details. */
export interface Progress {
  step: string;
  /** Seconds since the activity started. */
  elapsedS: number;
  /** What runs now: `check`, `command`, `read`, `write`, `connect`, `probe`, `query <server>`. */
  doing?: string;
  /** rsync: bytes transferred so far, percent done, current rate (`64.00MB/s`). */
  bytes?: number;
  percent?: number;
  rate?: string;
  /** Probes: the attempt that failed last. */
  attempt?: number;
  /** Poll steps: why the output is not usable yet. */
  waiting?: string;
}

/** What a running activity reports through. */
export interface Heartbeat {
  /** Merges into the details of the next beats. */
  report(progress: Omit<Partial<Progress>, 'step' | 'elapsedS'>): void;
  /** Options for a remote command: its output feeds the rsync progress, the activity's cancel stops it. */
  watch(options?: RunOptions): RunOptions;
  /** The activity's cancellation (undefined outside a worker). */
  readonly signal: AbortSignal | undefined;
}

export interface HeartbeatOptions {
  /** Between beats. Default 5 s, so a heartbeat timeout of 15 to 20 s notices a dead worker. */
  heartbeatIntervalMs?: number;
}

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5000;
/**
 * A transfer's progress is sent sooner, up to once a second: a transfer of a few hundred MB over a
 * fast link is over in seconds, and `status` would never see its bytes at the 5 s beat.
 */
export const PROGRESS_BEAT_MS = 1000;

/** rsync `--info=progress2`: `  134,217,728  49%   64.00MB/s    0:00:02 (xfr#1, to-chk=0/2)` */
const RSYNC_PROGRESS = /([\d,]+)\s+(\d{1,3})%\s+(\d+(?:\.\d+)?[kMGT]?B\/s)\s+\d+:\d{2}:\d{2}/g;

/** The last complete rsync progress report in `text`, if any. */
export function rsyncProgress(text: string): Pick<Progress, 'bytes' | 'percent' | 'rate'> | undefined {
  const last = [...text.matchAll(RSYNC_PROGRESS)].pop();
  if (!last) return undefined;
  return { bytes: Number(last[1]?.replace(/,/g, '')), percent: Number(last[2]), rate: last[3] };
}

/**
 * Runs `work` for step `step`, heartbeating every `heartbeatIntervalMs` with the latest progress
 * until it settles. Outside a worker (an operator's re-check) it only runs `work`.
 */
export async function withHeartbeat<T>(step: string, work: (hb: Heartbeat) => Promise<T>, options: HeartbeatOptions = {}): Promise<T> {
  const activity = currentActivity();
  const started = Date.now();
  let latest: Omit<Partial<Progress>, 'step' | 'elapsedS'> = {};
  // rsync rewrites its progress line with \r; a report may arrive split over two chunks.
  let recent = '';
  let lastBeat = 0;
  const beat = () => {
    lastBeat = Date.now();
    activity?.heartbeat({ step, elapsedS: Math.round((Date.now() - started) / 1000), ...latest } satisfies Progress);
  };
  const hb: Heartbeat = {
    report: (progress) => {
      latest = { ...latest, ...progress };
    },
    watch: (runOptions = {}) => ({
      ...runOptions,
      signal: activity?.cancellationSignal,
      onOutput: (chunk) => {
        recent = (recent + chunk).slice(-512);
        const p = rsyncProgress(recent);
        if (!p) return;
        latest = { ...latest, ...p };
        if (activity && Date.now() - lastBeat >= PROGRESS_BEAT_MS) beat();
      },
    }),
    signal: activity?.cancellationSignal,
  };
  if (!activity) return work(hb);
  beat();
  const timer = setInterval(beat, options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS);
  try {
    return await work(hb);
  } finally {
    clearInterval(timer);
  }
}
