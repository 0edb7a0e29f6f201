/** Renders the runbook as the dry run prints it: phase by phase, host and exact command per step. */
import type { Plan } from '../plan/schema';
import { sourceNameOf } from '../plan/schema';
import type { Runbook, Step } from './model';
import { hostCommand } from './shell';

function hostLabel(plan: Plan, step: Step): string {
  if (step.host === 'worker') return 'worker';
  const h = plan.hosts[step.host];
  return `${step.host} ${h.user}@${h.address}`;
}

function describe(step: Step): string {
  const tags = [step.kind !== 'run' ? step.kind : '', step.destructive ? 'DESTRUCTIVE' : '', step.gate && step.kind !== 'gate' ? `after ${step.gate} gate` : ''].filter(Boolean);
  return tags.length ? ` [${tags.join(', ')}]` : '';
}

export function renderRunbook(plan: Plan, runbook: Runbook): string {
  const out: string[] = [];
  const n = runbook.phases.reduce((a, p) => a + p.steps.length, 0);
  out.push(`Dry run: tenant ${plan.tenant}, ${plan.containers.length} containers, ${n} steps. Nothing connects anywhere.`);
  out.push(`  source       ${plan.hosts.source.user}@${plan.hosts.source.address}:${plan.hosts.source.port} (LXD, remote "${plan.source.remoteName}" at ${plan.source.apiAddress}:${plan.source.apiPort})`);
  out.push(`  destination  ${plan.hosts.destination.user}@${plan.hosts.destination.address}:${plan.hosts.destination.port} (Incus${plan.hosts.destination.sudo ? ', via sudo' : ''}, bridge ${plan.destination.bridge})`);
  out.push(`  containers   ${plan.containers.map((c) => `${sourceNameOf(plan, c)} → ${c.name}${c.canary ? ' (canary)' : ''}`).join(', ')}`);
  out.push('  {{ip:<c>}} is the address a container gets on the destination; other {{...}} values are learned while running.');
  runbook.phases.forEach((phase, i) => {
    out.push('', `== ${i + 1}. ${phase.id}: ${phase.title} (${phase.steps.length} steps)`);
    for (const step of phase.steps) {
      out.push(`- ${step.id}: ${step.title}${describe(step)}`);
      if (step.command) out.push(`    ${hostLabel(plan, step)} $ ${hostCommand(step.command, {}, step.sudo)}`);
      if (step.check) out.push(`    skip if (${step.checkOn && step.checkOn !== step.host ? step.checkOn : 'same host'}) $ ${hostCommand(step.check, {}, step.checkSudo)}`);
    }
  });
  out.push('', `== On cancel before cutover (reverse order, per container)`);
  for (const step of runbook.compensation) {
    out.push(`- ${step.id}: ${step.title}`, `    ${hostLabel(plan, step)} $ ${hostCommand(step.command, {}, step.sudo)}`);
  }
  return out.join('\n');
}
