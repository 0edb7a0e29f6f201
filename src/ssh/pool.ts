/**
 * The live executor: one pooled `ssh2` connection per host in the worker, many exec channels on
 * it. Host keys are checked against known_hosts before anything runs; keys come from the worker's
 * secret references. Nothing here logs, and no failure message carries connection options, key
 * material or known_hosts contents.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { StringDecoder } from 'node:string_decoder';
import { Client, type ClientChannel, type ConnectConfig, type ServerHostKeyAlgorithm, type SyncHostVerifier } from 'ssh2';
import type { CommandExecutor, CommandGuard, CommandResult, HostTarget, RunOptions } from '../activities/executor';
import { redact } from '../activities/output';
import { FailureType } from '../errors';
import { checkHostKey, fingerprint, keyTypeOf, parseKnownHosts, preferredHostKeyAlgorithms } from './known-hosts';
import { describeSecretRef, expandFilePath, resolveSecretRef, secretPolicyFromEnv, WORKER_OWN_CONFIG, type SecretPolicy } from './secrets';

export interface SshPoolOptions {
  /** SSH handshake and authentication deadline. Default 20 s. */
  readyTimeoutMs?: number;
  /** SSH-level keepalive interval; a dead peer is noticed after `keepaliveCountMax` misses. Default 15 s. */
  keepaliveIntervalMs?: number;
  /** Default 4. */
  keepaliveCountMax?: number;
  /** Channels open at once on one connection; more wait in line. sshd's MaxSessions defaults to 10. Default 8. */
  maxChannelsPerConnection?: number;
  /** Characters kept of each of stdout and stderr (the tail). Default 8 MiB. */
  maxOutputChars?: number;
  /** known_hosts for targets that name none. Default `file:~/.ssh/known_hosts`. */
  defaultKnownHosts?: string;
  /** What targets' key and known_hosts references may resolve to. Default: from the environment (GBO_SECRETS_DIRS, GBO_SECRETS_ENV_PREFIX). */
  secrets?: SecretPolicy;
}

export interface SshPoolStats {
  /** Connections started since the pool was made (a reconnect counts again). */
  connectionsOpened: number;
  /** Connections open or being opened now. */
  connectionsOpen: number;
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Connection {
  id: string;
  client: Client;
  ready: Promise<void>;
  isReady: boolean;
  closed: boolean;
  active: number;
  limit: number;
  waiters: Waiter[];
}

/** A failure before the command started: safe to try again on a fresh channel or connection. */
class NotStarted extends Error {
  constructor(
    readonly failure: Error,
    readonly capacity: boolean,
  ) {
    super(failure.message);
  }
}

const OPEN_ATTEMPTS = 5;

/** `user@address:port`, how messages name a connection. */
export function targetLabel(target: HostTarget): string {
  return `${target.user}@${target.address}:${target.port}`;
}

function hostPort(target: HostTarget): string {
  return `${target.address}:${target.port}`;
}

function retryable(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FailureType.CommandFailed, message, nonRetryable: false });
}

function nonRetryable(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}

/** An ssh2 or socket message, short and redacted; ssh2's messages carry no secrets, this is belt and braces. */
function safeMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return redact(msg.replace(/\s+/g, ' ')).slice(0, 200);
}

/** Exit status of a command killed by a signal, as a shell reports it. */
function signalExitCode(signalName: unknown): number {
  if (typeof signalName !== 'string') return 255;
  const name = (signalName.startsWith('SIG') ? signalName : `SIG${signalName}`) as keyof typeof osConstants.signals;
  const n = osConstants.signals[name];
  return typeof n === 'number' ? 128 + n : 255;
}

/** Keeps the last `max` characters of a stream. */
class Tail {
  private chunks: string[] = [];
  private length = 0;
  private dropped = 0;

  constructor(private readonly max: number) {}

