/**
 * Certificates: is a valid certificate served for a domain (TLS with SNI, valid now, for the
 * name, chaining to the plan's CA, from the expected issuer)? If not, what does Caddy's log say:
 * a CA's rate limit (its retry time goes back to the workflow, which sleeps until then), other
 * ACME errors, DNS not pointing here. Making Caddy retry every pending name at once. And the
 * proxy's domains that no DNS record points here, before any of that.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { readFile } from 'node:fs/promises';
import { adaptedHosts } from '../proxy/caddy';
import { describeObtainEvent, latestObtainEvent } from '../proxy/caddy-log';
import { realNet, type NetProbes } from '../probe/probes';
import { badPlan, commandFailed, commandOf, liveExecutor, outcomeOf, type ActivityDeps, type StepInput, type StepOutcome } from './common';
import { withHeartbeat, type Heartbeat } from './heartbeat';

/** The roots a served certificate must chain to: the plan's `caFile`, read on the worker. */
async function trustedRoots(step: StepInput['step']): Promise<string | undefined> {
  const file = step.params?.caFile;
  if (typeof file !== 'string') return undefined;
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw badPlan(`${step.id}: certificates.caFile ${file} cannot be read on this worker: ${(err as Error).message}`);
  }
}

async function checkCertificate(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step } = input;
  const outcome = outcomeOf(step);
  const p = step.params ?? {};
  const domain = String(p.domain);
  hb.report({ doing: 'tls' });
  const r = await (deps.net ?? realNet).tlsCertificate(String(p.address), 443, domain, await trustedRoots(step), 5000);
  const issuer = typeof p.issuer === 'string' ? p.issuer : undefined;
  const wrongIssuer = r.ok && issuer !== undefined && !(r.issuer ?? '').includes(issuer);
  if (r.ok && !wrongIssuer) return outcome({ status: 'done', command: step.command, ok: true, output: `${domain}: valid until ${r.validTo}, issued by ${r.issuer ?? '?'}` });
  const served = wrongIssuer ? `issued by ${r.issuer ?? '?'}, not ${issuer}` : (r.error ?? 'no valid certificate');
  let why = `${domain}: ${served}`;
  if (typeof p.readLog === 'string') {
    hb.report({ doing: 'read Caddy log' });
    const command = commandOf(input, p.readLog, p.destinationSudo === true);
    const log = await liveExecutor(deps).run(input.hosts.destination, command, hb.watch());
    if (log.exitCode !== 0) throw commandFailed(step, command, log, input.hosts.destination);
    const event = latestObtainEvent(log.stdout, domain, input.since ? Date.parse(input.since) : 0);
    // The CA's retry time goes back to the workflow: a durable sleep there, not a poll here.
    if (event?.kind === 'rate-limited') return outcome({ status: 'done', command: step.command, ok: false, retryAt: event.retryAt, output: describeObtainEvent(domain, event) });
    why += `; ${describeObtainEvent(domain, event)}`;
  }
  // Not yet: the server retries this activity on its retry policy (no history events per attempt).
  throw ApplicationFailure.retryable(`not yet: ${why}`, 'NotYet');
}

/** Does some A record of `name` point at `address`? In the plan's zone its authoritative servers answer; elsewhere the worker's resolver. */
async function pointsAt(net: NetProbes, name: string, address: string, zone: string, servers: string[]): Promise<boolean> {
  if (name === zone || name.endsWith(`.${zone}`)) {
    for (const server of servers) {
      const r = await net.dnsQuery(server, 53, name, 'A', 3000);
      if (r.answers.some((a) => a.type === 'A' && a.data === address)) return true;
    }
    return false;
  }
  return (await net.resolve4(name).catch((): string[] => [])).includes(address);
}

/**
 * The proxy's domains that no DNS record points at the destination: Caddy would try (and fail)
 * to validate them with the CA at every retry, spending the CA's limits on them. Kept under
 * `dead-domains` (comma-separated); the workflow asks for the `domains` gate before removing them.
 */
async function findDeadDomains(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step } = input;
  const outcome = outcomeOf(step);
  const p = step.params ?? {};
  const address = String(p.address);
  const adapt = commandOf(input, String(p.adapt), p.destinationSudo === true);
  hb.report({ doing: 'caddy adapt' });
  const r = await liveExecutor(deps).run(input.hosts.destination, adapt, hb.watch());
  if (r.exitCode !== 0) throw commandFailed(step, adapt, r, input.hosts.destination);
  // Names a CA can validate: not addresses, not wildcards (no HTTP challenge for them), not local.
  const names = adaptedHosts(r.stdout).filter((h) => !/^[\d.]+$/.test(h) && !h.includes('*') && h !== 'localhost');
  const dead: string[] = [];
  for (const name of names) {
    hb.report({ doing: `resolve ${name}` });
    if (!(await pointsAt(deps.net ?? realNet, name, address, String(p.zone), (p.servers as string[]) ?? []))) dead.push(name);
  }
  return outcome({
    status: 'done',
    command: adapt,
    exitCode: 0,
    captured: { key: 'dead-domains', value: dead.join(',') },
    output: dead.length ? `no DNS record points at ${address}: ${dead.join(', ')}` : `all ${names.length} domains point at ${address}`,
  });
}

/** `caddy reload --force`: Caddy retries every name it has no certificate for, now. */
async function retryCertificates(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step } = input;
  const outcome = outcomeOf(step);
  const retry = step.params?.retryCommand;
  if (typeof retry !== 'string') return outcome({ status: 'done', command: '', output: 'no proxy of the plan to make retry' });
  const command = commandOf(input, retry, step.params?.destinationSudo === true);
  hb.report({ doing: 'caddy reload --force' });
  const r = await liveExecutor(deps).run(input.hosts.destination, command, hb.watch());
  if (r.exitCode !== 0) throw commandFailed(step, command, r, input.hosts.destination);
  return outcome({ status: 'done', command, exitCode: 0 });
}

export function createCertificateActivities(deps: ActivityDeps) {
  return {
    async checkCertificate(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => checkCertificate(deps, input, hb), deps);
    },
    async findDeadDomains(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => findDeadDomains(deps, input, hb), deps);
    },
    async retryCertificates(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => retryCertificates(deps, input, hb), deps);
    },
  };
}
