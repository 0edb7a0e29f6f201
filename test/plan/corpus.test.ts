/**
 * The corpus of malformed plans (issue 8): each case is one small mutation of the valid example
 * plan, the exact path the refusal must name and a fragment of its message
 * (`path: got value, expected ...`, as `validate` prints it). Every case must be refused with
 * that problem, so removing any guard fails its cases.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadPlan, parsePlan, PlanError, validatePlan } from '../../src/plan/load';

const repo = join(__dirname, '..', '..');
const examplePath = join(repo, 'examples', 'pragmatismo.yaml');
const example = (): Record<string, any> => parse(readFileSync(examplePath, 'utf8'));
/** The lab plan exactly as lab/up.sh writes it (lab/plan.sh only prints; it touches nothing). */
const labPlanText = () => execFileSync('bash', [join(repo, 'lab', 'plan.sh')], { encoding: 'utf8', env: { ...process.env, GBO_LAB_ROOT: '/var/lib/gbo-lab' } });

function problemsOf(doc: unknown): PlanError['problems'] {
  try {
    validatePlan(doc, 'corpus');
  } catch (err) {
    if (err instanceof PlanError) return err.problems;
    throw err;
  }
  throw new Error('plan was accepted');
}
const line = (p: PlanError['problems'][number]) => `${p.path}: got ${p.value}, expected ${p.expected}`;

const PEM = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  'QyNTUxOQAAACDxN8xq0Wm3kzWq2Yb1vBn3uMbqZ0gQ7l0T0Yz8pLQK9wAAAJhQ8v0cUPL9',
  '-----END OPENSSH PRIVATE KEY-----',
].join('\n');
const PUBKEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPE3zGrRabeTNarZhvW8Gfe4xupnSBDuXRPRjPyktAr3 op@laptop';
const TOKEN = 'hvs.CAESIJ8k2mZq7Lw9XyR4pT0uVn3bQe6aYs1dFg5hKj2lMn8oPqRs';
const MB = 'a'.repeat(1 << 20);

type Mutate = (p: Record<string, any>) => void;
/** [what is broken, mutation, exact path, fragment of the line, text the line must NOT contain] */
type Case = [string, Mutate, string, string, string?];

const destructive: Case[] = [];
for (const field of ['staging', 'tenantsRoot', 'sourceRoot', 'containerPath'] as const) {
  destructive.push(
    [`${field} is /`, (p) => (p.data[field] = '/'), `data.${field}`, 'not the system directory /'],
    [`${field} is /etc`, (p) => (p.data[field] = '/etc'), `data.${field}`, 'not the system directory /etc'],
    [`${field} climbs with ..`, (p) => (p.data[field] = '/opt/gbo/../etc/x'), `data.${field}`, 'a path without ".." segments'],
  );
}