  push(s: string): void {
    if (s === '') return;
    this.chunks.push(s);
    this.length += s.length;
    while (this.length > this.max && this.chunks.length > 0) {
      const first = this.chunks[0] as string;
      const excess = this.length - this.max;
      if (first.length <= excess) {
        this.chunks.shift();
        this.length -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.slice(excess);
        this.length -= excess;
        this.dropped += excess;
      }
    }
  }

  text(): string {
    const body = this.chunks.join('');
    return this.dropped > 0 ? `[... ${this.dropped} characters of earlier output dropped ...]\n${body}` : body;
  }
}

/**
 * `CommandExecutor` over SSH. Make one per worker and `close()` it on shutdown.
 */
export class SshPool implements CommandExecutor {
  private readonly connections = new Map<string, Connection>();
  private readonly options: Required<SshPoolOptions>;
  private opened = 0;
  private closed = false;

  constructor(options: SshPoolOptions = {}) {
    this.options = {
      readyTimeoutMs: options.readyTimeoutMs ?? 20_000,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: options.keepaliveCountMax ?? 4,
      maxChannelsPerConnection: Math.max(1, options.maxChannelsPerConnection ?? 8),
      maxOutputChars: options.maxOutputChars ?? 8 * 1024 * 1024,
      defaultKnownHosts: options.defaultKnownHosts ?? 'file:~/.ssh/known_hosts',
      secrets: options.secrets ?? secretPolicyFromEnv(),
    };
  }

  stats(): SshPoolStats {
    return { connectionsOpened: this.opened, connectionsOpen: this.connections.size };
  }

