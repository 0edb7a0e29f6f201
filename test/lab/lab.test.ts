/**
 * Tests of the lab itself (lab/up.sh): a real LXD source host and a real Incus destination host on
 * this machine, reached over real SSH with the lab key and pinned host keys, and the seeded
 * pragmatismo tenant with real services, the second tenant shop and its external DNS, the lab's
 * ACME CA (pebble behind the project's rate-limiting front). Needs root:
 * without it the tests are skipped, except in CI (CI=true), where a missing root is a failure.
 *
 * One down/up cycle: `beforeAll` takes the lab down, records this machine's state (firewall,
 * namespaces, links, routes, mounts, daemons, /etc, /opt), builds a fresh lab; the LAST test runs lab:down
 * and checks that nothing of the lab is left. So the suite leaves the lab DOWN; every suite that
 * needs it (test/e2e, test/faults) runs lab/up.sh in its own beforeAll.
 */
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { parse as parseYaml } from 'yaml';
import { planSchema, type Plan } from '../../src/plan/schema';
import { fileListing, labProcesses, machineState, type MachineState } from '../harness/machine-state';
import { httpGet, tcpConnect, udpExchange } from '../harness/net';

const REPO = path.resolve(__dirname, '../..');
const ROOT = process.env.GBO_LAB_ROOT ?? '/var/lib/gbo-lab';
const KEY = `${ROOT}/ssh/id_ed25519`;
const KNOWN_HOSTS = `${ROOT}/ssh/known_hosts`;
const SRC = '198.18.0.1';
const DST = '198.18.0.2';
const PREFIX = 'pragmatismo-';
const TEN = ['proxy', 'tables', 'system', 'drive', 'dns', 'email', 'webmail', 'alm', 'alm-ci', 'table-editor'];
const ZONE = 'pragmatismo.lab';
/** The second tenant: source name -> destination name, as lab/lib.sh seeds it. */
const SHOP: Record<string, string> = { 'acme-storefront': 'shop-web', 'acme-orders': 'shop-db', 'acme-voice': 'shop-voip', 'acme-queue': 'shop-worker' };
const SHOP_ZONE = 'shop.lab';
const EXTDNS = '198.18.1.2';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const inCI = process.env.CI === 'true';

