/**
 * Network probes the worker runs to verify a migrated tenant: TCP reachability, authoritative DNS
 * answers, and TLS certificates as a browser would judge them. Built on Node's net/dgram/tls only
 * (no `dig`/`openssl` on the worker host needed). Probes never throw for network outcomes: they
 * resolve with `ok: false` and an `error`, so activities can report every failing check at once.
 */
import { lookup } from 'node:dns/promises';
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';

function elapsedMs(start: bigint): number {
  return Number((process.hrtime.bigint() - start) / 1000n) / 1000;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** Result of {@link tcpProbe}; `ms` is the time to connect (or to fail). */
export interface TcpProbeResult {
  ok: boolean;
  ms: number;
  error?: string;
}

/** Opens a TCP connection to host:port and closes it at once; ok if the connect completes in time. */
export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<TcpProbeResult> {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    let done = false;
    const socket = net.connect({ host, port });
    const finish = (r: Omit<TcpProbeResult, 'ms'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...r, ms: elapsedMs(start) });
    };
    const timer = setTimeout(() => finish({ ok: false, error: `timeout after ${timeoutMs} ms` }), timeoutMs);
    socket.once('connect', () => finish({ ok: true }));
    socket.once('error', (err) => finish({ ok: false, error: errorText(err) }));
  });
}

/** Query types {@link dnsQuery} builds and decodes. */
export type DnsQueryType = 'A' | 'SOA' | 'NS';

const QTYPE: Record<DnsQueryType, number> = { A: 1, NS: 2, SOA: 6 };
const TYPE_NAMES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA' };
const RCODE_NAMES: Record<number, string> = { 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED' };

/** One answer-section record. Names are absolute with a trailing dot, as in zone files and `dig`. */
export interface DnsAnswer {
  name: string;
  type: string;
  ttl: number;
  /** A: dotted quad; NS/CNAME/PTR: a name; SOA: "mname rname serial refresh retry expire minimum";
   * other types: RFC 3597 `\# <len> <hex>`. */
  data: string;
}

/** Result of {@link dnsQuery}. `rcode` is -1 when no valid response arrived. */
export interface DnsQueryResult {
  ok: boolean;
  rcode: number;
  answers: DnsAnswer[];
  /** Authoritative Answer flag: the server answered from its own zone, not a cache. */
  aa: boolean;
  /** The authority section (a parent's referral: the delegated zone's NS records) and the additional one (glue). */
  authority?: DnsAnswer[];
  additional?: DnsAnswer[];
  error?: string;
}

/** Encodes a domain name as DNS labels; accepts it with or without the trailing dot. */
function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const parts: Buffer[] = [];
  if (trimmed !== '') {
    for (const label of trimmed.split('.')) {
      const b = Buffer.from(label, 'ascii');
      if (b.length === 0 || b.length > 63) throw new Error(`invalid DNS name ${JSON.stringify(name)}: empty or over-long label`);
      parts.push(Buffer.from([b.length]), b);
    }
  }
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  if (out.length > 255) throw new Error(`invalid DNS name ${JSON.stringify(name)}: longer than 255 octets`);
  return out;
}

/** Builds a standard query: one question, class IN, RD=0 (we ask authoritative servers directly). */
export function buildDnsQuery(id: number, name: string, type: DnsQueryType): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0000, 2); // QR=0 OPCODE=0 RD=0
  header.writeUInt16BE(1, 4); // QDCOUNT
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(QTYPE[type], 0);
  tail.writeUInt16BE(1, 2); // IN
  return Buffer.concat([header, encodeName(name), tail]);
}

class Malformed extends Error {}

function need(buf: Buffer, offset: number, len: number): void {
  if (offset + len > buf.length) throw new Malformed(`truncated at offset ${offset}`);
}

function labelText(label: Buffer): string {
  let s = '';
  for (const c of label) {
    if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c);
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += '\\' + String(c).padStart(3, '0');
  }
  return s;
}

