/** The plan fields that let any tenant migrate: optional Caddy and DNS server, probes, data layout. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { PlanError, validatePlan } from '../../src/plan/load';

const shop = (): Record<string, any> => parse(readFileSync(join(__dirname, '..', 'plans', 'shop.yaml'), 'utf8'));
const example = (): Record<string, any> => parse(readFileSync(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'), 'utf8'));

function problemsOf(doc: unknown): string[] {
  try {
    validatePlan(doc, 'test');
  } catch (err) {
    if (err instanceof PlanError) return err.problems.map((p) => `${p.path}: got ${p.value}, expected ${p.expected}`);
    throw err;
  }
  return [];
}

describe('accepted', () => {
  it('a tenant without caddy, without an in-tenant DNS server, with probes, a stateless container and a dataPath', () => {
    const plan = validatePlan(shop(), 'shop');
    expect(plan.caddy).toBeUndefined();
    expect(plan.dns).toMatchObject({ zone: 'shop.lab' });
    expect(plan.dns.container ?? plan.dns.zoneFile ?? plan.dns.reloadCommand).toBeUndefined();
    const byName = Object.fromEntries(plan.containers.map((c) => [c.name, c]));
    expect(byName.cache?.dataDirs).toEqual([]);
    expect(byName.web?.dataPath).toBe('/srv/www');
    expect(byName.db?.dataPath).toBeUndefined();
    expect(byName.web?.services[0]?.probe).toEqual({ kind: 'http', path: '/healthz' });
    expect(byName.game?.services[0]?.probe).toEqual({ kind: 'udp', send: 'PING shop', expect: 'PONG' });
    expect(byName.cache?.services[1]?.probe).toEqual({ kind: 'none' });
  });

  it('an http probe defaults its path to /; a dns probe names a domain; a TCP service needs no probe', () => {
    const doc = shop();
    doc.containers[0].services[0].probe = { kind: 'http' };
    doc.containers[1].services[0].probe = undefined;
    doc.containers[2].services[0].probe = { kind: 'dns', name: 'shop.lab' };
    const plan = validatePlan(doc, 'shop');
    expect(plan.containers[0]?.services[0]?.probe).toEqual({ kind: 'http', path: '/' });
    expect(plan.containers[2]?.services[0]?.probe).toEqual({ kind: 'dns', name: 'shop.lab' });
  });

  it('pragmatismo declares its DNS service probe; owner and ownerFallback are gone', () => {
    const plan = validatePlan(example(), 'pragmatismo');
    expect(plan.containers.find((c) => c.name === 'dns')?.services[0]?.probe).toEqual({ kind: 'dns', name: 'pragmatismo.com.br' });
    const doc = example();
    doc.containers[0].owner = 'gbuser';
    expect(problemsOf(doc).join('\n')).toMatch(/containers\[0\]\.owner: .*no unknown field/);
  });
});

type Mutate = (p: Record<string, any>) => void;
const refused: [string, Mutate, RegExp][] = [
  ['a UDP service without a probe', (p) => delete p.containers[2].services[0].probe, /containers\[2\]\.services\[0\]\.probe: .*a probe for a UDP service: dns, udp or none/],
  ['a UDP service with a tcp probe', (p) => (p.containers[2].services[0].probe = { kind: 'tcp' }), /a probe for a UDP service: dns, udp or none/],
  ['a TCP service with a udp probe', (p) => (p.containers[1].services[0].probe = { kind: 'udp', send: 'x', expect: 'y' }), /containers\[1\]\.services\[0\]\.probe: .*a probe for a TCP service: tcp, http or none/],
  ['an unknown probe kind', (p) => (p.containers[1].services[0].probe = { kind: 'icmp' }), /containers\[1\]\.services\[0\]\.probe\.kind/],
  ['a udp probe with a non-printable send', (p) => (p.containers[2].services[0].probe.send = 'PING\n'), /probe\.send: .*printable ASCII/],
  ['a udp probe without expect', (p) => delete p.containers[2].services[0].probe.expect, /probe\.expect/],
  ['an http path with shell syntax', (p) => (p.containers[0].services[0].probe.path = '/$(reboot)'), /probe\.path: .*an HTTP path/],
  ['a dns probe name that is not a domain', (p) => (p.containers[2].services[0].probe = { kind: 'dns', name: 'not a name' }), /probe\.name/],
  ['a relative dataPath', (p) => (p.containers[0].dataPath = 'var/www'), /containers\[0\]\.dataPath: .*absolute path/],
  ['a dns container without zoneFile and reloadCommand', (p) => (p.dns.container = 'web'), /dns\.zoneFile: .*dns\.container, dns\.zoneFile and dns\.reloadCommand together .* or none of them .*missing: dns\.zoneFile, dns\.reloadCommand/],
  ['a zoneFile alone', (p) => (p.dns.zoneFile = '/srv/zone'), /dns\.container: .*missing: dns\.container, dns\.reloadCommand/],
  ['a dns container the plan does not have', (p) => Object.assign(p.dns, { container: 'ns', zoneFile: '/z', reloadCommand: ['kill', '-HUP', '1'] }), /dns\.container: got "ns", expected one of the plan's containers/],
  ['a caddy container the plan does not have', (p) => (p.caddy = { container: 'proxy', minVhosts: 1 }), /caddy\.container: got "proxy"/],
];

describe('refused with the path and what was expected', () => {
  it.each(refused)('%s', (_what, mutate, message) => {
    const doc = shop();
    mutate(doc);
    expect(problemsOf(doc).join('\n')).toMatch(message);
  });
});
