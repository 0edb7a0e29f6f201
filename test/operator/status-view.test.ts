/** The status frame, rendered from gathered data at a fixed time: numbers, the bar, waits, failures and their commands. */
import type { LiveStatus } from '../../src/operator/live-status';
import { etaSeconds, formatBytes, formatClock, formatSpan, parseRate, progressBar, renderMissing, renderStatus, statusJson, transferLine } from '../../src/operator/status-view';
import type { MigrationStatus } from '../../src/workflows/messages';
import { migrationStatus } from '../harness/migration-status';

const now = new Date('2026-11-29T12:00:00.000Z');
const MB = 1024 ** 2;
const GB = 1024 ** 3;

const status = migrationStatus;

function live(over: Partial<LiveStatus> = {}, s: Partial<MigrationStatus> = {}): LiveStatus {
  return {
    tenant: 'acme',
    mode: 'live',
    workflow: { id: 'migrate-acme', runId: 'run-1', status: 'RUNNING', taskQueue: 'gbo-migrate', startTime: '2026-11-29T11:30:00.000Z' },
    status: status(s),
    activities: [],
    at: now.toISOString(),
    ...over,
  };
}

describe('numbers', () => {
  test('bytes in rsync units, three significant digits', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1000)).toBe('1000 B');
    expect(formatBytes(512 * 1024)).toBe('512 kB');
    expect(formatBytes(64 * MB)).toBe('64.0 MB');
    expect(formatBytes(Math.round(1.21 * GB))).toBe('1.21 GB');
    expect(formatBytes(3 * 1024 * GB)).toBe('3.00 TB');
  });

  test("rsync's rates, and nothing else", () => {
    expect(parseRate('64.00MB/s')).toBe(64 * MB);
    expect(parseRate('980.12kB/s')).toBeCloseTo(980.12 * 1024);
    expect(parseRate('1.02GB/s')).toBeCloseTo(1.02 * GB);
    expect(parseRate('12B/s')).toBe(12);
    expect(parseRate('fast')).toBeUndefined();
    expect(parseRate(undefined)).toBeUndefined();
  });

  test('ETA from bytes, percent and rate', () => {
    // 450 MB is 45% of 1000 MB: 550 MB left at 10 MB/s.
    expect(etaSeconds({ bytes: 450 * MB, percent: 45, rate: '10.00MB/s' })).toBe(55);
    expect(etaSeconds({ bytes: 100, percent: 100, rate: '0.00kB/s' })).toBe(0);
    expect(etaSeconds({ bytes: 0, percent: 0, rate: '10.00MB/s' })).toBeUndefined();
    expect(etaSeconds({ bytes: 10, percent: 5, rate: '0.00kB/s' })).toBeUndefined();
    expect(etaSeconds({ bytes: 10, percent: 5 })).toBeUndefined();
  });

  test('clocks and spans', () => {
    expect(formatClock(19)).toBe('0:19');
    expect(formatClock(725)).toBe('12:05');
    expect(formatClock(3723)).toBe('1:02:03');
    expect(formatSpan(45_000)).toBe('45s');
    expect(formatSpan(192_000)).toBe('3m 12s');
    expect(formatSpan(7_500_000)).toBe('2h 05m');
    expect(formatSpan(3 * 86_400_000 + 4 * 3_600_000)).toBe('3d 4h');
  });

  test('the progress bar', () => {
    expect(progressBar(45)).toBe('[#########-----------]');
    expect(progressBar(0)).toBe('[--------------------]');
    expect(progressBar(100)).toBe('[####################]');
    expect(progressBar(250)).toBe('[####################]');
  });

  test('a transfer line shows what is known', () => {
    // 1.21 GB is 45% of 2.69 GB: 1.48 GB left at 64 MB/s is 23.7 s.
    expect(transferLine({ bytes: Math.round(1.21 * GB), percent: 45, rate: '64.00MB/s' })).toBe('[#########-----------] 45%  1.21 GB  64.0 MB/s  ETA 0:24');
    expect(transferLine({ bytes: 5 * MB })).toBe('5.00 MB');
  });
});

