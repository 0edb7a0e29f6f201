/**
 * `list`: the migrations the server knows, found by the search attributes every run sets
 * (GboTenant at the start, GboPhase on each phase), with their mode and state.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { PHASES } from '../runbook/model';
import { PHASE_ATTR, TENANT_ATTR, workflowIdOf, type MigrationStatus } from '../workflows/messages';

/** Every value GboPhase takes: the runbook's phases and how a run ends. */
export const PHASE_VALUES: readonly MigrationStatus['phase'][] = [...PHASES.map((p) => p.id), 'done', 'compensating', 'compensated', 'compensation-incomplete'];

export interface ListFilter {
  tenant?: string;
  phase?: string;
  running?: boolean;
}

export interface MigrationRow {
  workflowId: string;
  runId: string;
  tenant: string;
  mode: 'dry-run' | 'live';
  phase: string;
  state: string;
  started: string;
  closed?: string;
}

/**
 * The visibility query for a filter. Values are checked, not escaped: a tenant is a plan's tenant
 * name and a phase one of PHASE_VALUES, so neither can carry a quote into the query.
 */
export function listQuery(filter: ListFilter): string {
  const terms = [`WorkflowType = 'migrateTenant'`];
  if (filter.tenant !== undefined) {
    if (!/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/.test(filter.tenant)) throw new Error(`--tenant: expected a tenant name (lowercase letters, digits and "-"), got ${JSON.stringify(filter.tenant)}`);
    terms.push(`${TENANT_ATTR.name} = '${filter.tenant}'`);
  }
  if (filter.phase !== undefined) {
    if (!(PHASE_VALUES as readonly string[]).includes(filter.phase)) throw new Error(`--phase: expected one of ${PHASE_VALUES.join(', ')}, got ${JSON.stringify(filter.phase)}`);
    terms.push(`${PHASE_ATTR.name} = '${filter.phase}'`);
  }
  if (filter.running) terms.push(`ExecutionStatus = 'Running'`);
  return terms.join(' AND ');
}

export function rowOf(w: WorkflowExecutionInfo): MigrationRow {
  const tenant = w.typedSearchAttributes.get(TENANT_ATTR) ?? '';
  return {
    workflowId: w.workflowId,
    runId: w.runId,
    tenant,
    // The ID says the mode (workflowIdOf); a tenant may itself end in "-dry-run", so compare whole IDs.
    mode: tenant !== '' && w.workflowId === workflowIdOf(tenant, 'dry-run') ? 'dry-run' : 'live',
    phase: w.typedSearchAttributes.get(PHASE_ATTR) ?? '',
    state: w.status.name.toLowerCase().replace(/_/g, '-'),
    started: w.startTime.toISOString(),
    ...(w.closeTime ? { closed: w.closeTime.toISOString() } : {}),
  };
}

/** Newest first, as the server lists them. */
export async function listMigrations(client: Client, filter: ListFilter): Promise<MigrationRow[]> {
  const rows: MigrationRow[] = [];
  for await (const w of client.workflow.list({ query: listQuery(filter) })) rows.push(rowOf(w));
  return rows;
}

/** A table for people: one line per run, columns padded to their widest value. */
export function renderMigrations(rows: MigrationRow[]): string {
  if (rows.length === 0) return 'no migrations found';
  const header = ['WORKFLOW ID', 'TENANT', 'MODE', 'PHASE', 'STATE', 'STARTED', 'CLOSED'];
  const cells = rows.map((r) => [r.workflowId, r.tenant, r.mode === 'dry-run' ? 'dry run' : 'live', r.phase, r.state, r.started, r.closed ?? '-']);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [header, ...cells].map((c) => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]!))).join('  ')).join('\n');
}
