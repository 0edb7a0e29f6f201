/**
 * DNS cutover and certificates: the zone is rewritten in the worker (records set, serial bumped,
 * unchanged when already right), and single checks the workflow polls durably.
 */
import { updateZone } from '../dns/zone';
import { dnsQuery, tlsCertificate } from '../probe/probes';
import { commandFailed, commandOf, liveExecutor, outcomeOf, type ActivityDeps, type StepInput, type StepOutcome } from './common';

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

export function createDnsActivities(deps: ActivityDeps) {
  return {
    async updateZone(input: StepInput): Promise<StepOutcome> {
      const { step, hosts } = input;
      const outcome = outcomeOf(step);
      const live = liveExecutor(deps);
      const read = commandOf(input, String(step.params?.read));
      const current = await live.run(hosts.destination, read);
      if (current.exitCode !== 0) throw commandFailed(step, read, current);
      const result = updateZone(current.stdout, String(step.params?.zone), recordsOf(input));
      if (result.changed.length === 0) return outcome({ status: 'already-done', command: read, exitCode: 0, output: `serial ${result.oldSerial}, records already set` });
      const write = commandOf(input, String(step.params?.write));
      const r = await live.run(hosts.destination, write, { stdin: result.text });
      if (r.exitCode !== 0) throw commandFailed(step, write, r);
      return outcome({ status: 'done', command: write, exitCode: 0, output: `serial ${result.oldSerial}→${result.newSerial}; ${result.changed.join(', ')}` });
    },

    /** Do all authoritative servers answer the plan's A records? */
    async checkDns(input: StepInput): Promise<StepOutcome> {
      const outcome = outcomeOf(input.step);
      const zone = String(input.step.params?.zone);
      const servers = (input.step.params?.servers as string[]) ?? [];
      const wrong: string[] = [];
      for (const server of servers) {
        for (const rec of recordsOf(input).filter((r) => r.type === 'A' && !r.name.includes('*'))) {
          const r = await dnsQuery(server, 53, fqdn(rec.name, zone), 'A', 3000);
          if (!r.answers.some((a) => a.type === 'A' && a.data === rec.value)) wrong.push(`${server}: ${fqdn(rec.name, zone)} = ${r.answers.map((a) => a.data).join(',') || r.error || 'none'}`);
        }
      }
      return outcome({ status: 'done', command: input.step.command, ok: wrong.length === 0, output: wrong.join('; ') || 'all servers answer the new records' });
    },

    /** Is a valid certificate served for the domain (TLS with SNI)? */
    async checkCertificate(input: StepInput): Promise<StepOutcome> {
      const outcome = outcomeOf(input.step);
      const p = input.step.params ?? {};
      const r = await tlsCertificate(String(p.address), 443, String(p.domain), undefined, 5000);
      return outcome({ status: 'done', command: input.step.command, ok: r.ok, output: r.ok ? `valid until ${r.validTo}` : (r.error ?? 'no valid certificate') });
    },
  };
}
