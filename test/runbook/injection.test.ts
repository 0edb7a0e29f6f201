/**
 * Issue 8: every value that reaches a shell is quoted where its command is built, whatever
 * validation already restricts. Each string field of a valid plan (found by walking the plan, so
 * new fields are covered without touching this test) is given shell metacharacters, validation
 * bypassed; the runbook is built and every produced command runs with a real `/bin/sh` over stub
 * binaries (see injection-harness.ts). No injected side effect may happen.
 */
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createStepActivities } from '../../src/activities/steps';
import { DryRunExecutor, type CommandExecutor, type HostTarget } from '../../src/activities/executor';
import { loadPlan } from '../../src/plan/load';
import type { HostRole, Plan } from '../../src/plan/schema';
import { buildRunbook, compensationSteps, networkCompensationSteps, restoreUnit } from '../../src/runbook/build';
import { allSteps, type Step } from '../../src/runbook/model';
import { hostCommand, q, sh } from '../../src/runbook/shell';
import { pool, Sandbox, showPath, stringLeaves, withLeaf, type LeafPath } from './injection-harness';

const sandbox = new Sandbox();
afterAll(() => sandbox.remove());

const example = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
/** The example with every absolute path moved under the sandbox: a redirection writes nowhere else. */
const base: Plan = stringLeaves(example).reduce((p, l) => (l.value.startsWith('/') ? withLeaf(p, l.path, sandbox.fs + l.value) : p), example);
const leaves = stringLeaves(base);

/**
 * Valid learned values. The certificate's middle line is the name of a stub that marks: a
 * certificate filled in where it does not stand as a whole argument would run it.
 */
const learned: Record<string, string> = {
  'cert:destination': '-----BEGIN CERTIFICATE-----\ninjected\n-----END CERTIFICATE-----\n',
  'pubkey:destination': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB administrator@dest',
  'stamp:run': '202603221750',
  ...Object.fromEntries(base.containers.map((c, i) => [`ip:${c.name}`, `10.107.115.${10 + i}`])),
  ...Object.fromEntries(base.containers.map((c) => [`digest:${c.name}`, `files=12 sha256=${'a'.repeat(64)}`])),
};

/** The payloads, by name; `mark` is the absolute path of the variant's mark directory. */
function payloads(mark: string): [string, string][] {
  return [
    ['semi', `; touch ${mark}/semi`],
    ['subst', `$(touch ${mark}/subst)`],
    ['tick', `\`touch ${mark}/tick\``],
    ['pipe', `| touch ${mark}/pipe`],
    ['and', `&& touch ${mark}/and`],
    ['squote', `' ; touch ${mark}/squote ; '`],
    ['dquote', `" ; touch ${mark}/dquote ; "`],
    ['newline', `\ntouch ${mark}/newline`],
    ['option', `-oProxyCommand=touch ${mark}/option`],
    ['ph-ip', '{{ip:proxy}}'],
    ['ph-unknown', '{{ip:x}}'],
    ['ph-cert', '{{cert:destination}}'],
    ['ph-pubkey', '{{pubkey:destination}}'],
    ['ph-digest', '{{digest:proxy}}'],
  ];
}
const PAYLOAD_NAMES = payloads('').map(([n]) => n);

/**
 * `GBO_INJECTION_FULL=1` (npm run test:injection) runs every payload, alone and appended, in every
 * field at once; the default (CI) runs every field one at a time and a seeded sample of four of
 * the all-at-once plans. The seed is printed: `GBO_INJECTION_SEED=<n>` repeats a run.
 */
const FULL = process.env.GBO_INJECTION_FULL === '1';
const SEED = Number(process.env.GBO_INJECTION_SEED ?? Math.floor(Math.random() * 2 ** 31));
const togetherSample = new Set(
  PAYLOAD_NAMES.flatMap((n) => [n, `${n}+`])
    .map((k, i) => [k, ((SEED ^ (i * 2654435761)) >>> 0) % 1000003] as const)
    .sort((a, b) => a[1] - b[1])
    .slice(0, 4)
    .map(([k]) => k),
);

const hostsOf = (plan: Plan): Record<HostRole, HostTarget> => {
  const t = (role: HostRole): HostTarget => ({ role, ...plan.hosts[role] });
  return { source: t('source'), destination: t('destination') };
};

/**
 * Commands an activity builds at run time from a step's params: the name-clash check of a `names`
 * capture asks each clashing instance for its owner mark. Run through the activity itself, over an
 * executor that answers the inventory with every name the step checks.
 */
