/**
 * How activities reach hosts. The live executor speaks SSH; the dry-run executor records each
 * command and runs nothing, so the same workflow and activities serve `migrate --dry-run`.
 */
import type { StepHost } from '../runbook/model';

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
  signal?: AbortSignal;
}

export interface CommandExecutor {
  run(host: Exclude<StepHost, 'worker'>, command: string, options?: RunOptions): Promise<CommandResult>;
}

/** One command the dry run would have run. */
export interface RecordedCommand {
  host: Exclude<StepHost, 'worker'>;
  command: string;
}

/**
 * Records commands instead of running them. Checks "fail" (exit 1) so the dry run shows the command
 * each step would run on a fresh destination.
 */
export class DryRunExecutor implements CommandExecutor {
  readonly recorded: RecordedCommand[] = [];

  /** `keep: false` for long-lived workers: the commands are in the workflow history anyway. */
  constructor(private readonly options: { keep: boolean } = { keep: true }) {}

  async run(host: Exclude<StepHost, 'worker'>, command: string): Promise<CommandResult> {
    if (this.options.keep) this.recorded.push({ host, command });
    return { exitCode: 0, stdout: '', stderr: '' };
  }
}
