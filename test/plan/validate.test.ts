import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadPlan, PlanError, validatePlan } from '../../src/plan/load';

const examplePath = join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml');
const example = (): Record<string, any> => parse(readFileSync(examplePath, 'utf8'));

function problemsOf(doc: unknown): PlanError['problems'] {
  try {
    validatePlan(doc, 'test');
  } catch (err) {
    if (err instanceof PlanError) return err.problems;
    throw err;
  }
  throw new Error('plan was accepted');
}

describe('the example plan', () => {
  it('encodes the guide tenant completely', () => {
    const plan = loadPlan(examplePath);
    expect(plan.containers.map((c) => c.name)).toEqual(['proxy', 'tables', 'system', 'drive', 'dns', 'email', 'webmail', 'alm', 'alm-ci', 'table-editor']);
    expect(plan.containers.find((c) => c.name === 'system')?.privileged).toBe(true);
    expect(plan.containers.filter((c) => c.privileged)).toHaveLength(1);
    // The guide's NAT table: 80, 443 → proxy; 25 465 587 993 995 143 110 4190 → email; 53 tcp+udp → dns.
    const nat = plan.portForwards.map((f) => `${f.protocol}/${f.port}->${f.container}`).sort();
    expect(nat).toEqual(
      ['tcp/80->proxy', 'tcp/443->proxy', ...[25, 465, 587, 993, 995, 143, 110, 4190].map((p) => `tcp/${p}->email`), 'udp/53->dns', 'tcp/53->dns'].sort(),
    );
    expect(plan.caddy).toMatchObject({ container: 'proxy', configPath: '/opt/gbo/conf/config', storageRoot: '/opt/gbo/data/caddy', minVhosts: 25 });
    expect(plan.source.containerPrefix).toBe('pragmatismo-');
    expect(plan.dns.reloadCommand).toEqual(['pkill', '-HUP', 'coredns']);
  });
});

