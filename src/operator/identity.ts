/**
 * Who is acting: every operator decision is recorded with a name (`by`), and the Temporal client
 * that sends it carries the same name as its identity, which the server records on each update and
 * cancel event, so the history says who acted even for a command whose `--by` was left out.
 */
import { hostname, userInfo } from 'node:os';

export const OPERATOR_VAR = 'GBO_OPERATOR';

/** `GBO_OPERATOR` if set, else the OS user running the command. */
export function defaultOperator(env: NodeJS.ProcessEnv = process.env): string {
  const named = env[OPERATOR_VAR]?.trim();
  if (named) return named;
  try {
    return userInfo().username;
  } catch {
    // A uid without a passwd entry (some containers): the uid still names someone.
    return `uid-${process.getuid?.() ?? 'unknown'}`;
  }
}

/** The client identity the server records: `alice@host gbo-migrate`. */
export const clientIdentity = (operator: string): string => `${operator}@${hostname()} gbo-migrate`;
