/**
 * The stateful fake hosts, proved without Temporal: the whole runbook walked step by step as the
 * step activity does it (check, else command; captures parsed; placeholders filled; sudo wrapped),
 * then walked again (only checks run, nothing changes), a container undone from its record, and
 * the faults the workflow tests use.
 */
import { CancelledFailure } from '@temporalio/common';
import { readFileSync } from 'node:fs';
import { parseCapture, type RecordedInstance } from '../../src/activities/parse';
import { updateZone } from '../../src/dns/zone';
import type { HostRole, Plan } from '../../src/plan/schema';
import { rewriteUpstreams } from '../../src/proxy/caddy';
import { buildRunbook, compensationSteps, networkCompensationSteps } from '../../src/runbook/build';
import { CONTAINER_PHASES, phaseSteps, stepsOf, type PhaseId, type Step } from '../../src/runbook/model';
import { hostCommand } from '../../src/runbook/shell';
import { derivedValues } from '../../src/runbook/values';
import { hostTargetsOf, shopPlan, StatefulHosts, testPlan } from '../harness/stateful-hosts';

type Outcome = 'done' | 'already-done' | 'skipped';

/** Runs one step against the fake hosts the way the activities do (src/activities/*.ts). */
async function walkStep(hosts: StatefulHosts, plan: Plan, step: Step, values: Record<string, string>): Promise<Outcome> {
  const targets = hostTargetsOf(plan);
  const run = (host: HostRole, text: string, sudo: boolean | undefined, stdin?: string) => hosts.run(targets[host], hostCommand(text, values, sudo, true), stdin === undefined ? {} : { stdin });
  const must = async (host: HostRole, text: string, sudo: boolean | undefined, stdin?: string) => {
    const r = await run(host, text, sudo, stdin);
    if (r.exitCode !== 0) throw new Error(`${step.id}: exit ${r.exitCode}\n$ ${text.slice(0, 300)}\n${r.stderr}${r.stdout}`);
    return r;
  };
  const p = step.params ?? {};
  switch (step.kind as string) {
    case 'verify-host-keys':
      await hosts.connect(targets.source);
      await hosts.connect(targets.destination);
      return 'done';
    case 'gate':
    case 'wait-dns':
    case 'wait-cert':
    case 'wait-window':
      return 'skipped';
    case 'probe':
      // NAT probes run from the worker to real addresses: not here.
      if (step.host === 'worker') return 'skipped';
      await must(step.host, step.command, step.sudo);
      return 'done';
    case 'pin-host-key': {
      const file = String(plan.hosts.source.knownHosts).replace(/^file:/, '');
      const keys = readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith(`${plan.hosts.source.address} `));
      await must('destination', String(p.write), step.sudo, `${keys.join('\n')}\n`);
      return 'done';
    }
    case 'caddy-rewrite': {
      const current = await must('destination', String(p.read), step.sudo);
      const map = Object.fromEntries(((p.containers as string[]) ?? []).flatMap((c) => (values[`oldip:${c}`] && values[`ip:${c}`] ? [[values[`oldip:${c}`] as string, values[`ip:${c}`] as string]] : [])));
      const { text } = rewriteUpstreams(current.stdout, map);
      if (text === current.stdout) return 'already-done';
      await must('destination', String(p.write), step.sudo, text);
      return 'done';
    }
    case 'zone-update': {
      const current = await must('destination', String(p.read), step.sudo);
      const result = updateZone(current.stdout, String(p.zone), ((p.records as string[]) ?? []).map((r) => JSON.parse(r)));
      if (result.changed.length === 0) return 'already-done';
      await must('destination', String(p.write), step.sudo, result.text);
      return 'done';
    }
    case 'run':
    case 'capture': {
      if (step.host === 'worker') throw new Error(`${step.id}: a worker step with a command`);
      if (step.once && step.captureAs && values[step.captureAs.key] !== undefined) return 'already-done';
      if (step.check !== undefined) {
        const on = step.checkOn === undefined || step.checkOn === 'worker' ? step.host : step.checkOn;
        if ((await run(on, step.check, step.checkSudo)).exitCode === 0) return 'already-done';
      }
      const r = await must(step.host, step.command, step.sudo);
      if (step.captureAs) {
        const value = parseCapture(step.captureAs.kind, r.stdout);
        // As the workflow: the recorded instance also yields its idmap shift (idshift:<c>).
        Object.assign(values, { [step.captureAs.key]: value }, derivedValues(step.captureAs.key, value));
        // As checkCapture: a name taken on the destination must be this migration's own.
        for (const name of ((p.mustNotContain as string[]) ?? []).filter((n) => value.split(',').includes(n))) {
          expect((await must(step.host, `incus config get ${name} ${String(p.ownerKey)}`, step.sudo)).stdout.trim()).toBe(String(p.tenant));
        }
        if (step.captureAs.kind === 'vhost-count') expect(Number(value)).toBeGreaterThanOrEqual(Number(p.atLeast ?? 0));
        if (typeof p.needsTimesSource === 'number') expect(Number(value)).toBeGreaterThanOrEqual(Number(values['bytes:source-data']) * p.needsTimesSource);
      }
      return 'done';
    }
    default:
      throw new Error(`${step.id}: the walk does not simulate ${step.kind}`);
  }
}

