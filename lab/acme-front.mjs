#!/usr/bin/env node
// The lab's ACME "front": an HTTPS reverse proxy in front of pebble that adds what pebble lacks,
// a Let's Encrypt-like rate limit. Plain Node (>= 20), node: built-ins only. Started by lab/up.sh
// (lab/acme-ca.sh), stopped by lab/down.sh; see docs/lab.md, "The lab's ACME CA".
//
//   node lab/acme-front.mjs --listen 198.18.0.1:14443 --cert C.pem --key K.pem \
//     --upstream https://127.0.0.1:14000 --upstream-ca lab-ca.pem --window-file FILE
//
// Every request goes to pebble unchanged, Host header included: pebble builds the URLs of its
// directory, Location and Link headers from Host, so they point at the front with no rewriting.
// While the rate-limit window is active, the new-order POST (the pathname of `newOrder` in
// pebble's directory) is answered here instead with HTTP 429 and an ACME `rateLimited` problem,
// a `Retry-After` and a fresh `Replay-Nonce` (taken from pebble, so the client's next JWS is
// valid there). The window is the RFC3339 UTC time in --window-file, read at every request
// (missing, empty or past: no limit), so a test changes it with one write and no signal.
// One log line per request on stdout (lab/up.sh sends it to the front's log file).
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    listen: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    upstream: { type: 'string' },
    'upstream-ca': { type: 'string' },
    'window-file': { type: 'string' },
  },
});
for (const k of ['listen', 'cert', 'key', 'upstream', 'upstream-ca', 'window-file']) {
  if (!opt[k]) {
    process.stderr.write(`acme-front: --${k} is required\n`);
    process.exit(2);
  }
}
const [listenHost, listenPort] = (() => {
  const i = opt.listen.lastIndexOf(':');
  return [opt.listen.slice(0, i), Number(opt.listen.slice(i + 1))];
})();
const upstream = new URL(opt.upstream);
const upstreamCa = readFileSync(opt['upstream-ca']);
// One keep-alive agent for pebble. servername '' : no SNI (pebble's listener cert names IP
// addresses, and an IP address is no valid SNI); the certificate is checked against the
// upstream's address instead (Node does that when servername is empty).
const agent = new https.Agent({ keepAlive: true, ca: upstreamCa, servername: '' });

const log = (...parts) => process.stdout.write(`${new Date().toISOString()} ${parts.join(' ')}\n`);

/** A request to pebble; resolves with the response, body collected. */
function toPebble(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: upstream.hostname, port: upstream.port || 443, method, path, headers, agent, servername: '' },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`pebble did not answer ${method} ${path} in 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

// The pathnames of pebble's directory (they do not depend on Host); fetched once, kept.
let directory = null;
async function paths(host) {
  if (directory) return directory;
  const r = await toPebble('GET', `${upstream.pathname.replace(/\/$/, '')}/dir`, { host, accept: 'application/json' });
  if (r.status !== 200) throw new Error(`pebble's directory: HTTP ${r.status}`);
  const d = JSON.parse(r.body.toString('utf8'));
  directory = { newOrder: new URL(d.newOrder).pathname, newNonce: new URL(d.newNonce).pathname };
  return directory;
}

/** The end of the active window as a Date, or null (no file, empty, unparsable or past). */
async function windowEnd() {
  let text;
  try {
    text = (await readFile(opt['window-file'], 'utf8')).trim();
  } catch {
    return null;
  }
  if (!text) return null;
  // RFC3339 UTC as `date -u +%Y-%m-%dT%H:%M:%SZ` writes it (fractions allowed).
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(text)) {
    log('WARN window file', JSON.stringify(text), 'is not an RFC3339 UTC time: no limit');
    return null;
  }
  const end = new Date(text);
  return end.getTime() > Date.now() ? end : null;
}

const rfc3339 = (d) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

async function rateLimited(req, res, end, pathOf) {
  // A fresh nonce from pebble: ACME (RFC 8555 §6.5) sends one with every response, errors
  // included, and clients use it for their next request.
  const nonce = await toPebble('HEAD', pathOf.newNonce, { host: req.headers.host ?? '' });
  const seconds = Math.max(1, Math.ceil((end.getTime() - Date.now()) / 1000));
  const body = JSON.stringify({
    type: 'urn:ietf:params:acme:error:rateLimited',
    detail: `too many certificates already issued: retry after ${rfc3339(end)}`,
    status: 429,
  });
  const headers = {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'retry-after': String(seconds),
    'cache-control': 'no-store',
    link: `<https://${req.headers.host}/dir>;rel="index"`,
  };
  if (nonce.headers['replay-nonce']) headers['replay-nonce'] = nonce.headers['replay-nonce'];
  res.writeHead(429, headers);
  res.end(body);
  return `429 rate-limited until ${rfc3339(end)} (Retry-After ${seconds})`;
}

async function handle(req, res) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  if (req.method === 'POST') {
    const end = await windowEnd();
    if (end) {
      const pathOf = await paths(req.headers.host ?? '');
      if (req.url.split('?')[0] === pathOf.newOrder) return rateLimited(req, res, end, pathOf);
    }
  }
  const headers = { ...req.headers };
  delete headers.connection;
  delete headers['keep-alive'];
  delete headers['transfer-encoding'];
  headers['content-length'] = String(body.length);
  const r = await toPebble(req.method, req.url, headers, req.method === 'GET' || req.method === 'HEAD' ? undefined : body);
  const out = { ...r.headers };
  delete out.connection;
  delete out['keep-alive'];
  delete out['transfer-encoding'];
  if (req.method !== 'HEAD') out['content-length'] = String(r.body.length);
  res.writeHead(r.status, out);
  res.end(req.method === 'HEAD' ? undefined : r.body);
  return String(r.status);
}

const server = https.createServer({ cert: readFileSync(opt.cert), key: readFileSync(opt.key) }, (req, res) => {
  handle(req, res).then(
    (status) => log(req.method, req.url, status),
    (e) => {
      log(req.method, req.url, '502', `upstream error: ${e.message}`);
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`acme-front: ${e.message}\n`);
    },
  );
});
// Who failed a handshake: the TLS socket has lost its peer's address when the client reset the
// connection, so the raw socket keeps it (a client that opens spare connections and drops them,
// as Go's HTTP client does, shows up here as ECONNRESET: harmless).
server.on('connection', (raw) => { raw.gboPeer = `${raw.remoteAddress}:${raw.remotePort}`; });
server.on('tlsClientError', (e, socket) => {
  log('TLS', socket._parent?.gboPeer ?? socket.remoteAddress ?? '-', 'handshake failed:', e.code ?? e.message);
});
server.listen(listenPort, listenHost, () => log(`listening on https://${opt.listen}, upstream ${opt.upstream}, window file ${opt['window-file']}`));
// Caddy keeps its connections open: close them, do not wait for them.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
