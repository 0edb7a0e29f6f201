/** The recorded histories in test/fixtures, as the operator modules take them, and their raw JSON for independent checks. */
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationHistories, WorkflowRun } from '../../src/operator/migration-history';

export interface RawEvent {
  eventId: string;
  eventTime: string;
  eventType: string;
  [attributes: string]: unknown;
}

const file = (name: string) => join(__dirname, '..', 'fixtures', `${name}.history.json`);

export const rawEvents = (name: string): RawEvent[] => (JSON.parse(readFileSync(file(name), 'utf8')) as { events: RawEvent[] }).events;

export function run(name: string, workflowId: string): WorkflowRun {
  return { workflowId, events: historyFromJSON(JSON.parse(readFileSync(file(name), 'utf8'))).events ?? [] };
}

/** A JSON payload of the raw history, decoded without the SDK. */
export function payload<T>(p: { payloads?: { data: string }[] } | undefined): T {
  return JSON.parse(Buffer.from(p!.payloads![0]!.data, 'base64').toString('utf8')) as T;
}

/** The live lab migration with its one recorded child (proxy); the other children are known from their results only. */
export const labMigration = (): MigrationHistories => ({
  tenant: run('lab-migrate-tenant', 'migrate-pragmatismo'),
  children: new Map([['proxy', run('lab-migrate-container', 'migrate-pragmatismo-proxy')]]),
});