  async run(target: HostTarget, command: string, options: RunOptions = {}): Promise<CommandResult> {
    const { signal, guard } = options;
    if (signal?.aborted) throw this.cancelled(target);
    if (guard && !GUARD_KEY.test(guard.key)) {
      throw nonRetryable(FailureType.BadPlan, `guard key ${JSON.stringify(guard.key.slice(0, 80))} for ${targetLabel(target)} must be 1-200 characters of [A-Za-z0-9._-]`);
    }
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw retryable(`SSH pool is closed; not running on ${targetLabel(target)}`);
      const conn = this.connection(target);
      await this.whileNotAborted(conn.ready, signal, target);
      try {
        await this.acquire(conn, signal, target);
        return await this.exec(conn, target, command, options);
      } catch (err) {
        if (!(err instanceof NotStarted)) throw err;
        if (attempt >= OPEN_ATTEMPTS) throw err.failure;
        // The server refused another session: hold fewer channels on this connection.
        if (err.capacity && !conn.closed) conn.limit = Math.max(1, Math.min(conn.limit, conn.active));
        if (signal?.aborted) throw this.cancelled(target);
      }
    }
  }

  /** Connects to the target, or reuses its connection: the host key checked and the login accepted, nothing run. */
  async connect(target: HostTarget, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (options.signal?.aborted) throw this.cancelled(target);
    if (this.closed) throw retryable(`SSH pool is closed; not connecting to ${targetLabel(target)}`);
    await this.whileNotAborted(this.connection(target).ready, options.signal, target);
  }

  /** Ends every connection; runs still in flight fail. */
  async close(): Promise<void> {
    this.closed = true;
    const conns = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(
      conns.map(
        (conn) =>
          new Promise<void>((resolve) => {
            this.failWaiters(conn, retryable(`SSH pool closed while waiting for a channel on ${conn.id}`));
            if (conn.closed) return resolve();
            const timer = setTimeout(() => {
              conn.client.destroy();
              resolve();
            }, 2000);
            timer.unref();
            conn.client.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            conn.client.end();
          }),
      ),
    );
  }

  private cancelled(target: HostTarget): CancelledFailure {
    return new CancelledFailure(`command on ${targetLabel(target)} aborted`);
  }

  private whileNotAborted<T>(p: Promise<T>, signal: AbortSignal | undefined, target: HostTarget): Promise<T> {
    if (!signal) return p;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(this.cancelled(target));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
  }

  /** The live connection for this target, or a new one. Secret and known_hosts errors throw here. */
  private connection(target: HostTarget): Connection {
    const khRef = target.knownHosts ?? this.options.defaultKnownHosts;
    // The references are part of the identity: a connection verified against one known_hosts
    // must not serve a target that pins another.
    const id = `${targetLabel(target)}|${target.hostKeyAlias ?? ''}|${target.sshKey}|${khRef}`;
    const existing = this.connections.get(id);
    if (existing && !existing.closed) return existing;

    const secret = resolveSecretRef(target.sshKey, this.options.secrets);
    // A missing default known_hosts vouches for nobody; a missing pinned one is a worker fault.
    const khText =
      target.knownHosts === undefined && !existsSync(expandFilePath(khRef))
        ? ''
        : ((r) => ('value' in r ? r.value : ''))(resolveSecretRef(khRef, target.knownHosts === undefined ? WORKER_OWN_CONFIG : this.options.secrets));
    const entries = parseKnownHosts(khText);

    let refusal: string | undefined;
    const hostVerifier: SyncHostVerifier = (key) => {
      const verdict = checkHostKey(entries, target.hostKeyAlias ?? target.address, target.port, key);
      if (verdict === 'match') return true;
      const why = {
        mismatch: 'does not match the key pinned in',
        unknown: 'is not in',
        revoked: 'is marked @revoked in',
      }[verdict];
      refusal =
        `host key of ${hostPort(target)} refused, nothing was run: the presented ` +
        `${keyTypeOf(key) ?? 'unknown-type'} key ${fingerprint(key)} ${why} known_hosts ${describeSecretRef(khRef)}`;
      return false;
    };

    const client = new Client();
    const conn: Connection = {
      id: targetLabel(target),
      client,
      ready: Promise.resolve(),
      isReady: false,
      closed: false,
      active: 0,
      limit: this.options.maxChannelsPerConnection,
      waiters: [],
    };
    const config: ConnectConfig = {
      host: target.address,
      port: target.port,
      username: target.user,
      readyTimeout: this.options.readyTimeoutMs,
      keepaliveInterval: this.options.keepaliveIntervalMs,
      keepaliveCountMax: this.options.keepaliveCountMax,
      hostVerifier,
      algorithms: {
        serverHostKey: preferredHostKeyAlgorithms(entries, target.hostKeyAlias ?? target.address, target.port) as ServerHostKeyAlgorithm[],
      },
      ...('agent' in secret ? { agent: secret.agent } : { privateKey: secret.value }),
    };

    conn.ready = new Promise<void>((resolve, reject) => {
      client.once('ready', () => {
        conn.isReady = true;
        resolve();
      });
      client.on('error', (err: Error & { level?: string; code?: string }) => {
        if (!conn.isReady) reject(this.connectFailure(err, target, refusal));
      });
      client.on('close', () => {
        conn.closed = true;
        if (this.connections.get(id) === conn) this.connections.delete(id);
        const lost = retryable(`SSH connection to ${hostPort(target)} closed`);
        if (!conn.isReady) reject(refusal ? nonRetryable(FailureType.HostKeyMismatch, refusal) : lost);
        this.failWaiters(conn, new NotStarted(lost, false));
      });
      try {
        client.connect(config);
      } catch (err) {
        conn.closed = true;
        reject(this.configFailure(err, target));
      }
    });
    // Every caller awaits `ready`; this only keeps a failure nobody waits for from going unhandled.
    conn.ready.catch(() => undefined);
    this.opened++;
    if (!conn.closed) this.connections.set(id, conn);
    return conn;
  }

  private connectFailure(err: Error & { level?: string; code?: string }, target: HostTarget, refusal?: string) {
    if (refusal) return nonRetryable(FailureType.HostKeyMismatch, refusal);
    if (err.level === 'client-authentication' || /authentication methods failed/i.test(err.message)) {
      return nonRetryable(
        FailureType.AuthRefused,
        `SSH authentication refused for ${targetLabel(target)} with key ${describeSecretRef(target.sshKey)}`,
      );
    }
    if (err.level === 'client-timeout') {
      return retryable(`cannot connect to ${hostPort(target)}: ETIMEDOUT (no SSH handshake within ${this.options.readyTimeoutMs} ms)`);
    }
    const code = err.code ?? err.level ?? 'ERROR';
    return retryable(`cannot connect to ${hostPort(target)}: ${code} (${safeMessage(err)})`);
  }

  /** `connect()` throws synchronously only for configuration it cannot use, chiefly the key. */
  private configFailure(err: unknown, target: HostTarget): ApplicationFailure {
    const msg = safeMessage(err);
    if (/private ?key|passphrase/i.test(msg)) {
      return nonRetryable(
        FailureType.SecretUnavailable,
        `secret ${describeSecretRef(target.sshKey)} is not a usable SSH private key: ${msg}`,
      );
    }
    return nonRetryable(FailureType.BadPlan, `cannot connect to ${hostPort(target)}: ${msg}`);
  }

  private acquire(conn: Connection, signal: AbortSignal | undefined, target: HostTarget): Promise<void> {
    if (conn.closed) return Promise.reject(new NotStarted(retryable(`SSH connection to ${hostPort(target)} closed`), false));
    if (conn.active < conn.limit && conn.waiters.length === 0) {
      conn.active++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        conn.waiters = conn.waiters.filter((w) => w !== waiter);
        reject(this.cancelled(target));
      };
      const waiter: Waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      conn.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private release(conn: Connection): void {
    conn.active--;
    while (conn.active < conn.limit && conn.waiters.length > 0 && !conn.closed) {
      conn.active++;
      conn.waiters.shift()?.resolve();
    }
  }

  private failWaiters(conn: Connection, err: unknown): void {
    const waiters = conn.waiters;
    conn.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  /** Runs one command on one channel; the slot is given back when the channel has closed. */
  private exec(conn: Connection, target: HostTarget, command: string, options: RunOptions): Promise<CommandResult> {
    const { stdin, onOutput, signal, guard } = options;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.release(conn);
    };
    return new Promise<CommandResult>((resolve, reject) => {
      let settled = false;
      let channel: ClientChannel | undefined;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      let remotePid: number | undefined;
      const onAbort = () => {
        settle(() => reject(this.cancelled(target)));
        if (channel) stopChannel(channel);
        if (remotePid !== undefined) killRemoteGroup(conn, remotePid, guard?.sudo === true);
      };
      signal?.addEventListener('abort', onAbort, { once: true });

      const opened = (err: Error | undefined, ch: ClientChannel) => {
        if (err) {
          release();
          const lost = conn.closed;
          const failure = lost
            ? retryable(`SSH connection to ${hostPort(target)} closed before the command started`)
            : retryable(`cannot open a channel on ${targetLabel(target)}: ${safeMessage(err)}`);
          // Nothing ran: the caller may try again (on a new connection, or with fewer channels).
          settle(() => reject(new NotStarted(failure, !lost && conn.active > 0)));
          return;
        }
        channel = ch;
        ch.once('close', release);
        if (settled) {
          stopChannel(ch);
          return;
        }
        const max = this.options.maxOutputChars;
        const out = new Tail(max);
        const errTail = new Tail(max);
        const outDecoder = new StringDecoder('utf8');
        const errDecoder = new StringDecoder('utf8');
        const emit = (s: string) => {
          if (!onOutput || s === '') return;
          try {
            onOutput(s);
          } catch {
            // A failing progress callback must not fail the command.
          }
        };
        let exitCode: number | undefined;
        ch.on('data', (b: Buffer) => {
          const s = outDecoder.write(b);
          out.push(s);
          emit(s);
        });
        // The first stderr line is the wrapper's PID marker (see `wrapCommand`): strip it.
        let errHead: string | undefined = '';
        const stderrText = (s: string, final = false) => {
          if (errHead !== undefined) {
            errHead += s;
            const nl = errHead.indexOf('\n');
            const undecided = nl < 0 && PID_MARKER.startsWith(errHead.slice(0, PID_MARKER.length)) && !final;
            if (undecided && errHead.length < PID_MARKER.length + 24) return;
            const m = PID_LINE.exec(errHead);
            if (m) remotePid = Number(m[1]);
            s = m ? errHead.slice(m[0].length) : errHead;
            errHead = undefined;
          }
          errTail.push(s);
          emit(s);
        };
        ch.stderr.on('data', (b: Buffer) => stderrText(errDecoder.write(b)));
        ch.on('exit', (code: number | null, signalName?: string) => {
          exitCode = typeof code === 'number' ? code : signalExitCode(signalName);
        });
        ch.on('error', () => undefined);
        ch.once('close', () => {
          const restOut = outDecoder.end();
          out.push(restOut);
          emit(restOut);
          stderrText(errDecoder.end(), true);
          if (exitCode === undefined && conn.closed) {
            settle(() => reject(retryable(`SSH connection to ${hostPort(target)} lost while the command ran`)));
            return;
          }
          // No exit status from a live server: report it as ssh(1) does.
          settle(() => resolve({ exitCode: exitCode ?? 255, stdout: out.text(), stderr: errTail.text() }));
        });
        if (stdin !== undefined) ch.end(stdin);
        else ch.end();
      };

      try {
        conn.client.exec(wrapCommand(command, guard), opened);
      } catch (err) {
        release();
        const failure = retryable(`SSH connection to ${hostPort(target)} unusable: ${safeMessage(err)}`);
        settle(() => reject(new NotStarted(failure, false)));
      }
    });
  }
}

