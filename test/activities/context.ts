/**
 * Runs activity code inside a stand-in Temporal activity context, as a worker would: its
 * heartbeats are collected, and the returned controller cancels it.
 */
import { asyncLocalStorage, Context, type Info } from '@temporalio/activity';
import { noopMetricMeter } from '@temporalio/common';

export interface ActivityRun<T> {
  result: Promise<T>;
  /** Every heartbeat's details, in order. */
  beats: unknown[];
  /** Aborting it is the worker's cancel. */
  cancel: AbortController;
}

const quiet = { log: () => undefined, trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

export function inActivity<T>(work: () => Promise<T>, workflowId = 'migrate-test'): ActivityRun<T> {
  const beats: unknown[] = [];
  const cancel = new AbortController();
  const info = { activityId: '1', activityType: 'test', attempt: 1, isLocal: false, workflowExecution: { workflowId, runId: 'run-1' } } as unknown as Info;
  const ctx = new Context(info, new Promise<never>(() => undefined), cancel.signal, (d: unknown) => beats.push(d), undefined, quiet, noopMetricMeter, {} as never);
  return { result: asyncLocalStorage.run(ctx, work), beats, cancel };
}
