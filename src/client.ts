/** Starting and steering migrations: the same calls back the CLI and the tests. */
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { createHash } from 'node:crypto';
import type { Mode } from './activities/steps';
import { clientIdentity, defaultOperator } from './operator/identity';
import type { Plan } from './plan/schema';
import { TENANT_ATTR, PHASE_ATTR, workflowIdOf } from './workflows/messages';
import type { migrateTenant } from './workflows/migrate-tenant';
import { CONNECT_TIMEOUT_MS, unreachable } from './unreachable';

/**
 * A client whose identity names the operator (the server records it on every update and cancel);
 * a server that does not answer within a few seconds is an error naming its address.
 */
export async function connectClient(address: string, namespace = 'default', identity = clientIdentity(defaultOperator())): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address, connectTimeout: CONNECT_TIMEOUT_MS });
  } catch (err) {
    throw await unreachable(address, namespace, err);
  }
  return new Client({ connection, namespace, identity });
}

/** A start refused because that tenant's migration (in that mode) is running; says which and where to look. */
export class MigrationAlreadyRunningError extends Error {
  constructor(
    readonly workflowId: string,
    readonly runId: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'MigrationAlreadyRunningError';
  }
}

export interface StartOptions {
  /** The Web UI's base URL, for the link in a refusal (TEMPORAL_UI_URL in the CLI). */
  uiUrl?: string;
}

/**
 * Starts `migrate-<tenant>` (or `migrate-<tenant>-dry-run`). A finished migration of the tenant
 * may be started again (ALLOW_DUPLICATE: re-running is how a failed or cancelled one is resumed
 * from scratch, every step checking first); a running one may not (conflict policy FAIL): the
 * server refuses and this throws MigrationAlreadyRunningError naming the running one.
 */
export async function startMigration(
  client: Client,
  plan: Plan,
  mode: Mode,
  taskQueue: string,
  options: StartOptions = {},
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof migrateTenant>> {
  const workflowId = workflowIdOf(plan.tenant, mode);
  try {
    return await client.workflow.start<typeof migrateTenant>('migrateTenant', {
      taskQueue,
      workflowId,
      args: [{ plan, mode }],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
      // What the Web UI's list and the run's page say before anyone opens it.
      staticSummary: `${plan.tenant} · ${mode} · plan ${planDigest(plan)}`,
      staticDetails: startDetails(plan, mode),
      typedSearchAttributes: new TypedSearchAttributes([
        { key: TENANT_ATTR, value: plan.tenant },
        { key: PHASE_ATTR, value: 'preflight' },
      ]),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw await alreadyRunning(client, plan.tenant, mode, workflowId, options);
    throw err;
  }
}

/** A short digest of the plan as started: which plan a run used, comparable across runs and files. */
export function planDigest(plan: Plan): string {
  return `sha256:${createHash('sha256').update(JSON.stringify(plan)).digest('hex').slice(0, 12)}`;
}

/** The start's fixed details: the hosts (addresses only) and the containers, in Markdown. */
function startDetails(plan: Plan, mode: Mode): string {
  const h = plan.hosts;
  return [
    `**${plan.tenant}** · ${mode === 'live' ? 'live migration' : 'dry run'} · plan ${planDigest(plan)}`,
    `From ${h.source.user}@${h.source.address} (LXD) to ${h.destination.user}@${h.destination.address} (Incus)`,
    `Containers (${plan.containers.length}): ${plan.containers.map((c) => c.name).join(', ')}`,
  ].join('\n\n');
}

/** The refusal an operator can act on: which run holds the ID, since when, and how to watch it. */
async function alreadyRunning(client: Client, tenant: string, mode: Mode, workflowId: string, options: StartOptions): Promise<MigrationAlreadyRunningError> {
  // The server's error carries no run ID; describing the ID finds the run that holds it (best effort:
  // it may have ended in between, and the refusal stands either way).
  let runId: string | undefined;
  let since = '';
  try {
    const d = await client.workflow.getHandle(workflowId).describe();
    runId = d.runId;
    since = `, started ${d.startTime.toISOString()}, ${d.status.name.toLowerCase()}`;
  } catch {
    // leave the run unnamed
  }
  const ui = options.uiUrl
    ? `; Web UI: ${options.uiUrl}/namespaces/${client.options.namespace}/workflows/${encodeURIComponent(workflowId)}${runId ? `/${runId}` : ''}`
    : '';
  return new MigrationAlreadyRunningError(
    workflowId,
    runId,
    `a ${mode} migration of tenant ${tenant} is already running as ${workflowId}${runId ? ` (run ${runId}${since})` : ''}; ` +
      `one migration per tenant at a time. Watch it with \`gbo-migrate status ${tenant}${mode === 'dry-run' ? ' --dry-run' : ''}\`${ui}; ` +
      `start again once it has finished${mode === 'live' ? `, or cancel it first with \`gbo-migrate cancel ${tenant}\`` : ''}`,
  );
}
