/** Where the worker and the client find Temporal: environment first, the local dev server otherwise. */
export interface TemporalConfig {
  address: string;
  namespace: string;
  taskQueue: string;
  uiUrl: string;
}

export function temporalConfig(env: NodeJS.ProcessEnv = process.env): TemporalConfig {
  return {
    address: env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    namespace: env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: env.GBO_TASK_QUEUE ?? 'gbo-migrate',
    uiUrl: env.TEMPORAL_UI_URL ?? 'http://127.0.0.1:8233',
  };
}
