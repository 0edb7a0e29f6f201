/**
 * The reverse proxy: Caddy's upstreams rewritten to the new addresses, validated, refused when it
 * loses vhosts or its storage block, installed keeping owner and mode, reloaded.
 */
import type { Step } from './model';
import { step, type Ctx, type StepInit } from './commands';
import { ph, q } from './shell';

export function proxy(ctx: Ctx): Step[] {
  const { plan } = ctx;
  // A tenant without a reverse proxy of its own: nothing to rewrite.
  if (!plan.caddy) return [];
  const { container, configPath, binary, storageRoot, minVhosts } = plan.caddy;
  const next = `${configPath}.new`;
  const s = (init: Omit<StepInit, 'phase' | 'host' | 'container'>) => step(ctx, { phase: 'proxy', host: 'destination', container, ...init });
  const adapt = (file: string) => ctx.inside(container, binary, 'adapt', '--config', file, '--adapter', 'caddyfile');
  // The checks below pass once no rewritten config waits to be validated and installed.
  const nothingPending = ctx.inside(container, 'test', '!', '-e', next);
  return [
    s({ id: 'proxy/tenant/vhosts-before', title: 'Count the vhosts of the current config', kind: 'capture', command: adapt(configPath), captureAs: { kind: 'vhost-count', key: 'vhosts:before' } }),
    s({
      id: 'proxy/tenant/backup',
      title: 'Back up the Caddy config with a timestamp',
      kind: 'run',
      command: ctx.inside(container, 'cp', '-p', configPath, `${configPath}.bak-${ph('stamp', 'run')}`),
      check: ctx.inside(container, 'test', '-f', `${configPath}.bak-${ph('stamp', 'run')}`),
    }),
    (() => {
      const read = ctx.inside(container, 'cat', configPath);
      // Written over a copy of the live file, so owner and mode stay as they were (`cat >` keeps them).
      const write = ctx.inside(container, 'sh', '-c', 'cp -p "$2" "$1" && cat > "$1"', 'write', next, configPath);
      return s({
        id: 'proxy/tenant/rewrite',
        title: `Rewrite upstreams old → new addresses into ${next}`,
        kind: 'caddy-rewrite',
        command: `${read} | <old→new container addresses> | ${write}`,
        params: { read, write, containers: plan.containers.map((c) => c.name) },
      });
    })(),
    s({ id: 'proxy/tenant/validate', title: 'caddy validate the new config', kind: 'run', command: ctx.inside(container, binary, 'validate', '--config', next, '--adapter', 'caddyfile'), check: nothingPending }),
    s({
      id: 'proxy/tenant/vhosts-after',
      title: `Refuse a config with fewer vhosts than before or than ${minVhosts}`,
      kind: 'capture',
      command: adapt(next),
      captureAs: { kind: 'vhost-count', key: 'vhosts:after' },
      params: { atLeast: minVhosts, atLeastCapture: 'vhosts:before' },
      check: nothingPending,
    }),
    s({
      id: 'proxy/tenant/storage-block',
      title: `Refuse a config without the explicit storage block (${storageRoot})`,
      kind: 'run',
      refuses: true,
      command: `${adapt(next)} | grep -q ${q(`"storage":{"module":"file_system","root":"${storageRoot}"}`)}`,
      check: nothingPending,
    }),
    s({ id: 'proxy/tenant/install', title: 'Install the new config', kind: 'run', command: ctx.inside(container, 'mv', next, configPath), check: nothingPending }),
    s({ id: 'proxy/tenant/reload', title: 'caddy reload (not restart)', kind: 'run', command: ctx.inside(container, binary, 'reload', '--config', configPath, '--adapter', 'caddyfile') }),
  ];
}
