/**
 * A Temporal server that cannot be reached, said so at once and with its address: the SDK's own
 * error ("Failed to connect before the deadline") names neither the address nor where it came from.
 */
import { connect } from 'node:net';

/** How long a command waits for the server before saying it cannot reach it. */
export const CONNECT_TIMEOUT_MS = 3000;

export class ServerUnreachableError extends Error {
  constructor(
    readonly address: string,
    message: string,
  ) {
    super(message);
    this.name = 'ServerUnreachableError';
  }
}

/** The error for a failed connect; the cause is the socket's own answer when it has one (refused, no route). */
export async function unreachable(address: string, namespace: string, err: unknown): Promise<ServerUnreachableError> {
  const cause = (await socketError(address)) ?? (err as Error).message;
  return new ServerUnreachableError(address, `could not reach the Temporal server at ${address} (TEMPORAL_ADDRESS, namespace ${namespace}): ${cause}`);
}

/** Opens a plain TCP connection to host:port; the error if it fails, undefined if it connects. */
function socketError(address: string): Promise<string | undefined> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!m) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const socket = connect({ host: m[1], port: Number(m[2]), timeout: 1000 });
    const done = (why: string | undefined) => {
      socket.destroy();
      resolve(why);
    };
    socket.once('connect', () => done(undefined));
    socket.once('timeout', () => done(`no answer from ${address} within 1 s`));
    socket.once('error', (e) => done(e.message));
  });
}
