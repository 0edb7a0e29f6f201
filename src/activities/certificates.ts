/**
 * Certificates: is a valid certificate served for a domain (TLS with SNI, valid now, for the
 * name, chaining to the plan's CA, from the expected issuer)? If not, what does Caddy's log say:
 * a CA's rate limit (its retry time goes back to the workflow, which sleeps until then), other
 * ACME errors, DNS not pointing here. And making Caddy retry every pending name at once.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { readFile } from 'node:fs/promises';
import { describeObtainEvent, latestObtainEvent } from '../proxy/caddy-log';
import { realNet } from '../probe/probes';
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
    async retryCertificates(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => retryCertificates(deps, input, hb), deps);
    },
  };
}
