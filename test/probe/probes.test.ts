import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { buildDnsQuery, dnsQuery, parseDnsResponse, tcpProbe, tlsCertificate } from '../../src/probe/probes';

const LOOP = '127.0.0.1';

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOP, () => resolve((server.address() as net.AddressInfo).port));
  });
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A loopback port nothing listens on: bind, read the port, close. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await close(s);
  return port;
}

describe('tcpProbe', () => {
  let server: net.Server;
  let port = 0;
  beforeAll(async () => {
    server = net.createServer((c) => c.end());
    port = await listen(server);
  });
  afterAll(() => close(server));

  it('connects to a listening port', async () => {
    const r = await tcpProbe(LOOP, port, 2000);
    expect(r.ok).toBe(true);
    expect(r.error).toBeUndefined();
    expect(r.ms).toBeGreaterThanOrEqual(0);
    expect(r.ms).toBeLessThan(2000);
  });

  it('reports a refused connection on a closed port', async () => {
    const r = await tcpProbe(LOOP, await closedPort(), 2000);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/ECONNREFUSED/);
  });
  // No timeout case for TCP: a hanging connect needs an unroutable address, and tests only
  // talk to loopback. The DNS and TLS tests cover the probes' shared timeout pattern.
});

// ---- a tiny authoritative DNS responder -------------------------------------------------------

interface Rr {
  name: string;
  type: number;
  ttl: number;
  rdata: (offsets: Map<string, number>, at: number) => Buffer;
}

/** Encodes a name, compressing against names already written (offsets of their suffixes). */
function encName(name: string, offsets: Map<string, number>, at: number): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  const out: Buffer[] = [];
  let pos = at;
  for (let i = 0; i < labels.length; i++) {
    const suffix = labels.slice(i).join('.').toLowerCase();
    const ptr = offsets.get(suffix);
    if (ptr !== undefined) {
      out.push(Buffer.from([0xc0 | (ptr >> 8), ptr & 0xff]));
      return Buffer.concat(out);
    }
    if (pos < 0x3fff) offsets.set(suffix, pos);
    const b = Buffer.from(labels[i] as string);
    out.push(Buffer.from([b.length]), b);
    pos += 1 + b.length;
  }
  out.push(Buffer.from([0]));
  return Buffer.concat(out);
}

const ZONE = 'example.test';
const RECORDS: Rr[] = [
  { name: 'chat.example.test', type: 1, ttl: 300, rdata: () => Buffer.from([10, 107, 115, 229]) },
  { name: 'www.example.test', type: 1, ttl: 60, rdata: () => Buffer.from([10, 107, 115, 189]) },
  { name: 'www.example.test', type: 1, ttl: 60, rdata: () => Buffer.from([10, 107, 115, 190]) },
  { name: 'example.test', type: 2, ttl: 3600, rdata: (o, at) => encName('ns1.example.test', o, at) },
  { name: 'example.test', type: 2, ttl: 3600, rdata: (o, at) => encName('ns2.other.test', o, at) },
  {
    name: 'example.test',
    type: 6,
    ttl: 3600,
    rdata: (o, at) => {
      const m = encName('ns1.example.test', o, at);
      const r = encName('hostmaster.example.test', o, at + m.length);
      const nums = Buffer.alloc(20);
      [2026031801, 7200, 3600, 1209600, 300].forEach((n, i) => nums.writeUInt32BE(n, i * 4));
      return Buffer.concat([m, r, nums]);
    },
  },
];

type Mode = 'normal' | 'wrong-id-first' | 'silent' | 'truncated' | 'garbage';

