import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nextSerial, updateZone } from '../../src/dns/zone';
import { delegationProblems, glueOf } from '../../src/dns/delegation';
import { dnsQuery } from '../../src/probe/probes';

const ZONE = [
  '; example.test — tenant zone (served by CoreDNS `file`)',
  '$ORIGIN example.test.',
  '$TTL 3600',
  '@\tIN\tSOA\tns1.example.test. hostmaster.example.test. (',
  '\t\t2026031801\t; serial',
  '\t\t7200\t\t; refresh',
  '\t\t3600\t\t; retry',
  '\t\t1209600\t\t; expire',
  '\t\t300 )\t\t; minimum',
  '\tIN\tNS\tns1',
  '\tIN\tNS\tns2.other.test.',
  '\tIN\tMX\t10 mail',
  '\tIN\tTXT\t"v=spf1 mx -all"',
  '@\tIN\tA\t10.16.164.189',
  'ns1\tIN\tA\t10.16.164.155',
  '',
  '; web',
  'chat\t300\tIN\tA\t10.16.164.5 ; botserver',
  'www\tIN\tA\t10.16.164.189',
  '\tIN\tA\t10.16.164.190',
  '\tIN\tTXT\t"site; (not a comment)"',
  'mail\tIN\tA\t10.16.164.200',
  '*\tIN\tA\t10.16.164.189',
  '$ORIGIN sub.example.test.',
  'app\tIN\tA\t10.16.164.12',
  '',
].join('\n');

const MAR18 = new Date('2026-03-18T12:00:00Z');
const MAR19 = new Date('2026-03-19T00:30:00Z');

function lines(text: string): string[] {
  return text.split('\n');
}

/** The lines of `after` that differ from `before` (same length expected). */
function diff(before: string, after: string): [string, string][] {
  const a = lines(before);
  const b = lines(after);
  expect(b).toHaveLength(a.length);
  return a.map((l, i) => [l, b[i] as string] as [string, string]).filter(([x, y]) => x !== y);
}

describe('nextSerial', () => {
  it('follows YYYYMMDDnn', () => {
    expect(nextSerial(1, MAR18)).toBe(2026031800);
    expect(nextSerial(2026031799, MAR18)).toBe(2026031800);
    expect(nextSerial(2026031800, MAR18)).toBe(2026031801);
    expect(nextSerial(2026031801, MAR18)).toBe(2026031802);
    expect(nextSerial(2026031801, MAR19)).toBe(2026031900);
    // A serial ahead of the date (99 changes in a day, or a future date) keeps counting up.
    expect(nextSerial(2026031899, MAR18)).toBe(2026031900);
    expect(nextSerial(2027010100, MAR18)).toBe(2027010101);
    expect(() => nextSerial(0xffffffff, MAR18)).toThrow(/32 bits/);
  });
});