async function walk(hosts: StatefulHosts, plan: Plan, steps: Step[], values: Record<string, string>): Promise<Record<string, Outcome>> {
  const out: Record<string, Outcome> = {};
  for (const step of steps) out[step.id] = await walkStep(hosts, plan, step, values);
  return out;
}

/** The steps in the workflow's order up to a phase: preflight, each container's phases (canaries first), then the tenant phases. */
function ordered(plan: Plan, upTo: PhaseId = 'cleanup'): Step[] {
  const rb = buildRunbook(plan);
  const names = [...plan.containers.filter((c) => c.canary), ...plan.containers.filter((c) => !c.canary)].map((c) => c.name);
  const tenantPhases: PhaseId[] = ['network', 'proxy', 'fixes', 'verify', 'cutover', 'certificates', 'cleanup'];
  const order: PhaseId[] = ['preflight', ...CONTAINER_PHASES, ...tenantPhases];
  const all = [...phaseSteps(rb, 'preflight'), ...names.flatMap((n) => CONTAINER_PHASES.flatMap((ph) => stepsOf(rb, ph, n))), ...tenantPhases.flatMap((ph) => phaseSteps(rb, ph))];
  return all.filter((s) => order.indexOf(s.phase) <= order.indexOf(upTo));
}

const STAMP = { 'stamp:run': '202601021530' };

/** Runs each step's check as the activity would; returns the ids whose check does not pass. */
async function failingChecks(hosts: StatefulHosts, plan: Plan, steps: Step[], values: Record<string, string>): Promise<string[]> {
  const targets = hostTargetsOf(plan);
  const failing: string[] = [];
  for (const s of steps.filter((x) => x.check !== undefined)) {
    const on = s.checkOn === undefined || s.checkOn === 'worker' ? s.host : s.checkOn;
    const r = await hosts.run(targets[on as HostRole], hostCommand(s.check as string, values, s.checkSudo, true));
    if (r.exitCode !== 0) failing.push(`${s.id} (exit ${r.exitCode}) ${r.stderr.trim()}`);
  }
  return failing;
}

