/**
 * The reverse proxy's config: upstreams rewritten from the source containers' addresses to the
 * destination's (or, in the certificates phase, the domains no DNS record points here removed),
 * in the worker, written next to the live config. Validation, the vhost count and
 * the storage check are steps of their own; the live config is only replaced after them.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { FailureType } from '../errors';
import { removeSites, rewriteUpstreams } from '../proxy/caddy';
import { commandFailed, commandOf, guardOf, liveExecutor, outcomeOf, type ActivityDeps, type StepInput, type StepOutcome } from './common';
import { withHeartbeat, type Heartbeat } from './heartbeat';

function withNewUpstreams(config: string, map: Record<string, string>): { text: string; summary: string } {
  const { text, replaced } = rewriteUpstreams(config, map);
  return { text, summary: Object.entries(replaced).map(([ip, n]) => `${ip}→${map[ip]} ×${n}`).join(', ') || 'no old address found (already rewritten)' };
}

function withoutDomains(stepId: string, config: string, domains: string | undefined): { text: string; summary: string } {
  if (domains === undefined) throw ApplicationFailure.create({ type: FailureType.BadPlan, nonRetryable: true, message: `${stepId}: no list of domains to remove was recorded` });
  const { text, removed } = removeSites(config, domains.split(',').filter(Boolean));
  return { text, summary: `removed ${removed.join(', ') || 'nothing'}` };
}

async function rewriteCaddy(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const { step, hosts, values } = input;
  const outcome = outcomeOf(step);
  const live = liveExecutor(deps);
  const target = hosts.destination;
  const p = step.params ?? {};
  const map: Record<string, string> = {};
  for (const c of (p.containers as string[]) ?? []) {
    const from = values[`oldip:${c}`];
    const to = values[`ip:${c}`];
    if (from && to && from !== to) map[from] = to;
  }
  const read = commandOf(input, String(p.read));
  hb.report({ doing: 'read' });
  const current = await live.run(target, read, hb.watch());
  if (current.exitCode !== 0) throw commandFailed(step, read, current, target);
  const { text, summary } = typeof p.remove === 'string' ? withoutDomains(step.id, current.stdout, values[p.remove]) : withNewUpstreams(current.stdout, map);
  // Nothing left to rewrite (a re-run after install): write nothing, so nothing is pending.
  if (text === current.stdout) return outcome({ status: 'already-done', command: read, exitCode: 0, output: typeof p.remove === 'string' ? 'none of the domains is in the config' : 'no old container address in the config' });
  if (text.trim() === '') throw ApplicationFailure.create({ type: FailureType.Refused, nonRetryable: true, message: `${step.id}: the current Caddy config is empty; refusing to write an empty config` });
  const write = commandOf(input, String(p.write));
  hb.report({ doing: 'write' });
  const written = await live.run(target, write, hb.watch({ stdin: text, guard: guardOf(step) }));
  if (written.exitCode !== 0) throw commandFailed(step, write, written, target);
  return outcome({ status: 'done', command: `${read} | rewrite | ${write}`, exitCode: 0, output: summary });
}

export function createProxyActivities(deps: ActivityDeps) {
  return {
    async rewriteCaddy(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => rewriteCaddy(deps, input, hb), deps);
    },
  };
}