describe('updateZone', () => {
  it('rewrites an A record in place, keeping layout, TTL and comment, and bumps the serial', () => {
    const r = updateZone(ZONE, 'example.test', [{ name: 'chat', type: 'A', value: '10.107.115.229' }], MAR18);
    expect(r.changed).toEqual(['chat.example.test. A']);
    expect(r.oldSerial).toBe(2026031801);
    expect(r.newSerial).toBe(2026031802);
    expect(diff(ZONE, r.text)).toEqual([
      ['\t\t2026031801\t; serial', '\t\t2026031802\t; serial'],
      ['chat\t300\tIN\tA\t10.16.164.5 ; botserver', 'chat\t300\tIN\tA\t10.107.115.229 ; botserver'],
    ]);
    expect(updateZone(ZONE, 'example.test.', [{ name: 'chat', type: 'A', value: '10.107.115.229' }], MAR19).newSerial).toBe(2026031900);
  });

  it('is idempotent: a second application changes nothing and keeps the serial', () => {
    const recs = [
      { name: 'chat', type: 'A' as const, value: '10.107.115.229' },
      { name: 'www.example.test', type: 'A' as const, value: '10.107.115.189' },
      { name: '@', type: 'NS' as const, value: 'ns1' },
      { name: 'drive', type: 'A' as const, value: '10.107.115.114', ttl: 600 },
    ];
    const first = updateZone(ZONE, 'example.test', recs, MAR18);
    expect(first.changed).toHaveLength(4);
    const second = updateZone(first.text, 'example.test', recs, MAR19);
    expect(second).toEqual({ text: first.text, oldSerial: first.newSerial, newSerial: first.newSerial, changed: [] });
    // The zone already matching from the start is also a no-op.
    const noop = updateZone(ZONE, 'example.test', [{ name: 'chat.example.test.', type: 'A', value: '10.16.164.5', ttl: 300 }], MAR18);
    expect(noop).toEqual({ text: ZONE, oldSerial: 2026031801, newSerial: 2026031801, changed: [] });
  });

  it('replaces a whole RRset: the remaining blank-owner lines keep their owner', () => {
    const r = updateZone(ZONE, 'example.test', [{ name: 'www', type: 'A', value: '10.107.115.189' }], MAR18);
    expect(r.text).toContain('www\tIN\tA\t10.107.115.189\n\tIN\tTXT\t"site; (not a comment)"\nmail');
    expect(r.text).not.toContain('10.16.164.190');

    // Dropping the first (named) record: the kept blank-owner one must now name its owner.
    const k = updateZone(ZONE, 'example.test', [{ name: 'www', type: 'A', value: '10.16.164.190' }], MAR18);
    expect(k.text).toContain('; botserver\nwww\tIN\tA\t10.16.164.190\n\tIN\tTXT');
    expect(k.text).not.toContain('10.16.164.189\n\tIN\tA');
  });

  it('replaces apex NS records, writing in-zone targets relative to $ORIGIN', () => {
    const r = updateZone(ZONE, 'example.test', [
      { name: '@', type: 'NS', value: 'ns1.example.test.' },
      { name: '@', type: 'NS', value: 'ns3' },
    ], MAR18);
    expect(r.changed).toEqual(['example.test. NS']);
    expect(diff(ZONE, r.text)).toEqual([
      ['\t\t2026031801\t; serial', '\t\t2026031802\t; serial'],
      ['\tIN\tNS\tns2.other.test.', '\tIN\tNS\tns3'],
    ]);
  });

  it('adds records: next to the name, or at the end relative to the last $ORIGIN', () => {
    const r = updateZone(ZONE, 'example.test', [
      { name: 'drive', type: 'A', value: '10.107.115.114' },
      { name: 'mail', type: 'A', value: '10.16.164.200' },
      { name: 'mail', type: 'A', value: '10.107.115.200' },
    ], MAR18);
    expect(r.changed).toEqual(['drive.example.test. A', 'mail.example.test. A']);
    expect(r.text).toContain('mail\tIN\tA\t10.16.164.200\nmail\tIN\tA\t10.107.115.200\n*\tIN\tA');
    expect(r.text.endsWith('app\tIN\tA\t10.16.164.12\ndrive.example.test.\tIN\tA\t10.107.115.114\n')).toBe(true);
  });

  it('handles names below a later $ORIGIN, and wildcards', () => {
    const r = updateZone(ZONE, 'example.test', [
      { name: 'app.sub', type: 'A', value: '10.107.115.12' },
      { name: '*', type: 'A', value: '10.107.115.189' },
    ], MAR18);
    expect(r.changed).toEqual(['app.sub.example.test. A', '*.example.test. A']);
    expect(r.text).toContain('*\tIN\tA\t10.107.115.189\n$ORIGIN sub.example.test.\napp\tIN\tA\t10.107.115.12\n');
  });

  it('rewrites the RRset with the new TTL when a TTL changes', () => {
    const r = updateZone(ZONE, 'example.test', [{ name: 'chat', type: 'A', value: '10.16.164.5', ttl: 60 }], MAR18);
    expect(r.changed).toEqual(['chat.example.test. A']);
    expect(r.text).toContain('; web\nchat\t60\tIN\tA\t10.16.164.5\nwww');
    // Same TTL as the effective $TTL: nothing to do.
    expect(updateZone(ZONE, 'example.test', [{ name: 'mail', type: 'A', value: '10.16.164.200', ttl: 3600 }], MAR18).changed).toEqual([]);
  });

  it('keeps CRLF line endings and single-line SOAs', () => {
    const crlf = '$TTL 300\r\nexample.test. IN SOA ns1.example.test. h.example.test. 7 3600 600 86400 300\r\n@ IN NS ns1\r\nns1 IN A 10.0.0.1';
    const r = updateZone(crlf, 'example.test', [{ name: 'ns1', type: 'A', value: '10.0.0.2' }, { name: 'x', type: 'A', value: '10.0.0.3' }], MAR18);
    expect(r.text).toBe('$TTL 300\r\nexample.test. IN SOA ns1.example.test. h.example.test. 2026031800 3600 600 86400 300\r\n@ IN NS ns1\r\nns1 IN A 10.0.0.2\r\nx\tIN\tA\t10.0.0.3\r\n');
  });

  it('accepts TTL and class in either order, and BIND TTL units', () => {
    const z = '$TTL 1h\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns IN 1h30m A 10.0.0.1\nb 5400 IN A 10.0.0.2\n';
    expect(updateZone(z, 'example.test', [{ name: 'ns', type: 'A', value: '10.0.0.1', ttl: 5400 }], MAR18).changed).toEqual([]);
    const r = updateZone(z, 'example.test', [{ name: 'b', type: 'A', value: '10.0.0.9' }], MAR18);
    expect(r.text).toContain('\nb 5400 IN A 10.0.0.9\n');
  });

  it('refuses what it cannot do safely', () => {
    const soaOnly = '@ IN SOA ns h 1 1 1 1 1\n';
    expect(() => updateZone(ZONE, 'example.test', [{ name: 'x.other.test.', type: 'A', value: '10.0.0.1' }])).toThrow(/outside zone/);
    expect(() => updateZone(ZONE, 'example.test', [{ name: 'x', type: 'A', value: '10.0.0.256' }])).toThrow(/invalid A value/);
    expect(() => updateZone(ZONE, 'example.test', [{ name: 'bad_-', type: 'A', value: '10.0.0.1' }])).toThrow(/invalid record name/);
    expect(() => updateZone(ZONE, 'example.test', [{ name: 'x', type: 'A', value: '10.0.0.1', ttl: 1 }, { name: 'x', type: 'A', value: '10.0.0.2', ttl: 2 }])).toThrow(/conflicting TTLs/);
    expect(() => updateZone(`${soaOnly}w IN CNAME www\n`, 'example.test', [{ name: 'w', type: 'A', value: '10.0.0.1' }])).toThrow(/CNAME/);
    expect(() => updateZone(`$INCLUDE other.zone\n${soaOnly}`, 'example.test', [])).toThrow(/unsupported directive/);
    expect(() => updateZone('@ IN NS ns\n', 'example.test', [])).toThrow(/exactly one SOA/);
    expect(() => updateZone(`${soaOnly}${soaOnly}`, 'example.test', [])).toThrow(/exactly one SOA/);
    expect(() => updateZone('@ IN SOA ns h (1 1 1 1 1\n', 'example.test', [])).toThrow(/unbalanced/);
    expect(() => updateZone(`${soaOnly}\tIN A 10.0.0.1 ; ok\n`.replace('@', '\t'), 'example.test', [])).toThrow(/without owner/);
  });
});