const cases: Case[] = [
  // Destructive targets: a step deletes, rsync --delete's, extracts into or chowns -R these.
  ...destructive,
  ['staging is /var/lib', (p) => (p.data.staging = '/var/lib'), 'data.staging', 'not the system directory /var/lib'],
  ['staging is /usr/lib/x (inside a system tree)', (p) => (p.data.staging = '/usr/lib/gbo'), 'data.staging', 'a dedicated directory outside /usr/lib'],
  ['tenantsRoot below /etc', (p) => (p.data.tenantsRoot = '/etc/gbo/tenants'), 'data.tenantsRoot', 'outside /etc'],
  ['sourceRoot inside LXD state', (p) => (p.data.sourceRoot = '/var/lib/lxd/storage-pools'), 'data.sourceRoot', 'outside /var/lib/lxd'],
  ['containerPath is /usr', (p) => (p.data.containerPath = '/usr'), 'data.containerPath', 'not the system directory /usr'],
  ['warm bandwidth limit as an option', (p) => (p.data.warmBandwidthLimit = '--delete'), 'data.warmBandwidthLimit', 'a rate for rsync --bwlimit'],
  ['warm bandwidth limit with a unit rsync does not read', (p) => (p.data.warmBandwidthLimit = '40MB/s'), 'data.warmBandwidthLimit', 'a number with K, M or G, like 40M'],
  ['staging is a home directory itself', (p) => (p.data.staging = '/home/administrator'), 'data.staging', 'not a home directory itself'],
  ['staging is /tmp', (p) => (p.data.staging = '/tmp'), 'data.staging', 'not the system directory /tmp'],
  ['staging with a /./ segment', (p) => (p.data.staging = '/home/administrator/./gbo'), 'data.staging', 'without "." segments'],
  ['staging with //', (p) => (p.data.staging = '/home/administrator//gbo'), 'data.staging', 'without empty segments ("//")'],
  ['tenantsRoot with a trailing slash', (p) => (p.data.tenantsRoot = '/opt/gbo/tenants/'), 'data.tenantsRoot', 'without a trailing "/"'],
  ['relative sourceRoot', (p) => (p.data.sourceRoot = 'opt/gbo'), 'data.sourceRoot', 'an absolute path'],
  ['sourceFolder ..', (p) => (p.containers[2].sourceFolder = '..'), 'containers[2].sourceFolder', 'other than ".." (it must sit below its root)'],
  ['sourceFolder .', (p) => (p.containers[2].sourceFolder = '.'), 'containers[2].sourceFolder', 'other than "." (it must sit below its root)'],
  ['sourceFolder with a slash', (p) => (p.containers[2].sourceFolder = 'system/../..'), 'containers[2].sourceFolder', 'a directory name of letters'],
  ['dataDir ..', (p) => (p.containers[0].dataDirs = ['conf', '..']), 'containers[0].dataDirs[1]', 'other than ".."'],
  ['staging inside tenantsRoot', (p) => (p.data.staging = '/opt/gbo/tenants/staging'), 'data.staging', 'not inside data.tenantsRoot (/opt/gbo/tenants)'],
  ['tenantsRoot inside staging', (p) => (p.data.tenantsRoot = '/home/administrator/gbo/final'), 'data.staging', 'not containing data.tenantsRoot'],
  ['staging equal to tenantsRoot', (p) => (p.data.staging = '/opt/gbo/tenants'), 'data.staging', 'not equal to data.tenantsRoot'],
  [
    'staging inside sourceRoot when both hosts are one machine',
    (p) => {
      p.hosts.destination.address = p.hosts.source.address;
      p.data.staging = '/opt/gbo/staging';
      p.data.tenantsRoot = '/srv/gbo/tenants';
    },
    'data.staging',
    'source and destination are the same host',
  ],
  [
    'tenantsRoot inside sourceRoot on loopback hosts',
    (p) => {
      p.hosts.source.address = '127.0.0.1';
      p.hosts.destination.address = 'localhost';
    },
    'data.tenantsRoot',
    'not inside it: source and destination are the same host',
  ],

  // Addresses.
  ['leading-zero IPv4 host', (p) => (p.hosts.source.address = '010.0.0.1'), 'hosts.source.address', 'resolvers read "010" as an octal number, so 010.0.0.1 may reach 8.0.0.1'],
  ['leading-zero public address', (p) => (p.destination.publicAddress = '63.141.255.09'), 'destination.publicAddress', 'without leading zeros'],
  ['0.0.0.0 as a host', (p) => (p.hosts.destination.address = '0.0.0.0'), 'hosts.destination.address', 'not one in 0.0.0.0/8'],
  ['broadcast as the public address', (p) => (p.destination.publicAddress = '255.255.255.255'), 'destination.publicAddress', 'not the limited broadcast address'],
  ['multicast LXD API address', (p) => (p.source.apiAddress = '239.1.2.3'), 'source.apiAddress', 'not a multicast address (224.0.0.0/4)'],
  ['reserved authoritative server', (p) => (p.dns.authoritativeServers = ['240.0.0.1']), 'dns.authoritativeServers[0]', 'not a reserved address (240.0.0.0/4)'],
  ['three-part IPv4', (p) => (p.hosts.source.address = '10.0.1'), 'hosts.source.address', 'four dot-separated numbers (found 3)'],
  ['octet over 255', (p) => (p.source.apiAddress = '82.29.59.256'), 'source.apiAddress', 'whose four numbers are 0-255'],
  ['A record to 0.0.0.0', (p) => (p.dns.records[0].value = '0.0.0.0'), 'dns.records[0].value', 'not one in 0.0.0.0/8'],
  ['A record with a leading zero', (p) => (p.dns.records[1].value = '063.141.255.9'), 'dns.records[1].value', 'without leading zeros'],
  ['bridge subnet with host bits', (p) => (p.destination.bridgeSubnet = '10.0.0.5/24'), 'destination.bridgeSubnet', 'zero host bits (probably 10.0.0.0/24)'],
  ['bridge subnet /0', (p) => (p.destination.bridgeSubnet = '0.0.0.0/0'), 'destination.bridgeSubnet', 'prefix length from /8 to /30'],
  ['host name with a space', (p) => (p.hosts.source.address = 'source host'), 'hosts.source.address', 'a DNS host name'],

  // Durations, counts, sizes.
  ['zero poll interval', (p) => (p.certificates.wait.pollInterval = '0s'), 'certificates.wait.pollInterval', 'a duration from 1s to 1d'],
  ['10^20-day verification window', (p) => (p.approvals.verificationWindow = '100000000000000000000d'), 'approvals.verificationWindow', 'a duration from 0s to 90d'],
  ['a century of certificate waiting', (p) => (p.certificates.wait.maxWait = '36500d'), 'certificates.wait.maxWait', 'a duration from 1m to 90d'],
  ['gate timeout of ten years', (p) => (p.approvals.gateTimeout = '3650d'), 'approvals.gateTimeout', 'a duration from 1m to 365d'],
  ['gate timeout of 0s', (p) => (p.approvals.gateTimeout = '0s'), 'approvals.gateTimeout', 'a duration from 1m to 365d'],
  ['zero concurrency', (p) => (p.concurrency.containers = 0), 'concurrency.containers', 'at least 1'],
  ['concurrency 1000', (p) => (p.concurrency.containers = 1000), 'concurrency.containers', 'at most 32'],
  ['fractional concurrency', (p) => (p.concurrency.containers = 1.5), 'concurrency.containers', 'int'],
  ['101 containers', (p) => (p.containers = Array.from({ length: 101 }, (_, i) => ({ name: `c${i}`, dataDirs: ['data'] }))), 'containers', 'at most 100 entries'],
  ['65 ports on one service', (p) => (p.containers[0].services[0].ports = Array.from({ length: 65 }, (_, i) => 1000 + i)), 'containers[0].services[0].ports', 'at most 64 entries'],
  ['257 required files', (p) => (p.containers[2].requiredFiles = Array.from({ length: 257 }, (_, i) => ({ path: `/opt/gbo/f${i}` }))), 'containers[2].requiredFiles', 'at most 256 entries'],
  ['65 services', (p) => (p.containers[0].services = Array.from({ length: 65 }, (_, i) => ({ name: `s${i}` }))), 'containers[0].services', 'at most 64 entries'],
  ['a 1 MB tenant name, refused with its length', (p) => (p.tenant = MB), 'tenant', 'got a 1048576-character string (not shown)', 'aaaaaaaaaa'],
  ['a 1 MB role', (p) => (p.containers[0].role = MB), 'containers[0].role', 'at most 80 characters', 'aaaaaaaaaa'],
  ['a 2000-character path', (p) => (p.caddy.configPath = '/' + 'x'.repeat(2000)), 'caddy.configPath', 'at most 1024 characters', 'xxxxxxxxxx'],
  ['old TTL of a year', (p) => (p.dns.oldTtlSeconds = 31_536_000), 'dns.oldTtlSeconds', 'at most 604800'],

  // Unit names and argv.
  ['restart unit that is an ssh-style option', (p) => (p.serviceFixes[1].restart = ['-H root@host']), 'serviceFixes[1].restart[0]', 'not starting with "-"'],
  ['restart unit -H', (p) => (p.serviceFixes[1].restart = ['-H']), 'serviceFixes[1].restart[0]', 'a systemd unit name'],
  ['restart unit without a type', (p) => (p.serviceFixes[1].restart = ['system']), 'serviceFixes[1].restart[0]', 'ending in .service'],
  ['reload command starting with an option', (p) => (p.dns.reloadCommand = ['-oProxyCommand=sh', 'coredns']), 'dns.reloadCommand[0]', 'a program name or absolute path as the first word'],
  ['reload command starting with --', (p) => (p.dns.reloadCommand = ['--', 'pkill']), 'dns.reloadCommand[0]', 'not starting with "-"'],
  ['empty reload command', (p) => (p.dns.reloadCommand = []), 'dns.reloadCommand', 'at least 1 entries'],
  ['reload argument with a space', (p) => (p.dns.reloadCommand = ['pkill', '-HUP coredns']), 'dns.reloadCommand[1]', 'a plain word'],
  ['service name starting with -', (p) => (p.containers[0].services[0].name = '-H'), 'containers[0].services[0].name', 'a service name'],

  // Secret references (and never echoing what looks like a secret).
  ['file: relative', (p) => (p.hosts.source.sshKey = 'file:relative/key'), 'hosts.source.sshKey', 'a file: path is absolute'],
  ['file: with ..', (p) => (p.hosts.source.sshKey = 'file:/a/../b'), 'hosts.source.sshKey', 'without ".." segments'],
  ['file: with //', (p) => (p.hosts.destination.knownHosts = 'file:/home//x'), 'hosts.destination.knownHosts', 'without empty segments'],
  ['env: in lower case', (p) => (p.serviceFixes[3].keyRef = 'env:vault_key'), 'serviceFixes[3].keyRef', 'NAME in capitals'],
  ['pasted private key in sshKey', (p) => (p.hosts.source.sshKey = PEM), 'hosts.source.sshKey', 'got a private key (not shown)', 'b3BlbnNzaC1rZXktdjEAAAAA'],
  ['pasted public key in knownHosts', (p) => (p.hosts.source.knownHosts = PUBKEY), 'hosts.source.knownHosts', 'got an SSH key (not shown)', 'AAAAC3NzaC1lZDI1NTE5'],
  ['Vault token as keyRef', (p) => (p.serviceFixes[3].keyRef = TOKEN), 'serviceFixes[3].keyRef', 'token-like string (not shown)', 'CAESIJ8k2mZq7Lw9'],
  ['password as sshKey', (p) => (p.hosts.destination.sshKey = 'correct horse'), 'hosts.destination.sshKey', 'a 13-character string that is not a reference (not shown)', 'horse'],
  ['private key pasted into an unrelated field', (p) => (p.containers[0].role = PEM), 'containers[0].role', 'got a private key (not shown)', 'b3BlbnNzaC1rZXktdjEAAAAA'],

  // Unknown fields and wrong types.
  ['unknown top-level field', (p) => (p.hooks = { pre: 'reboot' }), 'hooks', 'no unknown field (hooks)'],
  ['unknown data field', (p) => (p.data.deleteAfter = true), 'data.deleteAfter', 'no unknown field'],
  ['unknown host field', (p) => (p.hosts.source.password = 'hunter2'), 'hosts.source.password', 'no unknown field'],
  ['port as a string', (p) => (p.hosts.source.port = '22'), 'hosts.source.port', 'a value of type number'],
  ['containers as an object', (p) => (p.containers = { proxy: {} }), 'containers', 'a value of type array'],
  ['sudo as a string', (p) => (p.hosts.destination.sudo = 'yes'), 'hosts.destination.sudo', 'a value of type boolean'],
  ['staging as a number', (p) => (p.data.staging = 42), 'data.staging', 'a value of type string'],
  ['reload command as a string', (p) => (p.dns.reloadCommand = 'pkill -HUP coredns'), 'dns.reloadCommand', 'a value of type array'],
];

