/**
 * How activities reach hosts. The live executor speaks SSH; the dry-run executor records each
 * command and runs nothing, so the same workflow and activities serve `migrate --dry-run`.
 */
import type { HostRole } from '../plan/schema';

/**
 * Where a command runs: the plan's host entry (address, user, key *reference*). The executor
 * resolves the reference in the worker; key material never travels in workflow input.
 */
export interface HostTarget {
  role: HostRole;
  address: string;
  port: number;
  user: string;
  /** `agent`, `env:NAME` or `file:/path` */
  sshKey: string;
  /** `file:/path` of a known_hosts that pins the host key. */
  knownHosts?: string;
  /** The plan's host name when `address` is the address preflight recorded for it: keys are pinned under the name. */
  hostKeyAlias?: string;
}

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Bytes written to the command's stdin (secrets travel here, never in the command line). */
  stdin?: string;
  /** Called with output chunks (progress reports: rsync's `--info=progress2`). */
  onOutput?: (chunk: string) => void;
  /** Aborting stops the remote command's process group and closes the channel. */
  signal?: AbortSignal;
  /**
   * One step's command at a time on the host: before the command starts, the host stops whatever
   * an earlier attempt with the same key still runs (a worker that died mid-step leaves it
   * running), and logs start and exit to `~/.gbo-migrate/commands.log`.
   */
  guard?: CommandGuard;
}

/** Identifies a step's command across attempts; see `RunOptions.guard`. */
export interface CommandGuard {
  /** The workflow and the step, `[A-Za-z0-9._-]` only (it names a file on the host). */
  key: string;
  /** The command runs through sudo: stopping an earlier attempt's processes needs sudo too. */
  sudo?: boolean;
}

export interface CommandExecutor {
  run(target: HostTarget, command: string, options?: RunOptions): Promise<CommandResult>;
  /**
   * Connects and authenticates (host key checked against known_hosts, login accepted) without
   * running anything. Executors that do not authenticate hosts have nothing to check, and omit it.
   */
  connect?(target: HostTarget, options?: { signal?: AbortSignal }): Promise<void>;
}

/** One command the dry run would have run. */
export interface RecordedCommand {
  host: HostRole;
  command: string;
}

/**
 * Records commands instead of running them; reports success so the dry run walks every step.
 */
export class DryRunExecutor implements CommandExecutor {
  readonly recorded: RecordedCommand[] = [];

  /** `keep: false` for long-lived workers: the commands are in the workflow history anyway. */
  constructor(private readonly options: { keep: boolean } = { keep: true }) {}

  async run(target: HostTarget, command: string): Promise<CommandResult> {
    if (this.options.keep) this.recorded.push({ host: target.role, command });
    return { exitCode: 0, stdout: '', stderr: '' };
  }
}
