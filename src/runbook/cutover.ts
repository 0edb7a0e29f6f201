/**
 * The cutover: the gate, then DNS (zone backup, records, reload, propagation).
 */
import type { Step } from './model';
import { step, type Ctx } from './commands';
import { ph, sh } from './shell';

export function cutover(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const { dns } = plan;
  return [
    step(ctx, { id: 'cutover/tenant/gate', phase: 'cutover', title: 'Approval: cut over (matrix green or recorded override)', host: 'worker', kind: 'gate', gate: 'cutover', command: '' }),
    step(ctx, {
      id: 'cutover/tenant/zone-backup',
      phase: 'cutover',
      container: dns.container,
      title: `Back up ${dns.zoneFile}`,
      host: 'destination',
      kind: 'run',
      command: ctx.inside(dns.container, 'cp', '-p', dns.zoneFile, `${dns.zoneFile}.bak-${ph('stamp', 'run')}`),
      check: ctx.inside(dns.container, 'test', '-f', `${dns.zoneFile}.bak-${ph('stamp', 'run')}`),
    }),
    (() => {
      const read = ctx.inside(dns.container, 'cat', dns.zoneFile);
      const write = ctx.inside(dns.container, 'sh', '-c', 'cp -p "$1" "$1.new" && cat > "$1.new" && mv "$1.new" "$1"', 'write', dns.zoneFile);
      return step(ctx, {
        id: 'cutover/tenant/zone-update',
        phase: 'cutover',
        container: dns.container,
        title: `Point ${dns.records.map((r) => `${r.name} ${r.type}`).join(', ')} at the destination; bump the SOA serial`,
        host: 'destination',
        kind: 'zone-update',
        command: `${read} | <set records, serial+1> | ${write}`,
        params: { read, write, zone: dns.zone, records: dns.records.map((r) => JSON.stringify(r)) },
      });
    })(),
    step(ctx, { id: 'cutover/tenant/dns-reload', phase: 'cutover', container: dns.container, title: 'Reload the DNS server', host: 'destination', kind: 'run', command: ctx.inside(dns.container, ...dns.reloadCommand) }),
    step(ctx, {
      id: 'cutover/tenant/dns-propagated',
      phase: 'cutover',
      title: `Wait until ${dns.authoritativeServers.join(', ')} answer the new records, then ${dns.oldTtlSeconds}s for old TTLs`,
      host: 'worker',
      kind: 'wait-dns',
      command: dns.authoritativeServers.map((server) => sh('dig', `@${server}`, dns.zone, 'A')).join('; '),
      params: { servers: dns.authoritativeServers, oldTtlSeconds: dns.oldTtlSeconds, zone: dns.zone, records: dns.records.map((r) => JSON.stringify(r)) },
      profile: 'poll',
    }),
  ];
}