describe('the malformed-plan corpus: each refused with its path, value and what is expected', () => {
  it('holds at least 60 cases', () => expect(cases.length).toBeGreaterThanOrEqual(60));

  // One argument per case: a trailing optional element would make jest take the test for a done-callback test.
  it.each(cases.map((c) => [c[0], c] as const))('%s', (_what, [, mutate, path, fragment, mustNotContain]) => {
    const doc = example();
    mutate(doc);
    const problems = problemsOf(doc);
    const atPath = problems.filter((p) => p.path === path).map(line);
    expect({ path, atPath }).toEqual({ path, atPath: expect.arrayContaining([expect.stringContaining(fragment)]) });
    // Nothing a message prints may carry a secret or a huge value, at any path.
    const all = problems.map(line).join('\n');
    if (mustNotContain) expect(all).not.toContain(mustNotContain);
    expect(all.length).toBeLessThan(4000);
  });
});

describe('plans that work today still validate', () => {
  it('the example plan', () => {
    expect(loadPlan(examplePath).data).toEqual({
      sourceRoot: '/opt/gbo',
      staging: '/home/administrator/gbo',
      tenantsRoot: '/opt/gbo/tenants',
      containerPath: '/opt/gbo',
      pullIdentity: '/home/administrator/.ssh/id_rsa',
      pullKnownHosts: '/home/administrator/.ssh/known_hosts',
    });
  });

  it('the lab plan lab/plan.sh prints', () => {
    const plan = parsePlan(labPlanText(), 'lab/plan.sh');
    expect(plan.hosts.source.address).toBe('198.18.0.1');
    expect(plan.destination.bridgeSubnet).toBe('198.18.32.0/24');
    expect(plan.certificates?.wait.pollInterval).toBe('5s');
    expect(plan.dns.reloadCommand).toEqual(['killall', '-HUP', 'nsd']);
  });

  it('the lab plan under another GBO_LAB_ROOT', () => {
    const text = execFileSync('bash', [join(repo, 'lab', 'plan.sh')], { encoding: 'utf8', env: { ...process.env, GBO_LAB_ROOT: '/srv/gbo-lab' } });
    expect(parsePlan(text, 'lab/plan.sh').data.staging).toBe('/srv/gbo-lab/dst/home/gbo');
  });

  it('loopback hosts, 198.18/15 addresses and a source root apart from the destination roots', () => {
    const p = example();
    p.hosts.source.address = '127.0.0.1';
    p.hosts.destination.address = '127.0.0.1';
    p.destination.publicAddress = '198.19.255.254';
    p.data.sourceRoot = '/srv/source/gbo';
    expect(() => validatePlan(p)).not.toThrow();
  });
});

