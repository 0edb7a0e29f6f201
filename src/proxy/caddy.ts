/**
 * Caddyfile helpers for the proxy step: rewriting upstream addresses after containers move, and
 * the guide's two refusal checks (the global `storage file_system` block must be present, and the
 * vhost count must not drop). Pure functions over text, so they run in the worker and in tests
 * without a Caddy binary; `caddy adapt` JSON is the authoritative view when one is available.
 */

const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** True for a dotted-quad IPv4 address without leading zeros. */
export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Replaces each old IPv4 address of `map` by its new address wherever it occurs as a whole
 * address, and counts the replacements per old address (every key is present, 0 if unused).
 *
 * "Whole" means not glued to more address or name characters: `10.0.0.1` does not match inside
 * `10.0.0.12`, `110.0.0.1` or `10.0.0.1.5`, but does in `10.0.0.1:80`, `10.0.0.1/`, `10.0.0.1}`,
 * `http://10.0.0.1` or at the end of the text. All addresses are matched in ONE pass so a chain
 * (A→B, B→C, as when IPs are reused across hosts) maps A to B and B to C, never A to C — the
 * guide's `sed` per address would cascade. Everything else stays byte-identical.
 *
 * @throws if a key or value is not an IPv4 address (a typo would otherwise silently match nothing
 *   or write garbage into the proxy config).
 */
export function rewriteUpstreams(
  config: string,
  map: Record<string, string>,
): { text: string; replaced: Record<string, number> } {
  const replaced: Record<string, number> = {};
  const olds = Object.keys(map);
  for (const old of olds) {
    const neu = map[old];
    if (!isIpv4(old)) throw new Error(`rewriteUpstreams: not an IPv4 address: ${JSON.stringify(old)}`);
    if (neu === undefined || !isIpv4(neu)) throw new Error(`rewriteUpstreams: ${old} maps to a non-IPv4 value ${JSON.stringify(neu)}`);
    replaced[old] = 0;
  }
  if (olds.length === 0) return { text: config, replaced };
  // Longest first is not needed for correctness (the guards make matches whole), but keeps the
  // alternation cheap to reason about.
  const alternation = [...olds].sort((a, b) => b.length - a.length).map(escapeRegExp).join('|');
  // Before: no name/address character or dot. After: no name character, and no ".<digit>"
  // (which would make it a longer dotted string). Hyphen is allowed on both sides (ranges).
  const re = new RegExp(`(?<![\\w.])(?:${alternation})(?![\\w]|\\.\\d)`, 'g');
  const text = config.replace(re, (m) => {
    replaced[m] = (replaced[m] ?? 0) + 1;
    return map[m] as string;
  });
  return { text, replaced };
}

interface CaddyToken {
  text: string;
  line: number;
  /** Offsets in the text: [start, end). */
  start: number;
  end: number;
  /** Quoted tokens are never braces, even when their text is `{`. */
  quoted: boolean;
}

/**
 * Splits Caddyfile text into tokens the way Caddy's lexer does for what matters here: whitespace
 * separates, `"..."` and `` `...` `` quote (with `\"` escapes), `#` at a token start comments to
 * end of line. Heredocs (Caddy ≥ 2.7) are not handled; Debian's 2.6 has none.
 */
function tokenizeCaddyfile(text: string): CaddyToken[] {
  const tokens: CaddyToken[] = [];
  let i = 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const c = text[i] as string;
    if (c === '\n') {
      line++;
      i++;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    const startLine = line;
    const start = i;
    if (c === '"' || c === '`') {
      let s = '';
      i++;
      while (i < n && text[i] !== c) {
        if (c === '"' && text[i] === '\\' && text[i + 1] === '"') {
          s += '"';
          i += 2;
          continue;
        }
        if (text[i] === '\n') line++;
        s += text[i];
        i++;
      }
      i++; // closing quote (or end of text)
      tokens.push({ text: s, line: startLine, quoted: true, start, end: i });
      continue;
    }
    let s = '';
    while (i < n && !/\s/.test(text[i] as string)) {
      s += text[i];
      i++;
    }
    tokens.push({ text: s, line: startLine, quoted: false, start, end: i });
  }
  return tokens;
}

