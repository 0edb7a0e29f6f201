/**
 * The worker: bundles the workflows and registers the activities over their dependencies: the
 * dry-run recorder, the SSH pool for live runs, and the secret resolver. Keys and secrets are read
 * here, from references, never from workflow input.
 */
import { ApplicationFailure, type LogLevel, type LogMetadata } from '@temporalio/common';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from './activities';
import { DryRunExecutor } from './activities/executor';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, PROGRESS_BEAT_MS } from './activities/heartbeat';
import { temporalConfig } from './config';
import { FailureType } from './errors';
import { SshPool } from './ssh/pool';
import { unreachable } from './unreachable';
import { resolveSecretRef, secretPolicyFromEnv, type SecretPolicy } from './ssh/secrets';

export interface WorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  taskQueue: string;
  deps?: Partial<ActivityDeps>;
  /** What the default secret resolver may read; default: this process's GBO_SECRETS_DIRS / GBO_SECRETS_ENV_PREFIX. */
  secrets?: SecretPolicy;
}

/** Secrets a step needs as a value (Vault's unseal key): `env:` or `file:` references. */
export async function resolveSecretValue(ref: string, policy: SecretPolicy = secretPolicyFromEnv()): Promise<string> {
  const r = resolveSecretRef(ref, policy);
  if ('agent' in r) throw ApplicationFailure.create({ type: FailureType.SecretUnavailable, nonRetryable: true, message: 'agent: an agent holds keys, not values' });
  return r.value.trim();
}

export async function createWorker(options: WorkerOptions): Promise<Worker> {
  const deps: ActivityDeps = {
    dryRun: options.deps?.dryRun ?? new DryRunExecutor({ keep: false }),
    live: options.deps?.live,
    resolveSecret: options.deps?.resolveSecret ?? ((ref: string) => resolveSecretValue(ref, options.secrets)),
    ...(options.deps?.net ? { net: options.deps.net } : {}),
    ...(options.deps?.heartbeatIntervalMs ? { heartbeatIntervalMs: options.deps.heartbeatIntervalMs } : {}),
  };
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace ?? 'default',
    taskQueue: options.taskQueue,
    workflowsPath: require.resolve('./workflows'),
    activities: createActivities(deps),
    // Each beat reaches the server (whose description `status` reads: a transfer's bytes and rate),
    // not one in 16 s (the SDK's default throttle, 0.8 of the 20 s heartbeat timeout): a transfer
    // beats up to once a second, everything else every few seconds.
    maxHeartbeatThrottleInterval: Math.min(PROGRESS_BEAT_MS, deps.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS),
  });
}

/** `gbo-migrate worker`: runs until SIGINT/SIGTERM. */
/**
 * The worker's logger. A poll attempt that finds nothing yet (`NotYet`: DNS not propagated, no
 * certificate yet) is the server retrying a wait, not a problem: at DEBUG, one line, not a
 * warning with a stack per attempt (a 7-day wait at 30 s polls would print 20,000 of them).
 */
export class WorkerLogger extends DefaultLogger {
  override log(level: LogLevel, message: string, meta?: LogMetadata): void {
    const error = meta?.error as { type?: string; message?: string } | undefined;
    if (message === 'Activity failed' && error?.type === 'NotYet') {
      super.log('DEBUG', `poll attempt ${String(meta?.attempt)} of ${String(meta?.workflowId)}: ${String(error.message).slice(0, 300)}`);
      return;
    }
    super.log(level, message, meta);
  }
}

export async function runWorker(): Promise<void> {
  Runtime.install({ logger: new WorkerLogger('INFO') });
  const cfg = temporalConfig();
  // Read once, before connecting: a bad GBO_SECRETS_DIRS stops the worker here, not mid-migration.
  const secrets = secretPolicyFromEnv();
  const connection = await NativeConnection.connect({ address: cfg.address }).catch(async (err: unknown) => {
    throw await unreachable(cfg.address, cfg.namespace, err);
  });
  const pool = new SshPool({ secrets });
  try {
    const worker = await createWorker({ connection, namespace: cfg.namespace, taskQueue: cfg.taskQueue, deps: { live: pool }, secrets });
    console.log(`worker: secret references resolve to files in ${secrets.dirs.join(', ')} and variables ${secrets.envPrefix}*`);
    console.log(`worker: polling task queue "${cfg.taskQueue}" on ${cfg.address}`);
    await worker.run();
  } finally {
    await pool.close();
    await connection.close();
  }
}
