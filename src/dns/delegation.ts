/**
 * The zone's delegation at its parent (the registrar's side: NS records and glue), which the tool
 * cannot change: the operator changes it, and the cutover waits until the parent's servers refer
 * to the planned nameservers. Pure: the worker's DNS probe asks, this judges.
 */
import type { DnsQueryResult } from '../probe/probes';

export interface Delegation {
  zone: string;
  /** The nameservers the parent must refer to (host names). */
  nameservers: string[];
  /** Glue the parent must carry for nameservers inside the zone: name → IPv4. */
  glue: Record<string, string>;
}

const bare = (n: string) => n.replace(/\.$/, '').toLowerCase();

/** What a parent's answer to `<zone> NS` still gets wrong; empty when it refers to exactly the planned nameservers with their glue. */
export function delegationProblems(r: DnsQueryResult, d: Delegation): string[] {
  if (!r.ok) return [r.error ?? `rcode ${r.rcode}`];
  const zone = bare(d.zone);
  // A parent answers with a referral (authority section); a parent that also serves the zone answers it.
  const ns = [...r.answers, ...(r.authority ?? [])].filter((x) => x.type === 'NS' && bare(x.name) === zone).map((x) => bare(x.data));
  const want = d.nameservers.map(bare);
  const problems: string[] = [];
  const missing = want.filter((n) => !ns.includes(n));
  const extra = ns.filter((n) => !want.includes(n));
  if (missing.length) problems.push(`NS ${missing.join(', ')} missing (refers to ${[...new Set(ns)].join(', ') || 'nothing'})`);
  if (extra.length) problems.push(`NS ${[...new Set(extra)].join(', ')} still listed`);
  for (const [name, address] of Object.entries(d.glue)) {
    const found = (r.additional ?? []).filter((x) => x.type === 'A' && bare(x.name) === bare(name)).map((x) => x.data);
    if (!found.includes(address)) problems.push(`glue ${bare(name)} A ${found.join(',') || 'none'}, want ${address}`);
  }
  return problems;
}

/** The glue a delegation needs: the planned A records of the nameservers inside the zone. */
export function glueOf(zone: string, nameservers: string[], records: { name: string; type: string; value: string }[]): Record<string, string> {
  const z = bare(zone);
  const abs = (n: string) => (n === '@' ? z : n.endsWith('.') ? bare(n) : `${n}.${z}`.toLowerCase());
  const glue: Record<string, string> = {};
  for (const ns of nameservers.map(bare).filter((n) => n === z || n.endsWith(`.${z}`))) {
    const a = records.find((r) => r.type === 'A' && abs(r.name) === ns);
    if (a) glue[ns] = a.value;
  }
  return glue;
}