function which(cmd: string): string | undefined {
  try {
    return execFileSync('which', [cmd], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The edits a migration makes: every tenant address moves, plus a new name and NS change. */
const MIGRATION = [
  { name: '@', type: 'A' as const, value: '10.107.115.189' },
  { name: 'ns1', type: 'A' as const, value: '10.107.115.155' },
  { name: 'chat', type: 'A' as const, value: '10.107.115.229' },
  { name: 'www', type: 'A' as const, value: '10.107.115.189' },
  { name: 'mail', type: 'A' as const, value: '10.107.115.200' },
  { name: '*', type: 'A' as const, value: '10.107.115.189' },
  { name: 'app.sub', type: 'A' as const, value: '10.107.115.4' },
  { name: 'drive', type: 'A' as const, value: '10.107.115.114', ttl: 300 },
  { name: '@', type: 'NS' as const, value: 'ns1' },
  { name: '@', type: 'NS' as const, value: 'ns2.example.test.' },
  { name: 'ns2', type: 'A' as const, value: '10.107.115.156' },
];

// Checkers from Debian's packages validate the output when installed. These tests are only
// registered when the tool is present (a skip would count as a failure under CI=true); which
// checker ran is visible in the test names.
const checkers: [string, (file: string) => string[]][] = [];
const kz = which('kzonecheck');
if (kz) checkers.push(['kzonecheck', (f) => [kz, '-o', 'example.test', f]]);
const named = which('named-checkzone');
if (named) checkers.push(['named-checkzone', (f) => [named, '-k', 'fail', 'example.test', f]]);
const nsdCheck = which('nsd-checkzone');
if (nsdCheck) checkers.push(['nsd-checkzone', (f) => [nsdCheck, 'example.test', f]]);

// Registered only when some checker is installed (an empty describe makes jest fail the file).
if (checkers.length > 0) describe('zone checkers on the output', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'zone-test-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const [tool, argv] of checkers) {
    it(`${tool} accepts the original and the migrated zone`, () => {
      const run = (text: string, name: string) => {
        const f = join(dir, name);
        writeFileSync(f, text);
        const [cmd, ...args] = argv(f);
        return execFileSync(cmd as string, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      };
      run(ZONE, 'orig.zone');
      const r = updateZone(ZONE, 'example.test', MIGRATION, MAR18);
      expect(r.changed.length).toBeGreaterThan(0);
      run(r.text, 'migrated.zone');
    });
  }
});

// With nsd installed, serve the migrated zone and ask it with the worker's own DNS probe.
const nsd = which('nsd');
// Not registered without nsd (a skip would fail under CI=true).
if (nsd) describe('nsd serves the migrated zone', () => {
  let dir = '';
  let proc: ChildProcess | undefined;
  let port = 0;
  const migrated = updateZone(ZONE, 'example.test', MIGRATION, MAR18);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'zone-nsd-'));
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
    port = sock.address().port;
    await new Promise<void>((resolve) => sock.close(() => resolve()));
    writeFileSync(join(dir, 'example.test.zone'), migrated.text);
    // A parent zone delegating other.test (a referral with glue), as a registrar's servers answer.
    writeFileSync(
      join(dir, 'test.zone'),
      [
        '$ORIGIN test.',
        '$TTL 300',
        '@ IN SOA ns.test. hostmaster.test. ( 1 7200 3600 1209600 300 )',
        '@ IN NS ns.test.',
        'ns IN A 192.0.2.1',
        'other IN NS ns1.other.test.',
        'other IN NS ns.elsewhere.example.',
        'ns1.other IN A 192.0.2.53',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'nsd.conf'),
      [
        'server:',
        `  ip-address: 127.0.0.1@${port}`,
        `  port: ${port}`,
        '  do-ip6: no',
        '  username: ""',
        '  chroot: ""',
        `  zonesdir: "${dir}"`,
        '  database: ""',
        `  zonelistfile: "${dir}/zone.list"`,
        `  xfrdfile: "${dir}/xfrd.state"`,
        `  xfrdir: "${dir}"`,
        `  pidfile: "${dir}/nsd.pid"`,
        `  logfile: "${dir}/nsd.log"`,
        '  server-count: 1',
        'remote-control:',
        '  control-enable: no',
        'zone:',
        '  name: example.test',
        `  zonefile: "${dir}/example.test.zone"`,
        'zone:',
        '  name: test',
        `  zonefile: "${dir}/test.zone"`,
        '',
      ].join('\n'),
    );
    proc = spawn(nsd as string, ['-d', '-c', join(dir, 'nsd.conf')], { stdio: 'ignore' });
    // Wait until it answers.
    for (let i = 0; i < 50; i++) {
      const r = await dnsQuery('127.0.0.1', port, 'example.test', 'SOA', 200);
      if (r.ok) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error('nsd did not answer within 5 s');
  });
  afterAll(async () => {
    if (proc && proc.exitCode === null) {
      const exited = new Promise((res) => proc?.once('exit', res));
      proc.kill('SIGTERM');
      await exited;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers with the new serial, addresses and NS set', async () => {
    const soa = await dnsQuery('127.0.0.1', port, 'example.test', 'SOA', 2000);
    expect(soa.aa).toBe(true);
    expect(soa.answers[0]?.data).toBe(`ns1.example.test. hostmaster.example.test. ${migrated.newSerial} 7200 3600 1209600 300`);
    const chat = await dnsQuery('127.0.0.1', port, 'chat.example.test', 'A', 2000);
    expect(chat.answers).toEqual([{ name: 'chat.example.test.', type: 'A', ttl: 300, data: '10.107.115.229' }]);
    const www = await dnsQuery('127.0.0.1', port, 'www.example.test', 'A', 2000);
    expect(www.answers.map((a) => a.data)).toEqual(['10.107.115.189']);
    const wild = await dnsQuery('127.0.0.1', port, 'anything.example.test', 'A', 2000);
    expect(wild.answers.map((a) => a.data)).toEqual(['10.107.115.189']);
    const drive = await dnsQuery('127.0.0.1', port, 'drive.example.test', 'A', 2000);
    expect(drive.answers).toEqual([{ name: 'drive.example.test.', type: 'A', ttl: 300, data: '10.107.115.114' }]);
    const app = await dnsQuery('127.0.0.1', port, 'app.sub.example.test', 'A', 2000);
    expect(app.answers.map((a) => a.data)).toEqual(['10.107.115.4']);
    const ns = await dnsQuery('127.0.0.1', port, 'example.test', 'NS', 2000);
    expect(ns.answers.map((a) => a.data).sort()).toEqual(['ns1.example.test.', 'ns2.example.test.']);
  });

  it("judges a parent's referral: NS in the authority section, glue in the additional one", async () => {
    const referral = await dnsQuery('127.0.0.1', port, 'other.test', 'NS', 2000);
    expect(referral.aa).toBe(false);
    expect(referral.authority?.map((a) => a.data).sort()).toEqual(['ns.elsewhere.example.', 'ns1.other.test.']);
    const planned = { zone: 'other.test', nameservers: ['ns1.other.test', 'ns.elsewhere.example.'], glue: { 'ns1.other.test': '192.0.2.53' } };
    expect(delegationProblems(referral, planned)).toEqual([]);
    expect(delegationProblems(referral, { ...planned, nameservers: ['ns1.other.test', 'ns2.other.test'], glue: { 'ns1.other.test': '192.0.2.54', 'ns2.other.test': '192.0.2.55' } })).toEqual([
      'NS ns2.other.test missing (refers to ns1.other.test, ns.elsewhere.example)',
      'NS ns.elsewhere.example still listed',
      'glue ns1.other.test A 192.0.2.53, want 192.0.2.54',
      'glue ns2.other.test A none, want 192.0.2.55',
    ]);
    expect(glueOf('other.test', ['ns1.other.test', 'ns.elsewhere.example'], [{ name: 'ns1', type: 'A', value: '192.0.2.53' }, { name: '@', type: 'A', value: '192.0.2.9' }])).toEqual({ 'ns1.other.test': '192.0.2.53' });
  });
});
