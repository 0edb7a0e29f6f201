/** All activities the worker registers, built over injected dependencies. */
import { createStepActivities, type ActivityDeps } from './steps';

export type { ActivityDeps } from './steps';

export function createActivities(deps: ActivityDeps) {
  return { ...createStepActivities(deps) };
}

export type Activities = ReturnType<typeof createActivities>;
