/** What `--version` and `--help` print beyond commander's own: the package version and the environment read. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { temporalConfig } from '../config';
import { DEFAULT_SECRETS_DIRS, DEFAULT_SECRETS_ENV_PREFIX, SECRETS_DIRS_VAR, SECRETS_ENV_PREFIX_VAR } from '../ssh/secrets';
import { OPERATOR_VAR } from './identity';

/** package.json's version, read next to the compiled CLI (dist/src/operator → ../../../package.json). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
}

/** Every variable the CLI and the worker read, with its default (the defaults are the code's own). */
export function environmentHelp(): string {
  const d = temporalConfig({});
  const vars: [string, string][] = [
    ['TEMPORAL_ADDRESS', `the Temporal server's gRPC address (default ${d.address})`],
    ['TEMPORAL_NAMESPACE', `its namespace (default ${d.namespace})`],
    ['GBO_TASK_QUEUE', `the task queue the worker polls and migrations start on (default ${d.taskQueue})`],
    ['TEMPORAL_UI_URL', `the Web UI, for links (default ${d.uiUrl})`],
    [OPERATOR_VAR, 'who acts: the default of --by and the client identity the server records (default: the OS user)'],
    [SECRETS_DIRS_VAR, `worker: the directories file: secret references may read, colon-separated (default ${DEFAULT_SECRETS_DIRS.join(':')})`],
    [SECRETS_ENV_PREFIX_VAR, `worker: the prefix env: secret references must have (default ${DEFAULT_SECRETS_ENV_PREFIX})`],
    ['SSH_AUTH_SOCK', 'worker: the SSH agent that agent: key references use'],
  ];
  const width = Math.max(...vars.map(([n]) => n.length));
  return `\nEnvironment:\n${vars.map(([n, what]) => `  ${n.padEnd(width)}  ${what}`).join('\n')}\n`;
}