async function activityCommands(plan: Plan, step: Step): Promise<string[]> {
  if (step.captureAs?.kind !== 'names') return [];
  const p = step.params ?? {};
  const names = [...((p.expect as string[]) ?? []), ...((p.mustNotContain as string[]) ?? [])];
  const seen: string[] = [];
  const live: CommandExecutor = {
    async run(_target, command) {
      if (seen.length === 0 && step.check === undefined) {
        seen.push('');
        return { exitCode: 0, stdout: names.join('\n') + '\n', stderr: '' };
      }
      seen.push(command);
      return { exitCode: 0, stdout: `${String(p.tenant)}\n`, stderr: '' };
    },
  };
  try {
    await createStepActivities({ dryRun: new DryRunExecutor(), live }).runStep({ step, hosts: hostsOf(plan), values: learned, mode: 'live' });
  } catch {
    // A refusal is fine: only the commands it ran count.
  }
  return seen.filter(Boolean);
}

/** A sample of recorded source devices (learned, not planned), for the per-device restore steps. */
const devices = { eth0: { type: 'nic', nictype: 'bridged', parent: 'lxdbr0', name: 'eth0' }, data: { type: 'disk', source: `${sandbox.fs}/opt/gbo/x`, path: '/opt/gbo' } };

/**
 * Every command the plan produces, filled with the learned values, as the host would run it: step
 * commands and checks, command-bearing params, the compensation steps, commands the activities
 * build, the restore unit's ExecStart; each with sudo as the step says and (`flip`) the other way round.
 * A fill that refuses (a placeholder where it may not stand) is recorded as `refused`.
 */
async function commandsOf(plan: Plan, flip = true): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const runbook = buildRunbook(plan);
  const steps: Step[] = [
    ...allSteps(runbook),
    ...runbook.compensation,
    ...networkCompensationSteps(plan),
    ...plan.containers.flatMap((c) => [...compensationSteps(plan, c.name, devices), ...compensationSteps(plan, c.name, devices, { madeHere: true })]),
  ].filter((s): s is Step => s !== undefined);
  steps.forEach((s, i) => {
    const texts: [string, string | undefined, boolean | undefined][] = [
      ['command', s.command, s.sudo],
      ['check', s.check, s.checkSudo],
      ...Object.entries(s.params ?? {})
        .filter(([k, v]) => typeof v === 'string' && /^(read|write)$/.test(k))
        .map(([k, v]): [string, string, boolean | undefined] => [`params.${k}`, String(v), s.sudo]),
    ];
    for (const [field, text, sudo] of texts) {
      if (!text) continue;
      for (const sudoOn of flip ? [!!sudo, !sudo] : [!!sudo]) {
        const key = `${i}:${s.id} ${field}${sudoOn ? ' (sudo)' : ''}`;
        try {
          out.set(key, hostCommand(text, learned, sudoOn));
        } catch (err) {
          out.set(key, `refused: ${(err as Error).message}`);
        }
      }
    }
  });
  for (const s of steps) for (const [j, c] of (await activityCommands(plan, s)).entries()) out.set(`${s.id} activity ${j}`, c);
  const unit = restoreUnit(plan.destination.iptablesRulesFile);
  for (const line of unit.split('\n').filter((l) => l.startsWith('ExecStart='))) out.set(`restore unit ${line.slice(0, 10)}`, systemdExec(line.slice('ExecStart='.length)));
  return out;
}

/**
 * An ExecStart line as systemd runs it, as a shell command: words split the way systemd splits
 * them (double and single quotes, backslash escapes, `$$` and `%%`), a lone `;` between commands.
 */
function systemdExec(line: string): string {
  const words: string[] = [];
  let w: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (ch === ' ') {
      if (w !== undefined) words.push(w);
      w = undefined;
    } else if (ch === '"' || ch === "'") {
      w ??= '';
      for (i++; i < line.length && line[i] !== ch; i++) w += line[i] === '\\' ? (line[++i] ?? '') : line[i];
    } else if (ch === '\\') {
      w = (w ?? '') + (line[++i] ?? '');
    } else {
      w = (w ?? '') + ch;
    }
  }
  if (w !== undefined) words.push(w);
  const unescape = (s: string) => s.replace(/\$\$/g, '$').replace(/%%/g, '%');
  return words.map((x) => (x === ';' ? ';' : sh(unescape(x)))).join(' ');
}

const executable = (cmds: Map<string, string>) => [...cmds.entries()].filter(([, c]) => !c.startsWith('refused: '));
const stepIds = (cmds: Map<string, string>) => [...new Set([...cmds.keys()].map((k) => k.replace(/ \(sudo\)$/, '')))].join('\n');

