/**
 * The reverse proxy: Caddy's upstreams rewritten to the new addresses, validated, refused when it
 * loses vhosts or its storage block, installed keeping owner and mode, reloaded. The certificates
 * phase rewrites the same config once more (domains no DNS record points here) through the same
 * write, validation and install steps.
 */
import type { Plan } from '../plan/schema';
import type { PhaseId, Step } from './model';
import { step, type Ctx, type StepInit } from './commands';
import { ph, q } from './shell';

type Caddy = NonNullable<Plan['caddy']>;

/** `caddy adapt` of a config file, in the proxy container. */
export function caddyAdapt(ctx: Ctx, caddy: Caddy, file: string): string {
  return ctx.inside(caddy.container, caddy.binary, 'adapt', '--config', file, '--adapter', 'caddyfile');
}

/**
 * A config rewrite in stages: the rewritten text goes to `<config>.new` (over a copy of the live
 * file, so owner and mode stay), is validated (and checked by `checks`), and only then installed.
 * Every step after the rewrite passes its check once nothing waits to be installed.
 */
function stagedRewrite(
  ctx: Ctx,
  caddy: Caddy,
  phase: PhaseId,
  prefix: string,
  rewrite: { title: string; what: string; params: Step['params'] },
  checks: (next: string, nothingPending: string) => Omit<StepInit, 'phase' | 'host' | 'container'>[],
  extra: Partial<StepInit> = {},
): Step[] {
  const { container, configPath, binary, storageRoot } = caddy;
  const next = `${configPath}.new`;
  const s = (init: Omit<StepInit, 'phase' | 'host' | 'container'>) => step(ctx, { phase, host: 'destination', container, ...extra, ...init });
  const nothingPending = ctx.inside(container, 'test', '!', '-e', next);
  const read = ctx.inside(container, 'cat', configPath);
  const write = ctx.inside(container, 'sh', '-c', 'cp -p "$2" "$1" && cat > "$1"', 'write', next, configPath);
  return [
    s({ id: `${prefix}/rewrite`, title: rewrite.title, kind: 'caddy-rewrite', command: `${read} | <${rewrite.what}> | ${write}`, params: { read, write, ...rewrite.params } }),
    s({ id: `${prefix}/validate`, title: 'caddy validate the new config', kind: 'run', command: ctx.inside(container, binary, 'validate', '--config', next, '--adapter', 'caddyfile'), check: nothingPending }),
    ...checks(next, nothingPending).map(s),
    s({
      id: `${prefix}/storage-block`,
      title: `Refuse a config without the explicit storage block (${storageRoot})`,
      kind: 'run',
      refuses: true,
      command: `${caddyAdapt(ctx, caddy, next)} | grep -q ${q(`"storage":{"module":"file_system","root":"${storageRoot}"}`)}`,
      check: nothingPending,
    }),
    s({ id: `${prefix}/install`, title: 'Install the new config', kind: 'run', command: ctx.inside(container, 'mv', next, configPath), check: nothingPending }),
  ];
}

export function proxy(ctx: Ctx): Step[] {
  const { plan } = ctx;
  // A tenant without a reverse proxy of its own: nothing to rewrite.
  if (!plan.caddy) return [];
  const caddy = plan.caddy;
  const { container, configPath, binary, minVhosts } = caddy;
  const s = (init: Omit<StepInit, 'phase' | 'host' | 'container'>) => step(ctx, { phase: 'proxy', host: 'destination', container, ...init });
  return [
    s({ id: 'proxy/tenant/vhosts-before', title: 'Count the vhosts of the current config', kind: 'capture', command: caddyAdapt(ctx, caddy, configPath), captureAs: { kind: 'vhost-count', key: 'vhosts:before' } }),
    s({
      id: 'proxy/tenant/backup',
      title: 'Back up the Caddy config with a timestamp',
      kind: 'run',
      command: ctx.inside(container, 'cp', '-p', configPath, `${configPath}.bak-${ph('stamp', 'run')}`),
      check: ctx.inside(container, 'test', '-f', `${configPath}.bak-${ph('stamp', 'run')}`),
    }),
    ...stagedRewrite(ctx, caddy, 'proxy', 'proxy/tenant', { title: `Rewrite upstreams old → new addresses into ${configPath}.new`, what: 'old→new container addresses', params: { containers: plan.containers.map((c) => c.name) } }, (next, nothingPending) => [
      {
        id: 'proxy/tenant/vhosts-after',
        title: `Refuse a config with fewer vhosts than before or than ${minVhosts}`,
        kind: 'capture',
        command: caddyAdapt(ctx, caddy, next),
        captureAs: { kind: 'vhost-count', key: 'vhosts:after' },
        params: { atLeast: minVhosts, atLeastCapture: 'vhosts:before' },
        check: nothingPending,
      },
    ]),
    s({ id: 'proxy/tenant/reload', title: 'caddy reload (not restart)', kind: 'run', command: ctx.inside(container, binary, 'reload', '--config', configPath, '--adapter', 'caddyfile') }),
  ];
}

/**
 * After the `domains` gate: the domains no DNS record points here (`dead-domains`) removed from
 * the config, validated and installed; then Caddy restarted (the guide: restart only after
 * removing them, or Caddy spends the CA's limits on names it cannot validate).
 */
export function removeDeadDomains(ctx: Ctx, caddy: Caddy): Step[] {
  const extra = { gate: 'domains' as const };
  return [
    ...stagedRewrite(ctx, caddy, 'certificates', 'certificates/tenant/dead-domains', { title: `Remove the dead domains into ${caddy.configPath}.new`, what: 'dead domains removed', params: { remove: 'dead-domains' } }, () => [], extra),
    step(ctx, {
      id: 'certificates/tenant/caddy-restart',
      phase: 'certificates',
      host: 'destination',
      container: caddy.container,
      gate: 'domains',
      title: 'Restart Caddy (after removing the dead domains)',
      kind: 'run',
      command: ctx.inside(caddy.container, ...caddy.restartCommand),
    }),
  ];
}