function sshArgs(host: string, knownHosts = KNOWN_HOSTS, key = KEY): string[] {
  return [
    '-i', key,
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ConnectTimeout=5',
    `root@${host}`,
  ];
}
function ssh(host: string, command: string, opts: { knownHosts?: string; key?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync('ssh', [...sshArgs(host, opts.knownHosts, opts.key), command], { encoding: 'utf8', timeout: 30_000 });
}
function sshOk(host: string, command: string): string {
  const r = ssh(host, command);
  if (r.status !== 0) throw new Error(`ssh ${host} ${command}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/** A minimal DNS query over UDP; returns rcode, the AA flag and the answers' raw RDATA. */
function dnsQuery(server: string, name: string, qtype: number): Promise<{ rcode: number; aa: boolean; answers: Buffer[] }> {
  const id = Math.floor(Math.random() * 65535);
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const q = Buffer.concat([
    Buffer.from([id >> 8, id & 255, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]),
    ...labels,
    Buffer.from([0, qtype >> 8, qtype & 255, 0, 1]),
  ]);
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const t = setTimeout(() => { sock.close(); reject(new Error(`DNS ${name} @${server} timed out`)); }, 3000);
    sock.on('message', (m) => {
      clearTimeout(t);
      sock.close();
      const rcode = m[3]! & 0x0f;
      const aa = (m[2]! & 0x04) !== 0;
      const an = m.readUInt16BE(6);
      let off = 12;
      const skipName = () => {
        for (;;) {
          const len = m[off]!;
          if (len === 0) { off += 1; return; }
          if ((len & 0xc0) === 0xc0) { off += 2; return; }
          off += len + 1;
        }
      };
      skipName(); off += 4; // question
      const answers: Buffer[] = [];
      for (let i = 0; i < an; i++) {
        skipName();
        const rdlen = m.readUInt16BE(off + 8);
        answers.push(m.subarray(off + 10, off + 10 + rdlen));
        off += 10 + rdlen;
      }
      resolve({ rcode, aa, answers });
    });
    sock.send(q, 53, server, (e) => { if (e) { clearTimeout(t); sock.close(); reject(e); } });
  });
}

if (!isRoot && inCI) {
  test('the lab tests run as root in CI', () => {
    throw new Error('the lab needs root (network namespaces, LXD, Incus); CI=true, so a missing root is a failure, not a skip');
  });
}
if (!isRoot && !inCI) {
  // eslint-disable-next-line no-console
  console.warn('test/lab skipped: the lab needs root (network namespaces, LXD, Incus). Run as root, or set CI=true to make this a failure.');
}

(isRoot ? describe : describe.skip)('the lab (lab/up.sh)', () => {
  let upOutput = '';
  let fresh = false;
  let plan: Plan;
  /** Live state from LXD over SSH: source container name -> IPv4. */
  const ipOf = new Map<string, string>();

  let baseline: MachineState;
  let baselineFiles: string[];

  beforeAll(() => {
    // Packages first (their install legitimately changes /etc), then the machine without a lab.
    const inst = spawnSync('bash', ['lab/install.sh'], { cwd: REPO, encoding: 'utf8', timeout: 600_000, env: process.env });
    if (inst.status !== 0) throw new Error(`lab/install.sh failed (exit ${inst.status}):\n${inst.stdout}\n${inst.stderr}`);
    const down = spawnSync('bash', ['lab/down.sh'], { cwd: REPO, encoding: 'utf8', timeout: 300_000, env: process.env });
    if (down.status !== 0) throw new Error(`lab/down.sh failed (exit ${down.status}):\n${down.stdout}\n${down.stderr}`);
    baseline = machineState();
    baselineFiles = fileListing();
    const r = spawnSync('bash', ['lab/up.sh'], { cwd: REPO, encoding: 'utf8', timeout: 600_000, env: process.env });
    upOutput = `${r.stdout}\n${r.stderr}`;
    if (r.status !== 0) throw new Error(`lab/up.sh failed (exit ${r.status}):\n${upOutput}`);
    fresh = !/already up/.test(upOutput);
    plan = planSchema.parse(parseYaml(readFileSync(`${ROOT}/plan.yaml`, 'utf8')));
    const list = JSON.parse(sshOk(SRC, 'lxc list --format json')) as Array<{
      name: string;
      status: string;
      state: { network?: Record<string, { addresses: Array<{ family: string; scope: string; address: string }> }> } | null;
    }>;
    for (const c of list) {
      const a = c.state?.network?.eth0?.addresses.find((x) => x.family === 'inet' && x.scope === 'global');
      if (a) ipOf.set(c.name, a.address);
    }
  }, 660_000);

  test('lab:up prints its elapsed time and the plan path', () => {
    expect(upOutput).toMatch(/lab:up: (done|already up) in \d+(\.\d+)? s/);
  });

  test('the lab plan validates against the plan schema and names the lab hosts', () => {
    const raw = parseYaml(readFileSync(`${ROOT}/plan.yaml`, 'utf8'));
    const r = planSchema.safeParse(raw);
    expect(r.error?.issues ?? []).toEqual([]);
    expect(plan.tenant).toBe('pragmatismo');
    expect(plan.hosts.source).toMatchObject({ address: SRC, user: 'root', sshKey: `file:${KEY}`, knownHosts: `file:${KNOWN_HOSTS}` });
    expect(plan.hosts.destination).toMatchObject({ address: DST, user: 'root', sshKey: `file:${KEY}`, knownHosts: `file:${KNOWN_HOSTS}` });
    expect(plan.source.apiAddress).toBe(SRC);
    expect(plan.source.containerPrefix).toBe(PREFIX);
    expect(plan.destination.bridgeSubnet).toBe('198.18.32.0/24');
    expect(plan.containers.map((c) => c.name).sort()).toEqual([...TEN].sort());
    expect(plan.data.sourceRoot).toBe(`${ROOT}/src/opt/gbo`);
    // Nothing of the lab is under this machine's real /opt.
    for (const p of [plan.data.sourceRoot, plan.data.staging, plan.data.tenantsRoot, plan.data.pullIdentity, plan.data.pullKnownHosts]) {
      expect(p?.startsWith(`${ROOT}/`)).toBe(true);
    }
  });

  test.each([
    ['source', SRC, 'LXD_DIR'],
    ['destination', DST, 'INCUS_DIR'],
  ])('key login works on the %s host (%s)', (_role, host, envVar) => {
    const out = sshOk(host, `echo "$(id -un) $${envVar}"; ip -4 -o addr show`);
    expect(out).toMatch(new RegExp(`^root ${ROOT}/`));
    expect(out).toContain(`inet ${host}/30`);
  });

  test.each([
    ['source', SRC],
    ['destination', DST],
  ])('a wrong host key for the %s host (%s) is refused', (_role, host) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gbo-lab-kh-'));
    try {
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${dir}/other`]);
      const other = readFileSync(`${dir}/other.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
      writeFileSync(`${dir}/known_hosts`, `${host} ${other}\n`);
      const r = ssh(host, 'true', { knownHosts: `${dir}/known_hosts` });
      expect(r.status).toBe(255);
      expect(r.stderr).toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
      // And an unknown host (empty known_hosts) is refused too: nothing is accepted blindly.
      writeFileSync(`${dir}/known_hosts`, '');
      const r2 = ssh(host, 'true', { knownHosts: `${dir}/known_hosts` });
      expect(r2.status).toBe(255);
      expect(r2.stderr).toMatch(/Host key verification failed|No .* host key is known/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each([SRC, DST])('%s accepts keys only (no password authentication)', (host) => {
    const r = spawnSync('ssh', ['-o', 'BatchMode=yes', '-o', 'PubkeyAuthentication=no', '-o', `UserKnownHostsFile=${KNOWN_HOSTS}`,
      '-o', 'StrictHostKeyChecking=yes', `root@${host}`, 'true'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(255);
    expect(r.stderr).toMatch(/Permission denied \(publickey\)/);
  });

  test('lxc on the source lists the ten pragmatismo- containers RUNNING on lxdbr-gbo', () => {
    const rows = sshOk(SRC, 'lxc list --format csv -c ns').trim().split('\n');
    const running = rows.filter((r) => r.endsWith(',RUNNING') && r.startsWith(PREFIX)).map((r) => r.split(',')[0]);
    expect(running.sort()).toEqual(TEN.map((n) => PREFIX + n).sort());
    for (const n of TEN) expect(ipOf.get(PREFIX + n)).toMatch(/^198\.18\.16\.\d+$/);
    expect(sshOk(SRC, 'lxc config get core.https_address').trim()).toBe(`${SRC}:8443`);
  });

  test('incus answers on the destination, with incusbr0 and the default pool', () => {
    const list = JSON.parse(sshOk(DST, 'incus list --format json')) as Array<{ name: string }>;
    expect(Array.isArray(list)).toBe(true);
    // A freshly built lab has no instances at all; a reused one has no source-named ones.
    if (fresh) expect(list).toEqual([]);
    expect(list.filter((c) => c.name.startsWith(PREFIX))).toEqual([]);
    expect(sshOk(DST, 'incus network get incusbr0 ipv4.address').trim()).toBe('198.18.32.1/24');
    expect((parseYaml(sshOk(DST, 'incus storage show default')) as { driver: string }).driver).toBe('dir');
    // The destination does not see the source's bridge: it lives in its own network namespace.
    expect(sshOk(DST, 'ip -o link show').includes('lxdbr-gbo')).toBe(false);
  });

  test('each host sees only its own part of the lab root, and neither sees the worker key', () => {
    expect(sshOk(DST, `ls -A ${ROOT}/src ${ROOT}/ssh | grep -v ':$' | grep -v '^$' || true`).trim()).toBe('');
    expect(sshOk(SRC, `ls -A ${ROOT}/dst ${ROOT}/ssh | grep -v ':$' | grep -v '^$' || true`).trim()).toBe('');
    expect(sshOk(DST, `test -s ${plan.data.pullIdentity} && echo yes`).trim()).toBe('yes');
    expect(sshOk(SRC, `test -s ${ROOT}/src/opt/gbo/proxy/conf/config && echo yes`).trim()).toBe('yes');
  });

  test("the source host's firewall is its own rule set: its iptables never touches this machine's", () => {
    const rule = ['INPUT', '-p', 'tcp', '--dport', '65011', '-j', 'ACCEPT'];
    const machine = () => execFileSync('iptables', ['-S'], { encoding: 'utf8' });
    const before = machine();
    sshOk(SRC, `iptables -I ${rule.join(' ')}`);
    try {
      expect(sshOk(SRC, 'iptables -S INPUT')).toContain('--dport 65011 -j ACCEPT');
      expect(machine()).toBe(before);
    } finally {
      sshOk(SRC, `iptables -D ${rule.join(' ')}`);
    }
  });

  test('the guide prerequisites are left to preflight on a fresh lab', () => {
    if (!fresh) return; // a reused lab may already have them (established by a migration)
    expect(sshOk(DST, 'incus remote list --format csv')).not.toMatch(/lxd-source/);
    expect(sshOk(SRC, 'lxc config trust list --format csv').trim()).toBe('');
    expect(sshOk(DST, `test -e ${plan.data.pullKnownHosts} && echo present || echo absent`).trim()).toBe('absent');
    const r = spawnSync('ip', ['netns', 'exec', 'gbo-dst', 'ssh', '-i', plan.data.pullIdentity!, '-o', 'BatchMode=yes',
      '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${KNOWN_HOSTS}`, '-o', 'StrictHostKeyChecking=yes', `root@${SRC}`, 'true'],
    { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(255);
    expect(r.stderr).toMatch(/Permission denied \(publickey\)/);
  });

  test('every seeded service listens on its container (TCP from the source host)', async () => {
    const failures: string[] = [];
    for (const c of plan.containers) {
      const ip = ipOf.get(PREFIX + c.name)!;
      for (const s of c.services) {
        if (s.protocol !== 'tcp') continue;
        for (const p of s.ports) await tcpConnect(ip, p).catch((e: Error) => failures.push(`${c.name} ${s.name}: ${e.message}`));
      }
    }
    expect(failures).toEqual([]);
  });

  test('the DNS container serves the lab zone from its zone file (UDP)', async () => {
    const ip = ipOf.get(`${PREFIX}dns`)!;
    const soa = await dnsQuery(ip, ZONE, 6);
    expect(soa.rcode).toBe(0);
    expect(soa.aa).toBe(true);
    expect(soa.answers.length).toBe(1);
    const a = await dnsQuery(ip, `chat.${ZONE}`, 1);
    expect(a.rcode).toBe(0);
    expect(a.answers.map((b) => [...b].join('.'))).toEqual([SRC]);
    const zone = readFileSync(`${plan.data.sourceRoot}/dns/data/${ZONE}.zone`, 'utf8');
    expect(zone).toMatch(/IN SOA ns1\.pragmatismo\.lab\./);
  });

  test('Caddy answers for every vhost with its upstream container (HTTP, and the proxy device)', async () => {
    const proxyIp = ipOf.get(`${PREFIX}proxy`)!;
    const adapted = JSON.parse(execFileSync('caddy', ['adapt', '--config', `${plan.data.sourceRoot}/proxy/conf/config`, '--adapter', 'caddyfile'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as {
      apps: { http: { servers: Record<string, { listen: string[]; routes: Array<{ match?: Array<{ host?: string[] }>; handle: unknown[] }> }> } };
    };
    const upstreamOf = new Map<string, string>();
    for (const srv of Object.values(adapted.apps.http.servers)) {
      for (const r of srv.routes) {
        const dial = /"dial":"([^"]+)"/.exec(JSON.stringify(r.handle))?.[1];
        for (const h of r.match?.flatMap((m) => m.host ?? []) ?? []) if (dial) upstreamOf.set(h, dial);
      }
    }
    expect(upstreamOf.size).toBeGreaterThanOrEqual(plan.caddy!.minVhosts);
    expect(JSON.stringify(adapted)).toContain('/opt/gbo/data/caddy');
    const nameOf = new Map([...ipOf].map(([n, ip]) => [ip, n]));
    const failures: string[] = [];
    for (const [host, dial] of upstreamOf) {
      const [ip, port] = dial.split(':');
      const container = nameOf.get(ip!);
      if (!container) { failures.push(`${host}: upstream ${dial} is no source container`); continue; }
      const res = await httpGet(proxyIp, 80, host).catch((e: Error) => ({ status: 0, body: e.message }));
      if (res.status !== 200 || !res.body.startsWith(`${container} `) || !res.body.trim().endsWith(` ${port}`)) {
        failures.push(`${host} -> ${dial}: ${res.status} ${res.body.trim()}`);
      }
    }
    expect(failures).toEqual([]);
    // The source host's proxy device forwards 198.18.0.1:80 to Caddy.
    const viaDevice = await httpGet(SRC, 80, `chat.${ZONE}`);
    expect(viaDevice.status).toBe(200);
    expect(viaDevice.body).toMatch(/^pragmatismo-system botui 5859/);
  });

  // ------------------------------------------------------------------ the lab's ACME CA
  const ACME = `${ROOT}/acme`;
  const FRONT = `https://${SRC}:14443`;
  /** An HTTPS request to the ACME front, trusting the lab CA only. */
  const front = (method: string, urlPath: string, body?: string) =>
    new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
      const req = https.request(`${FRONT}${urlPath}`, {
        method,
        agent: false, // no keep-alive socket left behind for jest
        ca: readFileSync(`${ACME}/lab-ca.pem`),
        headers: body === undefined ? {} : { 'content-type': 'application/jose+json', 'content-length': Buffer.byteLength(body) },
        timeout: 10_000,
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { text += c; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: timed out`)));
      req.on('error', reject);
      req.end(body);
    });

  test('ACME CA: pebble (real validation, VA resolving via the destination) behind the front, both trusted through the lab CA', async () => {
    const pebblePid = readFileSync(`${ACME}/pebble.pid`, 'utf8').trim();
    const cmdline = readFileSync(`/proc/${pebblePid}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toEqual(expect.arrayContaining(['-dnsserver', `${DST}:53`]));
    const environ = readFileSync(`/proc/${pebblePid}/environ`, 'utf8').split('\0');
    expect(environ).toEqual(expect.arrayContaining(['PEBBLE_VA_NOSLEEP=1', 'PEBBLE_WFE_NONCEREJECT=0']));
    expect(environ.filter((e) => e.startsWith('PEBBLE_VA_ALWAYS_VALID'))).toEqual([]);
    const config = JSON.parse(readFileSync(`${ACME}/pebble-config.json`, 'utf8')) as { pebble: Record<string, unknown> };
    expect(config.pebble).toMatchObject({ listenAddress: '127.0.0.1:14000', managementListenAddress: '127.0.0.1:15000', httpPort: 80, tlsPort: 443 });
    // The directory through the front: its URLs point at the front (pebble builds them from Host).
    const dir = await front('GET', '/dir');
    expect(dir.status).toBe(200);
    const d = JSON.parse(dir.body) as Record<string, string>;
    for (const k of ['newNonce', 'newAccount', 'newOrder']) expect(d[k]).toMatch(new RegExp(`^${FRONT.replace(/\./g, '\\.')}/`));
    // root.pem is the root pebble made at this start; its intermediate chains to it.
    const root = execFileSync('curl', ['-fsS', '--cacert', `${ACME}/lab-ca.pem`, 'https://127.0.0.1:15000/roots/0'], { encoding: 'utf8' });
    expect(readFileSync(`${ACME}/root.pem`, 'utf8')).toBe(root);
    expect(execFileSync('openssl', ['verify', '-CAfile', `${ACME}/root.pem`, `${ACME}/intermediate.pem`], { encoding: 'utf8' })).toMatch(/: OK/);
    // The listener certificate names both addresses; lab/acme.sh knows where the root is.
    expect(execFileSync('openssl', ['x509', '-in', `${ACME}/listener.pem`, '-noout', '-ext', 'subjectAltName'], { encoding: 'utf8' }))
      .toMatch(new RegExp(`IP Address:127\\.0\\.0\\.1, IP Address:${SRC.replace(/\./g, '\\.')}`));
    expect(execFileSync('bash', ['lab/acme.sh', 'root'], { cwd: REPO, encoding: 'utf8' }).trim()).toBe(`${ACME}/root.pem`);
  });

  test('ACME CA: a rate-limit window makes new-order answer 429 rateLimited (Retry-After, retry after <RFC3339>, fresh nonce); off lets it through', async () => {
    const d = JSON.parse((await front('GET', '/dir')).body) as Record<string, string>;
    const newOrder = new URL(d.newOrder!).pathname;
    try {
      execFileSync('bash', ['lab/acme.sh', 'rate-limit', '120'], { cwd: REPO, stdio: 'pipe' });
      const until = readFileSync(`${ACME}/rate-limited-until`, 'utf8').trim();
      expect(until).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const r = await front('POST', newOrder, '{}');
      expect(r.status).toBe(429);
      expect(r.headers['content-type']).toBe('application/problem+json');
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(110);
      expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(120);
      expect(r.headers['replay-nonce']).toMatch(/^[A-Za-z0-9_-]{10,}$/);
      const problem = JSON.parse(r.body) as { type: string; detail: string };
      expect(problem.type).toBe('urn:ietf:params:acme:error:rateLimited');
      expect(problem.detail).toBe(`too many certificates already issued: retry after ${until}`);
      // Only new-order is limited: the rest of the protocol goes on.
      expect((await front('HEAD', new URL(d.newNonce!).pathname)).status).toBe(200);
      execFileSync('bash', ['lab/acme.sh', 'rate-limit', 'off'], { cwd: REPO, stdio: 'pipe' });
      const through = await front('POST', newOrder, '{}');
      expect(through.status).not.toBe(429);
      expect(JSON.parse(through.body)).toMatchObject({ type: 'urn:ietf:params:acme:error:malformed' }); // pebble's answer to '{}'
    } finally {
      execFileSync('bash', ['lab/acme.sh', 'rate-limit', 'off'], { cwd: REPO, stdio: 'pipe' });
    }
    const log = readFileSync(`${ACME}/front.log`, 'utf8');
    expect(log).toMatch(new RegExp(`POST ${newOrder} 429 rate-limited until `));
    expect(log).toMatch(new RegExp(`POST ${newOrder} 400`));
    expect(spawnSync('bash', ['lab/acme.sh', 'rate-limit', '-5'], { cwd: REPO }).status).not.toBe(0);
  });

  test('ACME CA: reachable from the source proxy container and from the destination bridge (route back to 198.18.32.0/24)', () => {
    // Busybox's TLS client offers no signature_algorithms, which OpenSSL refuses: a TCP connect
    // proves the path; Caddy itself speaks TLS to the front (next test, and docs/lab.md).
    expect(sshOk(SRC, `lxc exec ${PREFIX}proxy -- sh -c 'echo | nc -w 3 ${SRC} 14443 && echo connected'`).trim()).toBe('connected');
    // From the destination's bridge address: the answer needs the source's route to that subnet.
    const r = spawnSync('ip', ['netns', 'exec', 'gbo-dst', 'curl', '-fsS', '-m', '5', '--interface', '198.18.32.1',
      '--cacert', `${ACME}/lab-ca.pem`, `${FRONT}/dir`], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`"newOrder": "${FRONT}/`);
    expect(execFileSync('ip', ['-4', 'route', 'show', '198.18.32.0/24'], { encoding: 'utf8' })).toMatch(/via 198\.18\.0\.2 dev gbo-src/);
  });

  test("Caddy's certificates come from the lab's ACME CA: the source's Caddy tries and gets none (its names resolve only after the cutover)", async () => {
    const proxyData = `${plan.data.sourceRoot}/proxy`;
    const adapted = execFileSync('caddy', ['adapt', '--config', `${proxyData}/conf/config`, '--adapter', 'caddyfile'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(adapted).toContain(`"ca":"${FRONT}/dir"`);
    expect(adapted).toContain('"trusted_roots_pem_files":["/opt/gbo/conf/acme-ca.pem"]');
    expect(adapted).not.toContain('"module":"internal"');
    expect(readFileSync(`${proxyData}/conf/acme-ca.pem`, 'utf8')).toBe(readFileSync(`${ACME}/lab-ca.pem`, 'utf8'));
    // One valid ACME account in the storage, registered before Caddy's first start (acme-ca.sh).
    const account = JSON.parse(readFileSync(`${proxyData}/data/caddy/acme/${SRC}-14443-dir/users/default/default.json`, 'utf8')) as { status: string };
    expect(account.status).toBe('valid');
    // Its attempts reach the CA and fail at validation: pebble's VA asks the destination's DNS.
    const logFile = `${proxyData}/logs/caddy.log`;
    const deadline = Date.now() + 30_000;
    let failures: Array<{ logger: string; msg: string; error: string }> = [];
    while (Date.now() < deadline) {
      failures = readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { logger: string; msg: string; error: string })
        .filter((e) => e.logger === 'tls.obtain' && e.msg === 'will retry');
      if (failures.length > 0) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(failures.length).toBeGreaterThan(0);
    expect(failures[0]!.error).toContain(`(ca=${FRONT}/dir)`);
    expect(failures.map((f) => f.error).join('\n')).not.toMatch(/getting ACME account/);
    // No certificate, so no handshake: Caddy answers alert 80 (internal error).
    const proxyIp = ipOf.get(`${PREFIX}proxy`)!;
    const err = await new Promise<Error>((resolve, reject) => {
      const s = tls.connect({ host: proxyIp, port: 443, servername: `chat.${ZONE}`, rejectUnauthorized: false }, () => { s.end(); reject(new Error('handshake succeeded')); });
      s.setTimeout(5000, () => s.destroy(new Error('TLS timed out')));
      s.once('error', resolve);
    });
    expect(err.message).toMatch(/alert internal error|alert number 80/);
  });

  test('the devices are configured as the guide describes (disk gbo everywhere, proxy devices on proxy)', () => {
    for (const n of TEN) {
      const devices = parseYaml(sshOk(SRC, `lxc config device show ${PREFIX}${n}`)) as Record<string, Record<string, string>>;
      expect(devices.gbo).toMatchObject({ type: 'disk', path: '/opt/gbo', source: `${plan.data.sourceRoot}/${n}` });
      expect(devices.eth0).toMatchObject({ type: 'nic', network: 'lxdbr-gbo' });
      if (n === 'proxy') {
        expect(devices.http).toMatchObject({ type: 'proxy', listen: `tcp:${SRC}:80`, connect: 'tcp:127.0.0.1:80' });
        expect(devices.https).toMatchObject({ type: 'proxy', listen: `tcp:${SRC}:443`, connect: 'tcp:127.0.0.1:443' });
      }
    }
    expect(sshOk(SRC, `lxc config get ${PREFIX}system security.privileged`).trim()).toBe('true');
  });

  test('/opt/gbo belongs to gbuser in the containers (root in alm-ci, which has no gbuser)', () => {
    for (const n of TEN) {
      const owner = sshOk(SRC, `lxc exec ${PREFIX}${n} -- stat -c %U /opt/gbo/conf 2>/dev/null || lxc exec ${PREFIX}${n} -- stat -c %U /opt/gbo/data`).trim();
      expect(`${n}:${owner}`).toBe(`${n}:${n === 'alm-ci' ? 'root' : 'gbuser'}`);
    }
    expect(sshOk(SRC, `lxc exec ${PREFIX}system -- stat -c '%U %A' /opt/gbo/bin/botserver`).trim()).toMatch(/^gbuser -rwx/);
  });

  test('the checksum manifest matches the seeded data', () => {
    const manifest = `${ROOT}/src/manifest.sha256`;
    const lines = readFileSync(manifest, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(100);
    for (const n of TEN) expect(lines.some((l) => l.includes(`  ${n}/`))).toBe(true);
    const r = spawnSync('sha256sum', ['--check', '--quiet', '--strict', manifest], { cwd: plan.data.sourceRoot, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  // ------------------------------------------------------------------ the second tenant, shop
  const shopManifest = () =>
    readFileSync(`${ROOT}/src/shop-manifest.tsv`, 'utf8').trim().split('\n').map((l) => {
      const [container, file, type, uid, gid, mode, content, link] = l.split('\t');
      return { container: container!, file: file!, type: type!, uid: Number(uid), gid: Number(gid), mode: mode!, content: content!, link: link! };
    });
  const shopPlan = () => parseYaml(readFileSync(`${ROOT}/plan-shop.yaml`, 'utf8')) as {
    tenant: string;
    caddy?: unknown;
    dns: Record<string, unknown> & { records: Array<{ name: string; type: string; value: string }> };
    data: { sourceRoot: string; staging: string; tenantsRoot: string; containerPath: string };
    containers: Array<{ name: string; source: string; sourceFolder?: string; privileged?: boolean; dataDirs?: string[]; dataPath?: string; owner?: string;
      services: Array<{ name: string; ports: number[]; protocol?: string; probe?: { kind: string; send?: string; expect?: string } }> }>;
    portForwards: Array<{ port: number; protocol: string; container: string; containerPort?: number }>;
  };

  test('shop: four containers with names of their own RUNNING on lxdbr-gbo; one privileged, one stateless', () => {
    const rows = sshOk(SRC, 'lxc list --format csv -c ns').trim().split('\n');
    for (const n of Object.keys(SHOP)) expect(rows).toContain(`${n},RUNNING`);
    expect(Object.keys(SHOP).map((n) => ipOf.get(n))).toEqual(['198.18.16.40', '198.18.16.41', '198.18.16.42', '198.18.16.43']);
    const plan = shopPlan();
    for (const c of plan.containers) {
      const devices = parseYaml(sshOk(SRC, `lxc config device show ${c.source}`)) as Record<string, Record<string, string>>;
      expect(devices.eth0).toMatchObject({ type: 'nic', network: 'lxdbr-gbo' });
      if (c.dataDirs?.length) {
        expect(devices.data).toMatchObject({ type: 'disk', source: `${plan.data.sourceRoot}/${c.sourceFolder}`, path: c.dataPath ?? plan.data.containerPath });
      } else {
        expect(Object.keys(devices)).toEqual(['eth0']); // stateless: no data, no disk device
      }
      expect(sshOk(SRC, `lxc config get ${c.source} security.privileged`).trim()).toBe(c.privileged ? 'true' : '');
    }
    expect(plan.containers.filter((c) => !c.dataDirs?.length).map((c) => c.name)).toEqual(['shop-worker']);
    expect(plan.containers.filter((c) => c.privileged).map((c) => c.name)).toEqual(['shop-db']);
    // Destination names are not pragmatismo's.
    for (const c of plan.containers) expect(TEN).not.toContain(c.name);
  });

  test('shop: data of several owners and modes, a hard link and a symlink; the manifest is what the containers see', () => {
    const m = shopManifest();
    expect(new Set(m.filter((e) => e.type !== 'l').map((e) => e.uid))).toEqual(new Set([0, 33, 1000, 1001]));
    expect([...new Set(m.map((e) => e.mode))].sort()).toEqual(expect.arrayContaining(['600', '640', '644', '700', '755']));
    for (const c of ['shop-web', 'shop-db', 'shop-voip']) {
      const mine = m.filter((e) => e.container === c);
      expect(mine.filter((e) => e.link !== '-').length).toBeGreaterThanOrEqual(2); // a hard-link group
      if (c !== 'shop-voip') expect(mine.some((e) => e.type === 'l')).toBe(true);
    }
    const plan = shopPlan();
    for (const c of plan.containers.filter((x) => x.dataDirs?.length)) {
      // The same script, run again in the source container now, gives the same manifest.
      const script = readFileSync(path.join(REPO, 'lab', 'shop-manifest.sh'), 'utf8');
      const r = spawnSync('ssh', [...sshArgs(SRC), `lxc exec ${c.source} -- sh -s -- ${c.dataPath ?? plan.data.containerPath} ${c.dataDirs!.join(' ')}`],
        { input: script, encoding: 'utf8', timeout: 30_000 });
      expect(r.stderr).toBe('');
      const expected = m.filter((e) => e.container === c.name).map((e) => [e.file, e.type, e.uid, e.gid, e.mode, e.content, e.link].join('\t'));
      expect(r.stdout.trim().split('\n')).toEqual(expected);
      // Host view: the privileged container's uids are the host's; the others' are shifted by one idmap base.
      const shifts = new Set(m.filter((e) => e.container === c.name).map((e) => {
        const st = execFileSync('stat', ['-c', '%u %g', `${plan.data.sourceRoot}/${c.sourceFolder}/${e.file}`], { encoding: 'utf8' }).trim().split(' ').map(Number);
        return `${st[0]! - e.uid},${st[1]! - e.gid}`;
      }));
      expect(shifts.size).toBe(1);
      const [shift] = [...shifts];
      if (c.privileged) expect(shift).toBe('0,0');
      else expect(Number(shift!.split(',')[0])).toBeGreaterThan(0);
    }
  });

  test('shop: HTTP, TCP and the UDP exchange answer on the source containers; no DNS server in the tenant', async () => {
    const web = await httpGet('198.18.16.40', 80, 'www.shop.lab');
    expect(web.status).toBe(200);
    expect(web.body).toMatch(/^acme-storefront Storefront 80/);
    await tcpConnect('198.18.16.41', 6432);
    await tcpConnect('198.18.16.43', 4222);
    const reply = await udpExchange('198.18.16.42', 5060, 'OPTIONS sip:shop.lab');
    expect(reply).toContain('acme-voice SIP 5060 OPTIONS sip:shop.lab');
    for (const ip of ['198.18.16.40', '198.18.16.41', '198.18.16.42', '198.18.16.43']) {
      await expect(tcpConnect(ip, 53, 1000)).rejects.toThrow();
    }
  });

  test('shop: the external DNS is authoritative for shop.lab, points at the source, and lab/extdns.sh changes it', async () => {
    const soa = await dnsQuery(EXTDNS, SHOP_ZONE, 6);
    expect(soa).toMatchObject({ rcode: 0, aa: true });
    for (const n of [SHOP_ZONE, `www.${SHOP_ZONE}`, `voip.${SHOP_ZONE}`]) {
      expect((await dnsQuery(EXTDNS, n, 1)).answers.map((b) => [...b].join('.'))).toEqual([SRC]);
    }
    try {
      execFileSync('bash', ['lab/extdns.sh', 'set', DST], { cwd: REPO, stdio: 'pipe' });
      expect((await dnsQuery(EXTDNS, `www.${SHOP_ZONE}`, 1)).answers.map((b) => [...b].join('.'))).toEqual([DST]);
      expect(spawnSync('bash', ['lab/extdns.sh', 'set', '192.0.2.1'], { cwd: REPO }).status).not.toBe(0); // lab addresses only
    } finally {
      execFileSync('bash', ['lab/extdns.sh', 'set', SRC], { cwd: REPO, stdio: 'pipe' });
    }
    expect((await dnsQuery(EXTDNS, `www.${SHOP_ZONE}`, 1)).answers.map((b) => [...b].join('.'))).toEqual([SRC]);
  });

  test('shop: its plan is valid: no caddy, DNS hosted elsewhere, probes, a dataPath, no owner', () => {
    const plan = shopPlan();
    expect(plan.tenant).toBe('shop');
    expect(plan.caddy).toBeUndefined();
    expect(Object.keys(plan.dns).sort()).toEqual(['authoritativeServers', 'oldTtlSeconds', 'records', 'zone']);
    expect(plan.dns.authoritativeServers).toEqual([EXTDNS]);
    expect(plan.dns.records.map((r) => `${r.name} ${r.type} ${r.value}`)).toEqual(['@ A 198.18.0.2', 'www A 198.18.0.2', 'voip A 198.18.0.2']);
    expect(Object.fromEntries(plan.containers.map((c) => [c.source, c.name]))).toEqual(SHOP);
    expect(plan.containers.some((c) => c.owner !== undefined)).toBe(false);
    expect(plan.containers.find((c) => c.name === 'shop-web')?.dataPath).toBe('/srv/shop');
    const udp = plan.containers.flatMap((c) => c.services).filter((s) => s.protocol === 'udp');
    expect(udp.map((s) => s.probe?.kind)).toEqual(['udp']);
    expect(plan.portForwards.map((f) => `${f.protocol}/${f.port}`).sort()).toEqual(['tcp/6432', 'tcp/8081', 'udp/5060']);
    // Its staging is not pragmatismo's; its final data sits below tenantsRoot/shop.
    expect(plan.data.staging).not.toBe(planSchema.parse(parseYaml(readFileSync(`${ROOT}/plan.yaml`, 'utf8'))).data.staging);
    for (const p of [plan.data.sourceRoot, plan.data.staging, plan.data.tenantsRoot]) expect(p.startsWith(`${ROOT}/`)).toBe(true);
    const r = planSchema.safeParse(parseYaml(readFileSync(`${ROOT}/plan-shop.yaml`, 'utf8')));
    expect(r.error?.issues ?? []).toEqual([]);
  });

  test('lab:status reports the lab fully up', () => {
    const r = spawnSync('bash', ['lab/status.sh'], { cwd: REPO, encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout).toMatch(/ 0 down/);
    expect(r.status).toBe(0);
  });

  // Keep this the LAST test: it takes the lab away.
  test('lab:down leaves no rule, namespace, link, mount, process, /etc or /opt change behind', () => {
    const r = spawnSync('bash', ['lab/down.sh'], { cwd: REPO, encoding: 'utf8', timeout: 300_000, env: process.env });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/lab:down: done in \d+(\.\d+)? s/);
    const after = machineState();
    // Nothing of the lab by name or address …
    expect(after.netns.filter((n) => n.startsWith('gbo-'))).toEqual([]);
    expect(after.links.filter((l) => /^(gbo-|lxdbr-gbo$|incusbr0$)/.test(l))).toEqual([]);
    expect(after.routes.filter((r) => r.includes('198.18.'))).toEqual([]);
    expect(after.mounts.filter((m) => m.includes(ROOT) || m.includes('gbo-lab'))).toEqual([]);
    expect(labProcesses(ROOT).map((p) => `${p.pid} ${p.comm} ${p.cmdline}`)).toEqual([]);
    for (const [tool, rules] of Object.entries(after.firewall)) expect(`${tool}: ${rules.includes('198.18.') || rules.includes('lxdbr-gbo')}`).toBe(`${tool}: false`);
    // … and this machine exactly as it was before lab:up.
    expect(after.firewall).toEqual(baseline.firewall);
    expect(after.netns).toEqual(baseline.netns);
    expect(after.links).toEqual(baseline.links);
    expect(after.routes).toEqual(baseline.routes);
    expect(after.mounts).toEqual(baseline.mounts);
    expect(after.daemons).toEqual(baseline.daemons);
    expect(after.run).toEqual(baseline.run);
    if (after.files !== baseline.files) {
      const now = new Set(fileListing());
      const was = new Set(baselineFiles);
      expect({ added: [...now].filter((l) => !was.has(l)), removed: [...was].filter((l) => !now.has(l)) }).toEqual({ added: [], removed: [] });
    }
    expect(spawnSync('test', ['-e', ROOT]).status).not.toBe(0);
    expect(spawnSync('bash', ['lab/status.sh', '--quiet'], { cwd: REPO }).status).toBe(1);
  }, 300_000);
});
