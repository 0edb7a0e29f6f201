/**
 * Host names in a plan are resolved once, at preflight, and recorded: every later command and
 * connection uses the recorded address. The cutover changes DNS records, so a name resolved again
 * later could aim the source cleanup at the destination.
 */
import { join } from 'node:path';
import { createActivities } from '../../src/activities';
import { realNet } from '../../src/probe/probes';
import { DryRunExecutor, type HostTarget } from '../../src/activities/executor';
import { loadPlan } from '../../src/plan/load';
import type { Plan } from '../../src/plan/schema';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps, type Step } from '../../src/runbook/model';
import { fillPlaceholders, placeholdersIn } from '../../src/runbook/shell';
import { hostTargets, pinnedHosts } from '../../src/workflows/run-steps';
import { inActivity } from '../activities/context';

const base = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
const named: Plan = {
  ...base,
  hosts: { source: { ...base.hosts.source, address: 'old.example.org' }, destination: { ...base.hosts.destination, address: 'new.example.org' } },
  source: { ...base.source, apiAddress: 'lxd.example.org' },
};
const steps = allSteps(buildRunbook(named));
const byId = (id: string): Step => {
  const s = steps.find((x) => x.id === id);
  if (!s) throw new Error(`no step ${id}`);
  return s;
};

describe('a plan that names its hosts', () => {
  it('resolves each name first, before any connection, once', () => {
    expect(steps.slice(0, 4).map((s) => s.id)).toEqual([
      'preflight/tenant/resolve-source',
      'preflight/tenant/resolve-destination',
      'preflight/tenant/resolve-api',
      'preflight/tenant/host-keys',
    ]);
    for (const role of ['source', 'destination', 'api']) {
      expect(byId(`preflight/tenant/resolve-${role}`)).toMatchObject({ host: 'worker', kind: 'resolve-address', once: true, captureAs: { kind: 'address', key: `addr:${role}` } });
    }
  });

  it('never puts a name where a command connects: the recorded address goes there', () => {
    for (const s of steps) {
      for (const text of [s.command, s.check ?? '']) {
        expect(text).not.toMatch(/@old\.example\.org|https:\/\/lxd\.example\.org|tcp\/lxd\.example\.org/);
      }
    }
    const pull = byId(`data/${base.containers[0]!.name}/final-sync`).command;
    expect(placeholdersIn(pull)).toContain('addr:source');
    // The destination's ssh checks the source's key under the name it was pinned with.
    expect(pull).toContain('HostKeyAlias=old.example.org');
    expect(placeholdersIn(byId('preflight/tenant/add-remote').command)).toContain('addr:api');
    expect(fillPlaceholders(byId('preflight/tenant/add-remote').command, { 'addr:api': '192.0.2.7' })).toContain('https://192.0.2.7:8443');
    expect(() => fillPlaceholders(byId('preflight/tenant/add-remote').command, { 'addr:api': '192.0.2.7; reboot' })).toThrow(/not a valid addr/);
  });

  it('a plan of addresses has no resolve steps and no placeholders for them', () => {
    const plain = allSteps(buildRunbook(base));
    expect(plain.filter((s) => s.kind === 'resolve-address')).toEqual([]);
    expect(plain.flatMap((s) => placeholdersIn(s.command)).filter((k) => k.startsWith('addr:'))).toEqual([]);
  });

  it('connections go to the recorded address, keys checked under the name', () => {
    const hosts = pinnedHosts(hostTargets(named), { 'addr:source': '192.0.2.1' });
    expect(hosts.source).toMatchObject<Partial<HostTarget>>({ address: '192.0.2.1', hostKeyAlias: 'old.example.org' });
    // Not resolved yet: the name as it is (only the resolve steps run before).
    expect(hosts.destination.address).toBe('new.example.org');
    expect(hosts.destination.hostKeyAlias).toBeUndefined();
  });

  it('the worker resolves a name once and records an IPv4 address', async () => {
    // A resolver of its own: the test sends no query to the machine's name server.
    const names: Record<string, string[]> = { 'old.example.org': ['0.0.0.0', '192.0.2.1', '192.0.2.2'], 'multicast.example.org': ['239.1.2.3'] };
    const resolve4 = async (name: string) => names[name] ?? Promise.reject(Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: 'ENOTFOUND' }));
    const acts = createActivities({ dryRun: new DryRunExecutor(), net: { ...realNet, resolve4 } });
    const step = byId('preflight/tenant/resolve-source');
    const hosts = hostTargets(named);
    const out = await inActivity(() => acts.resolveAddress({ step, hosts, values: {}, mode: 'live' })).result;
    expect(out.status).toBe('done');
    // The first usable address: 0.0.0.0 is no host.
    expect(out.captured).toEqual({ key: 'addr:source', value: '192.0.2.1' });
    expect(out.output).toContain('of 192.0.2.1, 192.0.2.2');
    const again = await inActivity(() => acts.resolveAddress({ step, hosts, values: { 'addr:source': '192.0.2.9' }, mode: 'live' })).result;
    expect(again).toMatchObject({ status: 'already-done', captured: { key: 'addr:source', value: '192.0.2.9' } });
    const missing = { ...step, params: { name: 'nothing.gbo-test.invalid' } };
    await expect(inActivity(() => acts.resolveAddress({ step: missing, hosts, values: {}, mode: 'live' })).result).rejects.toThrow(/does not resolve to an IPv4 address \(ENOTFOUND\)/);
    const unusable = { ...step, params: { name: 'multicast.example.org' } };
    await expect(inActivity(() => acts.resolveAddress({ step: unusable, hosts, values: {}, mode: 'live' })).result).rejects.toMatchObject({ type: 'BadPlan', nonRetryable: true });
  });
});