/** Written to stderr, with the remote shell's PID, before the command runs. */
const PID_MARKER = 'gbo-migrate:pid=';
const PID_LINE = /^gbo-migrate:pid=(\d+)\n/;

/**
 * Prefixes the command so the login shell first reports its PID on stderr. sshd makes that shell
 * a session leader, so its PID is the process group of everything the command starts: an abort
 * can kill the group. (Closing the channel does not stop a non-pty command, and sshd ignores
 * `signal` requests on root sessions, which run without privilege separation.) With a guard, the
 * command runs inside `guardScript`. The command text itself is unchanged; the pool strips the
 * marker line from stderr.
 */
function wrapCommand(command: string, guard?: CommandGuard): string {
  return `echo ${PID_MARKER}$$ >&2; ${guard ? guardScript(command, guard) : command}`;
}

/** Keys name a pid file on the host. */
const GUARD_KEY = /^[A-Za-z0-9._-]{1,200}$/;

/**
 * The step guard, in POSIX sh for the login shell. State lives in `~/.gbo-migrate` of the login
 * user: `run/<key>.pid` holds the process group (and its leader's start time) of the attempt that
 * runs the step now, `commands.log` one line per start, stop of an earlier attempt, and exit.
 *
 * An earlier attempt's group that is still alive gets TERM, up to 10 s to go, then KILL, before
 * the command starts. Its start time, where /proc has one, tells it from an unrelated group that
 * reused the number (Linux keeps a number while it is anyone's group, so a leader gone with its
 * group alive is still ours). With sudo, checking and killing go through sudo, since the group's
 * processes run as root. The command runs in a subshell of the login shell (the same process
 * group), so an `exit` in it still reaches the epilogue that logs its status. Prelude errors stay
 * off stderr: they would read as the command's.
 */