/** Reads a possibly compressed name at `offset`; returns it (absolute, trailing dot) and the offset after it. */
function readName(buf: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let jumps = 0;
  for (;;) {
    need(buf, pos, 1);
    const len = buf[pos] as number;
    if ((len & 0xc0) === 0xc0) {
      need(buf, pos, 2);
      if (next < 0) next = pos + 2;
      // Guard against pointer loops in hostile or broken packets.
      if (++jumps > 64) throw new Malformed('compression pointer loop');
      pos = ((len & 0x3f) << 8) | (buf[pos + 1] as number);
      continue;
    }
    if ((len & 0xc0) !== 0) throw new Malformed(`unsupported label type 0x${len.toString(16)}`);
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    need(buf, pos + 1, len);
    labels.push(labelText(buf.subarray(pos + 1, pos + 1 + len)));
    pos += 1 + len;
  }
  return { name: labels.length ? labels.join('.') + '.' : '.', next };
}

function decodeRdata(buf: Buffer, type: number, start: number, len: number): string {
  const end = start + len;
  const nameIn = (at: number) => {
    const r = readName(buf, at);
    if (r.next > end) throw new Malformed('name overruns rdata');
    return r;
  };
  switch (type) {
    case 1:
      if (len !== 4) throw new Malformed(`A rdata of ${len} bytes`);
      return [...buf.subarray(start, end)].join('.');
    case 2:
    case 5:
    case 12:
      return nameIn(start).name;
    case 6: {
      const m = nameIn(start);
      const r = nameIn(m.next);
      if (r.next + 20 !== end) throw new Malformed('SOA rdata length mismatch');
      const nums = [0, 4, 8, 12, 16].map((o) => buf.readUInt32BE(r.next + o));
      return [m.name, r.name, ...nums].join(' ');
    }
    default:
      return `\\# ${len} ${buf.subarray(start, end).toString('hex')}`;
  }
}

/**
 * Parses a DNS response to the query `id` for `name`/`type`. Checks the ID, QR bit and echoed
 * question so a stray or spoofed datagram is not taken as the answer.
 */
export function parseDnsResponse(buf: Buffer, id: number, name: string, type: DnsQueryType): DnsQueryResult {
  need(buf, 0, 12);
  if (buf.readUInt16BE(0) !== id) throw new Malformed('response ID does not match');
  const flags = buf.readUInt16BE(2);
  if ((flags & 0x8000) === 0) throw new Malformed('QR bit not set');
  const rcode = flags & 0x000f;
  const aa = (flags & 0x0400) !== 0;
  const tc = (flags & 0x0200) !== 0;
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  let pos = 12;
  const want = (name.endsWith('.') ? name : name + '.').toLowerCase();
  for (let i = 0; i < qd; i++) {
    const q = readName(buf, pos);
    need(buf, q.next, 4);
    const qtype = buf.readUInt16BE(q.next);
    if (i === 0 && (q.name.toLowerCase() !== want || qtype !== QTYPE[type])) throw new Malformed('question section does not match the query');
    pos = q.next + 4;
  }
  const section = (count: number): DnsAnswer[] => {
    const records: DnsAnswer[] = [];
    for (let i = 0; i < count; i++) {
      const r = readName(buf, pos);
      need(buf, r.next, 10);
      const rtype = buf.readUInt16BE(r.next);
      const ttl = buf.readUInt32BE(r.next + 4);
      const rdlen = buf.readUInt16BE(r.next + 8);
      const rdStart = r.next + 10;
      need(buf, rdStart, rdlen);
      // OPT (EDNS) in the additional section has no owner name of use: kept as raw rdata.
      records.push({ name: r.name, type: TYPE_NAMES[rtype] ?? `TYPE${rtype}`, ttl, data: decodeRdata(buf, rtype, rdStart, rdlen) });
      pos = rdStart + rdlen;
    }
    return records;
  };
  const answers = section(an);
  const authority = section(ns);
  const additional = section(ar);
  let error: string | undefined;
  if (tc) error = 'response truncated (TC set); TCP fallback is not implemented';
  else if (rcode !== 0) error = RCODE_NAMES[rcode] ?? `RCODE ${rcode}`;
  return { ok: error === undefined, rcode, answers, aa, ...(authority.length ? { authority } : {}), ...(additional.length ? { additional } : {}), ...(error !== undefined ? { error } : {}) };
}

