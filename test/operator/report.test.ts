/**
 * The report of the recorded lab migration against what its history says, computed here without
 * the module under test: the completed run's own matrix and downtime, the stop times its children
 * recorded and the times its verification probes answered.
 */
import type { MigrationHistories } from '../../src/operator/migration-history';
import { auditReport, renderReportMarkdown, rsyncBytes } from '../../src/operator/report';
import type { MatrixEntry } from '../../src/workflows/messages';
import { labMigration, payload, rawEvents, run } from './fixtures';

interface Result {
  matrix: MatrixEntry[];
  downtimeMs: number;
  values: Record<string, string>;
  approvals: { gate: string; by: string; reason: string }[];
}

const raw = rawEvents('lab-migrate-tenant');
const result = payload<Result>((raw.at(-1)!.workflowExecutionCompletedEventAttributes as { result: { payloads: { data: string }[] } }).result);

/** Each verify probe's completion time, by step ID (the lab ran the matrix once). */
const probeAnswered = new Map<string, number>();
{
  const scheduled = new Map<string, string>();
  for (const e of raw) {
    const s = e.activityTaskScheduledEventAttributes as { activityType: { name: string }; input: { payloads: { data: string }[] } } | undefined;
    if (s?.activityType.name === 'probe') scheduled.set(e.eventId, payload<{ step: { id: string } }>(s.input).step.id);
    const c = e.activityTaskCompletedEventAttributes as { scheduledEventId: string } | undefined;
    const id = c && scheduled.get(c.scheduledEventId);
    if (id) probeAnswered.set(id, Date.parse(e.eventTime));
  }
}

/** The same migration as if it had not completed (its last events lost): what `report` shows of a running, failed or cancelled one. */
function withoutClose(h: MigrationHistories): MigrationHistories {
  return { ...h, tenant: { ...h.tenant, events: h.tenant.events.filter((e) => !e.workflowExecutionCompletedEventAttributes) } };
}

test('the matrix: the completed run\'s own, and the same one rebuilt from the probes when the run has no result', () => {
  const report = auditReport(labMigration());
  expect(report.matrixSource).toBe('result');
  expect(report.matrix).toEqual(result.matrix);
  const rebuilt = auditReport(withoutClose(labMigration()));
  expect(rebuilt.status).toBe('running');
  expect(rebuilt.matrixSource).toBe('probes');
  expect(rebuilt.matrix).toEqual(result.matrix);
});

test('the Markdown matrix is the guide\'s Final Status table, one row per cell', () => {
  const md = renderReportMarkdown(auditReport(labMigration()));
  expect(md).toContain('| Container | Service | Port | Status |');
  for (const m of result.matrix) {
    const port = m.port !== undefined ? `${m.port}/${m.protocol}` : m.path;
    expect(md).toContain(`| ${m.container} | ${m.service} | ${port} | ${m.ok ? '✓ Running' : '❌ Not answering'} |`);
  }
});

test('downtime: the tenant\'s as the run recorded it; each container from its stop to its probes answering', () => {
  for (const h of [labMigration(), withoutClose(labMigration())]) {
    const { tenant, containers } = auditReport(h).downtime;
    expect(tenant.ms).toBe(result.downtimeMs);
    expect(tenant.over).toBe(true);
    const stops = Object.entries(result.values).filter(([k]) => k.startsWith('stoppedAt:'));
    expect(tenant.from).toBe(new Date(Math.min(...stops.map(([, v]) => Date.parse(v)))).toISOString());
    expect(containers).toHaveLength(10);
    for (const c of containers) {
      const stopped = Date.parse(result.values[`stoppedAt:${c.container}`]!);
      const answered = [...probeAnswered].filter(([id]) => id.split('/')[1] === c.container).map(([, t]) => t);
      if (answered.length === 0) {
        // alm-ci declares no service: nothing says when it was back.
        expect(c).toMatchObject({ container: 'alm-ci', unprobed: true });
        expect(c.ms).toBeUndefined();
        continue;
      }
      expect(c.ms).toBe(Math.max(...answered) - stopped);
      expect(c.back).toBe('answering');
    }
  }
  const md = renderReportMarkdown(auditReport(labMigration()));
  expect(md).toContain(`Tenant: **${(result.downtimeMs / 1000).toFixed(1)} s**`);
  expect(md).toMatch(/\| alm-ci \| 2026-11-29T18:02:23\.361Z \| no service of it is probed: not measured \| - \|/);
});

test('data: the source size, each manifest, what rsync reported, and the checks\' own summaries; what is not in the history is said', () => {
  const report = auditReport(labMigration());
  expect(report.data.sourceBytes).toBe(Number(result.values['bytes:source-data']));
  expect(report.data.containers.map((d) => d.container).sort()).toEqual(['alm', 'alm-ci', 'dns', 'drive', 'email', 'proxy', 'system', 'table-editor', 'tables', 'webmail']);
  for (const d of report.data.containers) {
    expect(d.sourceManifest).toBe(result.values[`digest:${d.container}`]);
    expect(d.transferVerified).toBe('done');
    expect(d.filesCheck).toMatch(/^files ok=\d+ changed-by-services=\d+ bad=0 of \d+$/);
    expect(d.ownersCheck).toMatch(/^owners ok=(\d+) bad=0 of \1$/);
  }
  expect(report.data.containers.find((d) => d.container === 'proxy')).toMatchObject({ presyncBytes: 548235, finalSyncBytes: 207065 });
  expect(report.data.notDerivable.length).toBeGreaterThan(0);
  expect(rsyncBytes('\n  0   0%  0.00kB/s  0:00:00\n  1,419 100%  1.35MB/s  0:00:00 (xfr#1, to-chk=0/9)\n')).toBe(1419);
  expect(rsyncBytes('no progress line')).toBeUndefined();
});

test('approvals with who, when, why and the client; waits; nothing skipped or decided that was not', () => {
  const report = auditReport(labMigration());
  expect(report.approvals.map((a) => [a.gate, a.by, a.reason, a.identity])).toEqual(result.approvals.map((a) => [a.gate, a.by, a.reason, '1973@vm']));
  expect(report.skipped).toEqual([]);
  expect(report.decisions).toEqual([]);
  expect(report.waits.find((w) => w.stepId === 'cutover/tenant/dns-propagated')).toMatchObject({ kind: 'poll', attempts: 1, end: 'done' });
  const md = renderReportMarkdown(report);
  expect(md).toMatch(/\| cutover \| e2e \(client 1973@vm\) \| 2026-11-29T18:03:16\.511Z \| matrix green \|/);
});

test('the certificates run: a plan-waived gate and the wakes are in the report', () => {
  const report = auditReport({ tenant: run('lab-certificates-migrate-tenant', 'migrate-pragmatismo'), children: new Map() });
  expect(report.approvals.find((a) => a.gate === 'cutover')).toMatchObject({ by: 'plan' });
  expect(report.decisions.filter((d) => d.action === 'wake').map((d) => d.by)).toEqual(['certificate-scenario']);
  expect(report.waits.filter((w) => w.attempts === 20 || w.attempts === 11)).toHaveLength(2);
});

test('a dry run has no matrix and says so', () => {
  const report = auditReport({ tenant: run('migrate-tenant', 'migrate-pragmatismo-dry-run'), children: new Map() });
  expect(report.matrixSource).toBe('none');
  expect(renderReportMarkdown(report)).toContain('A dry run probes nothing: no matrix.');
});