test('the whole runbook against hosts that keep state; then every check passes and a second pass changes nothing', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan);
  const values: Record<string, string> = { ...STAMP };
  const steps = ordered(plan, 'cutover');

  const first = await walk(hosts, plan, steps, values);
  expect(hosts.unscripted).toEqual([]);
  expect(hosts.withoutSudo).toEqual([]);
  // Only the privileged source's: its copy brings security.privileged along, and its data has no idmap shift to take off.
  expect(Object.entries(first).filter(([, o]) => o === 'already-done')).toEqual([
    ['copy/system/privileged', 'already-done'],
    ['data/system/shift-ids', 'already-done'],
  ]);

  // The state the runbook says it leaves.
  const src = hosts.sourceSnapshot();
  for (const c of plan.containers) expect(src[c.name]).toMatchObject({ status: 'Stopped', devices: {}, data: true });
  const dst = hosts.destinationSnapshot();
  expect(Object.keys(dst.instances).sort()).toEqual(plan.containers.map((c) => c.name).sort());
  for (const c of plan.containers) {
    const i = dst.instances[c.name];
    expect(i).toMatchObject({ status: 'Running', ip: values[`ip:${c.name}`], devices: { eth0: { type: 'nic', network: plan.destination.bridge } } });
    expect(i?.config['user.gbo-migrate.tenant']).toBe(plan.tenant);
    expect(dst.folders).toContain(`${plan.data.tenantsRoot}/${plan.tenant}/${c.name}`);
    expect(dst.folders).not.toContain(`${plan.data.staging}/${c.name}`);
  }
  expect(dst.instances.system?.config['security.privileged']).toBe('true');
  expect(dst.iptables.nat).toEqual([`-A POSTROUTING -s ${plan.destination.bridgeSubnet} ! -d ${plan.destination.bridgeSubnet} -j MASQUERADE`]);
  expect(dst.iptables.filter[0]).toBe('-A INPUT -i lo -j ACCEPT');
  expect(dst.ipForward).toBe('1');
  // The Caddyfile points at the new addresses only; the zone at the destination.
  const caddy = hosts.destination.instances[plan.caddy!.container]?.files[plan.caddy!.configPath]?.content ?? '';
  for (const c of plan.containers) expect(caddy).not.toContain(`${values[`oldip:${c.name}`]}:`);
  expect(caddy).toContain(`${values['ip:tables']}:5432`);
  expect(hosts.destination.instances[plan.dns.container!]?.files[plan.dns.zoneFile!]?.content).toMatch(new RegExp(`^ns1\\s.*A\\s+${plan.destination.publicAddress.replace(/\./g, '\\.')}`, 'm'));

  // Idempotency: every check now passes, and a second pass runs no command a check guards.
  expect(await failingChecks(hosts, plan, steps, values)).toEqual([]);
  const effectsBefore = hosts.effects.length;
  const logBefore = hosts.log.length;
  const second = await walk(hosts, plan, steps, values);
  expect(hosts.effects.slice(effectsBefore)).toEqual([]);
  for (const s of steps.filter((x) => x.check !== undefined)) expect([s.id, second[s.id]]).toEqual([s.id, 'already-done']);
  // Of the guarded steps, only their checks reached the hosts.
  const secondLog = hosts.log.slice(logBefore).map((l) => l.command);
  for (const s of steps.filter((x) => x.check !== undefined)) expect(secondLog).not.toContain(hostCommand(s.command, values, false, true));
  expect(hosts.unscripted).toEqual([]);

  // Cleanup: the source copies go; its checks then pass and a second pass changes nothing.
  const cleanup = phaseSteps(buildRunbook(plan), 'cleanup');
  await walk(hosts, plan, cleanup, values);
  for (const c of plan.containers) expect(hosts.sourceSnapshot()[c.name]).toEqual({ status: 'Absent', devices: {}, config: {}, data: false });
  expect(values['deleted:tables']).toMatch(/^\d+\t\/opt\/gbo\/tables\n/);
  expect(await failingChecks(hosts, plan, cleanup, values)).toEqual([]);
  const afterCleanup = hosts.effects.length;
  await walk(hosts, plan, cleanup, values);
  expect(hosts.effects.slice(afterCleanup)).toEqual([]);
  expect(hosts.unscripted).toEqual([]);
});

