/**
 * A second tenant unlike pragmatismo (test/plans/shop.yaml): no Caddy, DNS hosted elsewhere, a UDP
 * service with its own probe, renamed containers, a stateless container, its own API port and data
 * layout. Nothing of pragmatismo's shape may leak into its runbook.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { loadPlan } from '../../src/plan/load';
import { buildRunbook } from '../../src/runbook/build';
import { dnsQueryEscapes, probeCommand } from '../../src/runbook/commands';
import { allSteps, phaseSteps } from '../../src/runbook/model';
import { hostCommand, placeholdersIn } from '../../src/runbook/shell';

const plan = loadPlan(join(__dirname, '..', 'plans', 'shop.yaml'));
const runbook = buildRunbook(plan);
const steps = allSteps(runbook);
const byId = (id: string) => {
  const s = steps.find((x) => x.id === id);
  if (!s) throw new Error(`no step ${id}: ${steps.map((x) => x.id).join(' ')}`);
  return s;
};
const ids = steps.map((s) => s.id);
const sample: Record<string, string> = {
  'cert:destination': '-----BEGIN CERTIFICATE-----\nMIIB+zCCAYGgAwIBAgIQ\n-----END CERTIFICATE-----\n',
  'pubkey:destination': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB root@dest',
  'stamp:run': '202603221750',
  ...Object.fromEntries(plan.containers.flatMap((c, i) => [[`ip:${c.name}`, `10.55.0.${10 + i}`], [`digest:${c.name}`, `files=3 sha256=${'b'.repeat(64)}`], [`idshift:${c.name}`, c.privileged ? '0' : '1000000']])),
};

describe('the runbook of a tenant unlike pragmatismo', () => {
  it('has no reverse proxy steps without caddy, and nothing else names Caddy', () => {
    expect(phaseSteps(runbook, 'proxy')).toEqual([]);
    expect(steps.some((s) => s.kind === 'caddy-rewrite' || /caddy/i.test(s.command))).toBe(false);
  });

  it('takes step ids and titles from the plan: its API port, bridge, remote, paths, names', () => {
    expect(ids).toContain('preflight/tenant/source-open-9443');
    expect(ids).toContain('preflight/tenant/destination-open-9443');
    expect(ids.some((id) => id.includes('8443'))).toBe(false);
    const text = JSON.stringify(runbook);
    for (const shape of ['8443', 'pragmatismo', 'incusbr0', 'lxd-source', '/opt/gbo', 'gbuser', 'coredns', 'nslookup', 'chown -R']) expect([shape, text.includes(shape)]).toEqual([shape, false]);
    expect(hostCommand(byId('preflight/tenant/add-remote').command, {}, false)).toBe('incus remote add old-lxd https://198.51.100.7:9443 --protocol incus --accept-certificate');
  });

  it('copies renamed containers from their source names to their own', () => {
    expect(byId('copy/web/copy').command).toContain('incus copy --instance-only old-lxd:legacy-web web --storage fast');
    expect(byId('stop/db/stop').command).toBe('lxc stop old-db');
    expect(byId('cleanup/cache/delete-container').command).toBe('lxc delete memcache');
    expect(byId('record/game/instance').command).toBe('lxc query /1.0/instances/gamesrv');
    expect(byId('presync/web/rsync').command).toContain('root@198.51.100.7:/srv/tenants/legacy-web/ /var/tmp/shop-staging/web/');
    expect(phaseSteps(runbook, 'copy')[0]?.container).toBe('db');
  });

  it('gives a stateless container no data steps and leaves it out of the size sum', () => {
    expect(ids.filter((id) => id.split('/')[1] === 'cache' && /^(presync|data)\//.test(id))).toEqual([]);
    expect(ids).not.toContain('stop/cache/source-manifest');
    expect(ids).not.toContain('cleanup/cache/record-data');
    expect(ids).not.toContain('cleanup/cache/delete-data');
    expect(ids).toContain('copy/cache/copy');
    expect(byId('preflight/tenant/source-data-size').command).toBe(`du -sb /srv/tenants/legacy-web /srv/tenants/db /srv/tenants/game | awk '{t+=$1} END {printf "%.0f\\n", t}'`);
    const onlyStateless = buildRunbook({ ...plan, containers: plan.containers.filter((c) => c.name === 'cache'), portForwards: [] });
    expect(phaseSteps(onlyStateless, 'preflight').find((s) => s.id === 'preflight/tenant/source-data-size')?.command).toBe('echo 0');
  });

  it("pushes each container's data to its own dataPath, keeping numeric owners, then checks owners and modes", () => {
    const order = ['final-sync', 'move', 'verify-transfer', 'shift-ids', 'push', 'verify-owners', 'verify'].map((n) => ids.indexOf(`data/web/${n}`));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(byId('data/web/push').command).toBe('incus exec web -- mkdir -p /srv/www && tar -C /srv/incus-data/shop/web --numeric-owner -cf - . | incus exec web -- tar -C /srv/www --numeric-owner -xpf -');
    expect(byId('data/db/push').command).toContain('tar -C /srv/app --numeric-owner -xpf -');
    expect(byId('presync/web/rsync').command).toContain('rsync -aHAX --numeric-ids -z --partial --delete');
    expect(byId('data/web/shift-ids').command).toMatch(/ shift-ids \/srv\/incus-data\/shop\/web \{\{idshift:web\}\}$/);
    expect(byId('data/web/verify-owners')).toMatchObject({ refuses: true });
    expect(byId('data/web/verify-owners').command).toContain("owners /srv/incus-data/shop/web html uploads | incus exec web -- sh -c");
    expect(byId('data/web/push').check).toContain(byId('data/web/verify-owners').command);
  });

  it('probes each service the way the plan declares it, never a DNS query just because it is UDP', () => {
    const verify = phaseSteps(runbook, 'verify');
    expect(verify.map((s) => [s.id, s.params?.probe])).toEqual([
      ['verify/web/nginx-8080', 'http'],
      ['verify/db/postgresql-5432', 'tcp'],
      ['verify/game/game-27015-udp', 'udp'],
      ['verify/cache/memcached-11211', 'tcp'],
      ['verify/cache/statsd-9125-udp', 'none'],
    ]);
    expect(byId('verify/game/game-27015-udp').command).toBe(`timeout 5 bash -c '${'exec 3<>"/dev/udp/$1/$2"'}${byId('verify/game/game-27015-udp').command.split("exec 3<>\"/dev/udp/$1/$2\"")[1]?.split("' udp-probe")[0]}' udp-probe {{ip:game}} 27015 'PING shop' PONG`);
    expect(byId('verify/web/nginx-8080').command).toMatch(/' http-probe \{\{ip:web\}\} 8080 \/healthz$/);
    expect(byId('verify/cache/statsd-9125-udp')).toMatchObject({ host: 'worker', command: '' });
    expect(steps.some((s) => /nslookup|dig /.test(s.command) && s.phase !== 'cutover')).toBe(false);
  });

  it('probes NAT forwards with the probe their service declares; a UDP forward nobody declares is not probed', () => {
    const nat = phaseSteps(runbook, 'network').filter((s) => s.id.includes('/nat-answers-'));
    expect(nat.map((s) => [s.id, s.params?.probe, s.params?.probeSpec])).toEqual([
      ['network/tenant/nat-answers-tcp-80', 'http', JSON.stringify({ kind: 'http', path: '/healthz' })],
      ['network/tenant/nat-answers-udp-27015', 'udp', JSON.stringify({ kind: 'udp', send: 'PING shop', expect: 'PONG' })],
      ['network/tenant/nat-answers-udp-9125', 'none', JSON.stringify({ kind: 'none' })],
      ['network/tenant/nat-answers-udp-5000', 'none', JSON.stringify({ kind: 'none' })],
    ]);
    expect(nat.find((s) => s.id.endsWith('udp-5000'))?.title).toMatch(/not probed/);
  });

  it('with DNS hosted elsewhere: after the cutover gate, a dns gate naming exactly the records, then the propagation wait', () => {
    expect(phaseSteps(runbook, 'cutover').map((s) => [s.id, s.kind, s.gate])).toEqual([
      ['cutover/tenant/gate', 'gate', 'cutover'],
      ['cutover/tenant/dns-gate', 'gate', 'dns'],
      ['cutover/tenant/dns-propagated', 'wait-dns', undefined],
    ]);
    expect(byId('cutover/tenant/dns-gate').title).toBe('Change at your DNS provider: shop.lab A 198.18.0.2, www.shop.lab A 198.18.0.2; then approve');
    expect(byId('cutover/tenant/dns-gate').params?.records).toEqual(['shop.lab A 198.18.0.2', 'www.shop.lab A 198.18.0.2']);
  });

  it('produces only commands a shell parses, with every placeholder filled', () => {
    for (const s of [...steps, ...runbook.compensation]) {
      if (s.host === 'worker' || s.kind === 'zone-update' || s.kind === 'pin-host-key' || (s.id.startsWith('undo/') && s.id.endsWith('restore-devices'))) continue;
      for (const [text, sudo] of [[s.command, s.sudo], [s.check, s.checkSudo]] as const) {
        if (!text) continue;
        const full = hostCommand(text, sample, sudo, true);
        expect(placeholdersIn(full)).toEqual([]);
        execFileSync('bash', ['-n', '-c', full], { stdio: 'pipe' });
      }
    }
  });
});

describe('probe commands need only bash and coreutils, and quote every value', () => {
  it('builds the DNS question by hand: ID, one question, the name as labels, type SOA, class IN', () => {
    const bytes = execFileSync('bash', ['-c', `printf '${dnsQueryEscapes('www.shop.lab')}' | od -An -tx1 | tr -d ' \\n'`], { encoding: 'utf8' });
    expect(bytes).toBe('676200000001000000000000' + '03777777' + '0473686f70' + '036c6162' + '00' + '0006' + '0001');
  });

  it('quotes probe strings as single arguments', () => {
    const cmd = probeCommand('10.0.0.2', 27015, { kind: 'udp', send: "it's $(reboot)", expect: 'a b' });
    expect(cmd).toMatch(/ udp-probe 10\.0\.0\.2 27015 'it'\\''s \$\(reboot\)' 'a b'$/);
    execFileSync('bash', ['-n', '-c', cmd]);
  });

  it('answers a live UDP service and a live HTTP service on this machine', async () => {
    const dgram = await import('node:dgram');
    const http = await import('node:http');
    const udp = dgram.createSocket('udp4');
    udp.on('message', (m, r) => udp.send(Buffer.from(`PONG ${m.toString()}`), r.port, r.address));
    await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
    const web = http.createServer((req, res) => res.writeHead(req.url === '/healthz' ? 204 : 503).end());
    await new Promise<void>((res) => web.listen(0, '127.0.0.1', () => res()));
    const run = (c: string) => new Promise<number>((res) => require('node:child_process').exec(c, (err: { code?: number } | null) => res(err ? (err.code ?? 1) : 0)));
    try {
      const up = (udp.address() as { port: number }).port;
      const hp = (web.address() as { port: number }).port;
      expect(await run(probeCommand('127.0.0.1', up, { kind: 'udp', send: 'PING', expect: 'PONG PING' }))).toBe(0);
      expect(await run(probeCommand('127.0.0.1', up, { kind: 'udp', send: 'PING', expect: 'NOPE' }))).not.toBe(0);
      expect(await run(probeCommand('127.0.0.1', hp, { kind: 'http', path: '/healthz' }))).toBe(0);
      // A DNS server: NOERROR for the zone it serves, NXDOMAIN for anything else.
      const dns = dgram.createSocket('udp4');
      dns.on('message', (m, r) => {
        const known = m.includes(Buffer.from('\x04shop\x03lab\x00', 'latin1'));
        const reply = Buffer.concat([m.subarray(0, 2), Buffer.from([0x84, known ? 0x00 : 0x03]), m.subarray(4)]);
        dns.send(reply, r.port, r.address);
      });
      await new Promise<void>((res) => dns.bind(0, '127.0.0.1', () => res()));
      const dp = (dns.address() as { port: number }).port;
      expect(await run(probeCommand('127.0.0.1', dp, { kind: 'dns', name: 'shop.lab' }))).toBe(0);
      expect(await run(probeCommand('127.0.0.1', dp, { kind: 'dns', name: 'other.example' }))).not.toBe(0);
      dns.close();
      expect(await run(probeCommand('127.0.0.1', hp, { kind: 'http', path: '/broken' }))).not.toBe(0);
    } finally {
      udp.close();
      web.close();
    }
  }, 30_000);
});
