/**
 * Waits as first-class records: every wait of a migration (DNS propagation, old TTLs, a CA's rate
 * limit, certificates, the verification window, gates) has an ID, says what it waits for, since
 * when and until when, and can be cut short (`wake`) or made longer (`extend`) by an operator,
 * each recorded with who and why.
 *
 * A wait costs its workflow's history a constant few events whatever its length: a timer is two
 * events, and a poll is one activity whose attempts the server retries on the activity's retry
 * policy (retries add no history events). Only a wake, an extension or the end adds events.
 */
import { CancellationScope, condition, isCancellation } from '@temporalio/workflow';
import { oneLine } from './details';

export type WaitKind = 'poll' | 'timer' | 'gate';

export interface WaitAction {
  action: 'wake' | 'extend';
  by: string;
  reason: string;
  at: string;
  /** extend: the new end. */
  until?: string;
}

export interface WaitRecord {
  id: string;
  kind: WaitKind;
  /** What is awaited, for people: "chat.example.com: the CA's rate limit (retry after …)". */
  what: string;
  since: string;
  until: string;
  state: 'waiting' | 'over' | 'woken' | 'expired';
  ended?: string;
  actions: WaitAction[];
}

export type PollResult<T> = { kind: 'done'; value: T } | { kind: 'woken'; by: string; reason: string } | { kind: 'expired' };

/** Closed waits kept for status (the history has them all): enough for a long certificate phase. */
const KEPT = 50;

const iso = (ms: number) => new Date(ms).toISOString();

export class Waits {
  readonly records: WaitRecord[] = [];
  /** Deadline (ms) and wake of each open wait, by ID. */
  private readonly open = new Map<string, { deadline: number; woken?: WaitAction }>();
  /** Told when a wait opens, closes, is woken or extended (the Web UI's current details follow). */
  onChange: () => void = () => undefined;

  active(): WaitRecord[] {
    return this.records.filter((r) => r.state === 'waiting');
  }

  /** The end of the latest wait `id` as it stands (extensions included), in ms. */
  endOf(id: string): number {
    const rec = [...this.records].reverse().find((r) => r.id === id);
    return rec ? Date.parse(rec.until) : 0;
  }

  /** `what until <time>` of each open wait, for `waitingFor`. */
  describe(): string | undefined {
    const a = this.active();
    return a.length ? a.map((r) => `${r.what} (wait ${r.id}, until ${r.until})`).join('; ') : undefined;
  }

  private begin(id: string, kind: WaitKind, what: string, until: number): WaitRecord {
    if (this.open.has(id)) throw new Error(`wait ${id} is already open`);
    const rec: WaitRecord = { id, kind, what, since: iso(Date.now()), until: iso(until), state: 'waiting', actions: [] };
    this.records.push(rec);
    this.open.set(id, { deadline: until });
    this.onChange();
    return rec;
  }

  private end(rec: WaitRecord, state: WaitRecord['state']): void {
    rec.state = state;
    rec.ended = iso(Date.now());
    this.open.delete(rec.id);
    const closed = this.records.filter((r) => r.state !== 'waiting');
    if (closed.length > KEPT) this.records.splice(this.records.indexOf(closed[0]!), 1);
    this.onChange();
  }

  /**
   * Sleeps until `until` (ms) or a wake; an extension moves the end. One timer per stretch: the
   * condition's timeout is recomputed only when an operator acts.
   */
  async timer(id: string, what: string, until: number): Promise<'over' | 'woken'> {
    const rec = this.begin(id, 'timer', what, until);
    const o = this.open.get(id)!;
    for (;;) {
      const deadline = o.deadline;
      const left = deadline - Date.now();
      if (left > 0) await condition(() => o.woken !== undefined || o.deadline !== deadline, left, { summary: oneLine(`${id}: ${what}`) });
      if (o.woken) {
        this.end(rec, 'woken');
        return 'woken';
      }
      if (o.deadline === deadline) {
        this.end(rec, 'over');
        return 'over';
      }
    }
  }