test('after the stop phase the sources are stopped without devices; the undo puts one back exactly as recorded', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan);
  const before = hosts.sourceSnapshot();
  expect(before.proxy?.devices).toEqual({
    gbo: { type: 'disk', source: '/opt/gbo/proxy', path: '/opt/gbo' },
    http: { type: 'proxy', listen: 'tcp:0.0.0.0:80', connect: 'tcp:127.0.0.1:80' },
    https: { type: 'proxy', listen: 'tcp:0.0.0.0:443', connect: 'tcp:127.0.0.1:443' },
  });
  const values: Record<string, string> = { ...STAMP };
  await walk(hosts, plan, ordered(plan, 'stop'), values);
  for (const c of plan.containers) expect(hosts.sourceSnapshot()[c.name]).toMatchObject({ status: 'Stopped', devices: {}, data: true });
  await walk(hosts, plan, ordered(plan, 'data').filter((s) => s.phase === 'copy' || s.phase === 'data'), values);
  expect(hosts.destinationSnapshot().instances.proxy?.status).toBe('Running');

  // The cancel's undo for one container, from the record taken before the stop.
  const recorded = JSON.parse(values['instance:proxy'] as string) as RecordedInstance;
  expect(recorded).toMatchObject({ status: 'Running', devices: before.proxy?.devices });
  const undo = compensationSteps(plan, 'proxy', recorded.devices);
  const effects = hosts.effects.length;
  await walk(hosts, plan, undo, values);
  expect(hosts.effects.slice(effects)).toEqual(
    expect.arrayContaining([
      { host: 'destination', what: 'delete --force proxy' },
      { host: 'source', what: 'device add pragmatismo-proxy gbo disk' },
      { host: 'source', what: 'start pragmatismo-proxy' },
    ]),
  );
  const after = hosts.sourceSnapshot();
  expect(after.proxy).toEqual(before.proxy);
  for (const c of plan.containers.filter((x) => x.name !== 'proxy')) expect(after[c.name]).toMatchObject({ status: 'Stopped', devices: {} });
  const dst = hosts.destinationSnapshot();
  expect(dst.instances.proxy).toBeUndefined();
  expect(dst.folders.filter((f) => f.endsWith('/proxy'))).toEqual([]);
  expect(dst.instances.tables?.status).toBe('Running');

  // The undo is idempotent too: its checks pass, a second run changes nothing.
  expect(await failingChecks(hosts, plan, undo, values)).toEqual([]);
  const again = hosts.effects.length;
  await walk(hosts, plan, undo, values);
  expect(hosts.effects.slice(again)).toEqual([]);
  expect(hosts.unscripted).toEqual([]);
});

test('state sticks: a stopped container stays stopped and a removed device stays gone across further commands', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan);
  const { source, destination } = hostTargetsOf(plan);
  const sh = (c: string) => hosts.run(source, c);
  const dsh = (c: string) => hosts.run(destination, hostCommand(c, {}, true));

  expect((await sh('lxc stop pragmatismo-tables')).exitCode).toBe(0);
  expect(await sh('lxc stop pragmatismo-tables')).toMatchObject({ exitCode: 1, stderr: expect.stringMatching(/already stopped/) });
  expect((await sh(`lxc query /1.0/instances/pragmatismo-tables | grep -q '"status": "Stopped"'`)).exitCode).toBe(0);
  expect((await sh('lxc config device remove pragmatismo-tables gbo')).exitCode).toBe(0);
  expect((await sh('lxc config device remove pragmatismo-tables gbo')).exitCode).toBe(1);

  // Other commands, on both hosts, change neither.
  for (const c of ['lxc list --format csv -c n', 'lxc query /1.0/instances/pragmatismo-proxy', 'lxc stop pragmatismo-proxy', 'lxc config device list pragmatismo-proxy', 'lxc version']) await sh(c);
  for (const c of ['incus version', 'incus list --format csv -c n', 'iptables -C INPUT -p tcp --dport 8443 -j ACCEPT']) await dsh(c);
  expect(hosts.sourceSnapshot().tables).toMatchObject({ status: 'Stopped', devices: {} });
  expect((await sh('test -z "$(lxc config device list pragmatismo-tables)"')).exitCode).toBe(0);
  expect((await sh(`lxc query /1.0/instances/pragmatismo-tables | grep -q '"status": "Running"'`)).exitCode).toBe(1);

  // Started again, the device is still gone; the record of the instance says so.
  expect((await sh('lxc start pragmatismo-tables')).exitCode).toBe(0);
  const state = JSON.parse((await sh('lxc query /1.0/instances/pragmatismo-tables')).stdout) as { status: string; devices: object };
  expect(state).toMatchObject({ status: 'Running', devices: {} });
  expect(hosts.sourceSnapshot().proxy).toMatchObject({ status: 'Stopped' });
  expect(hosts.unscripted).toEqual([]);
});