function normalizeRoot(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

/**
 * Whether the Caddyfile's global options block sets `storage file_system` with root `root`.
 *
 * Accepts `storage file_system { root <root> }` (any indentation, blank lines, comments, quoted
 * path, trailing slash) and the shorthand `storage file_system <root>`. Only the global options
 * block counts (the first block, with no site address): that is the only place Caddy reads
 * `storage`, and the guide requires it there or certificates are lost on restart.
 */
export function hasStorageBlock(config: string, root: string): boolean {
  const want = normalizeRoot(root);
  const toks = tokenizeCaddyfile(config);
  const isOpen = (t: CaddyToken | undefined) => t !== undefined && !t.quoted && t.text === '{';
  const isClose = (t: CaddyToken | undefined) => t !== undefined && !t.quoted && t.text === '}';
  if (!isOpen(toks[0])) return false; // no global options block
  let depth = 1;
  for (let i = 1; i < toks.length && depth > 0; i++) {
    const t = toks[i] as CaddyToken;
    if (isOpen(t)) {
      depth++;
      continue;
    }
    if (isClose(t)) {
      depth--;
      continue;
    }
    const prev = toks[i - 1];
    // A directive starts a line (or follows the block's opening brace).
    const startsDirective = prev === undefined || prev.line !== t.line || isOpen(prev);
    if (depth !== 1 || t.quoted || t.text !== 'storage' || !startsDirective) continue;
    const mod = toks[i + 1];
    if (!mod || mod.line !== t.line || mod.text !== 'file_system') continue;
    const next = toks[i + 2];
    if (!next) return false;
    if (!isOpen(next) && next.line === t.line) return normalizeRoot(next.text) === want;
    if (!isOpen(next)) continue;
    // Block form: look for `root <path>` directly inside it.
    let d = 1;
    for (let j = i + 3; j < toks.length && d > 0; j++) {
      const u = toks[j] as CaddyToken;
      if (isOpen(u)) d++;
      else if (isClose(u)) d--;
      else if (d === 1 && !u.quoted && u.text === 'root') {
        const v = toks[j + 1];
        if (v && v.line === u.line && !isClose(v) && normalizeRoot(v.text) === want) return true;
      }
    }
  }
  return false;
}

/** The `file_system` storage root from `caddy adapt` JSON, or undefined if storage is not set. */
export function storageRootFromAdapted(json: string): string | undefined {
  const cfg = JSON.parse(json) as { storage?: { module?: unknown; root?: unknown } };
  const s = cfg.storage;
  if (!s || s.module !== 'file_system' || typeof s.root !== 'string') return undefined;
  return s.root;
}

type AdaptedServers = Record<string, { routes?: { match?: { host?: unknown }[] }[] }>;

/**
 * Unique host names matched by top-level routes of `caddy adapt` JSON
 * (`apps.http.servers.*.routes[].match[].host`), sorted. The Caddyfile adapter puts each site's
 * addresses there; nested subroutes hold handlers, not vhosts, so they are not walked.
 */
export function adaptedHosts(json: string): string[] {
  const cfg = JSON.parse(json) as { apps?: { http?: { servers?: AdaptedServers } } };
  const hosts = new Set<string>();
  for (const server of Object.values(cfg.apps?.http?.servers ?? {})) {
    for (const route of server.routes ?? []) {
      for (const m of route.match ?? []) {
        if (Array.isArray(m.host)) for (const h of m.host) if (typeof h === 'string') hosts.add(h.toLowerCase());
      }
    }
  }
  return [...hosts].sort();
}

/** Number of unique vhosts in `caddy adapt` JSON (see {@link adaptedHosts}). */
export function countVhostsAdapted(json: string): number {
  return adaptedHosts(json).length;
}

/** The host of a site address: `https://a.example.com:443/path` → `a.example.com`. */
function hostOfAddress(address: string): string {
  return address
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/\/.*$/, '')
    .replace(/:\d*$/, '')
    .toLowerCase();
}

/**
 * Removes `names` from the Caddyfile's site addresses: an address whose host is one of them goes;
 * a site left with no address goes with its whole block. Everything else stays byte-identical.
 * Returns the text and the names found. The global options block and snippets are never touched.
 *
 * @throws on a site without braces (a one-site Caddyfile): there is no block to remove safely.
 */
export function removeSites(config: string, names: string[]): { text: string; removed: string[] } {
  const drop = new Set(names.map((n) => n.toLowerCase()));
  const toks = tokenizeCaddyfile(config);
  const isOpen = (t: CaddyToken | undefined) => t !== undefined && !t.quoted && t.text === '{';
  const isClose = (t: CaddyToken | undefined) => t !== undefined && !t.quoted && t.text === '}';
  const edits: { start: number; end: number; text: string }[] = [];
  const removed = new Set<string>();
  let i = 0;
  while (i < toks.length) {
    // A top-level entry: its label tokens (site addresses, a snippet name, or none for global options), then its block.
    const first = i;
    while (i < toks.length && !isOpen(toks[i])) i++;
    if (i >= toks.length) {
      if (first < toks.length) throw new Error(`removeSites: the site at line ${toks[first]!.line} has no braces; remove its addresses by hand`);
      break;
    }
    const open = i;
    let depth = 0;
    for (; i < toks.length; i++) {
      if (isOpen(toks[i])) depth++;
      else if (isClose(toks[i]) && --depth === 0) break;
    }
    const close = i++;
    const labels = toks.slice(first, open);
    if (labels.length === 0 || labels[0]!.text.startsWith('(')) continue;
    const addresses = labels
      .map((t) => t.text)
      .join(',')
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean);
    const keep = addresses.filter((a) => !drop.has(hostOfAddress(a)));
    if (keep.length === addresses.length) continue;
    for (const a of addresses) if (drop.has(hostOfAddress(a))) removed.add(hostOfAddress(a));
    if (keep.length > 0) {
      edits.push({ start: labels[0]!.start, end: labels[labels.length - 1]!.end, text: keep.join(', ') });
    } else {
      // The whole site, with the blank line after it.
      let end = toks[close]?.end ?? config.length;
      if (config[end] === '\n') end++;
      if (config[end] === '\n') end++;
      edits.push({ start: labels[0]!.start, end, text: '' });
    }
  }
  let text = config;
  for (const e of edits.sort((a, b) => b.start - a.start)) text = text.slice(0, e.start) + e.text + text.slice(e.end);
  return { text, removed: [...removed].sort() };
}
