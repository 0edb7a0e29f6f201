/** All activities the worker registers, built over injected dependencies, grouped by what they act on. */
import { createAccessActivities } from './access';
import { createCertificateActivities } from './certificates';
import type { ActivityDeps } from './common';
import { createDnsActivities } from './dns';
import { createFixActivities } from './fixes';
import { createProbeActivities } from './probe';
import { createProxyActivities } from './proxy';
import { createStepActivities } from './steps';

export type { ActivityDeps } from './common';

export function createActivities(deps: ActivityDeps) {
  return {
    ...createStepActivities(deps),
    ...createAccessActivities(deps),
    ...createProbeActivities(deps),
    ...createProxyActivities(deps),
    ...createFixActivities(deps),
    ...createDnsActivities(deps),
    ...createCertificateActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