test('a copy made before the devices were removed cannot start: the LXD host path does not exist on the destination', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan);
  const values: Record<string, string> = { ...STAMP };
  const tables = (ph: PhaseId) => stepsOf(buildRunbook(plan), ph, 'tables');
  await walk(hosts, plan, [...ordered(plan, 'preflight'), ...tables('record'), ...tables('stop').filter((s) => s.id.endsWith('/stop'))], values);
  await expect(walk(hosts, plan, tables('copy'), values)).rejects.toThrow(/copy\/tables\/start: exit 1[\s\S]*Missing source path "\/opt\/gbo\/tables"/);
  // The devices removed, the copy is made again (it was marked, so the check holds: delete it by hand first).
  await walk(hosts, plan, tables('stop'), values);
  await hosts.run(hostTargetsOf(plan).destination, hostCommand('incus delete --force tables', {}, true));
  await walk(hosts, plan, tables('copy'), values);
  expect(hosts.destinationSnapshot().instances.tables).toMatchObject({ status: 'Running', devices: { eth0: { type: 'nic' } } });
  expect(hosts.unscripted).toEqual([]);
});

test('an unscripted command fails loudly and is recorded', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan);
  const { source, destination } = hostTargetsOf(plan);
  expect(await hosts.run(destination, hostCommand('echo hello', {}, true))).toEqual({ exitCode: 99, stdout: '', stderr: 'stateful-hosts: unscripted command: echo hello\n' });
  // A wrapper around something that is not a known query is refused as well, not evaluated.
  expect((await hosts.run(source, 'test "$(cat /etc/hostname)" = src')).exitCode).toBe(99);
  expect(hosts.unscripted).toEqual(['destination: echo hello', 'source: cat /etc/hostname']);
  // Without sudo on the sudo host, nothing runs.
  expect((await hosts.run(destination, 'incus version')).exitCode).toBe(1);
  expect(hosts.withoutSudo).toEqual(['destination: incus version']);
});