describe('one address pattern for the plan, learned placeholder values and captures', () => {
  const { fillPlaceholders } = jest.requireActual<typeof import('../../src/runbook/shell')>('../../src/runbook/shell');
  const { parseListIpv4 } = jest.requireActual<typeof import('../../src/activities/parse')>('../../src/activities/parse');
  const listing = (address: string) => JSON.stringify([{ name: 'proxy', state: { network: { eth0: { addresses: [{ family: 'inet', address, scope: 'global' }] } } } }]);

  it('accepts a canonical address everywhere', () => {
    expect(fillPlaceholders('ping {{ip:proxy}}', { 'ip:proxy': '198.18.32.10' })).toBe('ping 198.18.32.10');
    expect(parseListIpv4(listing('198.18.32.10'))).toBe('198.18.32.10');
  });

  it('refuses a leading-zero address everywhere (a resolver reads 010 as 8)', () => {
    expect(problemsOf({ ...example(), destination: { ...example().destination, publicAddress: '010.0.0.1' } }).map(line).join('\n')).toContain('leading zeros');
    expect(() => fillPlaceholders('ping {{ip:proxy}}', { 'ip:proxy': '010.0.0.1' })).toThrow(/not a valid ip/);
    expect(() => parseListIpv4(listing('010.0.0.1'))).toThrow(/dotted-quad IPv4/);
  });
});