type Mutate = (p: Record<string, any>) => void;
/** [what is broken, mutation, path in the message, value in the message] */
const broken: [string, Mutate, string, string][] = [
  ['container name with shell syntax', (p) => (p.containers[0].name = 'proxy;rm -rf /'), 'containers[0].name', '"proxy;rm -rf /"'],
  ['upper-case container name', (p) => (p.containers[1].name = 'Tables'), 'containers[1].name', '"Tables"'],
  ['duplicate container name', (p) => (p.containers[1].name = 'proxy'), 'containers[1].name', '"proxy"'],
  ['source user with a space', (p) => (p.hosts.source.user = 'root admin'), 'hosts.source.user', '"root admin"'],
  ['port out of range', (p) => (p.hosts.destination.port = 70000), 'hosts.destination.port', '70000'],
  // Key material and passwords are described, never echoed (the corpus checks the key is absent).
  ['SSH key material instead of a reference', (p) => (p.hosts.source.sshKey = '-----BEGIN OPENSSH PRIVATE KEY-----'), 'hosts.source.sshKey', 'got a private key (not shown)'],
  ['relative staging path', (p) => (p.data.staging = 'home/administrator/gbo'), 'data.staging', '"home/administrator/gbo"'],
  ['path escaping with ..', (p) => (p.data.tenantsRoot = '/opt/gbo/../etc'), 'data.tenantsRoot', '"/opt/gbo/../etc"'],
  ['path with $()', (p) => (p.caddy.configPath = '/opt/$(reboot)'), 'caddy.configPath', '"/opt/$(reboot)"'],
  ['bridge with a slash', (p) => (p.destination.bridge = 'incus/br0'), 'destination.bridge', '"incus/br0"'],
  ['bad subnet', (p) => (p.destination.bridgeSubnet = '10.107.115.0/33'), 'destination.bridgeSubnet', '"10.107.115.0/33"'],
  ['port forward to an unknown container', (p) => (p.portForwards[0].container = 'web'), 'portForwards[0].container', '"web"'],
  ['port forwarded twice', (p) => p.portForwards.push({ port: 80, protocol: 'tcp', container: 'proxy' }), 'portForwards[12].port', '80'],
  ['unknown protocol', (p) => (p.portForwards[0].protocol = 'sctp'), 'portForwards[0].protocol', '"sctp"'],
  ['misspelt field', (p) => (p.caddy.minVhost = 25), 'caddy.minVhost', 'no unknown field'],
  ['missing tenant', (p) => delete p.tenant, 'tenant', 'nothing'],
  ['A record to a name', (p) => (p.dns.records[0].value = 'example.com'), 'dns.records[0].value', '"example.com"'],
  ['reload command with shell syntax', (p) => (p.dns.reloadCommand = ['pkill -HUP coredns; reboot']), 'dns.reloadCommand[0]', 'reboot'],
  ['no containers', (p) => (p.containers = []), 'containers', 'at least 1 entries'],
  ['env fix naming an unknown container address', (p) => (p.serviceFixes[1].set = { urlHost: '{{ip:db}}' }), 'serviceFixes[1].set.urlHost', 'got "db", expected one of the plan'],
  ['env fix value naming an unknown container', (p) => (p.serviceFixes[2].set = { value: 'http://{{ip:db}}:1' }), 'serviceFixes[2].set.value', 'got "db", expected one of the plan'],
  ['env fix with two ways to set', (p) => (p.serviceFixes[1].set = { value: 'x', urlHost: '{{ip:tables}}' }), 'serviceFixes[1].set', 'exactly one of "value" (the whole value), "valueRef" (the whole value, a secret) or "urlHost" (only a URL\'s host), not value and urlHost'],
  ['env fix with nothing to set', (p) => (p.serviceFixes[1].set = {}), 'serviceFixes[1].set', 'exactly one of'],
  ['env fix in the old shape (value at the top)', (p) => (p.serviceFixes[1].value = 'x'), 'serviceFixes[1].value', 'no unknown field'],
  ['env value holding a password', (p) => (p.serviceFixes[2].set = { value: 'postgres://u:s3cret@db:5432/x' }), 'serviceFixes[2].set.value', 'a value with no password in it'],
  ['env value over two lines', (p) => (p.serviceFixes[2].set = { value: 'a\nb' }), 'serviceFixes[2].set.value', 'a one-line value'],
  ['env secret as a relative file', (p) => (p.serviceFixes[2].set = { valueRef: 'file:secrets/db' }), 'serviceFixes[2].set.valueRef', 'a secret reference: "env:NAME" or "file:/absolute/path"'],
  ['env secret inline', (p) => (p.serviceFixes[2].set = { valueRef: 's3cret' }), 'serviceFixes[2].set.valueRef', '"s3cret"'],
  ['URL host with a path', (p) => (p.serviceFixes[1].set = { urlHost: 'db/x' }), 'serviceFixes[1].set.urlHost', 'a host: "{{ip:<container>}}", an IPv4 address or a DNS host name'],
  ['env key with a space', (p) => (p.serviceFixes[1].key = 'DATABASE URL'), 'serviceFixes[1].key', 'an environment variable name'],
  ['the same env fix twice', (p) => p.serviceFixes.push({ ...p.serviceFixes[1] }), 'serviceFixes[7]', 'one fix per target: serviceFixes[1] already sets DATABASE_URL in /opt/gbo/conf/botserver.env in system'],
  ['hosts entry to a name', (p) => (p.serviceFixes[4].address = 'tables'), 'serviceFixes[4].address', 'an address: "{{ip:<container>}}" or an IPv4 address'],
  ['hosts entry for an unknown container', (p) => (p.serviceFixes[4].address = '{{ip:db}}'), 'serviceFixes[4].address', 'got "db", expected one of the plan'],
  ['hosts entry with a bad host name', (p) => (p.serviceFixes[4].hostname = 'sys tem'), 'serviceFixes[4].hostname', 'a host name such as system'],
  ['ssh config wildcard host', (p) => (p.serviceFixes[5].host = 'sys*'), 'serviceFixes[5].host', 'a Host alias of letters, digits, ".", "_" and "-" (no wildcard)'],
  ['ssh config HostName for an unknown container', (p) => (p.serviceFixes[5].hostName = '{{ip:db}}'), 'serviceFixes[5].hostName', 'got "db", expected one of the plan'],
  ['ssh config without a file', (p) => delete p.serviceFixes[5].file, 'serviceFixes[5].file', 'nothing'],
  ['unknown service fix kind', (p) => (p.serviceFixes[0].kind = 'reboot'), 'serviceFixes[0].kind', '"reboot"'],
  ['wrong apiVersion', (p) => (p.apiVersion = 'v2'), 'apiVersion', '"v2"'],
  ['concurrency zero', (p) => (p.concurrency.containers = 0), 'concurrency.containers', '0'],
  ['bad duration', (p) => (p.approvals.verificationWindow = 'tomorrow'), 'approvals.verificationWindow', '"tomorrow"'],
  ['Vault key inline instead of a reference', (p) => (p.serviceFixes[3].keyRef = 's3cr3t-unseal'), 'serviceFixes[3].keyRef', 'got a 13-character string that is not a reference (not shown)'],
];

describe('validate rejects broken plans with the path, the value and what was expected', () => {
  it.each(broken)('%s', (_what, mutate, path, value) => {
    const doc = example();
    mutate(doc);
    const problems = problemsOf(doc);
    const problem = problems.find((p) => p.path === path);
    expect({ problems, found: problem !== undefined }).toMatchObject({ found: true });
    expect(`${problem!.path}: got ${problem!.value}, expected ${problem!.expected}`).toContain(value);
    expect(problem!.expected.length).toBeGreaterThan(3);
  });

  it('has at least 15 broken plans', () => expect(broken.length).toBeGreaterThanOrEqual(15));

  it('reports unparseable text and unreadable files as plan errors', () => {
    expect(() => loadPlan('/nonexistent/plan.yaml')).toThrow(/\(file\): got "\/nonexistent\/plan.yaml", expected a readable plan file \(ENOENT\)/);
  });
});