test('faults: failNext fails without effect; hang is silent until aborted (CancelledFailure) or released; concurrency is recorded', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan);
  const { source, destination } = hostTargetsOf(plan);

  hosts.failNext(/^lxc stop pragmatismo-dns$/, { exitCode: 1, stderr: 'Error: boom' });
  expect(await hosts.run(source, 'lxc stop pragmatismo-dns')).toEqual({ exitCode: 1, stdout: '', stderr: 'Error: boom' });
  expect(hosts.sourceSnapshot().dns?.status).toBe('Running');
  expect(hosts.effects).toEqual([]);
  expect((await hosts.run(source, 'lxc stop pragmatismo-dns')).exitCode).toBe(0);
  expect(hosts.sourceSnapshot().dns?.status).toBe('Stopped');

  // Aborted while hanging: rejected as the SSH pool rejects, no effect, nothing left in flight.
  hosts.hang(/^lxc stop pragmatismo-alm$/);
  const abort = new AbortController();
  const hung = hosts.run(source, 'lxc stop pragmatismo-alm', { signal: abort.signal });
  expect(await hosts.whenRunning(/lxc stop pragmatismo-alm/)).toBe('source: lxc stop pragmatismo-alm');
  expect(hosts.running()).toEqual(['source: lxc stop pragmatismo-alm']);
  expect(hosts.sourceSnapshot().alm?.status).toBe('Running');
  abort.abort();
  await expect(hung).rejects.toBeInstanceOf(CancelledFailure);
  expect(hosts.running()).toEqual([]);
  expect(hosts.sourceSnapshot().alm?.status).toBe('Running');
  // An aborted signal never reaches the host.
  const logged = hosts.log.length;
  await expect(hosts.run(source, 'lxc stop pragmatismo-alm', { signal: abort.signal })).rejects.toBeInstanceOf(CancelledFailure);
  expect(hosts.log.length).toBe(logged);

  // Two identical commands at once: both hang, the peak shows it; released, the second finds it done.
  hosts.hang(/^lxc stop pragmatismo-alm$/, { times: 2 });
  const a = hosts.run(source, 'lxc stop pragmatismo-alm');
  const b = hosts.run(source, 'lxc stop pragmatismo-alm');
  await new Promise((r) => setImmediate(r));
  expect(hosts.running()).toEqual(['source: lxc stop pragmatismo-alm', 'source: lxc stop pragmatismo-alm']);
  expect(hosts.release(/pragmatismo-alm/)).toBe(2);
  expect([(await a).exitCode, (await b).exitCode]).toEqual([0, 1]);
  expect(hosts.maxConcurrent(/lxc stop pragmatismo-alm/)).toBe(2);
  expect(hosts.maxConcurrent(/lxc stop pragmatismo-dns/)).toBe(1);
  expect(hosts.overlaps()).toEqual(['source: lxc stop pragmatismo-alm']);

  // A long silent step that completes by itself.
  hosts.hang(/^lxc start pragmatismo-alm$/, { ms: 50 });
  const t0 = Date.now();
  expect((await hosts.run(source, 'lxc start pragmatismo-alm')).exitCode).toBe(0);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(45);

  // connect: refused once, then accepted.
  hosts.refuseConnect('destination', new Error('host key mismatch'));
  await expect(hosts.connect(destination)).rejects.toThrow('host key mismatch');
  await expect(hosts.connect(source)).resolves.toBeUndefined();
  await expect(hosts.connect(destination)).resolves.toBeUndefined();
  expect(hosts.connections).toEqual(['destination', 'source', 'destination']);
  expect(hosts.unscripted).toEqual([]);
});

test('a copy interrupted halfway leaves an unmarked instance; the copy step deletes it and copies again', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan);
  const values: Record<string, string> = { ...STAMP };
  const tables = (ph: PhaseId) => stepsOf(buildRunbook(plan), ph, 'tables');
  await walk(hosts, plan, [...ordered(plan, 'preflight'), ...tables('presync'), ...tables('record'), ...tables('stop')], values);
  const [copy, ...rest] = tables('copy') as [Step, ...Step[]];

  hosts.hang(/incus copy --instance-only lxd-source:pragmatismo-tables /, { halfDone: true });
  const abort = new AbortController();
  const hung = hosts.run(hostTargetsOf(plan).destination, hostCommand(copy.command, values, copy.sudo), { signal: abort.signal });
  await hosts.whenRunning(/incus copy/);
  expect(hosts.destinationSnapshot().instances.tables).toMatchObject({ status: 'Stopped' });
  expect(hosts.destinationSnapshot().instances.tables?.config['user.gbo-migrate.tenant']).toBeUndefined();
  abort.abort();
  await expect(hung).rejects.toBeInstanceOf(CancelledFailure);

  const effects = hosts.effects.length;
  expect(await walk(hosts, plan, [copy, ...rest], values)).toMatchObject({ 'copy/tables/copy': 'done', 'copy/tables/nic': 'done' });
  expect(hosts.effects.slice(effects).slice(0, 2)).toEqual([
    { host: 'destination', what: 'delete --force tables' },
    { host: 'destination', what: 'copy lxd-source:pragmatismo-tables → tables (pool default)' },
  ]);
  expect(hosts.destinationSnapshot().instances.tables?.config['user.gbo-migrate.tenant']).toBe(plan.tenant);

  // Halfway through a pull, staging holds half the files; the next pull completes it.
  const [rsync] = tables('presync') as [Step];
  await hosts.run(hostTargetsOf(plan).destination, hostCommand('rm -rf --one-file-system /home/administrator/gbo/tables', {}, true));
  hosts.hang(/rsync -aHAX/, { halfDone: true });
  const pulling = hosts.run(hostTargetsOf(plan).destination, hostCommand(rsync.command, values, rsync.sudo));
  await hosts.whenRunning(/rsync -aHAX/);
  const half = Object.keys(hosts.destination.folders['/home/administrator/gbo/tables'] ?? {}).length;
  hosts.release();
  expect((await pulling).exitCode).toBe(0);
  const whole = Object.keys(hosts.destination.folders['/home/administrator/gbo/tables'] ?? {}).length;
  expect(half).toBeGreaterThan(0);
  expect(half).toBeLessThan(whole);
  expect(hosts.unscripted).toEqual([]);
});

