/**
 * The runbook's long waits as workflow code: DNS propagation then the old records' TTL, a
 * certificate per domain across a CA's rate limits, the verification window. Each is a recorded
 * wait (`waits.ts`): bounded by the plan, shown in status, woken or extended by an operator.
 *
 * Polls are one activity each whose attempts the server retries (every `pollInterval`, sooner at
 * first): a poll of days costs the history the same few events as a poll of seconds.
 */
import { ActivityCancellationType, ApplicationFailure, proxyActivities, type ActivityInterfaceFor } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { StepInput, StepOutcome } from '../activities/steps';
import { NON_RETRYABLE } from '../errors';
import { durationMs as parseDuration } from '../plan/guards';
import type { Step } from '../runbook/model';
import { stepSummary } from './details';
import type { Waits } from './waits';

/** The least time between two retries a certificate wait makes Caddy do. */
const MIN_RETRY_GAP_MS = 5000;

/** Failure type of a wait that reached the end the plan gives it (the operator retries, extends or skips). */
export const WAIT_EXPIRED = 'WaitExpired';

/** A poll activity: retried by the server until the awaited thing is there; each attempt is short. */
function pollActivities(pollInterval: string): ActivityInterfaceFor<Activities> {
  const interval = durationMs(pollInterval);
  return proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: '20 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    // Every second at first (a certificate arrives seconds after Caddy retries), then slowing by a
    // quarter each attempt to every pollInterval: a poll never lags the thing by much more than
    // a fifth of the time already waited.
    retry: { initialInterval: Math.min(1000, interval), backoffCoefficient: 1.25, maximumInterval: interval, nonRetryableErrorTypes: [...NON_RETRYABLE] },
  });
}

/** A duration of the plan's or an operator's `extend --for` in ms (the plan's parser); an error names the value. */
export function durationMs(d: string): number {
  const ms = parseDuration(String(d));
  if (ms === undefined) throw new Error(`for: expected a duration like 90s, 30m, 2h or 3d, got ${JSON.stringify(d)}`);
  return ms;
}

const at = (ms: number) => new Date(ms).toISOString();

function outcome(step: Step, started: number, output: string, extra: Partial<StepOutcome> = {}): StepOutcome {
  return { id: step.id, host: 'worker', status: 'done', command: step.command, startedAt: at(started), durationMs: Date.now() - started, output, ...extra };
}

function expired(step: Step, maxWait: string, what: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: WAIT_EXPIRED,
    nonRetryable: true,
    message: `${step.id}: ${what}: still not there after ${maxWait} (the plan's maxWait); retry to wait again, or skip with a reason`,
  });
}

/** One poll wait of a step, bounded by its `maxWait`: the poll's output, or who woke it and why. */
async function pollStep(step: Step, waits: Waits, what: string, started: number, poll: (acts: ActivityInterfaceFor<Activities>) => Promise<StepOutcome>): Promise<string> {
  const p = step.params ?? {};
  const maxWait = String(p.maxWait ?? '7d');
  const r = await waits.poll(step.id, what, started + durationMs(maxWait), () => poll(pollActivities(String(p.pollInterval ?? '30s'))));
  if (r.kind === 'expired') throw expired(step, maxWait, what);
  return r.kind === 'woken' ? `woken by ${r.by} before it was over (${r.reason})` : (r.value.output ?? 'done');
}

