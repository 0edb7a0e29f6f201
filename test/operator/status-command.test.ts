/** The status loop over a stand-in client: frames on a terminal and in a log, JSON lines, exit codes. */
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { runStatus, type StatusCommandOptions } from '../../src/operator/status-command';

/** A client whose migration goes through `states`, one per description; `undefined`: no such workflow; `UNAVAILABLE`: the server does not answer. */
function clientThrough(states: (string | undefined)[]): Client {
  let i = 0;
  const describe = async () => {
    const name = states[Math.min(i++, states.length - 1)];
    if (!name) throw new WorkflowNotFoundError('not found', 'migrate-acme', undefined);
    if (name === 'UNAVAILABLE') throw new Error('14 UNAVAILABLE: connection refused');
    return {
      workflowId: 'migrate-acme',
      runId: 'run-1',
      taskQueue: 'gbo-migrate',
      status: { name },
      startTime: new Date('2026-11-29T11:00:00Z'),
      ...(name === 'RUNNING' ? {} : { closeTime: new Date('2026-11-29T11:10:00Z') }),
      raw: { pendingActivities: [], pendingChildren: [] },
    };
  };
  const query = async () => ({ tenant: 'acme', mode: 'live', phase: 'data', paused: false, waits: [], steps: {}, failures: {}, skipped: [], pauses: [], containers: {}, decisions: [], reverifications: [], undoFailures: [], matrix: [], approvals: [], downtimeOver: false });
  return { workflow: { getHandle: () => ({ describe, query }) }, connection: { withAbortSignal: (_: AbortSignal, fn: () => Promise<unknown>) => fn() } } as unknown as Client;
}

async function run(states: (string | undefined)[], o: Partial<StatusCommandOptions>): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runStatus(clientThrough(states), { tenant: 'acme', mode: 'live', json: false, address: '127.0.0.1:7233', namespace: 'default', tty: false, write: (t) => (out += t), ...o });
  return { code, out };
}

test('one look: one frame, exit 0 whatever the run became', async () => {
  const r = await run(['FAILED'], {});
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^migrate-acme \(live\), run run-1: FAILED at /);
  expect(r.out).not.toContain('---');
});

test('--watch in a log: a separator line before each frame, until the run completes (exit 0)', async () => {
  const r = await run(['RUNNING', 'RUNNING', 'COMPLETED'], { watchS: 0.01 });
  expect(r.code).toBe(0);
  expect(r.out.match(/^--- \S+ ---$/gm)).toHaveLength(3);
  expect(r.out.split(/^--- \S+ ---\n/m).at(-1)).toMatch(/^migrate-acme \(live\), run run-1: COMPLETED at /);
});

test('--watch on a terminal: clear and redraw; a run that did not complete exits 1', async () => {
  const r = await run(['RUNNING', 'CANCELLED'], { watchS: 0.01, tty: true });
  expect(r.code).toBe(1);
  expect(r.out.split('\x1b[H\x1b[2J')).toEqual(['', expect.stringContaining('RUNNING'), expect.stringContaining('CANCELLED')]);
});

test('--watch --json: one JSON line per refresh', async () => {
  const r = await run(['RUNNING', 'TERMINATED'], { watchS: 0.01, json: true });
  expect(r.code).toBe(1);
  const lines = r.out.trim().split('\n').map((l) => JSON.parse(l) as { workflow: { status: string } });
  expect(lines.map((l) => l.workflow.status)).toEqual(['RUNNING', 'TERMINATED']);
});

test('no migration: exit 1, even when watching', async () => {
  const r = await run([undefined], { watchS: 0.01 });
  expect(r.code).toBe(1);
  expect(r.out).toBe('no migration migrate-acme on 127.0.0.1:7233 (namespace default): none was started with that ID, or its history has been deleted\n');
});

test('--watch goes on across a server that does not answer for a while; one look fails with what failed', async () => {
  const r = await run(['RUNNING', 'UNAVAILABLE', 'COMPLETED'], { watchS: 0.01 });
  expect(r.code).toBe(0);
  expect(r.out).toContain('status unavailable: describing migrate-acme: 14 UNAVAILABLE: connection refused');
  await expect(run(['UNAVAILABLE'], {})).rejects.toThrow('describing migrate-acme: 14 UNAVAILABLE: connection refused');
});
