/** Starting and steering migrations: the same calls back the CLI and the tests. */
import { Client, Connection, WorkflowIdReusePolicy, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import type { Mode } from './activities/steps';
import type { Plan } from './plan/schema';
import { TENANT_ATTR, PHASE_ATTR, workflowIdOf } from './workflows/messages';
import type { migrateTenant } from './workflows/migrate-tenant';

export async function connectClient(address: string, namespace = 'default'): Promise<Client> {
  const connection = await Connection.connect({ address });
  return new Client({ connection, namespace });
}

/** Starts `migrate-<tenant>`; a second start for the same tenant while one runs is refused by the server. */
export async function startMigration(
  client: Client,
  plan: Plan,
  mode: Mode,
  taskQueue: string,
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof migrateTenant>> {
  return client.workflow.start<typeof migrateTenant>('migrateTenant', {
    taskQueue,
    workflowId: workflowIdOf(plan.tenant, mode),
    args: [{ plan, mode }],
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    typedSearchAttributes: new TypedSearchAttributes([
      { key: TENANT_ATTR, value: plan.tenant },
      { key: PHASE_ATTR, value: 'preflight' },
    ]),
  });
}
