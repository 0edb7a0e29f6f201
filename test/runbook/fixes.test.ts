/**
 * The service fixes' commands, run for real: a stub `incus` on PATH executes the argv after `--`
 * locally, so each command runs as it would in the container (`incus exec c -- sh -c '...' args`),
 * against temp files; under GNU tools and, when /bin/busybox exists, under busybox sh and applets.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPlan } from '../../src/plan/load';
import { planSchema, type Plan, type PlanInput } from '../../src/plan/schema';
import { buildRunbook } from '../../src/runbook/build';
import { phaseSteps, type Step } from '../../src/runbook/model';
import { hostCommand } from '../../src/runbook/shell';

const example = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
const root = mkdtempSync(join(tmpdir(), 'gbo-fixes-'));
const values = { 'ip:tables': '10.107.115.33', 'ip:system': '10.107.115.12' };
/** A password as a URL holds one: `/`, `?`, `#` and `@` percent-encoded (raw, they end the authority for every URL parser). */
const PASSWORD = 'pA55&w%2F%23rd|:\\x!$';

/** A directory with the stub `incus`; for busybox, also busybox's applets and nothing else. */
function toolbox(busybox: boolean): string {
  const dir = join(root, busybox ? 'bb' : 'gnu');
  if (existsSync(dir)) return dir;
  mkdirSync(dir);
  writeFileSync(join(dir, 'incus'), '#!/bin/sh\nwhile [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n');
  chmodSync(join(dir, 'incus'), 0o755);
  if (busybox) for (const a of ['sh', 'awk', 'cp', 'mv', 'rm', 'cat', 'readlink', 'env', 'systemctl']) if (a !== 'systemctl') symlinkSync('/bin/busybox', join(dir, a));
  return dir;
}

const flavours: [string, boolean][] = [['GNU', false], ...(existsSync('/bin/busybox') ? ([['busybox', true]] as [string, boolean][]) : [])];

function planWith(fixes: unknown[]): Plan {
  return planSchema.parse({ ...(JSON.parse(JSON.stringify(example)) as PlanInput), serviceFixes: fixes });
}

function fixSteps(fixes: unknown[]): Step[] {
  return phaseSteps(buildRunbook(planWith(fixes)), 'fixes');
}

/** Runs a step's command (or check) through /bin/sh with the stub; stdin for secrets. */
function run(s: Step, which: 'command' | 'check', busybox: boolean, stdin?: string) {
  const text = which === 'command' ? s.command : (s.check as string);
  const full = hostCommand(text, values, false, true);
  const r = spawnSync('/bin/sh', ['-c', full], { input: stdin ?? '', env: { PATH: busybox ? toolbox(true) : `${toolbox(false)}:/usr/bin:/bin` }, encoding: 'utf8' });
  return { code: r.status, out: r.stdout + r.stderr, full };
}