describe('the frame', () => {
  test('header, containers, a running transfer with its bar, and the downtime so far', () => {
    const frame = renderStatus(
      live(
        {
          activities: [
            {
              container: 'tables',
              workflowId: 'migrate-acme-tables',
              activityId: '7',
              type: 'runStep',
              state: 'started',
              attempt: 1,
              lastHeartbeatAt: '2026-11-29T11:59:59.000Z',
              progress: { step: 'data/tables/pull-final', elapsedS: 19, doing: 'command', bytes: Math.round(1.21 * GB), percent: 45, rate: '64.00MB/s' },
            },
          ],
        },
        { containers: { tables: { phase: 'data', step: 'data/tables/pull-final' }, proxy: { phase: 'done', ip: '10.0.3.12' }, dns: { phase: 'pending' } }, downtimeMs: 192_000 },
      ),
      now,
    );
    expect(frame).toContain('migrate-acme (live), run run-1: RUNNING, started 2026-11-29T11:30:00.000Z (30m 00s ago)');
    expect(frame).toContain('tenant acme  mode live  phase data  downtime 3m 12s so far');
    expect(frame).toMatch(/^ {2}tables {2}data {8}data\/tables\/pull-final$/m);
    expect(frame).toMatch(/^ {2}proxy {3}done {8}10\.0\.3\.12$/m);
    expect(frame).toMatch(/^ {2}dns {5}pending$/m);
    expect(frame).toContain('  tables: data/tables/pull-final, command, 19s\n    [#########-----------] 45%  1.21 GB  64.0 MB/s  ETA 0:24');
    expect(frame).not.toContain('failures:');
    expect(frame).not.toContain('last heartbeat');
  });

  test('a step between attempts: why, and when it tries again; a stale heartbeat says how old it is', () => {
    const frame = renderStatus(
      live({
        activities: [
          { workflowId: 'migrate-acme', activityId: '3', type: 'checkDns', state: 'scheduled', attempt: 4, lastFailure: 'NotYet: ns1 answers 1.2.3.4 for www\nmore', nextAttemptAt: '2026-11-29T12:00:30.000Z', lastHeartbeatAt: '2026-11-29T11:58:00.000Z' },
        ],
      }),
      now,
    );
    expect(frame).toContain('  tenant: checkDns, attempt 4\n    last heartbeat 2m 00s ago\n    last failure: NotYet: ns1 answers 1.2.3.4 for www; next attempt at 2026-11-29T12:00:30.000Z (in 30s)');
  });

  test('an activity that has not heartbeated yet is named by the step that runs it', () => {
    const frame = renderStatus(
      live(
        {
          activities: [
            { workflowId: 'migrate-acme', activityId: '7', type: 'runStep', state: 'started', attempt: 1 },
            { workflowId: 'migrate-acme-tables', container: 'tables', activityId: '2', type: 'runStep', state: 'started', attempt: 1 },
          ],
        },
        { steps: { 'network/tenant/forward': 'running', 'data/tables/push': 'running', 'preflight/tenant/inventory': 'done' }, containers: { tables: { phase: 'data', step: 'data/tables/push' } } },
      ),
      now,
    );
    expect(frame).toContain('  tenant: network/tenant/forward\n');
    expect(frame).toMatch(/^ {2}tables: data\/tables\/push$/m);
  });

  test('an open wait: what, until when, how long is left, and the commands that steer it', () => {
    const frame = renderStatus(
      live({}, { waits: [{ id: 'dns/propagation', kind: 'poll', what: 'the authoritative servers to answer the new records', since: '2026-11-29T11:50:00.000Z', until: '2026-11-29T13:00:00.000Z', state: 'waiting', actions: [] }] }),
      now,
    );
    expect(frame).toContain(
      [
        '  waiting for the authoritative servers to answer the new records',
        '    wait dns/propagation: since 2026-11-29T11:50:00.000Z, until 2026-11-29T13:00:00.000Z (1h 00m left)',
        '    cut short with: gbo-migrate wake acme --wait dns/propagation --reason <text>',
        '    extend with:    gbo-migrate extend acme --wait dns/propagation --for <2h> --reason <text>',
      ].join('\n'),
    );
  });

  test('a gate: its approve command, and a gate wait is extended, never woken', () => {
    const frame = renderStatus(
      live(
        {},
        {
          phase: 'cutover',
          gate: { name: 'cutover', title: 'cut over acme to the destination' },
          waits: [{ id: 'gate/cutover', kind: 'gate', what: 'the cutover approval', since: '2026-11-29T11:00:00.000Z', until: '2026-11-29T11:59:00.000Z', state: 'waiting', actions: [{ action: 'extend', by: 'bob', reason: 'weekend', at: '2026-11-29T11:10:00.000Z' }] }],
        },
      ),
      now,
    );
    expect(frame).toContain('(1m 00s past its end); extend by bob at 2026-11-29T11:10:00.000Z (weekend)');
    expect(frame).toContain('extend with: gbo-migrate extend acme --wait gate/cutover --for <30m|2h|3d> --reason <text>');
    expect(frame).not.toContain('gbo-migrate wake');
    expect(frame).toContain('gate cutover: cut over acme to the destination\n  approve with: gbo-migrate approve acme --gate cutover --reason <text>');
    expect(frame).toContain('gbo-migrate reverify acme --reason <text>');
  });

  test('a failed step: its ID, the first lines of its message, and the retry and skip commands', () => {
    const message = ['a check: refused.', 'data/tables/verify-transfer failed on destination: exit 1', "$ sudo -n sh -c 'test \"$(sh -c '\\''cd", "  manifest /opt/gbo)'", 'rsync: write failed: No space left on device'].join('\n');
    const frame = renderStatus(live({}, { steps: { 'data/tables/verify-transfer': 'failed' }, failures: { 'data/tables/verify-transfer': message } }), now);
    expect(frame).toContain(
      [
        'failures:',
        '  data/tables/verify-transfer (waits for a decision)',
        '    a check: refused.',
        '    data/tables/verify-transfer failed on destination: exit 1',
        '    …',
        '    rsync: write failed: No space left on device',
        '    retry with: gbo-migrate retry acme data/tables/verify-transfer',
        '    skip with:  gbo-migrate skip acme data/tables/verify-transfer --reason <text>',
      ].join('\n'),
    );
    expect(frame).not.toContain('sudo -n');
    expect(frame).not.toContain('manifest');
    // A message of another kind: its first lines.
    const other = renderStatus(live({}, { steps: { 'cutover/dns/zone': 'failed' }, failures: { 'cutover/dns/zone': ['l1', 'l2', 'l3', 'l4', 'l5', 'l6'].join('\n') } }), now);
    expect(other).toContain('    l4\n    (2 more lines)\n    retry with:');
  });

  test('the commands of a dry run say --dry-run', () => {
    const frame = renderStatus(
      live({ mode: 'dry-run', workflow: { id: 'migrate-acme-dry-run', runId: 'r', status: 'RUNNING', taskQueue: 'q', startTime: '2026-11-29T11:59:00.000Z' } }, { mode: 'dry-run', steps: { 'copy/tables/copy': 'failed' }, failures: { 'copy/tables/copy': 'boom' }, gate: { name: 'cleanup', title: 'clean up' } }),
      now,
    );
    expect(frame).toContain('migrate-acme-dry-run (dry run)');
    expect(frame).toContain('gbo-migrate retry acme copy/tables/copy --dry-run');
    expect(frame).toContain('gbo-migrate skip acme copy/tables/copy --reason <text> --dry-run');
    expect(frame).toContain('gbo-migrate approve acme --gate cleanup --reason <text> --dry-run');
  });

  test('paused, the matrix with its red cells, skipped steps and undo failures', () => {
    const frame = renderStatus(
      live(
        {},
        {
          phase: 'compensation-incomplete',
          paused: true,
          pauses: [{ by: 'ann', reason: 'lunch', at: '2026-11-29T11:55:00.000Z' }],
          matrix: [
            { container: 'tables', service: 'postgres', port: 5432, protocol: 'tcp', required: true, ok: true },
            { container: 'dns', service: 'coredns', port: 53, protocol: 'udp', required: true, ok: false },
            { container: 'drive', service: 'minio', path: '/opt/gbo/conf/config.json', required: false, ok: false },
            { container: 'alm', service: 'forgejo', port: 3000, required: true, ok: false, notProbed: true },
          ],
          skipped: [{ id: 'fixes/alm/env', by: 'ann', reason: 'done by hand' }],
          undoFailures: [{ id: 'undo/tables/restore-devices', host: 'source', error: 'lxc: Error: device exists\nmore', byHand: 'lxc config device add acme-tables gbo disk source=/opt/gbo/tables path=/opt/gbo' }],
        },
      ),
      now,
    );
    expect(frame).toContain('PAUSED by ann at 2026-11-29T11:55:00.000Z (lunch)');
    expect(frame).toContain('resume with: gbo-migrate resume acme');
    expect(frame).toContain('matrix: 1/3 green (1 not probed); red: dns/coredns:53/udp, drive/minio /opt/gbo/conf/config.json (optional)');
    expect(frame).toContain('  fixes/alm/env by ann: done by hand');
    expect(frame).toContain('  undo/tables/restore-devices on source: lxc: Error: device exists\n    lxc config device add acme-tables gbo disk source=/opt/gbo/tables path=/opt/gbo');
  });

  test('a closed run: its close status and time, where to read the rest, no retry command, and the final status when the query answered', () => {
    const closed = live(
      { workflow: { id: 'migrate-acme', runId: 'run-1', status: 'FAILED', taskQueue: 'gbo-migrate', startTime: '2026-11-29T11:30:00.000Z', closeTime: '2026-11-29T11:42:05.000Z' } },
      { phase: 'data', failures: { 'data/tables/pull-final': 'exit 23' }, steps: { 'data/tables/pull-final': 'failed' }, downtimeMs: 60_000 },
    );
    const frame = renderStatus(closed, now);
    expect(frame).toContain('migrate-acme (live), run run-1: FAILED at 2026-11-29T11:42:05.000Z (12m 05s after it started)');
    expect(frame).toContain('the run is over: its steps and events with `gbo-migrate history acme`, its report with `gbo-migrate report acme`');
    expect(frame).toContain('  data/tables/pull-final\n    exit 23');
    expect(frame).toContain('downtime 1m 00s (not over when the run closed)');
    expect(frame).not.toContain('gbo-migrate retry');

    const unanswered = renderStatus({ ...closed, status: undefined, queryError: 'no answer within 5 s', queryTimedOut: true }, now);
    expect(unanswered).toContain('its final status is not available (no answer within 5 s): is a worker polling task queue gbo-migrate?');
    const refused = renderStatus({ ...closed, status: undefined, queryError: 'Failed to query Workflow: 9 FAILED_PRECONDITION: closed' }, now);
    expect(refused.split('\n').at(-1)).toBe('  its final status is not available (Failed to query Workflow: 9 FAILED_PRECONDITION: closed)');
    expect(unanswered).not.toContain('tenant acme  mode');
  });

  test('a running migration whose query does not answer points at the worker', () => {
    expect(renderStatus(live({ status: undefined, queryError: 'no answer within 5 s', queryTimedOut: true }), now)).toContain('the status query did not answer (no answer within 5 s): is a worker polling task queue gbo-migrate?');
  });

  test('no migration names the workflow ID and the server', () => {
    expect(renderMissing('migrate-acme', '127.0.0.1:7233', 'default')).toBe('no migration migrate-acme on 127.0.0.1:7233 (namespace default): none was started with that ID, or its history has been deleted');
  });

  test('--json: status, workflow and activities, a transfer with its rate and ETA in numbers', () => {
    const j = JSON.parse(statusJson(live({ status: undefined, queryError: 'x' })));
    expect(j).toEqual({ status: null, queryError: 'x', workflow: expect.objectContaining({ id: 'migrate-acme', runId: 'run-1', status: 'RUNNING' }), activities: [], at: now.toISOString() });
    const pull = { workflowId: 'migrate-acme-tables', activityId: '1', type: 'runStep', state: 'started' as const, attempt: 1, progress: { step: 'data/tables/final-sync', elapsedS: 3, bytes: 450 * MB, percent: 45, rate: '10.00MB/s' } };
    const [a] = JSON.parse(statusJson(live({ activities: [pull] }))).activities;
    expect(a).toEqual({ ...pull, rateBytesPerS: 10 * MB, etaS: 55 });
  });
});