function guardScript(command: string, guard: CommandGuard): string {
  const kill = guard.sudo ? `sudo -n sh -c 'kill "$@"' gbo-kill "$@" </dev/null` : 'kill "$@"';
  return [
    `gbo_d="\${HOME:-/tmp}/.gbo-migrate"; gbo_k='${guard.key}'; gbo_f="$gbo_d/run/$gbo_k.pid"`,
    `gbo_log() { { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $gbo_k $*" >> "$gbo_d/commands.log"; } 2>/dev/null; }`,
    `gbo_started() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }`,
    `gbo_kill() { ${kill}; }`,
    `gbo_ours() { case $gbo_p in ''|*[!0-9]*|0|1|$$) return 1;; esac; gbo_kill -0 -"$gbo_p" 2>/dev/null && { [ ! -e "/proc/$gbo_p" ] || [ -z "$gbo_s" ] || [ "$(gbo_started "$gbo_p")" = "$gbo_s" ]; }; }`,
    `mkdir -p "$gbo_d/run" || { echo "gbo-migrate: cannot create $gbo_d/run for the step guard of $gbo_k" >&2; exit 1; }`,
    `gbo_p=; gbo_s=; [ -s "$gbo_f" ] && read -r gbo_p gbo_s < "$gbo_f"`,
    `if gbo_ours; then`,
    `  gbo_log "stop-previous $gbo_p"; gbo_kill -TERM -"$gbo_p" 2>/dev/null; gbo_t=$(( $(date +%s) + 10 ))`,
    `  while gbo_kill -0 -"$gbo_p" 2>/dev/null && [ "$(date +%s)" -lt "$gbo_t" ]; do sleep 0.2 2>/dev/null || sleep 1; done`,
    `  gbo_kill -KILL -"$gbo_p" 2>/dev/null`,
    `fi`,
    `echo "$$ $(gbo_started $$)" > "$gbo_f" || { echo "gbo-migrate: cannot write $gbo_f for the step guard" >&2; exit 1; }`,
    `gbo_log start`,
    `(`,
    command,
    `)`,
    `gbo_rc=$?; [ "$(cut -d' ' -f1 "$gbo_f" 2>/dev/null)" = "$$" ] && rm -f "$gbo_f"; gbo_log "exit $gbo_rc"; exit $gbo_rc`,
  ].join('\n');
}

