/**
 * Host access. Before anything runs on either host, the worker proves it reaches both as the plan
 * says: host keys against known_hosts, logins accepted, no command. Then, for the guide's
 * dest→source rsync, the source's host key, as the worker itself pins it, goes into the
 * destination's known_hosts. Learning it from the network (ssh-keyscan) would trust whoever answers.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { readFileSync } from 'node:fs';
import { FailureType } from '../errors';
import { realNet, type NetProbes } from '../probe/probes';
import type { HostRole } from '../plan/schema';
import { entriesFor, hostLookupName, parseKnownHosts } from '../ssh/known-hosts';
import { expandFilePath } from '../ssh/secrets';
import { commandFailed, commandOf, guardOf, liveExecutor, outcomeOf, refused, type ActivityDeps, type StepInput, type StepOutcome } from './common';
import { withHeartbeat, type Heartbeat } from './heartbeat';

const ROLES: HostRole[] = ['source', 'destination'];

/** One failure for both handshakes: a non-retryable one (a refused key) names the type, others are appended. */
function handshakeFailure(failures: unknown[]): unknown {
  const first = failures.find((f) => f instanceof ApplicationFailure && f.nonRetryable) ?? failures[0];
  const others = failures.filter((f) => f !== first).map((f) => (f instanceof Error ? f.message : String(f)));
  if (!(first instanceof ApplicationFailure) || others.length === 0) return first;
  return ApplicationFailure.create({ type: first.type ?? undefined, nonRetryable: first.nonRetryable === true, message: `${first.message}; also: ${others.join('; ')}` });
}

async function verifyHostKeys(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step, hosts } = input;
  const outcome = outcomeOf(step);
  if (input.mode === 'dry-run') return outcome({ status: 'recorded', command: step.command });
  const live = liveExecutor(deps);
  const labels = ROLES.map((role) => `${role} ${hosts[role].user}@${hosts[role].address}:${hosts[role].port}`).join(' and ');
  if (!live.connect) return outcome({ status: 'done', command: step.command, output: `this executor authenticates no hosts: nothing to verify for ${labels}` });
  hb.report({ doing: 'connect' });
  const results = await Promise.allSettled(ROLES.map((role) => live.connect?.(hosts[role], { signal: hb.signal })));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
  if (failures.length > 0) throw handshakeFailure(failures);
  return outcome({ status: 'done', command: step.command, output: `${labels}: host keys match known_hosts, logins accepted` });
}

/**
 * Resolves a host name of the plan once. Every address it resolves to is shown; the first is
 * recorded and used from then on. An address no host can be is refused.
 */
async function resolveAddress(net: NetProbes, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step } = input;
  const outcome = outcomeOf(step);
  const name = String(step.params?.name);
  if (input.mode === 'dry-run') return outcome({ status: 'recorded', command: step.command });
  const key = step.captureAs?.key ?? '';
  const known = input.values[key];
  if (known !== undefined) return outcome({ status: 'already-done', command: step.command, output: `${name} was resolved to ${known}`, captured: { key, value: known } });
  hb.report({ doing: 'resolve' });
  let addresses: string[];
  try {
    addresses = await net.resolve4(name);
  } catch (err) {
    // A name that does not resolve now may resolve on a retry (a resolver restarting): retryable.
    throw ApplicationFailure.create({ type: FailureType.CommandFailed, message: `${step.id}: ${name} does not resolve to an IPv4 address (${(err as NodeJS.ErrnoException).code ?? String(err)})` });
  }
  const usable = addresses.filter((a) => !/^(0\.|255\.255\.255\.255$|22[4-9]\.|23\d\.|24\d\.|25[0-5]\.)/.test(a));
  if (usable.length === 0) throw refused(FailureType.BadPlan, `${step.id}: ${name} resolves to no usable host address (${addresses.join(', ') || 'none'})`);
  const value = usable[0] as string;
  return outcome({ status: 'done', command: step.command, output: `${name} → ${value}${usable.length > 1 ? ` (of ${usable.join(', ')})` : ''}`, captured: { key, value } });
}

async function pinSourceHostKey(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step, hosts } = input;
  const outcome = outcomeOf(step);
  const source = hosts.source;
  const file = expandFilePath(source.knownHosts ?? 'file:~/.ssh/known_hosts');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw refused(FailureType.HostKeyMismatch, `${step.id}: the worker's known_hosts for the source (${source.knownHosts ?? '~/.ssh/known_hosts'}) cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
  const name = hostLookupName(source.address, source.port);
  const lines = entriesFor(parseKnownHosts(text), source.address, source.port)
    .filter((e) => e.marker === undefined)
    .map((e) => `${name} ${e.keyType} ${e.key.toString('base64')}`);
  if (lines.length === 0) throw refused(FailureType.HostKeyMismatch, `${step.id}: the worker pins no host key for ${name}; add it to the worker's known_hosts first`);
  const write = commandOf(input, String(step.params?.write));
  hb.report({ doing: 'write' });
  const r = await liveExecutor(deps).run(hosts.destination, write, hb.watch({ stdin: lines.join('\n') + '\n', guard: guardOf(step) }));
  if (r.exitCode !== 0) throw commandFailed(step, write, r, hosts.destination);
  return outcome({ status: 'done', command: write, exitCode: 0, output: `${lines.length} key(s) for ${name}` });
}

export function createAccessActivities(deps: ActivityDeps) {
  return {
    /** Connects to both hosts, running nothing: a host key known_hosts does not pin stops the run here. */
    async verifyHostKeys(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => verifyHostKeys(deps, input, hb), deps);
    },

    /** A host name of the plan, resolved once by the worker and recorded. */
    async resolveAddress(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => resolveAddress(deps.net ?? realNet, input, hb), deps);
    },

    async pinSourceHostKey(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => pinSourceHostKey(deps, input, hb), deps);
    },
  };
}