test('sizes past 2 GiB: the byte count stays exact (mawk would print print t+0 as 3e+09)', async () => {
  const plan = testPlan();
  const hosts = new StatefulHosts(plan, { dataBytes: { tables: 3_000_000_000, system: 2_500_000_000 } });
  const source = hostTargetsOf(plan).source;
  const step = phaseSteps(buildRunbook(plan), 'preflight').find((s) => s.id === 'preflight/tenant/source-data-size') as Step;
  const r = await hosts.run(source, step.command);
  const total = Number(parseCapture('bytes', r.stdout));
  expect(total).toBeGreaterThan(5_500_000_000);
  expect(Number.isInteger(total)).toBe(true);
  expect((await hosts.run(source, `du -sb /opt/gbo/tables | awk '{t+=$1} END {print t+0}'`)).stdout).toBe('3e+09\n');
  expect(() => parseCapture('bytes', '3e+09\n')).toThrow(/byte count/);
});

test('port forwards: one DNAT rule per port, replaced when the address changes; the undo removes them and keeps MASQUERADE', async () => {
  const plan = testPlan({
    portForwards: [
      { port: 80, protocol: 'tcp', container: 'proxy', service: 'HTTP' },
      { port: 53, protocol: 'udp', container: 'dns', service: 'DNS' },
    ] as Plan['portForwards'],
  });
  const hosts = new StatefulHosts(plan);
  const values: Record<string, string> = { ...STAMP };
  await walk(hosts, plan, ordered(plan, 'network'), values);
  const pub = plan.destination.publicAddress;
  expect(hosts.destinationSnapshot().iptables.nat).toEqual([
    `-A PREROUTING -d ${pub}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination ${values['ip:proxy']}:80`,
    `-A PREROUTING -d ${pub}/32 -p udp -m udp --dport 53 -j DNAT --to-destination ${values['ip:dns']}:53`,
    `-A POSTROUTING -s ${plan.destination.bridgeSubnet} ! -d ${plan.destination.bridgeSubnet} -j MASQUERADE`,
  ]);
  expect(hosts.destination.files[plan.destination.iptablesRulesFile]).toContain(`--to-destination ${values['ip:proxy']}:80`);

  // The proxy copied again gets another address: its rule is replaced, not shadowed.
  const dnat80 = ordered(plan, 'network').find((s) => s.id === 'network/tenant/dnat-tcp-80') as Step;
  const moved = { ...values, 'ip:proxy': '10.107.115.99' };
  expect(await walk(hosts, plan, [dnat80], moved)).toEqual({ 'network/tenant/dnat-tcp-80': 'done' });
  expect(hosts.destinationSnapshot().iptables.nat.filter((r) => r.includes('--dport 80 '))).toEqual([`-A PREROUTING -d ${pub}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.107.115.99:80`]);

  await walk(hosts, plan, networkCompensationSteps(plan), values);
  expect(hosts.destinationSnapshot().iptables.nat).toEqual([`-A POSTROUTING -s ${plan.destination.bridgeSubnet} ! -d ${plan.destination.bridgeSubnet} -j MASQUERADE`]);
  expect(hosts.destination.files[plan.destination.iptablesRulesFile]).not.toContain('DNAT');
  expect(hosts.unscripted).toEqual([]);
});

