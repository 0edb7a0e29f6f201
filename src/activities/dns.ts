/**
 * DNS cutover: the zone is rewritten in the worker (records set, serial bumped, unchanged when
 * already right), and the check of the authoritative servers the workflow polls durably.
 */
import { delegationProblems } from '../dns/delegation';
import { updateZone } from '../dns/zone';
import { ApplicationFailure } from '@temporalio/activity';
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

/** The name a record's check asks: a wildcard is asked through a name only it can answer. */
function askedName(name: string, zone: string): string {
  return fqdn(name.replace(/^\*/, 'gbo-migrate-wildcard-check'), zone);
}

const bare = (n: string) => n.replace(/\.$/, '').toLowerCase();

/**
 * Do all authoritative servers answer every planned record (A and NS), from their own zone (the
 * authoritative-answer flag)? Not yet: a retryable failure naming what each server still says;
 * the server retries the activity on its retry policy, so a poll of days adds no history events.
 */
async function checkDns(net: NetProbes, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const outcome = outcomeOf(input.step);
  const zone = String(input.step.params?.zone);
  const servers = (input.step.params?.servers as string[]) ?? [];
  const records = recordsOf(input);
  const wrong: string[] = [];
  for (const server of servers) {
    hb.report({ doing: `query ${server}` });
    for (const rec of records) {
      const name = askedName(rec.name, zone);
      const r = await net.dnsQuery(server, 53, name, rec.type, 3000);
      const found = r.answers.filter((a) => a.type === rec.type).map((a) => a.data);
      const has = rec.type === 'A' ? found.includes(rec.value) : found.map(bare).includes(bare(rec.value));
      if (!has || !r.aa) {
        const said = r.error ?? (found.join(',') || 'no answer');
        wrong.push(`${server}: ${name} ${rec.type} = ${said}${has && !r.aa ? ' (not authoritative)' : ''}, want ${rec.value}`);
      }
    }
  }
  if (wrong.length) throw ApplicationFailure.retryable(`not yet: ${wrong.slice(0, 8).join('; ')}${wrong.length > 8 ? `; and ${wrong.length - 8} more` : ''}`, 'NotYet');
  return outcome({ status: 'done', command: input.step.command, ok: true, output: `${servers.length} server(s) answer all ${records.length} record(s) authoritatively` });
}

/** Do all of the parent's servers refer the zone to the planned nameservers, with their glue? */
async function checkDelegation(net: NetProbes, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const outcome = outcomeOf(input.step);
  const p = input.step.params ?? {};
  const d = { zone: String(p.zone), nameservers: (p.nameservers as string[]) ?? [], glue: JSON.parse(String(p.glue ?? '{}')) as Record<string, string> };
  const wrong: string[] = [];
  for (const server of (p.servers as string[]) ?? []) {
    hb.report({ doing: `query ${server}` });
    const problems = delegationProblems(await net.dnsQuery(server, 53, d.zone, 'NS', 3000), d);
    if (problems.length) wrong.push(`${server}: ${problems.join('; ')}`);
  }
  if (wrong.length) throw ApplicationFailure.retryable(`not yet: ${wrong.join('; ')}`, 'NotYet');
  return outcome({ status: 'done', command: input.step.command, ok: true, output: `the parent refers ${d.zone} to ${d.nameservers.join(', ')}` });
}

export function createDnsActivities(deps: ActivityDeps) {
  return {
    async updateZone(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => rewriteZone(deps, input, hb), deps);
    },

    async checkDelegation(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => checkDelegation(deps.net ?? realNet, input, hb), deps);
    },

    async checkDns(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => checkDns(deps.net ?? realNet, input, hb), deps);
    },
  };
}