/**
 * Sends one UDP query to server:port and decodes the answer section.
 *
 * ok means a well-formed, untruncated response with NOERROR arrived in time; a NODATA answer is
 * ok with `answers: []`, so callers compare `answers` themselves (and `aa` for authority).
 * Datagrams from other peers, or with another ID, are ignored until the timeout.
 */
export function dnsQuery(server: string, port: number, name: string, type: DnsQueryType, timeoutMs: number): Promise<DnsQueryResult> {
  const fail = (error: string): DnsQueryResult => ({ ok: false, rcode: -1, answers: [], aa: false, error });
  const id = randomInt(0, 0x10000);
  let packet: Buffer;
  try {
    packet = buildDnsQuery(id, name, type);
  } catch (err) {
    return Promise.resolve(fail(errorText(err)));
  }
  return new Promise((resolve) => {
    let done = false;
    const socket = dgram.createSocket(net.isIPv6(server) ? 'udp6' : 'udp4');
    const finish = (r: DnsQueryResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve(r);
    };
    const timer = setTimeout(() => finish(fail(`timeout after ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err) => finish(fail(errorText(err))));
    socket.on('message', (msg) => {
      try {
        finish(parseDnsResponse(msg, id, name, type));
      } catch (err) {
        // A mismatched ID or question may be a late reply to someone else: keep waiting.
        if (err instanceof Malformed && /ID does not match|question section/.test(err.message)) return;
        finish(fail(`malformed response: ${errorText(err)}`));
      }
    });
    // A connected UDP socket only accepts datagrams from the server's address and port.
    socket.connect(port, server, () => {
      socket.send(packet, (err) => {
        if (err) finish(fail(errorText(err)));
      });
    });
  });
}

/** Result of {@link tlsCertificate}. Certificate fields are filled whenever one was received. */
export interface TlsCertificateResult {
  ok: boolean;
  /** e.g. `CN=chat.example.test, O=Example` */
  subject?: string;
  /** The issuing certificate's subject, e.g. `C=US, O=Let's Encrypt, CN=R11` */
  issuer?: string;
  /** Subject alternative names without their `DNS:` / `IP Address:` prefixes. */
  altNames?: string[];
  /** ISO 8601 */
  validFrom?: string;
  /** ISO 8601 */
  validTo?: string;
  error?: string;
}

function formatSubject(subject: tls.PeerCertificate['subject'] | undefined): string | undefined {
  if (!subject) return undefined;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(subject)) {
    for (const one of Array.isArray(v) ? v : [v]) parts.push(`${k}=${String(one)}`);
  }
  return parts.join(', ');
}

/**
 * Connects with TLS and judges the server's certificate for `servername`: ok only if the chain
 * verifies against `caPem` (when given, it replaces the system roots) or the system roots,
 * `tls.checkServerIdentity(servername)` passes, and now is within notBefore..notAfter.
 *
 * Verification is done after the handshake (rejectUnauthorized off) so that a bad certificate is
 * still described — subject, names and dates tell the operator *why* it fails. No application
 * data is sent. A handshake that fails outright (e.g. Caddy's alert 80 before it has a
 * certificate) gives ok false with the TLS error.
 */
export function tlsCertificate(host: string, port: number, servername: string, caPem?: string, timeoutMs = 5000): Promise<TlsCertificateResult> {
  return new Promise((resolve) => {
    let done = false;
    const socket = tls.connect({
      host,
      port,
      // Node refuses SNI for IP literals (RFC 6066); identity is still checked against it below.
      ...(net.isIP(servername) ? {} : { servername }),
      ...(caPem !== undefined ? { ca: caPem } : {}),
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    const finish = (r: TlsCertificateResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, error: `timeout after ${timeoutMs} ms` }), timeoutMs);
    socket.once('error', (err) => finish({ ok: false, error: errorText(err) }));
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      if (!cert || Object.keys(cert).length === 0) {
        finish({ ok: false, error: 'server sent no certificate' });
        return;
      }
      const info: TlsCertificateResult = { ok: false };
      const subject = formatSubject(cert.subject);
      if (subject !== undefined) info.subject = subject;
      const issuer = formatSubject(cert.issuer);
      if (issuer !== undefined) info.issuer = issuer;
      if (cert.subjectaltname) info.altNames = cert.subjectaltname.split(/,\s*/).map((s) => s.replace(/^(DNS|IP Address|email|URI):/, ''));
      const from = new Date(cert.valid_from);
      const to = new Date(cert.valid_to);
      if (!Number.isNaN(from.getTime())) info.validFrom = from.toISOString();
      if (!Number.isNaN(to.getTime())) info.validTo = to.toISOString();
      const errors: string[] = [];
      if (!socket.authorized) errors.push(`certificate not trusted: ${String(socket.authorizationError ?? 'unknown reason')}`);
      const idErr = tls.checkServerIdentity(servername, cert);
      if (idErr) errors.push(`name mismatch: ${idErr.message}`);
      const now = Date.now();
      if (!(from.getTime() <= now && now <= to.getTime())) errors.push(`not valid now (${cert.valid_from} .. ${cert.valid_to})`);
      finish(errors.length ? { ...info, error: errors.join('; ') } : { ...info, ok: true });
    });
  });
}

/** Result of {@link udpProbe} and {@link httpProbe}. */
export interface ReplyProbeResult {
  ok: boolean;
  /** The reply (trimmed, printable part) or the status line. */
  reply?: string;
  error?: string;
}

/**
 * Sends one datagram to host:port and waits for a reply that contains `expect`. Replies from other
 * peers are dropped by the connected socket; a reply without the text is a failure.
 */
export function udpProbe(host: string, port: number, send: string, expect: string, timeoutMs: number): Promise<ReplyProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const finish = (r: ReplyProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, error: `no reply after ${timeoutMs} ms` }), timeoutMs);
    socket.on('error', (err) => finish({ ok: false, error: errorText(err) }));
    socket.on('message', (msg) => {
      const reply = msg.toString('latin1').replace(/[^\x20-\x7e]/g, '').slice(0, 200);
      finish(msg.toString('latin1').includes(expect) ? { ok: true, reply } : { ok: false, reply, error: `the reply does not contain ${JSON.stringify(expect)}` });
    });
    socket.connect(port, host, () => {
      socket.send(Buffer.from(send, 'latin1'), (err) => {
        if (err) finish({ ok: false, error: errorText(err) });
      });
    });
  });
}

