/** The worker's logger: a wait's poll attempt is one DEBUG line; every other failure stays a warning. */
import type { LogEntry } from '@temporalio/worker';
import { WorkerLogger } from '../src/worker';

test('a NotYet poll attempt is logged at DEBUG in one line; other activity failures stay warnings', () => {
  const entries: LogEntry[] = [];
  const debug = new WorkerLogger('DEBUG', (e) => entries.push(e));
  debug.log('WARN', 'Activity failed', { error: { type: 'NotYet', message: 'not yet: ns1: chat A = 10.0.0.1' }, attempt: 3, workflowId: 'migrate-t' });
  debug.log('WARN', 'Activity failed', { error: { type: 'CommandFailed', message: 'exit 1' }, attempt: 1 });
  expect(entries.map((e) => [e.level, e.message])).toEqual([
    ['DEBUG', 'poll attempt 3 of migrate-t: not yet: ns1: chat A = 10.0.0.1'],
    ['WARN', 'Activity failed'],
  ]);
  const quiet: LogEntry[] = [];
  new WorkerLogger('INFO', (e) => quiet.push(e)).log('WARN', 'Activity failed', { error: { type: 'NotYet', message: 'not yet' }, attempt: 9 });
  expect(quiet).toEqual([]);
});
