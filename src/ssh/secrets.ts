/**
 * Secret references, resolved in the worker only: plans and workflow input carry `agent`,
 * `env:NAME` or `file:/path`, never the secret itself.
 */
import { ApplicationFailure } from '@temporalio/common';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { FailureType } from '../errors';

/** What a reference resolved to: an ssh-agent socket, or the secret's text. */
export type ResolvedSecret = { agent: string } | { value: string };

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
 * `file:/path` (the file's contents, `~` being the worker's home). Failures are non-retryable
 * `SecretUnavailable` failures that name the reference and never its value.
 */
export function resolveSecretRef(ref: string): ResolvedSecret {
  if (ref === 'agent') {
    const sock = process.env.SSH_AUTH_SOCK;
    if (!sock) throw unavailable(ref, 'SSH_AUTH_SOCK is not set in the worker');
    return { agent: sock };
  }
  if (ref.startsWith('env:')) {
    const name = ref.slice('env:'.length);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw unavailable(ref, 'not a valid environment variable name');
    const value = process.env[name];
    if (value === undefined || value === '') throw unavailable(ref, `${name} is not set in the worker`);
    return { value };
  }
  if (ref.startsWith('file:')) {
    const file = expandFilePath(ref);
    if (!path.isAbsolute(file)) throw unavailable(ref, 'the path must be absolute (or start with ~/)');
    try {
      return { value: readFileSync(file, 'utf8') };
    } catch (err) {
      // Only the code: fs messages are harmless today, but nothing of a read should leak.
      const code = (err as NodeJS.ErrnoException).code ?? 'read error';
      throw unavailable(ref, `cannot read the file (${code})`);
    }
  }
  throw unavailable(ref, 'expected agent, env:NAME or file:/path');
}
