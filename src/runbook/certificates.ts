/**
 * Certificates: wait until each domain serves a valid certificate (ACME rate limits included).
 */
import type { Step } from './model';
import { slug, step, type Ctx } from './commands';
import { sh } from './shell';

export function certificates(ctx: Ctx): Step[] {
  const { plan } = ctx;
  return (plan.certificates?.domains ?? []).map((domain) =>
    step(ctx, {
      id: `certificates/tenant/${slug(domain)}`,
      phase: 'certificates',
      title: `A valid certificate is served for ${domain} (waits out ACME rate limits)`,
      host: 'worker',
      kind: 'wait-cert',
      command: sh('tls', `${plan.destination.publicAddress}:443`, `servername=${domain}`),
      params: { domain, address: plan.destination.publicAddress, pollInterval: plan.certificates?.wait.pollInterval ?? '5m', maxWait: plan.certificates?.wait.maxWait ?? '7d' },
      profile: 'poll',
    }),
  );
}