/** Several payload types in one value: whichever quoting context it lands in unquoted, one of them runs. */
const polyglot = (m: string) => `'"$(touch ${m}/polyglot-subst)"'\`touch ${m}/polyglot-tick\`;touch ${m}/polyglot-semi\ntouch ${m}/polyglot-newline`;

interface Variant {
  label: string;
  /** Mark directory → the field and payload that embed it. */
  marks: Map<string, { field: string; payload: string }>;
  learned: string;
  commands: [string, string][];
}

interface Finding {
  field: string;
  payload: string;
  key: string;
  command: string;
  marks: string[];
}

/** Runs a variant's commands; on a mark, runs each alone to name the ones that injected. */
async function runVariant(v: Variant): Promise<Finding[]> {
  const dirs = [...v.marks.keys()];
  const r = await sandbox.run(v.commands.map(([, c]) => c), dirs, { learned: v.learned });
  if (r.marks.length === 0) return [];
  const found: Finding[] = [];
  const whose = (mark: string) => v.marks.get(mark.slice(0, mark.lastIndexOf('/'))) ?? { field: `${v.label} (a learned value)`, payload: '' };
  for (const [key, command] of v.commands) {
    sandbox.clear([...dirs, v.learned]);
    const one = await sandbox.run([command], dirs, { learned: v.learned });
    for (const m of one.marks) found.push({ ...whose(m), key, command, marks: [m.slice(m.lastIndexOf('/') + 1)] });
  }
  return found.length ? found : r.marks.map((m) => ({ ...whose(m), key: '(only together)', command: v.commands.map(([, c]) => c).join('\n'), marks: [m] }));
}

const report = (fs: Finding[]) =>
  fs.map((f) => `${f.field} = ${JSON.stringify(f.payload)}\n  in ${f.key}: made ${f.marks.join(', ')}\n  $ ${f.command}`).join('\n\n');
const hide = (text: string, marks: string[]) => marks.reduce((t, m) => t.split(m).join('$MARK'), text);

let baseline: Map<string, string>;
beforeAll(async () => {
  // Every absolute path of the plan exists as a file of KEY=value lines, so scripts that edit a
  // file in place (the env fix's sed) take their editing branch.
  const lines = leaves.map((l) => `${l.value}=old`).join('\n') + '\n';
  const paths = leaves.map((l) => l.value).filter((v) => v.startsWith(sandbox.fs + '/'));
  // Longest first: a path another one lies under stays a folder.
  for (const path of paths.sort((a, b) => b.length - a.length)) if (!paths.some((o) => o.startsWith(path + '/'))) sandbox.put(path, lines);
  baseline = await commandsOf(base);
});

describe('the injection harness', () => {
  it('detects an injection: an unquoted value, at the top and one shell deeper, marks', async () => {
    const mark = sandbox.newMark();
    const learnedMark = sandbox.newMark();
    const r = await sandbox.run(
      [
        `test -e /srv/x;touch ${mark}/top`,
        sh('incus', 'exec', 'system', '--', 'sh', '-c', `test -e $(touch ${mark}/deeper)`),
        hostCommand(sh('ssh', `-oProxyCommand=touch ${mark}/proxy`, 'host', 'true'), {}, true),
        // A certificate filled in inside a quoted argument: its quotes end the argument, its lines run.
        `sh -c 'printf %s ${q(learned['cert:destination'] ?? '')}'`,
      ],
      [mark],
      { learned: learnedMark },
    );
    expect(r.marks.map((m) => m.slice(m.lastIndexOf('/') + 1)).sort()).toEqual(['deeper', 'learned-value-ran', 'proxy', 'top']);
  });

  it('runs the same commands quoted without a mark', async () => {
    const mark = sandbox.newMark();
    const r = await sandbox.run([`test -e ${q(`/srv/x;touch ${mark}/top`)}`, sh('incus', 'exec', 'system', '--', 'sh', '-c', `test -e ${q(`$(touch ${mark}/deeper)`)}`)], [mark]);
    expect(r.marks).toEqual([]);
  });
});

