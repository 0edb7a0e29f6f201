/**
 * What Caddy's log says about obtaining a certificate for one name: its `tls.obtain` lines (JSON,
 * one object per line) read into the latest event since a given time. Caddy follows its own retry
 * schedule (1 min, 2, 2, 5, 10, … up to every 6 h) and ignores a CA's Retry-After, so the wait
 * reads the CA's retry time here and makes Caddy retry when the limit is over.
 *
 * Pure: the worker reads the log's tail from the proxy container and passes the text.
 */

export type ObtainEvent =
  | { kind: 'obtained'; at: string }
  /** The CA refused with `rateLimited`; `retryAt` from its "retry after <time>". */
  | { kind: 'rate-limited'; at: string; retryAt: string; detail: string }
  /** The CA could not validate the name: DNS does not point here yet, or the challenge failed. */
  | { kind: 'validation'; at: string; detail: string }
  | { kind: 'acme-error'; at: string; detail: string }
  /** Caddy is trying now (lock, obtaining), no result yet. */
  | { kind: 'trying'; at: string };

interface LogLine {
  level?: string;
  ts?: number | string;
  logger?: string;
  msg?: string;
  identifier?: string;
  error?: string;
  retrying_in?: number;
}

/** ACME problem types that mean the CA could not check the name reaches this server. */
const VALIDATION = /urn:ietf:params:acme:error:(dns|connection|unauthorized|incorrectResponse|tls|caa)\b/;
/** Without a time in the CA's message: Caddy's own next attempt, else an hour (Let's Encrypt's shortest window). */
const DEFAULT_RETRY_MS = 3_600_000;

function tsOf(ts: LogLine['ts']): number | undefined {
  if (typeof ts === 'number') return ts * 1000;
  if (typeof ts === 'string') {
    const t = Date.parse(ts);
    return Number.isNaN(t) ? undefined : t;
  }
  return undefined;
}

/**
 * The retry time in a CA's rate-limit message: RFC 3339 (`retry after 2026-11-29T18:00:00Z`) or
 * Let's Encrypt's `retry after 2026-11-29 18:00:00 UTC`.
 */
export function retryAfterOf(text: string): number | undefined {
  const m = /retry after (\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d(?:\.\d+)?)(Z|[+-]\d\d:\d\d| UTC)?/i.exec(text);
  if (!m) return undefined;
  const zone = !m[3] || m[3].trim().toUpperCase() === 'UTC' ? 'Z' : m[3];
  const t = Date.parse(`${m[1]}T${m[2]}${zone}`);
  return Number.isNaN(t) ? undefined : t;
}

/** Does this line concern `name`? Caddy names it in `identifier`, or as `[name]` in the error. */
function concerns(line: LogLine, name: string): boolean {
  return line.identifier === name || (line.error?.includes(`[${name}]`) ?? false);
}

/**
 * The latest `tls.obtain` event for `name` logged at or after `sinceMs`; undefined if none.
 * Lines that are not JSON (a truncated first line of a tail) are ignored.
 */
export function latestObtainEvent(logText: string, name: string, sinceMs = 0): ObtainEvent | undefined {
  let latest: ObtainEvent | undefined;
  let pendingRateLimit: { at: number; detail: string } | undefined;
  for (const raw of logText.split('\n')) {
    if (!raw.startsWith('{')) continue;
    let line: LogLine;
    try {
      line = JSON.parse(raw) as LogLine;
    } catch {
      continue;
    }
    if (line.logger !== 'tls.obtain' || !concerns(line, name)) continue;
    const t = tsOf(line.ts);
    if (t === undefined || t < sinceMs) continue;
    const at = new Date(t).toISOString();
    const msg = line.msg ?? '';
    const error = line.error ?? '';
    if (msg === 'certificate obtained successfully') {
      latest = { kind: 'obtained', at };
      pendingRateLimit = undefined;
    } else if (msg === 'will retry' && pendingRateLimit) {
      // No time in the CA's message: Caddy's own next attempt is the best guess.
      const retry = typeof line.retrying_in === 'number' ? t + line.retrying_in * 1000 : pendingRateLimit.at + DEFAULT_RETRY_MS;
      latest = { kind: 'rate-limited', at: new Date(pendingRateLimit.at).toISOString(), retryAt: new Date(retry).toISOString(), detail: pendingRateLimit.detail };
      pendingRateLimit = undefined;
    } else if (error && (line.level === 'error' || msg.startsWith('could not get certificate'))) {
      if (/rateLimited/.test(error)) {
        const retry = retryAfterOf(error);
        if (retry !== undefined) latest = { kind: 'rate-limited', at, retryAt: new Date(retry).toISOString(), detail: error };
        else {
          pendingRateLimit = { at: t, detail: error };
          latest = { kind: 'rate-limited', at, retryAt: new Date(t + DEFAULT_RETRY_MS).toISOString(), detail: error };
        }
      } else if (msg !== 'will retry' || latest?.kind !== 'rate-limited') {
        latest = VALIDATION.test(error) ? { kind: 'validation', at, detail: error } : { kind: 'acme-error', at, detail: error };
      }
    } else if (msg === 'obtaining certificate') {
      // A new attempt: what earlier attempts said no longer holds.
      latest = { kind: 'trying', at };
      pendingRateLimit = undefined;
    }
  }
  return latest;
}

/** One line for status and the step's output. */
export function describeObtainEvent(name: string, e: ObtainEvent | undefined): string {
  if (!e) return `${name}: Caddy has logged no attempt yet`;
  switch (e.kind) {
    case 'obtained':
      return `${name}: Caddy obtained a certificate at ${e.at}`;
    case 'rate-limited':
      return `${name}: the CA rate-limits new certificates until ${e.retryAt} (${e.detail.slice(0, 300)})`;
    case 'validation':
      return `${name}: the CA could not validate the name (DNS not pointing here yet, or the challenge did not reach this server): ${e.detail.slice(0, 300)}`;
    case 'acme-error':
      return `${name}: ACME error: ${e.detail.slice(0, 300)}`;
    case 'trying':
      return `${name}: Caddy is obtaining a certificate (since ${e.at})`;
  }
}
