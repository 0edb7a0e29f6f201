import type { MigrationStatus } from '../../src/workflows/messages';

/** A tenant's status with nothing in it yet, for rendering tests: `acme`, live, in `data`, then the overrides. */
export function migrationStatus(over: Partial<MigrationStatus> = {}): MigrationStatus {
  return {
    tenant: 'acme',
    mode: 'live',
    phase: 'data',
    paused: false,
    waits: [],
    steps: {},
    failures: {},
    skipped: [],
    pauses: [],
    containers: {},
    decisions: [],
    reverifications: [],
    undoFailures: [],
    matrix: [],
    approvals: [],
    downtimeOver: false,
    ...over,
  };
}