function respond(query: Buffer, mode: Mode): Buffer[] {
  const id = query.readUInt16BE(0);
  let pos = 12;
  const labels: string[] = [];
  while ((query[pos] as number) !== 0) {
    const len = query[pos] as number;
    labels.push(query.subarray(pos + 1, pos + 1 + len).toString());
    pos += 1 + len;
  }
  const qname = labels.join('.');
  const qtype = query.readUInt16BE(pos + 1);
  const question = query.subarray(12, pos + 5);
  const offsets = new Map<string, number>();
  // The question name sits at offset 12: later names point back into it.
  for (let i = 0, at = 12; i < labels.length; i++) {
    offsets.set(labels.slice(i).join('.').toLowerCase(), at);
    at += 1 + (labels[i] as string).length;
  }
  const lname = qname.toLowerCase();
  const inZone = lname === ZONE || lname.endsWith('.' + ZONE);
  const matches = RECORDS.filter((r) => r.name === lname && r.type === qtype);
  const exists = RECORDS.some((r) => r.name === lname);
  const rcode = !inZone ? 5 : exists ? 0 : 3;
  const rd = (query.readUInt16BE(2) & 0x0100) !== 0;
  let flags = 0x8000 | (inZone ? 0x0400 : 0) | (rd ? 0x0100 : 0) | rcode;
  if (mode === 'truncated') flags |= 0x0200;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(matches.length, 6);
  const parts: Buffer[] = [header, question];
  let at = 12 + question.length;
  for (const rr of matches) {
    const name = encName(rr.name, offsets, at);
    const fixed = Buffer.alloc(10);
    const rdata = rr.rdata(offsets, at + name.length + 10);
    fixed.writeUInt16BE(rr.type, 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(rr.ttl, 4);
    fixed.writeUInt16BE(rdata.length, 8);
    parts.push(name, fixed, rdata);
    at += name.length + 10 + rdata.length;
  }
  const reply = Buffer.concat(parts);
  if (mode === 'garbage') return [reply.subarray(0, 20)];
  if (mode === 'wrong-id-first') {
    const stray = Buffer.from(reply);
    stray.writeUInt16BE((id + 1) & 0xffff, 0);
    return [stray, reply];
  }
  return [reply];
}

describe('dnsQuery against a hand-written UDP responder', () => {
  let server: dgram.Socket;
  let port = 0;
  let mode: Mode = 'normal';
  const seen: Buffer[] = [];

  beforeAll(async () => {
    server = dgram.createSocket('udp4');
    server.on('message', (msg, rinfo) => {
      seen.push(msg);
      if (mode === 'silent') return;
      for (const b of respond(msg, mode)) server.send(b, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => server.bind(0, LOOP, () => resolve()));
    port = server.address().port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    mode = 'normal';
  });

  it('sends RD=0 with a random ID', async () => {
    seen.length = 0;
    await dnsQuery(LOOP, port, 'chat.example.test', 'A', 2000);
    await dnsQuery(LOOP, port, 'chat.example.test', 'A', 2000);
    expect(seen).toHaveLength(2);
    for (const q of seen) expect(q.readUInt16BE(2)).toBe(0);
    const ids = new Set(seen.map((q) => q.readUInt16BE(0)));
    // Two random 16-bit IDs collide with probability 1/65536; accept that flake risk.
    expect(ids.size).toBe(2);
  });

  it('decodes A answers', async () => {
    const r = await dnsQuery(LOOP, port, 'www.example.test.', 'A', 2000);
    expect(r).toEqual({
      ok: true,
      rcode: 0,
      aa: true,
      answers: [
        { name: 'www.example.test.', type: 'A', ttl: 60, data: '10.107.115.189' },
        { name: 'www.example.test.', type: 'A', ttl: 60, data: '10.107.115.190' },
      ],
    });
  });

  it('decodes NS answers with compression pointers', async () => {
    const r = await dnsQuery(LOOP, port, 'example.test', 'NS', 2000);
    expect(r.ok).toBe(true);
    expect(r.answers.map((a) => [a.name, a.type, a.data])).toEqual([
      ['example.test.', 'NS', 'ns1.example.test.'],
      ['example.test.', 'NS', 'ns2.other.test.'],
    ]);
  });

  it('decodes SOA answers', async () => {
    const r = await dnsQuery(LOOP, port, 'Example.Test', 'SOA', 2000);
    expect(r.ok).toBe(true);
    expect(r.aa).toBe(true);
    expect(r.answers).toEqual([{ name: 'Example.Test.', type: 'SOA', ttl: 3600, data: 'ns1.Example.Test. hostmaster.Example.Test. 2026031801 7200 3600 1209600 300' }]);
  });

  it('reports NXDOMAIN and REFUSED with their rcodes', async () => {
    const nx = await dnsQuery(LOOP, port, 'nope.example.test', 'A', 2000);
    expect(nx).toMatchObject({ ok: false, rcode: 3, aa: true, answers: [], error: 'NXDOMAIN' });
    const refused = await dnsQuery(LOOP, port, 'elsewhere.test', 'A', 2000);
    expect(refused).toMatchObject({ ok: false, rcode: 5, aa: false, error: 'REFUSED' });
  });

  it('treats NODATA as ok with no answers', async () => {
    const r = await dnsQuery(LOOP, port, 'chat.example.test', 'NS', 2000);
    expect(r).toEqual({ ok: true, rcode: 0, aa: true, answers: [] });
  });

  it('ignores a datagram with another ID and takes the real reply', async () => {
    mode = 'wrong-id-first';
    const r = await dnsQuery(LOOP, port, 'chat.example.test', 'A', 2000);
    expect(r.ok).toBe(true);
    expect(r.answers[0]?.data).toBe('10.107.115.229');
  });

  it('flags truncation, malformed replies, silence and a closed port', async () => {
    mode = 'truncated';
    expect((await dnsQuery(LOOP, port, 'chat.example.test', 'A', 2000)).error).toMatch(/truncated/);
    mode = 'garbage';
    expect(await dnsQuery(LOOP, port, 'chat.example.test', 'A', 2000)).toMatchObject({ ok: false, rcode: -1, error: expect.stringMatching(/^malformed response/) });
    mode = 'silent';
    expect(await dnsQuery(LOOP, port, 'chat.example.test', 'A', 300)).toMatchObject({ ok: false, error: 'timeout after 300 ms' });
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, LOOP, () => resolve()));
    const closed = sock.address().port;
    await new Promise<void>((resolve) => sock.close(() => resolve()));
    const r = await dnsQuery(LOOP, closed, 'chat.example.test', 'A', 1000);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/ECONNREFUSED|timeout/);
  });

  it('rejects invalid names without sending', async () => {
    const r = await dnsQuery(LOOP, port, `${'a'.repeat(64)}.example.test`, 'A', 500);
    expect(r).toMatchObject({ ok: false, error: expect.stringMatching(/over-long label/) });
  });

  it('refuses a compression loop', () => {
    const q = buildDnsQuery(7, 'x.test', 'NS');
    const header = Buffer.from([0, 7, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    const question = q.subarray(12);
    const loopAt = 12 + question.length;
    const rr = Buffer.concat([Buffer.from([0xc0, 12]), Buffer.from([0, 2, 0, 1, 0, 0, 0, 60, 0, 2]), Buffer.from([0xc0 | (loopAt >> 8), loopAt & 0xff])]);
    // The rdata name points at itself.
    const selfAt = loopAt + 12;
    rr.writeUInt16BE(0xc000 | selfAt, 12);
    expect(() => parseDnsResponse(Buffer.concat([header, question, rr]), 7, 'x.test', 'NS')).toThrow(/loop/);
  });
});

// ---- TLS ---------------------------------------------------------------------------------------

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Makes a CA (key + cert) named `name` in dir. */
function makeCa(dir: string, name: string): void {
  openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '3', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

/** Makes a leaf for `cn` signed by CA `ca`; negative days give an already expired certificate. */
function makeLeaf(dir: string, name: string, cn: string, ca: string, days: number): void {
  openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}/O=Example`]);
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${cn},IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', String(days), '-out', `${name}.pem`, '-extfile', `${name}.ext`]);
}

describe('tlsCertificate against a loopback TLS server', () => {
  let dir = '';
  let server: tls.Server;
  let port = 0;
  let ca = '';
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'probe-tls-'));
    makeCa(dir, 'ca1');
    makeCa(dir, 'ca2');
    makeLeaf(dir, 'chat', 'chat.example.test', 'ca1', 3);
    makeLeaf(dir, 'expired', 'expired.example.test', 'ca1', -1);
    makeLeaf(dir, 'other', 'other.example.test', 'ca2', 3);
    ca = read('ca1.pem');
    const ctx = (name: string) => tls.createSecureContext({ key: read(`${name}.key`), cert: read(`${name}.pem`) });
    const contexts: Record<string, tls.SecureContext> = {
      'expired.example.test': ctx('expired'),
      'other.example.test': ctx('other'),
    };
    server = tls.createServer({ key: read('chat.key'), cert: read('chat.pem'), SNICallback: (sn, cb) => cb(null, contexts[sn]) }, (s) => s.end());
    // No context from SNICallback means "use the server's default" (the chat certificate).
    port = await listen(server);
  });
  afterAll(async () => {
    if (server) await close(server);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('accepts a valid certificate for its name, signed by the given CA', async () => {
    const r = await tlsCertificate(LOOP, port, 'chat.example.test', ca, 3000);
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.subject).toBe('CN=chat.example.test, O=Example');
    expect(r.altNames).toEqual(['chat.example.test', '127.0.0.1']);
    expect(Date.parse(r.validFrom as string)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(r.validTo as string)).toBeGreaterThan(Date.now() + 2 * 86400_000);
  });

  it('accepts an IP servername that is in the SAN', async () => {
    expect((await tlsCertificate(LOOP, port, '127.0.0.1', ca, 3000)).ok).toBe(true);
  });

  it('rejects a name the certificate does not cover, but still describes it', async () => {
    const r = await tlsCertificate(LOOP, port, 'mail.example.test', ca, 3000);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/name mismatch/);
    expect(r.subject).toBe('CN=chat.example.test, O=Example');
  });

  it('rejects an expired certificate', async () => {
    const r = await tlsCertificate(LOOP, port, 'expired.example.test', ca, 3000);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/CERT_HAS_EXPIRED|expired/i);
    expect(r.error).toMatch(/not valid now/);
    expect(Date.parse(r.validTo as string)).toBeLessThan(Date.now());
  });

  it('rejects a certificate from another CA', async () => {
    const r = await tlsCertificate(LOOP, port, 'other.example.test', ca, 3000);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/not trusted/);
    expect(r.error).not.toMatch(/name mismatch/);
  });

  it('rejects the test CA when only system roots are used', async () => {
    const r = await tlsCertificate(LOOP, port, 'chat.example.test', undefined, 3000);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/not trusted/);
  });

  it('reports handshake failures and closed ports', async () => {
    // resume(): drain the ClientHello, or the server never sees the client's FIN and close() hangs.
    const plain = net.createServer((c) => c.resume().end('not tls\r\n'));
    const p = await listen(plain);
    const r = await tlsCertificate(LOOP, p, 'chat.example.test', ca, 3000);
    await close(plain);
    expect(r.ok).toBe(false);
    expect(r.error).toBeTruthy();
    const c = await tlsCertificate(LOOP, await closedPort(), 'chat.example.test', ca, 3000);
    expect(c).toMatchObject({ ok: false, error: expect.stringMatching(/ECONNREFUSED/) });
  });
});

describe('udpProbe and httpProbe (the NAT probes the plan declares)', () => {
  it('a UDP reply must contain the expected text; an HTTP status 1xx–4xx answers, 5xx does not', async () => {
    const dgramMod = await import('node:dgram');
    const httpMod = await import('node:http');
    const { udpProbe: udp, httpProbe: http } = await import('../../src/probe/probes');
    const sock = dgramMod.createSocket('udp4');
    sock.on('message', (m, r) => sock.send(Buffer.from(`PONG ${m.toString()}`), r.port, r.address));
    await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
    const server = httpMod.createServer((req, res) => res.writeHead(req.url === '/ok' ? 404 : 502).end());
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
    try {
      const up = (sock.address() as { port: number }).port;
      const hp = (server.address() as { port: number }).port;
      expect(await udp('127.0.0.1', up, 'PING', 'PONG PING', 2000)).toMatchObject({ ok: true, reply: 'PONG PING' });
      expect(await udp('127.0.0.1', up, 'PING', 'NOPE', 2000)).toMatchObject({ ok: false, error: expect.stringContaining('does not contain') });
      expect(await http('127.0.0.1', hp, '/ok', 2000)).toMatchObject({ ok: true, reply: expect.stringMatching(/^HTTP\/1\.[01] 404/) });
      expect(await http('127.0.0.1', hp, '/bad', 2000)).toMatchObject({ ok: false });
    } finally {
      sock.close();
      server.close();
    }
  });
});
