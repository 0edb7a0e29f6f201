/**
 * `gbo-migrate status TENANT [--watch [s]] [--json]`: one frame, or a frame every few seconds
 * until the migration's run closes. Exit codes: 0 shown (with --watch: the run completed), 1 no
 * such migration (with --watch: the run failed, was cancelled or terminated).
 */
import type { Client } from '@temporalio/client';
import { InvalidArgumentError } from 'commander';
import { gatherStatus } from './live-status';
import { renderMissing, renderStatus, statusJson } from './status-view';

export interface StatusCommandOptions {
  tenant: string;
  mode: 'dry-run' | 'live';
  json: boolean;
  /** Seconds between frames; undefined: one frame. */
  watchS?: number;
  /** The server, for the message when there is no such migration. */
  address: string;
  namespace: string;
  write: (text: string) => void;
  /** Clear and redraw (a terminal) rather than print one frame after another (a log, a pipe). */
  tty: boolean;
}

/** `--watch [seconds]`: the seconds between frames (commander reports a bad value, exit 2). */
export function parseWatchSeconds(value: string): number {
  const s = Number(value);
  if (!(s >= 0.5 && s <= 3600)) throw new InvalidArgumentError('expected seconds between 0.5 and 3600');
  return s;
}

/** Clears the screen and puts the cursor home. */
const CLEAR = '\x1b[H\x1b[2J';

export async function runStatus(client: Client, o: StatusCommandOptions): Promise<number> {
  const show = (frame: string, at: string) => {
    if (o.watchS === undefined || o.json) o.write(`${frame}\n`);
    else o.write(o.tty ? `${CLEAR}${frame}\n` : `--- ${at} ---\n${frame}\n`);
  };
  for (;;) {
    let gathered;
    try {
      gathered = await gatherStatus(client, { tenant: o.tenant, mode: o.mode });
    } catch (err) {
      // Watching goes on across a server restart; a single look reports the error and fails.
      if (o.watchS === undefined) throw err;
      const at = new Date().toISOString();
      show(o.json ? JSON.stringify({ error: (err as Error).message, at }) : `status unavailable: ${(err as Error).message}`, at);
      await new Promise((r) => setTimeout(r, o.watchS! * 1000));
      continue;
    }
    if (!gathered.found) {
      const message = renderMissing(gathered.workflowId, o.address, o.namespace);
      o.write(o.json ? `${JSON.stringify({ status: null, workflow: { id: gathered.workflowId, status: 'NOT_FOUND' }, activities: [], error: message })}\n` : `${message}\n`);
      return 1;
    }
    const { live } = gathered;
    show(o.json ? statusJson(live) : renderStatus(live), live.at);
    if (o.watchS === undefined) return 0;
    if (live.workflow.status !== 'RUNNING') return live.workflow.status === 'COMPLETED' ? 0 : 1;
    await new Promise((r) => setTimeout(r, o.watchS! * 1000));
  }
}