/** An HTTP/1.0 GET of `path`; any status line 1xx–4xx counts as answering. */
export function httpProbe(host: string, port: number, path: string, timeoutMs: number): Promise<ReplyProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    let data = '';
    const socket = net.connect({ host, port });
    const finish = (r: ReplyProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const judge = () => {
      const line = data.split('\r\n')[0] ?? '';
      if (/^HTTP\/[0-9.]+ [1-4]\d\d\b/.test(line)) finish({ ok: true, reply: line });
      else finish({ ok: false, reply: line.slice(0, 120), error: line ? `status line ${JSON.stringify(line.slice(0, 80))}` : 'no HTTP answer' });
    };
    const timer = setTimeout(() => finish({ ok: false, error: `timeout after ${timeoutMs} ms` }), timeoutMs);
    socket.once('connect', () => socket.write(`GET ${path} HTTP/1.0\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
      if (data.includes('\r\n')) judge();
    });
    socket.once('end', judge);
    socket.once('error', (err) => finish({ ok: false, error: errorText(err) }));
  });
}

/** The worker's own network probes, injectable (tests give the workflow a fake network). */
export interface NetProbes {
  tcpProbe: typeof tcpProbe;
  dnsQuery: typeof dnsQuery;
  udpProbe: typeof udpProbe;
  httpProbe: typeof httpProbe;
  tlsCertificate: typeof tlsCertificate;
  /** Every IPv4 address a host name resolves to (the system resolver). */
  resolve4: (name: string) => Promise<string[]>;
}

const resolve4 = async (name: string): Promise<string[]> => (await lookup(name, { family: 4, all: true })).map((a) => a.address);

export const realNet: NetProbes = { tcpProbe, dnsQuery, udpProbe, httpProbe, tlsCertificate, resolve4 };