/** Best effort: SIGTERM the process group of an aborted command, on a channel of its own. */
function killRemoteGroup(conn: Connection, pid: number, sudo: boolean): void {
  if (conn.closed || !Number.isInteger(pid) || pid <= 1) return;
  // A sudo command's processes are root's: the login user may not signal them.
  const kill = (target: string) => (sudo ? `sudo -n sh -c 'kill -TERM ${target}' </dev/null` : `kill -TERM ${target}`);
  try {
    conn.client.exec(`${kill(`-${pid}`)} 2>/dev/null || ${kill(String(pid))} 2>/dev/null; true`, (err, ch) => {
      if (err) return;
      ch.on('error', () => undefined);
      ch.resume();
      ch.stderr.resume();
      ch.end();
    });
  } catch {
    // The connection went away; nothing left to stop from here.
  }
}

/** The bits of ssh2's channel internals a signal after EOF needs (ssh2 1.17). */
interface ChannelInternals {
  outgoing?: { state?: string; id?: number };
  _client?: { _protocol?: { signal?: (id: number, name: string) => void } };
}

/**
 * Asks sshd to signal the session (it killpg()s it, for non-root users), then closes the channel.
 * ssh2's `signal()` refuses once stdin has been ended, though the protocol allows it, hence the
 * protocol call.
 */
function stopChannel(ch: ClientChannel): void {
  const c = ch as unknown as ChannelInternals;
  const id = c.outgoing?.id;
  const state = c.outgoing?.state;
  try {
    if (typeof id === 'number' && (state === 'open' || state === 'eof')) c._client?._protocol?.signal?.(id, 'TERM');
    else ch.signal('TERM');
  } catch {
    // The channel may already be closing.
  }
  try {
    ch.close();
  } catch {
    // Same.
  }
}
