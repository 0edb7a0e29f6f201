/** What the Web UI shows of a migration: step summaries on one line, and the current details in Markdown. */
import type { Step } from '../../src/runbook/model';
import { oneLine, stepSummary, tenantDetails } from '../../src/workflows/details';
import type { MigrationStatus } from '../../src/workflows/messages';
import { migrationStatus } from '../harness/migration-status';

const status = (over: Partial<MigrationStatus> = {}): MigrationStatus =>
  migrationStatus({ containers: { tables: { phase: 'data', step: 'data/tables/rsync-final' }, web: { phase: 'done', ip: '10.0.0.5' } }, ...over });

test('a summary is the step ID and title on one line, cut at 200 characters', () => {
  const step = { id: 'data/tables/push', title: 'Push tables data\ninto the container' } as Step;
  expect(stepSummary(step)).toBe('data/tables/push: Push tables data into the container');
  expect(stepSummary(step, ' (round 2)')).toBe('data/tables/push (round 2): Push tables data into the container');
  const long = oneLine('x'.repeat(500));
  expect(long).toHaveLength(200);
  expect(long.endsWith('…')).toBe(true);
});

test('the details name the phase, each container and its step, the downtime so far', () => {
  const md = tenantDetails(status({ downtimeMs: 12_400 }));
  expect(md.split('\n')[0]).toBe('**acme** · live · phase **data**');
  expect(md).toContain('Downtime so far 12 s');
  expect(md).toContain('| tables | data | data/tables/rsync-final |');
  expect(md).toContain('| web | done |  |');
});

test('a failure names its step and the commands that retry it; a gate its approve command; a dry run says so in each', () => {
  const md = tenantDetails(
    status({
      mode: 'dry-run',
      failures: { 'copy/web/copy': 'copy/web/copy: exit 1 on destination\nError: no space | left' },
      gate: { name: 'cutover', title: 'cut over to the new host' },
    }),
  );
  expect(md).toContain('| copy/web/copy | copy/web/copy: exit 1 on destination | `gbo-migrate retry acme copy/web/copy --dry-run` or `skip … --reason "…"` |');
  expect(md).toContain('Waiting at the **cutover** gate: cut over to the new host');
  expect(md).toContain('`gbo-migrate approve acme --gate cutover --reason "…" --dry-run`');
});

test('open waits show what they wait for and until when; the matrix its red cells; approvals who and when', () => {
  const md = tenantDetails(
    status({
      phase: 'certificates',
      waits: [
        { id: 'certificates/tls/a.example', kind: 'poll', what: 'a valid certificate | for a.example', since: '2026-01-01T00:00:00.000Z', until: '2026-01-08T00:00:00.000Z', state: 'waiting', actions: [] },
        { id: 'cutover/dns/propagation', kind: 'poll', what: 'DNS', since: '2026-01-01T00:00:00.000Z', until: '2026-01-02T00:00:00.000Z', state: 'over', actions: [] },
      ],
      matrix: [
        { container: 'web', service: 'nginx', port: 80, required: true, ok: true },
        { container: 'tables', service: 'PostgreSQL', port: 5432, required: true, ok: false },
      ],
      approvals: [{ gate: 'cutover', by: 'alice', reason: 'green', at: '2026-01-01T00:00:00.000Z' }],
    }),
  );
  expect(md).toContain('| certificates/tls/a.example | a valid certificate \\| for a.example | 2026-01-08T00:00:00.000Z |');
  expect(md).not.toContain('cutover/dns/propagation');
  expect(md).toContain('Verification matrix: 1/2 answering; red: tables PostgreSQL 5432');
  expect(md).toContain('Approvals: cutover by alice at 2026-01-01T00:00:00.000Z');
});