test('owners and modes arrive as the source has them, from an unprivileged (shifted) and a privileged source', async () => {
  const several = [
    { path: 'html/index.html', content: 'root\n', uid: 0, gid: 0, mode: '644' },
    { path: 'html/app.php', content: 'www\n', uid: 33, gid: 33, mode: '640' },
    { path: 'uploads/a.png', content: 'user\n', uid: 1000, gid: 1000, mode: '600' },
    { path: 'uploads/run.sh', content: 'other\n', uid: 1001, gid: 100, mode: '4755' },
  ];
  const world = several.map((f) => ({ ...f, path: f.path.replace(/^html\//, 'worlds/').replace(/^uploads\//, 'config/') }));
  const plan = shopPlan();
  // web: unprivileged at base 1000000 (host uid = 1000000 + N); game: privileged (host uid = N).
  const hosts = new StatefulHosts(plan, { idmapBase: { web: 1000000, db: 1000000 }, extraFiles: { web: several, game: world } });
  const src = hosts.source.meta[hosts.sourceDataOf(plan.containers.find((c) => c.name === 'web')!)];
  expect(src?.['uploads/run.sh']).toEqual({ uid: 1001001, gid: 1000100, mode: '4755' });
  const values: Record<string, string> = { ...STAMP };
  await walk(hosts, plan, ordered(plan, 'data'), values);
  expect(values).toMatchObject({ 'idshift:web': '1000000', 'idshift:db': '1000000', 'idshift:game': '0', 'idshift:cache': '0' });
  for (const [name, files, into] of [['web', several, '/srv/www'], ['game', world, '/srv/app']] as const) {
    const inside = hosts.destination.instances[name]!.files;
    for (const f of files) expect([name, f.path, inside[`${into}/${f.path}`]]).toMatchObject([name, f.path, { uid: f.uid, gid: f.gid, mode: f.mode, content: f.content }]);
  }
  // The stateless container got no data; the checks hold, and a second pass changes nothing.
  expect(Object.keys(hosts.destination.instances.cache!.files)).toEqual([]);
  expect(await failingChecks(hosts, plan, ordered(plan, 'data'), values)).toEqual([]);
  const effects = hosts.effects.length;
  await walk(hosts, plan, ordered(plan, 'data'), values);
  expect(hosts.effects.slice(effects)).toEqual([]);

  // Without shift-ids the container would see the host's shifted IDs (1001001), and the shift-ids
  // check says so: that step is what makes the push carry the container's own view.
  const shifted = new StatefulHosts(plan, { idmapBase: { web: 1000000 }, extraFiles: { web: several } });
  const v2: Record<string, string> = { ...STAMP };
  const noShift = ordered(plan, 'data').filter((s) => !s.id.endsWith('/shift-ids'));
  await walk(shifted, plan, noShift, v2);
  expect(shifted.destination.instances.web!.files['/srv/www/uploads/run.sh']).toMatchObject({ uid: 1001001, gid: 1000100 });
  expect((await failingChecks(shifted, plan, ordered(plan, 'data'), v2)).filter((f) => f.startsWith('data/web/shift-ids'))).toHaveLength(1);
  expect(hosts.unscripted).toEqual([]);
  expect(shifted.unscripted).toEqual([]);
});
