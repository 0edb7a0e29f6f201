/**
 * Secret references, resolved in the worker only: plans and workflow input carry `agent`,
 * `env:NAME` or `file:/path`, never the secret itself.
 *
 * Whoever can start a workflow chooses the references, and a resolved value leaves the worker
 * (as an SSH key, or as Vault's unseal key sent to a host the plan names). So the worker resolves
 * only what its own configuration allows (SecretPolicy): files inside its secret directories
 * (after symlinks), environment variables with its prefix.
 */
import { ApplicationFailure } from '@temporalio/common';
import { readFileSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { FailureType } from '../errors';

/** What a reference resolved to: an ssh-agent socket, or the secret's text. */
export type ResolvedSecret = { agent: string } | { value: string };

/** What a worker resolves. `agent` (the worker's own SSH_AUTH_SOCK) is always allowed. */
export interface SecretPolicy {
  /** Absolute directories a `file:` reference must resolve inside, symlinks followed. */
  dirs: readonly string[];
  /** Prefix an `env:` name must start with ("" allows any variable). */
  envPrefix: string;
}

/** Colon-separated directories for `file:` references; `~/` is the worker's home. */
export const SECRETS_DIRS_VAR = 'GBO_SECRETS_DIRS';
/** Prefix of the variables `env:` references may name. */
export const SECRETS_ENV_PREFIX_VAR = 'GBO_SECRETS_ENV_PREFIX';
/**
 * Defaults: ssh's own directory (where operators keep the keys and known_hosts plans have always
 * referenced, see examples/pragmatismo.yaml) and a dedicated one; variables named GBO_*, which
 * leaves out the worker's other environment (cloud credentials, TEMPORAL_*, PATH).
 */
export const DEFAULT_SECRETS_DIRS = ['~/.ssh', '~/.gbo-migrate/secrets'];
export const DEFAULT_SECRETS_ENV_PREFIX = 'GBO_';

const expandHome = (p: string) => (p === '~' ? homedir() : p.startsWith('~/') ? path.join(homedir(), p.slice(2)) : p);

/** The policy of this worker process, from GBO_SECRETS_DIRS and GBO_SECRETS_ENV_PREFIX. */
export function secretPolicyFromEnv(env: NodeJS.ProcessEnv = process.env): SecretPolicy {
  const listed = env[SECRETS_DIRS_VAR];
  const dirs = (listed !== undefined && listed.trim() !== '' ? listed.split(':') : DEFAULT_SECRETS_DIRS)
    .map((d) => expandHome(d.trim()))
    .filter((d) => d !== '');
  for (const d of dirs) if (!path.isAbsolute(d)) throw new Error(`${SECRETS_DIRS_VAR}: ${JSON.stringify(d)} is not an absolute directory`);
  return { dirs, envPrefix: env[SECRETS_ENV_PREFIX_VAR] ?? DEFAULT_SECRETS_ENV_PREFIX };
}

/**
 * For the worker's OWN configuration (the pool's default known_hosts), never for a plan's
 * references: those go through the policy.
 */
export const WORKER_OWN_CONFIG: SecretPolicy = { dirs: ['/'], envPrefix: '' };

function refused(kind: 'file:' | 'env:', why: string): ApplicationFailure {
  // The kind only: the refused reference came from whoever started the workflow.
  return ApplicationFailure.create({
    type: FailureType.SecretUnavailable,
    message: `${kind === 'env:' ? 'an' : 'a'} ${kind} secret reference refused by this worker: ${why}`,
    nonRetryable: true,
  });
}

const inside = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

/** The real directories of a policy; missing ones allow nothing. */
function realDirs(policy: SecretPolicy): string[] {
  return policy.dirs.flatMap((d) => {
    try {
      return [realpathSync(d)];
    } catch {
      return [];
    }
  });
}

/**
 * A reference as it may appear in a message. A malformed reference could be a pasted secret, so
 * anything that does not look like one of the three forms is not echoed.
 */
export function describeSecretRef(ref: string): string {
  const looksLikeRef = /^(agent|env:[A-Za-z_][A-Za-z0-9_]*|file:[^\s]{1,400})$/.test(ref) && !/PRIVATE KEY/i.test(ref);
  return looksLikeRef ? ref : `<unrecognised reference of ${ref.length} characters>`;
}

function unavailable(ref: string, why: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: FailureType.SecretUnavailable,
    message: `secret ${describeSecretRef(ref)} is unavailable: ${why}`,
    nonRetryable: true,
  });
}

/** `file:~/x` → the worker's home; anything else must be absolute. */
export function expandFilePath(ref: string): string {
  const raw = ref.slice('file:'.length);
  if (raw === '~') return homedir();
  if (raw.startsWith('~/')) return path.join(homedir(), raw.slice(2));
  return raw;
}

/**
 * Resolves `agent` (the worker's SSH_AUTH_SOCK), `env:NAME` (the variable's value) or
 * `file:/path` (the file's contents, `~` being the worker's home), as far as `policy` allows.
 * Failures are non-retryable `SecretUnavailable` failures that name the reference (or, for a
 * policy refusal, its kind) and never its value.
 */
export function resolveSecretRef(ref: string, policy: SecretPolicy = secretPolicyFromEnv()): ResolvedSecret {
  if (ref === 'agent') {
    const sock = process.env.SSH_AUTH_SOCK;
    if (!sock) throw unavailable(ref, 'SSH_AUTH_SOCK is not set in the worker');
    return { agent: sock };
  }
  if (ref.startsWith('env:')) {
    const name = ref.slice('env:'.length);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw unavailable(ref, 'not a valid environment variable name');
    if (!name.startsWith(policy.envPrefix)) throw refused('env:', `it resolves only variables named ${policy.envPrefix}* (${SECRETS_ENV_PREFIX_VAR})`);
    const value = process.env[name];
    if (value === undefined || value === '') throw unavailable(ref, `${name} is not set in the worker`);
    return { value };
  }
  if (ref.startsWith('file:')) {
    const file = expandFilePath(ref);
    if (!path.isAbsolute(file)) throw unavailable(ref, 'the path must be absolute (or start with ~/)');
    if (path.normalize(file) !== file || file.split('/').includes('..')) throw unavailable(ref, 'the path must be canonical (no "..", "." or "//")');
    const allowed = `it resolves only files inside ${policy.dirs.join(', ') || 'no directory'} (${SECRETS_DIRS_VAR}), symlinks followed`;
    const dirs = realDirs(policy);
    // Lexically first, so a reference outside is refused the same way whether or not it exists.
    if (!policy.dirs.some((d) => inside(file, d)) && !dirs.some((d) => inside(file, d))) throw refused('file:', allowed);
    try {
      // Then where it really is: a symlink inside an allowed directory may point anywhere.
      if (!dirs.some((d) => inside(realpathSync(file), d))) throw refused('file:', allowed);
      return { value: readFileSync(file, 'utf8') };
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      // Only the code: fs messages are harmless today, but nothing of a read should leak.
      const code = (err as NodeJS.ErrnoException).code ?? 'read error';
      throw unavailable(ref, `cannot read the file (${code})`);
    }
  }
  throw unavailable(ref, 'expected agent, env:NAME or file:/path');
}
