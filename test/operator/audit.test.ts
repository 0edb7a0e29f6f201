/**
 * The audit timeline of recorded histories, checked against the raw JSON read without the modules
 * under test: every activity with its host, exact command and exit code; every operator action
 * with its author; attempts and the failure that made a poll retry.
 */
import { auditTimeline, renderAudit, type OperatorAction, type StepRecord } from '../../src/operator/audit';
import { labMigration, payload, rawEvents, run, type RawEvent } from './fixtures';

interface Outcome {
  id: string;
  host: string;
  command: string;
  exitCode?: number;
  status: string;
}

/** Every completed activity's outcome in a raw history, in order. */
function outcomes(events: RawEvent[]): Outcome[] {
  return events.flatMap((e) => {
    const a = e.activityTaskCompletedEventAttributes as { result?: { payloads: { data: string }[] } } | undefined;
    return a ? [payload<Outcome>(a.result)] : [];
  });
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const stepsOf = (t: ReturnType<typeof auditTimeline>) => t.entries.filter((e): e is StepRecord => e.kind === 'step');
const actionsOf = (t: ReturnType<typeof auditTimeline>) => t.entries.filter((e): e is OperatorAction => e.kind === 'operator');

describe('the lab migration', () => {
  const timeline = auditTimeline(labMigration());
  const text = renderAudit(timeline);
  const steps = stepsOf(timeline);

  test('lists every activity of the tenant and of the recorded child, with host, exact command, exit code and attempts', () => {
    const expected = [...outcomes(rawEvents('lab-migrate-tenant')).map((o) => ({ ...o, container: undefined })), ...outcomes(rawEvents('lab-migrate-container')).map((o) => ({ ...o, container: 'proxy' }))];
    expect(expected.length).toBe(127 + 17);
    for (const o of expected) {
      const found = steps.filter((s) => s.stepId === o.id && s.container === o.container && s.attempts !== undefined);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({ host: o.host, command: o.command, status: o.status, attempts: 1, ...(o.exitCode !== undefined ? { exitCode: o.exitCode } : {}) });
      // The text view: the step, its host, its exit code, and the command whole.
      expect(text).toMatch(new RegExp(`${o.container ? `\\[${o.container}\\] ` : ''}${escape(o.id)}( \\(\\w+\\))? on ${o.host}`));
      expect(text).toContain(`$ ${o.command.split('\n')[0]}`);
    }
    for (const s of steps.filter((x) => x.exitCode !== undefined)) expect(text).toMatch(new RegExp(`${escape(s.stepId)}( \\(\\w+\\))? on ${s.host}[^\\n]*: ${s.status}, exit ${s.exitCode},`));
  });

  test('the children without a history of their own are shown from their results, saying attempts are unknown', () => {
    expect(timeline.childrenWithoutHistory.sort()).toEqual(['alm', 'alm-ci', 'dns', 'drive', 'email', 'system', 'table-editor', 'tables', 'webmail']);
    const results = rawEvents('lab-migrate-tenant').flatMap((e) => {
      const a = e.childWorkflowExecutionCompletedEventAttributes as { result?: { payloads: { data: string }[] } } | undefined;
      return a ? [payload<{ container: string; log: { outcomes: Outcome[] } }>(a.result)] : [];
    });
    for (const r of results.filter((x) => x.container !== 'proxy')) {
      const mine = steps.filter((s) => s.container === r.container);
      expect(mine.map((s) => [s.stepId, s.command, s.exitCode])).toEqual(r.log.outcomes.map((o) => [o.id, o.command, o.exitCode]));
      expect(mine.every((s) => s.attempts === undefined)).toBe(true);
    }
    expect(text).toMatch(/\[tables\] stop\/tables\/stop on source root@198\.18\.0\.1:22: done, exit 0, .*attempts not in history/);
  });

  test('every operator action with its author, reason and client identity, in time order', () => {
    expect(actionsOf(timeline).map((a) => [a.action, a.args.gate, a.by, a.reason, a.identity, a.outcome])).toEqual([
      ['approve', 'cutover', 'e2e', 'matrix green', '1973@vm', 'ok'],
      ['approve', 'cleanup', 'e2e', 'verified', '1973@vm', 'ok'],
    ]);
    expect(text).toMatch(/2026-11-29T18:03:16\.525Z {2}approve {3}gate=cutover by e2e: "matrix green" \(client 1973@vm\): ok/);
    expect(text).toMatch(/approve {3}gate=cleanup by e2e: "verified"/);
    const times = timeline.entries.map((e) => Date.parse(e.at));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(timeline).toMatchObject({ workflowId: 'migrate-pragmatismo', tenant: 'pragmatismo', mode: 'live', status: 'completed' });
  });
});

test('the certificates run: a wake with who and why, and a poll whose retries the history keeps only as a count and the last failure', () => {
  const timeline = auditTimeline({ tenant: run('lab-certificates-migrate-tenant', 'migrate-pragmatismo'), children: new Map() });
  const raw = rawEvents('lab-certificates-migrate-tenant');
  const wakes = raw.flatMap((e) => {
    const a = e.workflowExecutionUpdateAcceptedEventAttributes as { acceptedRequest: { input: { name: string; args: { payloads: { data: string }[] } } } } | undefined;
    return a?.acceptedRequest.input.name === 'wake' ? [payload<{ by: string; reason: string }>(a.acceptedRequest.input.args)] : [];
  });
  expect(wakes.length).toBeGreaterThan(0);
  const actions = actionsOf(timeline).filter((a) => a.action === 'wake');
  expect(actions.map((a) => [a.by, a.reason])).toEqual(wakes.map((w) => [w.by, w.reason]));
  const text = renderAudit(timeline);
  for (const w of wakes) expect(text).toMatch(new RegExp(`wake {6}by ${escape(w.by)}: "${escape(w.reason)}" \\(client [^)]+\\): ok, wait \\S+ \\(`));

  const retried = raw.flatMap((e) => {
    const a = e.activityTaskStartedEventAttributes as { attempt: number; scheduledEventId: string } | undefined;
    return a && a.attempt > 1 ? [a] : [];
  });
  expect(retried.map((a) => a.attempt)).toEqual([20, 11]);
  const polls = stepsOf(timeline).filter((s) => (s.attempts ?? 1) > 1);
  expect(polls.map((s) => s.attempts)).toEqual([20, 11]);
  for (const p of polls) {
    expect(p.activity).toBe('checkCertificate');
    expect(p.lastRetryFailure).toMatch(/^not yet: /);
  }
  expect(text).toMatch(/certificates\/tenant\/pragmatismo-lab \(checkCertificate\) on worker: done, no answer, [^\n]*attempts 20\n[^\n]*\n {27}! attempt 19 failed: not yet: /);
});

test('the dry run: every step recorded, as recorded', () => {
  const timeline = auditTimeline({ tenant: run('migrate-tenant', 'migrate-pragmatismo-dry-run'), children: new Map([['tables', run('migrate-container', 'migrate-pragmatismo-dry-run-tables')]]) });
  expect(timeline.mode).toBe('dry-run');
  const steps = stepsOf(timeline);
  expect(steps.length).toBeGreaterThan(150);
  expect(new Set(steps.map((s) => s.status))).toEqual(new Set(['recorded']));
  expect(renderAudit(timeline)).toMatch(/\[tables\] copy\/tables\/copy on destination administrator@63\.141\.255\.9:22: recorded, \d+ms, attempt 1\n {27}\$ sudo -n sh -c '[^\n]*incus copy --instance-only lxd-source:pragmatismo-tables tables/);
});
