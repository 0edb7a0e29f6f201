/**
 * The worker: bundles the workflows and registers the activities over their dependencies. Dry runs
 * need nothing else; live runs get the SSH executor from the worker's own configuration.
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from './activities';
import { DryRunExecutor } from './activities/executor';
import { temporalConfig } from './config';

export interface WorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  taskQueue: string;
  deps?: Partial<ActivityDeps>;
}

export async function createWorker(options: WorkerOptions): Promise<Worker> {
  const deps: ActivityDeps = { dryRun: options.deps?.dryRun ?? new DryRunExecutor({ keep: false }), live: options.deps?.live };
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace ?? 'default',
    taskQueue: options.taskQueue,
    workflowsPath: require.resolve('./workflows'),
    activities: createActivities(deps),
  });
}

/** `gbo-migrate worker`: runs until SIGINT/SIGTERM. */
export async function runWorker(): Promise<void> {
  const cfg = temporalConfig();
  const connection = await NativeConnection.connect({ address: cfg.address });
  try {
    const worker = await createWorker({ connection, namespace: cfg.namespace, taskQueue: cfg.taskQueue });
    console.log(`worker: polling task queue "${cfg.taskQueue}" on ${cfg.address}`);
    await worker.run();
  } finally {
    await connection.close();
  }
}