describe('the baseline plan', () => {
  it('finds string fields to inject into, and commands for every step', () => {
    expect(leaves.length).toBeGreaterThan(100);
    expect(executable(baseline).length).toBeGreaterThan(300);
    expect([...baseline.values()].filter((c) => c.startsWith('refused: '))).toEqual([]);
  });

  it('runs every command over the stubs, values arriving whole in argv, without a mark', async () => {
    const mark = sandbox.newMark();
    const r = await sandbox.run(executable(baseline).map(([, c]) => c), [mark], { log: true, learned: sandbox.newMark() });
    expect(r.marks).toEqual([]);
    const programs = new Set(r.calls.map((c) => c[0]));
    for (const p of ['incus', 'lxc', 'sudo', 'rsync', 'iptables', 'ssh', 'timeout', 'env', 'tar', 'sh', 'bash']) expect(programs).toContain(p);
    const words = new Set(r.calls.flat());
    const whole = [
      ...base.containers.map((c) => c.name),
      ...base.containers.flatMap((c) => c.dataDirs),
      ...(base.dns.reloadCommand ?? []),
      base.data.staging,
      ...(base.caddy ? [base.caddy.configPath] : []),
      ...(base.dns.zoneFile ? [base.dns.zoneFile] : []),
    ];
    expect(whole.filter((w) => !words.has(w))).toEqual([]);
    // One shell deeper too: the stubs ran what `incus exec` and `sudo` were given.
    expect(r.calls.some((c) => c[0] === 'pkill' && c.includes('coredns'))).toBe(true);
    expect(r.calls.some((c) => c[0] === 'tar' && c.includes('--numeric-owner') && c.includes(base.data.containerPath))).toBe(true);
  });
});

describe('shell metacharacters in every string field of the plan', () => {
  const findings: Finding[] = [];
  const stats = { variants: 0, runs: 0, commands: 0, buildRefused: 0, fillRefused: 0 };
  beforeAll(async () => {
    const variants: Variant[] = [];
    /** Builds a variant; `all`: run every command, not only those that differ from the baseline. */
    const make = async (label: string, plan: Plan, marks: Variant['marks'], all = false): Promise<Map<string, string> | undefined> => {
      stats.variants++;
      let cmds: Map<string, string>;
      try {
        cmds = await commandsOf(plan, all);
      } catch {
        stats.buildRefused++;
        return undefined;
      }
      stats.fillRefused += [...cmds.values()].filter((c) => c.startsWith('refused: ')).length;
      const commands = executable(cmds).filter(([k, c]) => all || baseline.get(k) !== c);
      stats.commands += commands.length;
      if (commands.length) variants.push({ label, marks, learned: sandbox.newMark(), commands });
      return cmds;
    };
    // One field at a time: a polyglot alone and appended to the valid value, an option alone.
    const branching = new Set<string>();
    for (const leaf of leaves) {
      const field = showPath(leaf.path);
      // The polyglot breaks out of every quoting context; appended to the valid value, it also
      // reaches the commands a value-shaped check would let through.
      const forms: [string, (m: string) => string][] = [
        ['appended polyglot', (m) => leaf.value + polyglot(m)],
        ['option', (m) => `-oProxyCommand=touch ${m}/option`],
        ...(FULL ? ([['polyglot', polyglot]] as [string, (m: string) => string][]) : []),
      ];
      for (const [, form] of forms) {
        const mark = sandbox.newMark();
        const value = form(mark);
        const cmds = await make(field, withLeaf(base, leaf.path, value), new Map([[mark, { field, payload: hide(value, [mark]) }]]));
        // A field that chooses a branch (a kind, a protocol): left out of the all-at-once plans.
        if (!cmds || stepIds(cmds) !== stepIds(baseline)) branching.add(field);
      }
    }
    // Every other field at once, per payload, alone and appended; each field with a mark of its own.
    const together = leaves.filter((l) => !branching.has(showPath(l.path)));
    for (const name of PAYLOAD_NAMES) {
      for (const appended of [false, true]) {
        if (!FULL && !togetherSample.has(`${name}${appended ? '+' : ''}`)) continue;
        const marks: Variant['marks'] = new Map();
        const plan = together.reduce((p, l) => {
          const mark = sandbox.newMark();
          const payload = payloads(mark).find(([n]) => n === name)?.[1] as string;
          marks.set(mark, { field: showPath(l.path), payload: hide(payload, [mark]) });
          return withLeaf(p, l.path, appended ? l.value + payload : payload);
        }, base);
        await make(`every field: ${name}${appended ? ' appended' : ''}`, plan, marks, true);
      }
    }
    stats.runs = variants.length;
    const results = await pool(variants, Math.max(2, cpus().length), runVariant);
    findings.push(...results.flat());
    // eslint-disable-next-line no-console
    console.log(JSON.stringify({ seed: SEED, full: FULL, together: FULL ? 'all' : [...togetherSample], leaves: leaves.length, branching: branching.size, ...stats }));
  }, 600_000);

  it('reaches commands with the payloads', () => {
    expect(stats.commands).toBeGreaterThan(1000);
  });

  it('never runs an injected command', () => {
    if (findings.length) throw new Error(`${findings.length} injection(s):\n\n${report(findings)}`);
  });
});