/** DNS: every authoritative server answers every changed record (authoritative answer), then the old TTL runs out. */
export async function waitForDns(step: Step, input: StepInput, waits: Waits): Promise<StepOutcome> {
  const started = Date.now();
  const p = step.params ?? {};
  const servers = (p.servers as string[] | undefined) ?? [];
  const answered = await pollStep(step, waits, `${servers.join(', ')} to answer the new records authoritatively`, started, (acts) => acts.checkDns.executeWithOptions({ summary: stepSummary(step) }, [input]));
  // Resolvers may serve the old records until their TTL runs out: the wait the step promises.
  const ttl = Number(p.oldTtlSeconds ?? 0);
  if (ttl <= 0) return outcome(step, started, answered);
  const ttlWait = await waits.timer(`${step.id}/old-ttl`, `resolvers to drop the old records (their TTL, ${ttl}s)`, Date.now() + ttl * 1000);
  return outcome(step, started, `${answered}; then ${ttlWait === 'woken' ? 'the old records\' TTL wait was woken' : `${ttl}s for the old records' TTL`}`);
}

/** The zone's delegation: the parent's servers refer to the new nameservers (after the registrar gate). */
export async function waitForDelegation(step: Step, input: StepInput, waits: Waits): Promise<StepOutcome> {
  const started = Date.now();
  const p = step.params ?? {};
  const what = `${((p.servers as string[]) ?? []).join(', ')} to refer ${String(p.zone)} to ${((p.nameservers as string[]) ?? []).join(', ')}`;
  return outcome(step, started, await pollStep(step, waits, what, started, (acts) => acts.checkDelegation.executeWithOptions({ summary: stepSummary(step) }, [input])));
}

/**
 * A certificate for one domain: poll the destination over TLS (valid now, for the name, from the
 * expected CA). When Caddy's log shows the CA's rate limit, sleep until its retry time, make Caddy
 * retry at once (it would otherwise wait on its own schedule, up to hours), and poll again.
 */
export async function waitForCertificate(step: Step, input: StepInput, waits: Waits): Promise<StepOutcome> {
  const started = Date.now();
  const p = step.params ?? {};
  const maxWait = String(p.maxWait ?? '7d');
  // The step's end: an operator's extension of any of its waits moves it for the rounds after.
  let deadline = started + durationMs(maxWait);
  const domain = String(p.domain);
  const acts = pollActivities(String(p.pollInterval ?? '5m'));
  const what = `a valid certificate served for ${domain}${p.issuer ? ` issued by ${String(p.issuer)}` : ''}`;
  const limits: string[] = [];
  // Log lines older than the last retry Caddy was made to do say nothing about the next attempt;
  // at first every line counts (the phase's first step made Caddy retry just before this one).
  let since: number | undefined;
  for (let round = 0; ; round++) {
    const pollId = round === 0 ? step.id : `${step.id}/${round}`;
    const r = await waits.poll(pollId, what, deadline, () =>
      acts.checkCertificate.executeWithOptions({ summary: stepSummary(step, round === 0 ? '' : ` (round ${round + 1})`) }, [{ ...input, ...(since === undefined ? {} : { since: at(since) }) }]),
    );
    deadline = Math.max(deadline, waits.endOf(pollId));
    if (r.kind === 'expired') throw expired(step, maxWait, what);
    if (r.kind === 'woken') return outcome(step, started, `woken by ${r.by} (${r.reason}); no valid certificate was seen`);
    if (r.value.ok) return outcome(step, started, [...limits, r.value.output ?? 'valid'].join('; '), { ok: true });
    const retryAt = Date.parse(r.value.retryAt ?? '');
    if (Number.isNaN(retryAt)) throw ApplicationFailure.nonRetryable(`${step.id}: the certificate check returned neither a certificate nor a retry time`, 'BadOutcome');
    limits.push(`rate-limited until ${at(retryAt)}`);
    // A CA whose retry time is already past (rounded down, or a clock apart) must not make Caddy
    // retry in a tight loop: at least MIN_RETRY_GAP_MS between two forced retries.
    const wakeAt = Math.max(retryAt, since === undefined ? 0 : since + MIN_RETRY_GAP_MS);
    if (wakeAt > Date.now()) {
      const limitId = `${step.id}/rate-limit-${round + 1}`;
      const slept = await waits.timer(limitId, `the CA's rate limit for ${domain} to end`, Math.min(wakeAt, deadline));
      deadline = Math.max(deadline, waits.endOf(limitId));
      if (slept === 'over' && wakeAt > deadline) throw expired(step, maxWait, what);
    }
    // Caddy ignores the CA's retry time and follows its own back-off: make it retry every pending name now.
    since = Date.now();
    await acts.retryCertificates.executeWithOptions({ summary: stepSummary(step, ' (Caddy made to retry)') }, [input]);
  }
}

/** The verification window: the migrated tenant runs this long before cleanup may be approved. */
export async function waitWindow(step: Step, waits: Waits): Promise<StepOutcome> {
  const started = Date.now();
  const duration = String(step.params?.duration ?? '0s');
  const r = await waits.timer(step.id, `the verification window (${duration}) before cleanup`, started + durationMs(duration));
  return outcome(step, started, r === 'woken' ? `window of ${duration} woken early` : `ran ${duration}`);
}
