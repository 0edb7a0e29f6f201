/**
 * The cutover: the gate, then DNS. With the tenant's own DNS server: zone backup, records, reload.
 * With DNS hosted elsewhere: a `dns` gate that names exactly the records to change at the provider.
 * A delegation change (NS, glue) at the registrar: a `registrar` gate that names it, then the wait
 * until the parent's servers refer to the new nameservers. Then the wait until the authoritative
 * servers answer the new records.
 */
import type { Plan } from '../plan/schema';
import type { Step } from './model';
import { step, type Ctx } from './commands';
import { ph, sh } from './shell';
import { glueOf } from '../dns/delegation';

/** `name type value` of each planned record, the name made absolute (`@` is the zone). */
export function recordsToChange(dns: Plan['dns']): string[] {
  const fqdn = (name: string) => (name === '@' ? dns.zone : name.endsWith('.') ? name.slice(0, -1) : `${name}.${dns.zone}`);
  return dns.records.map((r) => `${fqdn(r.name)} ${r.type} ${r.value}`);
}

export function cutover(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const { dns } = plan;
  const steps: Step[] = [
    step(ctx, { id: 'cutover/tenant/gate', phase: 'cutover', title: 'Approval: cut over (matrix green or recorded override)', host: 'worker', kind: 'gate', gate: 'cutover', command: '' }),
  ];
  if (dns.container && dns.zoneFile && dns.reloadCommand) {
    const { container, zoneFile, reloadCommand } = dns;
    const read = ctx.inside(container, 'cat', zoneFile);
    const write = ctx.inside(container, 'sh', '-c', 'cp -p "$1" "$1.new" && cat > "$1.new" && mv "$1.new" "$1"', 'write', zoneFile);
    steps.push(
      step(ctx, {
        id: 'cutover/tenant/zone-backup',
        phase: 'cutover',
        container,
        title: `Back up ${zoneFile}`,
        host: 'destination',
        kind: 'run',
        command: ctx.inside(container, 'cp', '-p', zoneFile, `${zoneFile}.bak-${ph('stamp', 'run')}`),
        check: ctx.inside(container, 'test', '-f', `${zoneFile}.bak-${ph('stamp', 'run')}`),
      }),
      step(ctx, {
        id: 'cutover/tenant/zone-update',
        phase: 'cutover',
        container,
        title: `Point ${dns.records.map((r) => `${r.name} ${r.type}`).join(', ')} at the destination; bump the SOA serial`,
        host: 'destination',
        kind: 'zone-update',
        command: `${read} | <set records, serial+1> | ${write}`,
        params: { read, write, zone: dns.zone, records: dns.records.map((r) => JSON.stringify(r)) },
      }),
      step(ctx, { id: 'cutover/tenant/dns-reload', phase: 'cutover', container, title: 'Reload the DNS server', host: 'destination', kind: 'run', command: ctx.inside(container, ...reloadCommand) }),
    );
  } else {
    // DNS hosted elsewhere: the operator changes the records at the provider and approves this gate.
    const records = recordsToChange(dns);
    steps.push(
      step(ctx, {
        id: 'cutover/tenant/dns-gate',
        phase: 'cutover',
        title: `Change at your DNS provider: ${records.join(', ')}; then approve`,
        host: 'worker',
        kind: 'gate',
        gate: 'dns',
        command: '',
        params: { zone: dns.zone, records },
      }),
    );
  }
  if (dns.delegation) {
    // The registrar's side: named as a manual step, approved, then waited for like any other.
    const { parentServers, nameservers } = dns.delegation;
    const glue = glueOf(dns.zone, nameservers, dns.records);
    const change = `NS ${nameservers.join(', ')}${Object.keys(glue).length ? `; glue ${Object.entries(glue).map(([n, a]) => `${n} A ${a}`).join(', ')}` : ''}`;
    steps.push(
      step(ctx, {
        id: 'cutover/tenant/registrar-gate',
        phase: 'cutover',
        title: `Change at the registrar of ${dns.zone}: ${change}; then approve`,
        host: 'worker',
        kind: 'gate',
        gate: 'registrar',
        command: '',
      }),
      step(ctx, {
        id: 'cutover/tenant/delegation',
        phase: 'cutover',
        title: `Wait until ${parentServers.join(', ')} refer ${dns.zone} to ${nameservers.join(', ')}`,
        host: 'worker',
        kind: 'wait-delegation',
        command: parentServers.map((server) => sh('dig', '+norecurse', `@${server}`, dns.zone, 'NS')).join('; '),
        params: { zone: dns.zone, servers: parentServers, nameservers, glue: JSON.stringify(glue), pollInterval: dns.wait.pollInterval, maxWait: dns.wait.maxWait },
        profile: 'poll',
      }),
    );
  }
  steps.push(
    step(ctx, {
      id: 'cutover/tenant/dns-propagated',
      phase: 'cutover',
      title: `Wait until ${dns.authoritativeServers.join(', ')} answer the new records (A and NS, authoritatively), then ${dns.oldTtlSeconds}s for old TTLs`,
      host: 'worker',
      kind: 'wait-dns',
      command: dns.authoritativeServers.map((server) => sh('dig', '+norecurse', `@${server}`, dns.zone, 'A')).join('; '),
      params: {
        servers: dns.authoritativeServers,
        oldTtlSeconds: dns.oldTtlSeconds,
        zone: dns.zone,
        records: dns.records.map((r) => JSON.stringify(r)),
        pollInterval: dns.wait.pollInterval,
        maxWait: dns.wait.maxWait,
      },
      profile: 'poll',
    }),
  );
  return steps;
}
