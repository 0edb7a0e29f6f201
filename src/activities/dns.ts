/**
 * DNS cutover and certificates: the zone is rewritten in the worker (records set, serial bumped,
 * unchanged when already right), and single checks the workflow polls durably.
 */
import { updateZone } from '../dns/zone';
import { realNet, type NetProbes } from '../probe/probes';
import { commandFailed, commandOf, guardOf, liveExecutor, outcomeOf, type ActivityDeps, type StepInput, type StepOutcome } from './common';
import { withHeartbeat, type Heartbeat } from './heartbeat';

interface RecordSpec {
  name: string;
  type: 'A' | 'NS';
  value: string;
  ttl?: number;
}

const recordsOf = (input: StepInput): RecordSpec[] => ((input.step.params?.records as string[]) ?? []).map((r) => JSON.parse(r) as RecordSpec);

function fqdn(name: string, zone: string): string {
  return name === '@' ? zone : name.endsWith('.') ? name.slice(0, -1) : `${name}.${zone}`;
}

async function rewriteZone(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step, hosts } = input;
  const outcome = outcomeOf(step);
  const live = liveExecutor(deps);
  const target = hosts.destination;
  const read = commandOf(input, String(step.params?.read));
  hb.report({ doing: 'read' });
  const current = await live.run(target, read, hb.watch());
  if (current.exitCode !== 0) throw commandFailed(step, read, current, target);
  const result = updateZone(current.stdout, String(step.params?.zone), recordsOf(input));
  if (result.changed.length === 0) return outcome({ status: 'already-done', command: read, exitCode: 0, output: `serial ${result.oldSerial}, records already set` });
  const write = commandOf(input, String(step.params?.write));
  hb.report({ doing: 'write' });
  const r = await live.run(target, write, hb.watch({ stdin: result.text, guard: guardOf(step) }));
  if (r.exitCode !== 0) throw commandFailed(step, write, r, target);
  return outcome({ status: 'done', command: write, exitCode: 0, output: `serial ${result.oldSerial}→${result.newSerial}; ${result.changed.join(', ')}` });
}

/** Do all authoritative servers answer the plan's A records? */
async function checkDns(net: NetProbes, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const outcome = outcomeOf(input.step);
  const zone = String(input.step.params?.zone);
  const servers = (input.step.params?.servers as string[]) ?? [];
  const wrong: string[] = [];
  for (const server of servers) {
    hb.report({ doing: `query ${server}` });
    for (const rec of recordsOf(input).filter((r) => r.type === 'A' && !r.name.includes('*'))) {
      const r = await net.dnsQuery(server, 53, fqdn(rec.name, zone), 'A', 3000);
      if (!r.answers.some((a) => a.type === 'A' && a.data === rec.value)) wrong.push(`${server}: ${fqdn(rec.name, zone)} = ${r.answers.map((a) => a.data).join(',') || r.error || 'none'}`);
    }
  }
  return outcome({ status: 'done', command: input.step.command, ok: wrong.length === 0, output: wrong.join('; ') || 'all servers answer the new records' });
}

/** Is a valid certificate served for the domain (TLS with SNI)? */
async function checkCertificate(net: NetProbes, input: StepInput): Promise<StepOutcome> {
  const outcome = outcomeOf(input.step);
  const p = input.step.params ?? {};
  const r = await net.tlsCertificate(String(p.address), 443, String(p.domain), undefined, 5000);
  return outcome({ status: 'done', command: input.step.command, ok: r.ok, output: r.ok ? `valid until ${r.validTo}` : (r.error ?? 'no valid certificate') });
}

export function createDnsActivities(deps: ActivityDeps) {
  return {
    async updateZone(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => rewriteZone(deps, input, hb), deps);
    },

    async checkDns(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => checkDns(deps.net ?? realNet, input, hb), deps);
    },

    async checkCertificate(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, () => checkCertificate(deps.net ?? realNet, input), deps);
    },
  };
}
