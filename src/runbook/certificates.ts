/**
 * Certificates: the proxy's domains that no DNS record points here, removed after the `domains`
 * gate (the workflow runs the gate and the removal only if there are any); Caddy made to retry now
 * (DNS points here since the cutover; Caddy may be deep in its own back-off); then per domain a
 * wait until a valid certificate is served, across a CA's rate limits (src/workflows/wait-steps.ts).
 */
import type { Step } from './model';
import { slug, step, type Ctx } from './commands';
import { sh } from './shell';
import { caddyAdapt, removeDeadDomains } from './proxy';

export function certificates(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const certs = plan.certificates;
  if (!certs) return [];
  const caddy = plan.caddy;
  const retryCommand = !caddy
    ? undefined
    : caddy.certificateRetry === 'restart'
      ? ctx.inside(caddy.container, ...caddy.restartCommand)
      : ctx.inside(caddy.container, caddy.binary, 'reload', '--config', caddy.configPath, '--adapter', 'caddyfile', '--force');
  // Only the certificate lines of the log's end: the log may hold every request too.
  const readLog =
    caddy?.logFile !== undefined ? ctx.inside(caddy.container, 'sh', '-c', 'tail -c 8000000 "$1" | grep -F \'"logger":"tls.obtain"\' | tail -n 2000', 'read-log', caddy.logFile) : undefined;
  const steps: Step[] = [];
  if (caddy && retryCommand) {
    steps.push(
      step(ctx, {
        id: 'certificates/tenant/find-dead-domains',
        phase: 'certificates',
        container: caddy.container,
        title: `Find the proxy's domains no DNS record points at ${plan.destination.publicAddress} (they would spend the CA's limits)`,
        host: 'worker',
        kind: 'find-dead-domains',
        command: caddyAdapt(ctx, caddy, caddy.configPath),
        captureAs: { kind: 'names', key: 'dead-domains' },
        params: {
          adapt: caddyAdapt(ctx, caddy, caddy.configPath),
          address: plan.destination.publicAddress,
          zone: plan.dns.zone,
          servers: plan.dns.authoritativeServers,
          ...(plan.hosts.destination.sudo ? { destinationSudo: true } : {}),
        },
      }),
      step(ctx, {
        id: 'certificates/tenant/domains-gate',
        phase: 'certificates',
        title: `Approval: remove the domains no DNS record points at ${plan.destination.publicAddress} from ${caddy.configPath}, then restart Caddy`,
        host: 'worker',
        kind: 'gate',
        gate: 'domains',
        command: '',
      }),
      ...removeDeadDomains(ctx, caddy),
    );
    steps.push(
      step(ctx, {
        id: 'certificates/tenant/caddy-retry',
        phase: 'certificates',
        container: caddy.container,
        title: `Make Caddy retry every pending certificate now (${caddy.certificateRetry === 'restart' ? 'restart' : 'caddy reload --force'}: DNS points here since the cutover)`,
        host: 'destination',
        kind: 'run',
        command: retryCommand,
      }),
    );
  }
  for (const domain of certs.domains) {
    steps.push(
      step(ctx, {
        id: `certificates/tenant/${slug(domain)}`,
        phase: 'certificates',
        title: `A valid certificate is served for ${domain}${certs.issuer ? ` by ${certs.issuer}` : ''} (waits out ACME rate limits)`,
        host: 'worker',
        kind: 'wait-cert',
        command: sh('tls', `${plan.destination.publicAddress}:443`, `servername=${domain}`),
        params: {
          domain,
          address: plan.destination.publicAddress,
          pollInterval: certs.wait.pollInterval,
          maxWait: certs.wait.maxWait,
          ...(certs.caFile ? { caFile: certs.caFile } : {}),
          ...(certs.issuer ? { issuer: certs.issuer } : {}),
          ...(readLog ? { readLog } : {}),
          ...(retryCommand ? { retryCommand } : {}),
          // The step runs on the worker; its log read and retry run on the destination, as its other commands do.
          ...(plan.hosts.destination.sudo ? { destinationSudo: true } : {}),
        },
        profile: 'poll',
      }),
    );
  }
  return steps;
}