  /**
   * Runs `poll` (an activity the server retries until the awaited thing is there) until it
   * returns, bounded by `until`; a wake or the deadline cancels it.
   */
  async poll<T>(id: string, what: string, until: number, poll: () => Promise<T>): Promise<PollResult<T>> {
    const rec = this.begin(id, 'poll', what, until);
    const o = this.open.get(id)!;
    // Set by the poll when it ends (a holder: the condition below reads it after the await).
    const box: { result?: { value: T } | { error: unknown } } = {};
    const scope = new CancellationScope();
    const running = scope
      .run(poll)
      .then((value) => void (box.result = { value }))
      .catch((error: unknown) => void (box.result = { error }));
    for (;;) {
      const deadline = o.deadline;
      const left = deadline - Date.now();
      if (left > 0) await condition(() => box.result !== undefined || o.woken !== undefined || o.deadline !== deadline, left, { summary: oneLine(`${id}: ${what} (deadline)`) });
      if (box.result === undefined && (o.woken || o.deadline === deadline)) {
        // Woken or out of time: the poll is cancelled and its end awaited, so nothing of it still runs.
        scope.cancel();
        await running;
        const r = box.result as { value: T } | { error: unknown } | undefined;
        // A poll that ended just before the cancel reached it counts.
        if (r === undefined || ('error' in r && isCancellation(r.error))) {
          this.end(rec, o.woken ? 'woken' : 'expired');
          return o.woken ? { kind: 'woken', by: o.woken.by, reason: o.woken.reason } : { kind: 'expired' };
        }
      }
      if (box.result !== undefined) break;
    }
    this.end(rec, 'over');
    const r = box.result;
    if ('error' in r) throw r.error;
    return { kind: 'done', value: r.value };
  }

  /**
   * Waits for `predicate` (an approval) until `until`; `passed` false if the time ran out. Gates
   * take `extend`, never `wake`. `until` in the answer is the end as extended.
   */
  async gate(id: string, what: string, until: number, predicate: () => boolean): Promise<{ passed: boolean; until: number }> {
    const rec = this.begin(id, 'gate', what, until);
    const o = this.open.get(id)!;
    for (;;) {
      const deadline = o.deadline;
      const left = deadline - Date.now();
      if (left > 0) await condition(() => predicate() || o.deadline !== deadline, left, { summary: oneLine(`${id}: ${what} (deadline)`) });
      if (predicate() || o.deadline === deadline) {
        const passed = predicate();
        this.end(rec, passed ? 'over' : 'expired');
        return { passed, until: o.deadline };
      }
    }
  }

  /** The open wait an operator names, or the only one open; an error says which exist. */
  private target(id: string | undefined, action: 'wake' | 'extend'): WaitRecord {
    const open = this.active().filter((r) => action === 'extend' || r.kind !== 'gate');
    const list = open.map((r) => `${r.id} (${r.what})`).join('; ');
    if (id === undefined || id === '') {
      if (open.length === 1) return open[0]!;
      if (open.length === 0) throw new Error(`no wait to ${action}: the migration waits for nothing an operator can ${action === 'wake' ? 'cut short (a gate needs its approval)' : 'extend'}`);
      throw new Error(`wait: ${open.length} waits are open, name one: ${list}`);
    }
    const rec = open.find((r) => r.id === id);
    if (!rec) {
      const gate = this.active().find((r) => r.id === id && r.kind === 'gate');
      if (gate) throw new Error(`wait: ${id} is a gate; approve it (or extend it), a gate is never woken`);
      throw new Error(`wait: no open wait ${JSON.stringify(id)}${list ? `; open: ${list}` : ''}`);
    }
    return rec;
  }

  /** Checks a wake before it is accepted (an update's validator). */
  checkWake(id: string | undefined): void {
    this.target(id, 'wake');
  }

  checkExtend(id: string | undefined, byMs: number): void {
    this.target(id, 'extend');
    if (!(byMs > 0)) throw new Error('for: extend by a positive duration, like 30m, 2h or 1d');
  }

  /** Ends a wait now, as if what it waited for had come; recorded. */
  wake(id: string | undefined, by: string, reason: string): WaitRecord {
    const rec = this.target(id, 'wake');
    const action: WaitAction = { action: 'wake', by, reason, at: iso(Date.now()) };
    rec.actions.push(action);
    this.open.get(rec.id)!.woken = action;
    this.onChange();
    return rec;
  }

  /** Moves a wait's end later by `byMs` (from its current end); recorded. */
  extend(id: string | undefined, byMs: number, by: string, reason: string): WaitRecord {
    const rec = this.target(id, 'extend');
    const o = this.open.get(rec.id)!;
    o.deadline = Math.max(o.deadline, Date.now()) + byMs;
    rec.until = iso(o.deadline);
    rec.actions.push({ action: 'extend', by, reason, at: iso(Date.now()), until: rec.until });
    this.onChange();
    return rec;
  }
}
