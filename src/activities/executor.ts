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
}

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Bytes written to the command's stdin (secrets travel here, never in the command line). */
  stdin?: string;
  /** Called with output chunks; long commands heartbeat from it. */
  onOutput?: (chunk: string) => void;
  /** Aborting closes the channel (the remote command gets SIGHUP). */
  signal?: AbortSignal;
}

export interface CommandExecutor {
  run(target: HostTarget, command: string, options?: RunOptions): Promise<CommandResult>;
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
