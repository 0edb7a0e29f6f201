/**
 * Probes: does a service answer? From the destination host (a container's address on the bridge)
 * or from the worker (the host's public address, through NAT). In the verify phase a probe reports
 * red or green for the matrix; elsewhere (NAT must answer before proxy devices go) a silent service
 * is a retryable failure.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Probe } from '../plan/schema';
import { realNet } from '../probe/probes';
import { commandOf, guardOf, liveExecutor, outcomeOf, type ActivityDeps, type StepInput, type StepOutcome } from './common';
import { withHeartbeat, type Heartbeat } from './heartbeat';

/** One probe: answered or not, why, and for a probe run on a host, the command's exit code (for the audit). */
async function probeOnce(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<{ ok: boolean; detail: string; command: string; exitCode?: number }> {
  const { step, hosts } = input;
  if (step.host === 'worker') {
    const p = step.params ?? {};
    const net = deps.net ?? realNet;
    const address = String(p.address);
    const port = Number(p.port);
    // The probe the plan declares for the service on this port (src/runbook/network.ts natProbeOf).
    const probe: Probe = typeof p.probeSpec === 'string' ? (JSON.parse(p.probeSpec) as Probe) : p.protocol === 'udp' ? { kind: 'none' } : { kind: 'tcp' };
    switch (probe.kind) {
      case 'none':
        return { ok: true, detail: 'not probed (none declared)', command: step.command };
      case 'dns': {
        const r = await net.dnsQuery(address, port, probe.name, 'SOA', 3000);
        return { ok: r.ok, detail: r.error ?? `rcode ${r.rcode}, ${r.answers.length} answers`, command: step.command };
      }
      case 'udp': {
        const r = await net.udpProbe(address, port, probe.send, probe.expect, 3000);
        return { ok: r.ok, detail: r.error ?? `replied ${JSON.stringify(r.reply ?? '')}`, command: step.command };
      }
      case 'http': {
        const r = await net.httpProbe(address, port, probe.path, 3000);
        return { ok: r.ok, detail: r.error ?? String(r.reply), command: step.command };
      }
      case 'tcp': {
        const r = await net.tcpProbe(address, port, 3000);
        return { ok: r.ok, detail: r.error ?? `connected in ${r.ms} ms`, command: step.command };
      }
    }
  }
  const command = commandOf(input);
  const r = await liveExecutor(deps).run(hosts[step.host], command, hb.watch({ guard: guardOf(step) }));
  return { ok: r.exitCode === 0, detail: r.exitCode === 0 ? 'answered' : `exit ${r.exitCode} ${r.stderr.trim().slice(0, 200)}`, command, exitCode: r.exitCode };
}

async function probe(deps: ActivityDeps, input: StepInput, hb: Heartbeat): Promise<StepOutcome> {
  const outcome = outcomeOf(input.step);
  const attempts = input.step.phase === 'verify' ? 3 : 1;
  hb.report({ doing: 'probe' });
  let last = await probeOnce(deps, input, hb);
  for (let i = 1; i < attempts && !last.ok; i++) {
    hb.report({ attempt: i });
    await new Promise((r) => setTimeout(r, 1500));
    last = await probeOnce(deps, input, hb);
  }
  if (!last.ok && input.step.phase !== 'verify') {
    throw ApplicationFailure.create({ type: 'ProbeFailed', message: `${input.step.id}: no answer: ${last.detail}` });
  }
  return outcome({ status: 'done', command: last.command, ok: last.ok, output: last.detail, ...(last.exitCode !== undefined ? { exitCode: last.exitCode } : {}) });
}

export function createProbeActivities(deps: ActivityDeps) {
  return {
    async probe(input: StepInput): Promise<StepOutcome> {
      return withHeartbeat(input.step.id, (hb) => probe(deps, input, hb), deps);
    },
  };
}
