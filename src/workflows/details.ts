/**
 * What the Temporal Web UI shows of a running migration: one-line summaries for the timeline
 * (each activity, timer and child names its step) and the workflow's current details (Markdown:
 * phase, containers and their step, the open waits, the gate, the matrix, approvals, failures).
 * Pure and deterministic: it runs inside the workflow.
 */
import type { Step } from '../runbook/model';
import type { MigrationStatus } from './messages';

/** The Web UI and `temporal` show summaries on one line; long titles are cut. */
const SUMMARY_MAX = 200;

export function oneLine(text: string, max = SUMMARY_MAX): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** A step as the timeline labels its activity: `data/tables/rsync-final: Final rsync of tables' data`. */
export function stepSummary(step: Step, suffix = ''): string {
  return oneLine(`${step.id}${suffix}: ${step.title}`);
}

/** Markdown cells hold no pipes or newlines. */
const cell = (s: string) => oneLine(s, 120).replace(/\|/g, '\\|');

const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

/** The tenant's current details, from its status: what an operator looking at the Web UI needs first. */
export function tenantDetails(s: MigrationStatus): string {
  const lines: string[] = [`**${s.tenant}** · ${s.mode} · phase **${s.phase}**${s.paused ? ' · **paused**' : ''}`];
  if (s.mode === 'live' && s.downtimeMs !== undefined) lines.push(`Downtime ${s.downtimeOver ? '' : 'so far '}${seconds(s.downtimeMs)}`);
  const dry = s.mode === 'dry-run' ? ' --dry-run' : '';
  if (s.gate) lines.push('', `Waiting at the **${s.gate.name}** gate: ${cell(s.gate.title || 'approval')}`, `\`gbo-migrate approve ${s.tenant} --gate ${s.gate.name} --reason "…"${dry}\``);
  const open = s.waits.filter((w) => w.state === 'waiting' && w.kind !== 'gate');
  if (open.length) {
    lines.push('', '| Wait | For | Until |', '|---|---|---|');
    for (const w of open) lines.push(`| ${cell(w.id)} | ${cell(w.what)} | ${w.until} |`);
  } else if (s.waitingFor && !s.gate) {
    lines.push('', `Waiting for ${cell(s.waitingFor)}`);
  }
  const failed = Object.entries(s.failures);
  if (failed.length) {
    lines.push('', '| Failed step | Error | Retry or skip |', '|---|---|---|');
    for (const [id, msg] of failed) lines.push(`| ${cell(id)} | ${cell(msg.split('\n')[0] ?? '')} | \`gbo-migrate retry ${s.tenant} ${id}${dry}\` or \`skip … --reason "…"\` |`);
  }
  const containers = Object.entries(s.containers);
  if (containers.length) {
    lines.push('', '| Container | Phase | Step |', '|---|---|---|');
    for (const [name, c] of containers) lines.push(`| ${cell(name)} | ${c.phase} | ${c.step ? cell(c.step) : ''} |`);
  }
  if (s.matrix.length) {
    const red = s.matrix.filter((m) => m.required && !m.ok && !m.notProbed);
    lines.push('', `Verification matrix: ${s.matrix.filter((m) => m.ok).length}/${s.matrix.length} answering${red.length ? `; red: ${red.map((m) => `${m.container} ${m.service}${m.port ? ` ${m.port}` : ''}`).join(', ')}` : ''}`);
  }
  if (s.approvals.length) lines.push('', `Approvals: ${s.approvals.map((a) => `${a.gate} by ${a.by} at ${a.at}${a.override ? ' (override)' : ''}`).join('; ')}`);
  if (s.skipped.length) lines.push('', `Skipped: ${s.skipped.map((k) => `${k.id} by ${k.by} (${cell(k.reason)})`).join('; ')}`);
  if (s.undoFailures.length) lines.push('', `Undo steps to finish by hand: ${s.undoFailures.map((u) => `${u.id}: \`${cell(u.byHand)}\``).join('; ')}`);
  return lines.join('\n');
}

/** A container child's current details: its phase and step, or the failure it waits on. */
export function containerDetails(container: string, phase: string, step: string | undefined, failures: Record<string, string>, waitingFor: string | undefined): string {
  const lines = [`**${container}** · phase **${phase}**${step ? ` · step \`${step}\`` : ''}`];
  for (const [id, msg] of Object.entries(failures)) lines.push(`Failed: \`${id}\`: ${cell(msg.split('\n')[0] ?? '')}`);
  if (waitingFor) lines.push(`Waiting for ${cell(waitingFor)}`);
  return lines.join('\n\n');
}