let n = 0;
function file(text: string, mode = 0o640): string {
  const p = join(root, `f${n++}.env`);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

/** Applies a single-fix plan: the check fails first, the command changes it, then the check passes and a rerun changes nothing. */
function applyIdempotently(fix: Record<string, unknown>, busybox: boolean, stdin?: string): Step {
  const [s] = fixSteps([fix]);
  expect(s).toBeDefined();
  const f = fix.file as string;
  expect(run(s!, 'check', busybox, stdin).code).not.toBe(0);
  const first = run(s!, 'command', busybox, stdin);
  expect(first).toMatchObject({ code: 0 });
  expect(first.out).toContain(': changed');
  const after = readFileSync(f, 'utf8');
  expect(run(s!, 'check', busybox, stdin).code).toBe(0);
  const second = run(s!, 'command', busybox, stdin);
  expect(second.code).toBe(0);
  expect(second.out).toContain('already as planned');
  expect(readFileSync(f, 'utf8')).toBe(after);
  return s!;
}

const NASTY = `a&b/c\\d#e|f g "h" $HOME \`x\` %i`;

describe.each(flavours)('env fixes run for real (%s)', (_name, bb) => {
  it('sets a whole value literally, whatever its characters, keeping others and the quoting as found', () => {
    const f = file(`# comment\nA=1\nKEY=old\nB="two words"\n`);
    applyIdempotently({ kind: 'env', container: 'system', file: f, key: 'KEY', set: { value: NASTY } }, bb);
    expect(readFileSync(f, 'utf8')).toBe(`# comment\nA=1\nKEY=${NASTY}\nB="two words"\n`);
    const g = file(`export KEY="old"\nKEY2='x'\n`);
    applyIdempotently({ kind: 'env', container: 'system', file: g, key: 'KEY', set: { value: NASTY } }, bb);
    applyIdempotently({ kind: 'env', container: 'system', file: g, key: 'KEY2', set: { value: 'a&b|c/d' } }, bb);
    expect(readFileSync(g, 'utf8')).toBe(`export KEY="a&b/c\\\\d#e|f g \\"h\\" $HOME \`x\` %i"\nKEY2='a&b|c/d'\n`);
  });

  it('appends KEY=value when absent, and keeps owner and mode', () => {
    const f = file('A=1', 0o600);
    if (process.getuid?.() === 0) chownSync(f, 1234, 2345);
    applyIdempotently({ kind: 'env', container: 'system', file: f, key: 'NEW_KEY', set: { value: NASTY } }, bb);
    expect(readFileSync(f, 'utf8')).toBe(`A=1\nNEW_KEY=${NASTY}\n`);
    const st = statSync(f);
    expect(st.mode & 0o777).toBe(0o600);
    if (process.getuid?.() === 0) expect([st.uid, st.gid]).toEqual([1234, 2345]);
  });

  it('changes only the host of a URL: user, password, port, path and query stay; the password is never in the step', () => {
    const f = file(`DATABASE_URL=postgres://gbuser:${PASSWORD}@10.16.164.33:5432/botserver?sslmode=disable\nOTHER=postgres://x@old:1/y\n`);
    const s = applyIdempotently({ kind: 'env', container: 'system', file: f, key: 'DATABASE_URL', set: { urlHost: '{{ip:tables}}' } }, bb);
    expect(readFileSync(f, 'utf8')).toBe(`DATABASE_URL=postgres://gbuser:${PASSWORD}@10.107.115.33:5432/botserver?sslmode=disable\nOTHER=postgres://x@old:1/y\n`);
    expect(JSON.stringify(s)).not.toContain('pA55');
    expect(run(s, 'command', bb).out).not.toContain('pA55');
  });

  it('refuses a URL change it cannot make, printing no value and changing nothing', () => {
    const text = `DATABASE_URL=not-a-url-${PASSWORD}\n`;
    const f = file(text);
    const [s] = fixSteps([{ kind: 'env', container: 'system', file: f, key: 'DATABASE_URL', set: { urlHost: '{{ip:tables}}' } }]);
    const r = run(s!, 'command', bb);
    expect(r.code).toBe(3);
    expect(r.out).toContain('the value of DATABASE_URL is not a URL with a host; nothing changed');
    expect(r.out).not.toContain('pA55');
    expect(readFileSync(f, 'utf8')).toBe(text);
    const absent = file('A=1\n');
    const [t] = fixSteps([{ kind: 'env', container: 'system', file: absent, key: 'DATABASE_URL', set: { urlHost: '{{ip:tables}}' } }]);
    expect(run(t!, 'command', bb).out).toContain('DATABASE_URL is not set, so there is no URL whose host to change');
  });

  it('edits Environment= lines of a unit file (quoted or not), escaping as systemd reads them', () => {
    const unit = join(root, `u${n++}.service`);
    writeFileSync(unit, `[Unit]\nDescription=x\n\n[Service]\nEnvironment=A=old\nEnvironment="DATABASE_URL=postgres://u:${PASSWORD}@1.2.3.4/db"\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n`);
    applyIdempotently({ kind: 'env', container: 'system', file: unit, key: 'A', set: { value: 'x y%z"' } }, bb);
    applyIdempotently({ kind: 'env', container: 'system', file: unit, key: 'DATABASE_URL', set: { urlHost: '{{ip:tables}}' } }, bb);
    applyIdempotently({ kind: 'env', container: 'system', file: unit, key: 'NEW', set: { value: 'http://localhost:5858' } }, bb);
    expect(readFileSync(unit, 'utf8')).toBe(
      `[Unit]\nDescription=x\n\n[Service]\nEnvironment="A=x y%%z\\""\nEnvironment="DATABASE_URL=postgres://u:${PASSWORD}@10.107.115.33/db"\nExecStart=/bin/true\nEnvironment="NEW=http://localhost:5858"\n\n[Install]\nWantedBy=multi-user.target\n`,
    );
  });

  it('takes a secret value over stdin, never in the command or the step', () => {
    const f = file('DB_PASSWORD=old\n');
    const s = applyIdempotently({ kind: 'env', container: 'system', file: f, key: 'DB_PASSWORD', set: { valueRef: 'env:GBO_DB_PASSWORD' } }, bb, `${PASSWORD}\n`);
    expect(s).toMatchObject({ kind: 'env-secret', params: { valueRef: 'env:GBO_DB_PASSWORD' } });
    expect(readFileSync(f, 'utf8')).toBe(`DB_PASSWORD=${PASSWORD}\n`);
    expect(JSON.stringify(s)).not.toContain('pA55');
    const two = run(s, 'command', bb, 'a\nb\n');
    expect(two.code).toBe(2);
    expect(two.out).toContain('more than one line');
    expect(readFileSync(f, 'utf8')).toBe(`DB_PASSWORD=${PASSWORD}\n`);
  });

  it('sets a hosts entry: replaces the name\'s line, keeps the others, idempotent', () => {
    const f = file('127.0.0.1 localhost\n10.16.164.33 system\n10.0.0.9 other system # note\n::1 localhost ip6-localhost\n', 0o644);
    applyIdempotently({ kind: 'hosts-entry', container: 'alm-ci', file: f, hostname: 'system', address: '{{ip:system}}' }, bb);
    expect(readFileSync(f, 'utf8')).toBe('127.0.0.1 localhost\n10.0.0.9\tother # note\n::1 localhost ip6-localhost\n10.107.115.12\tsystem\n');
  });

  it('sets HostName in the Host block, keeps the rest, adds a block when absent', () => {
    const f = file('Host *\n  ServerAliveInterval 30\n\nHost system sys\n  HostName 10.16.164.33\n  User root\n\nHost alm\n  User git\n', 0o600);
    applyIdempotently({ kind: 'ssh-config-host', container: 'alm-ci', file: f, host: 'system', hostName: '{{ip:system}}' }, bb);
    applyIdempotently({ kind: 'ssh-config-host', container: 'alm-ci', file: f, host: 'alm', hostName: 'alm.example.com' }, bb);
    applyIdempotently({ kind: 'ssh-config-host', container: 'alm-ci', file: f, host: 'pragmatismo-system', hostName: '{{ip:system}}' }, bb);
    expect(readFileSync(f, 'utf8')).toBe(
      'Host *\n  ServerAliveInterval 30\n\nHost system sys\n  HostName 10.107.115.12\n  User root\n\nHost alm\n  HostName alm.example.com\n  User git\n\nHost pragmatismo-system\n    HostName 10.107.115.12\n',
    );
    expect(statSync(f).mode & 0o777).toBe(0o600);
  });

  it('refuses a file the container lacks', () => {
    const [s] = fixSteps([{ kind: 'ssh-config-host', container: 'alm-ci', file: join(root, 'absent', 'config'), host: 'system', hostName: '{{ip:system}}' }]);
    const r = run(s!, 'command', bb);
    expect(r.code).toBe(2);
    expect(r.out).toContain('no such file in the container; nothing changed');
  });
});

describe('the fixes phase', () => {
  const steps = phaseSteps(buildRunbook(example), 'fixes');
  const ids = steps.map((s) => s.id);
  const at = (id: string) => ids.indexOf(id);

  it('edits first, then daemon-reload (a unit file was edited), then the restarts', () => {
    expect(ids).toEqual([
      'fixes/system/loopback-accept',
      'fixes/system/env-opt-gbo-conf-botserver-env-database-url',
      'fixes/system/env-etc-systemd-system-ui-service-botserver-url',
      'fixes/system/vault-unseal',
      'fixes/alm-ci/hosts-entry-etc-hosts-system',
      'fixes/alm-ci/ssh-config-root-ssh-config-system',
      'fixes/alm-ci/ssh-config-root-ssh-config-pragmatismo-system',
      'fixes/system/daemon-reload',
      'fixes/system/restart-system.service',
      'fixes/system/restart-ui.service',
    ]);
    expect(steps[at('fixes/system/daemon-reload')]!.command).toBe('incus exec system -- systemctl daemon-reload');
  });

  it('reloads only where a unit file was edited, and restarts each unit once', () => {
    const s = fixSteps([
      { kind: 'env', container: 'system', file: '/opt/gbo/conf/a.env', key: 'A', set: { value: '1' }, restart: ['system.service'] },
      { kind: 'env', container: 'system', file: '/opt/gbo/conf/b.env', key: 'B', set: { value: '2' }, restart: ['system.service'] },
    ]).map((x) => x.id);
    expect(s).toEqual(['fixes/system/env-opt-gbo-conf-a-env-a', 'fixes/system/env-opt-gbo-conf-b-env-b', 'fixes/system/restart-system.service']);
  });

  it('never puts a password in the DATABASE_URL step: only the new host', () => {
    const s = steps[at('fixes/system/env-opt-gbo-conf-botserver-env-database-url')]!;
    expect(s.kind).toBe('run');
    expect(s.command).toContain('GBO_V={{ip:tables}}');
    expect(s.command).toContain('GBO_P=url-host');
    expect(s.command).not.toMatch(/postgres:|gbuser@/);
  });

  it('builds commands bash parses, with sudo where the plan says', () => {
    for (const s of steps) {
      for (const t of [s.command, s.check]) if (t) execFileSync('bash', ['-n', '-c', hostCommand(t, values, s.sudo, true)]);
      expect(s.sudo).toBe(true);
    }
  });
});
