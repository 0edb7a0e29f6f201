/**
 * Editing a tenant's BIND-style zone file (what CoreDNS's `file` plugin, knot and nsd serve) when
 * addresses move: replace whole RRsets, bump the SOA serial, and leave every other byte alone so
 * the diff an operator reviews shows only what changed. Pure text in, text out.
 *
 * Supported syntax: `$ORIGIN`, `$TTL`, comments, quoted strings, parentheses spanning lines
 * (multi-line SOA), `@`, relative and absolute names, blank owner (inherits the previous one),
 * TTL/class in either order, BIND TTL units (`1h30m`). `$INCLUDE` and `$GENERATE` are refused:
 * records we cannot see could conflict with the ones we write.
 */
import { isIpv4 } from '../proxy/caddy';

/** One record to set. The RRset for (name, type) becomes exactly the values given for it. */
export interface ZoneRecord {
  /**
   * `@` for the apex; `name.` absolute; a name equal to the zone or ending in `.<zone>` is taken
   * as absolute even without the trailing dot (guards against `chat.example.com.example.com`);
   * anything else is relative to the zone.
   */
  name: string;
  type: 'A' | 'NS';
  /** A: dotted quad. NS: host name, same rules as `name` (out-of-zone targets need the trailing dot). */
  value: string;
  /** Seconds. Omitted: keep the RRset's current TTL (or the zone default for a new RRset). */
  ttl?: number;
}

export interface ZoneUpdate {
  text: string;
  oldSerial: number;
  /** Equals `oldSerial` when nothing changed. */
  newSerial: number;
  /** `<fqdn> <TYPE>` of each RRset that changed, in input order; empty when the zone already matched. */
  changed: string[];
}

// ---- lexing ------------------------------------------------------------------------------------

interface Token {
  /** Text with quotes removed (escapes kept as written). */
  text: string;
  line: number;
  /** Column range of the raw token (quotes included) in its line. */
  start: number;
  end: number;
}

/** One logical entry: a directive or a record, possibly over several lines via parentheses. */
interface Entry {
  firstLine: number;
  lastLine: number;
  tokens: Token[];
  /** The first line starts with whitespace: the owner is inherited. */
  blankOwner: boolean;
}

/** Splits keeping each line's terminator, so joining the lines gives back the exact text. */
function splitLines(text: string): string[] {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  return lines;
}

function lineBody(line: string): string {
  return line.replace(/\r?\n$/, '');
}

function lexEntries(lines: string[]): Entry[] {
  const entries: Entry[] = [];
  let cur: Entry | undefined;
  let depth = 0;
  for (let li = 0; li < lines.length; li++) {
    const s = lineBody(lines[li] as string);
    if (depth === 0) {
      cur = { firstLine: li, lastLine: li, tokens: [], blankOwner: /^[ \t]/.test(s) };
    }
    const entry = cur as Entry;
    entry.lastLine = li;
    let i = 0;
    while (i < s.length) {
      const c = s[i] as string;
      if (c === ' ' || c === '\t' || c === '\r') {
        i++;
      } else if (c === ';') {
        break;
      } else if (c === '(') {
        depth++;
        i++;
      } else if (c === ')') {
        if (depth === 0) throw new Error(`zone line ${li + 1}: unbalanced ")"`);
        depth--;
        i++;
      } else if (c === '"') {
        const start = i;
        let t = '';
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) {
            t += s.slice(i, i + 2);
            i += 2;
          } else {
            t += s[i];
            i++;
          }
        }
        if (i >= s.length) throw new Error(`zone line ${li + 1}: unterminated quoted string`);
        i++;
        entry.tokens.push({ text: t, line: li, start, end: i });
      } else {
        const start = i;
        while (i < s.length && !/[ \t\r;()"]/.test(s[i] as string)) i += s[i] === '\\' && i + 1 < s.length ? 2 : 1;
        entry.tokens.push({ text: s.slice(start, i), line: li, start, end: i });
      }
    }
    if (depth === 0 && entry.tokens.length > 0) entries.push(entry);
  }
  if (depth !== 0) throw new Error('zone: unbalanced "(" at end of file');
  return entries;
}

// ---- names and values --------------------------------------------------------------------------

function fqdn(name: string): string {
  return name.endsWith('.') ? name : name + '.';
}

/** Resolves a zone-file name (as written in the file) against the origin; result lower-case, absolute. */
function resolveName(name: string, origin: string): string {
  if (name === '@') return origin;
  if (name.endsWith('.') && !name.endsWith('\\.')) return name.toLowerCase();
  return (origin === '.' ? `${name}.` : `${name}.${origin}`).toLowerCase();
}

/** Resolves a caller-given name (see {@link ZoneRecord.name}) against the zone apex. */
function resolveInput(name: string, apex: string): string {
  const n = name.trim();
  if (n === '') throw new Error('empty name');
  if (n === '@') return apex;
  const abs = fqdn(n).toLowerCase();
  if (n.endsWith('.') || abs === apex || abs.endsWith('.' + apex)) return abs;
  return resolveName(n, apex);
}

/** How a name is written at a point where `origin` is in effect: relative when below it. */
function writeName(name: string, origin: string, asOwner: boolean): string {
  if (name === origin) return asOwner ? '@' : name;
  if (origin !== '.' && name.endsWith('.' + origin)) return name.slice(0, -origin.length - 1);
  return name;
}

const LABEL = /^(?:\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$/;

function checkDomain(name: string, what: string): void {
  if (name === '.') return;
  const labels = name.slice(0, -1).split('.');
  if (name.length > 254 || labels.some((l, i) => !LABEL.test(l) || (l === '*' && i > 0))) throw new Error(`invalid ${what} ${JSON.stringify(name)}`);
}

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Parses a TTL (`3600`, `1h30m`); undefined if the token is not one. */
function parseTtl(tok: string): number | undefined {
  if (/^\d+$/.test(tok)) return Number(tok);
  if (!/^(\d+[smhdw])+$/i.test(tok)) return undefined;
  let total = 0;
  for (const m of tok.matchAll(/(\d+)([smhdw])/gi)) total += Number(m[1]) * (UNIT[(m[2] as string).toLowerCase()] as number);
  return total;
}

const CLASSES = new Set(['IN', 'CH', 'HS', 'CS']);

// ---- parsing records ---------------------------------------------------------------------------

interface RecordEntry {
  entry: Entry;
  owner: string;
  type: string;
  /** The TTL token if written on this record. */
  ttlToken?: Token;
  /** Effective TTL in seconds (explicit, else $TTL, else previous explicit, else SOA minimum). */
  ttl: number | undefined;
  rdata: Token[];
  origin: string;
}

interface ParsedZone {
  lines: string[];
  records: RecordEntry[];
  /** Origin in effect at the end of the file (for appended lines). */
  endOrigin: string;
  /** Whether a $TTL is in effect at the end of the file. */
  endHasDefaultTtl: boolean;
}

function parseZone(text: string, apex: string): ParsedZone {
  const lines = splitLines(text);
  const records: RecordEntry[] = [];
  let origin = apex;
  let defaultTtl: number | undefined;
  let lastExplicitTtl: number | undefined;
  let prevOwner: string | undefined;
  for (const entry of lexEntries(lines)) {
    const t = entry.tokens;
    const first = t[0] as Token;
    if (!entry.blankOwner && first.text.startsWith('$')) {
      const dir = first.text.toUpperCase();
      const arg = t[1]?.text;
      if (dir === '$ORIGIN' && arg) origin = resolveName(arg, origin);
      else if (dir === '$TTL' && arg && parseTtl(arg) !== undefined) defaultTtl = parseTtl(arg);
      else throw new Error(`zone line ${entry.firstLine + 1}: unsupported directive ${JSON.stringify(lineBody(lines[entry.firstLine] as string).trim())}`);
      continue;
    }
    let idx = 0;
    let owner: string;
    if (entry.blankOwner) {
      if (prevOwner === undefined) throw new Error(`zone line ${entry.firstLine + 1}: record without owner at the start of the file`);
      owner = prevOwner;
    } else {
      owner = resolveName(first.text, origin);
      idx = 1;
    }
    let ttlToken: Token | undefined;
    for (let k = 0; k < 2; k++) {
      const tok = t[idx];
      if (!tok) break;
      if (!ttlToken && parseTtl(tok.text) !== undefined) {
        ttlToken = tok;
        idx++;
      } else if (CLASSES.has(tok.text.toUpperCase())) {
        idx++;
      }
    }
    const typeTok = t[idx];
    if (!typeTok) throw new Error(`zone line ${entry.firstLine + 1}: record without type`);
    const explicit = ttlToken ? parseTtl(ttlToken.text) : undefined;
    if (explicit !== undefined) lastExplicitTtl = explicit;
    const rec: RecordEntry = {
      entry,
      owner,
      type: typeTok.text.toUpperCase(),
      ttl: explicit ?? defaultTtl ?? lastExplicitTtl,
      rdata: t.slice(idx + 1),
      origin,
      ...(ttlToken ? { ttlToken } : {}),
    };
    records.push(rec);
    prevOwner = owner;
  }
  // RFC 1035 zones without $TTL fall back to the SOA minimum for records before any explicit TTL.
  const soaMin = records.find((r) => r.type === 'SOA')?.rdata[6]?.text;
  const min = soaMin !== undefined ? parseTtl(soaMin) : undefined;
  for (const r of records) if (r.ttl === undefined) r.ttl = min;
  return { lines, records, endOrigin: origin, endHasDefaultTtl: defaultTtl !== undefined };
}

/** Canonical form of a record value for comparison. */
function canonicalValue(type: string, raw: string, origin: string): string {
  return type === 'A' ? raw : resolveName(raw, origin);
}

// ---- serial ------------------------------------------------------------------------------------

/** YYYYMMDDnn serial rule: today's `YYYYMMDD00` (UTC) if the serial is older, else serial + 1. */
export function nextSerial(old: number, now: Date = new Date()): number {
  const today = now.getUTCFullYear() * 1_000_000 + (now.getUTCMonth() + 1) * 10_000 + now.getUTCDate() * 100;
  const next = old < today ? today : old + 1;
  // Serials are 32-bit (RFC 1982); a date-based zone is far from the limit, but never write past it.
  if (next > 0xffffffff) throw new Error(`SOA serial ${old} cannot be incremented within 32 bits`);
  return next;
}

// ---- update ------------------------------------------------------------------------------------

/**
 * Sets the given RRsets in a zone file and bumps the SOA serial if anything changed.
 *
 * For each (name, type) in `records`, the RRset becomes exactly the given values: existing
 * records of that name and type that are not wanted are removed (an unwanted single-line record
 * is rewritten in place to a wanted value, keeping its layout and comment), missing ones are
 * added next to the RRset or the name's other records. All other lines stay byte-identical.
 *
 * Idempotent: if every RRset already matches (values, and TTL when given), the text is returned
 * unchanged, `changed` is empty and the serial is NOT bumped, so re-running a step is a no-op.
 *
 * @param zone the zone apex (`example.com` or `example.com.`); also the initial `$ORIGIN`.
 * @param now  for the serial's date part (UTC).
 * @throws on unsupported syntax, no/multiple SOA at the apex, invalid names or values, a name
 *   outside the zone, conflicting TTLs for one RRset, or A/NS next to a CNAME.
 */
export function updateZone(zoneText: string, zone: string, records: ZoneRecord[], now: Date = new Date()): ZoneUpdate {
  const apex = fqdn(zone.trim()).toLowerCase();
  checkDomain(apex, 'zone name');
  const parsed = parseZone(zoneText, apex);
  const { lines } = parsed;
  const eol = lines[0]?.endsWith('\r\n') ? '\r\n' : '\n';

  const soas = parsed.records.filter((r) => r.type === 'SOA');
  const soa = soas[0];
  if (soas.length !== 1 || !soa || soa.owner !== apex) throw new Error(`zone ${apex}: expected exactly one SOA at the apex, found ${soas.length}${soa ? ` (owner ${soa.owner})` : ''}`);
  const serialTok = soa.rdata[2];
  if (!serialTok || !/^\d+$/.test(serialTok.text)) throw new Error(`zone ${apex}: SOA serial is not a number`);
  const oldSerial = Number(serialTok.text);

  // Group the wanted records into RRsets, in first-seen order.
  const wanted = new Map<string, { name: string; type: 'A' | 'NS'; values: string[]; ttl?: number }>();
  for (const r of records) {
    if (r.type !== 'A' && r.type !== 'NS') throw new Error(`unsupported record type ${String(r.type)}`);
    const name = resolveInput(r.name, apex);
    checkDomain(name, 'record name');
    if (name !== apex && !name.endsWith('.' + apex)) throw new Error(`${name} is outside zone ${apex}`);
    let value: string;
    if (r.type === 'A') {
      value = r.value.trim();
      if (!isIpv4(value)) throw new Error(`invalid A value ${JSON.stringify(r.value)} for ${name}`);
    } else {
      value = resolveInput(r.value, apex);
      checkDomain(value, 'NS target');
      if (value.startsWith('*')) throw new Error(`invalid NS target ${value}`);
    }
    if (r.ttl !== undefined && (!Number.isInteger(r.ttl) || r.ttl < 0 || r.ttl > 0x7fffffff)) throw new Error(`invalid TTL ${r.ttl} for ${name}`);
    const key = `${name} ${r.type}`;
    const set = wanted.get(key) ?? { name, type: r.type, values: [] };
    if (r.ttl !== undefined) {
      if (set.ttl !== undefined && set.ttl !== r.ttl) throw new Error(`conflicting TTLs for ${key}`);
      set.ttl = r.ttl;
    }
    if (!set.values.includes(value)) set.values.push(value);
    wanted.set(key, set);
  }

  // Edits, keyed by the record entry they touch; inserted lines hang after an entry (or the end).
  const deleted = new Set<RecordEntry>();
  const rewritten = new Map<RecordEntry, string>(); // entry's (single) line → new text
  const insertAfter = new Map<RecordEntry | 'end', { owner: string; text: string }[]>();
  const changed: string[] = [];

  const lineFor = (owner: string, origin: string, ttl: string | undefined, type: string, value: string) =>
    [writeName(owner, origin, true), ...(ttl !== undefined ? [ttl] : []), 'IN', type, type === 'A' ? value : writeName(value, origin, false)].join('\t');

  for (const [key, set] of wanted) {
    const sameName = parsed.records.filter((r) => r.owner === set.name);
    if (sameName.some((r) => r.type === 'CNAME')) throw new Error(`${set.name} has a CNAME; cannot add ${set.type} records`);
    const existing = sameName.filter((r) => r.type === set.type);
    const existingVals = existing.map((r) => canonicalValue(r.type, r.rdata[0]?.text ?? '', r.origin));
    const sameValues = existingVals.length === set.values.length && set.values.every((v) => existingVals.includes(v));
    const ttlOk = set.ttl === undefined || existing.every((r) => r.ttl === set.ttl);
    if (sameValues && ttlOk) continue;
    changed.push(key);

    const firstExisting = existing[0];
    // TTL text for new lines: the one asked for, else the RRset's written TTL, else none ($TTL),
    // else (no $TTL to fall back on) the effective one spelled out.
    const ttlText = (at: RecordEntry | undefined): string | undefined => {
      if (set.ttl !== undefined) return String(set.ttl);
      if (firstExisting?.ttlToken) return firstExisting.ttlToken.text;
      if (firstExisting && firstExisting.ttl !== undefined && !(at ? hasDefaultTtlAt(parsed, at) : parsed.endHasDefaultTtl)) return String(firstExisting.ttl);
      return undefined;
    };

    const simple = (r: RecordEntry) => r.entry.firstLine === r.entry.lastLine && r.rdata.length === 1;
    if (!ttlOk || !existing.every(simple)) {
      // Rewrite the whole RRset where it starts.
      const anchor = firstExisting as RecordEntry;
      for (const r of existing) deleted.add(r);
      const ttl = ttlText(anchor);
      insertAfter.set(anchor, [...(insertAfter.get(anchor) ?? []), ...set.values.map((v) => ({ owner: set.name, text: lineFor(set.name, anchor.origin, ttl, set.type, v) }))]);
      continue;
    }

    // Minimal edit: keep records already wanted, reuse unwanted ones in place, delete the rest.
    const keptVals = new Set<string>();
    const unwanted: RecordEntry[] = [];
    existing.forEach((r, i) => {
      const v = existingVals[i] as string;
      if (set.values.includes(v) && !keptVals.has(v)) keptVals.add(v);
      else unwanted.push(r);
    });
    const toAdd = set.values.filter((v) => !keptVals.has(v));
    for (const r of unwanted) {
      const v = toAdd.shift();
      if (v === undefined) {
        deleted.add(r);
        continue;
      }
      const tok = r.rdata[0] as Token;
      const line = lines[r.entry.firstLine] as string;
      rewritten.set(r, line.slice(0, tok.start) + (set.type === 'A' ? v : writeName(v, r.origin, false)) + line.slice(tok.end));
    }
    if (toAdd.length > 0) {
      const anchor: RecordEntry | 'end' = existing.filter((r) => !deleted.has(r)).pop() ?? sameName[sameName.length - 1] ?? 'end';
      const origin = anchor === 'end' ? parsed.endOrigin : anchor.origin;
      const ttl = ttlText(anchor === 'end' ? undefined : anchor);
      insertAfter.set(anchor, [...(insertAfter.get(anchor) ?? []), ...toAdd.map((v) => ({ owner: set.name, text: lineFor(set.name, origin, ttl, set.type, v) }))]);
    }
  }

  if (changed.length === 0) return { text: zoneText, oldSerial, newSerial: oldSerial, changed };

  const newSerial = nextSerial(oldSerial, now);
  const out = [...lines];
  const soaLine = out[serialTok.line] as string;
  out[serialTok.line] = soaLine.slice(0, serialTok.start) + String(newSerial) + soaLine.slice(serialTok.end);

  // Emit, tracking the owner the next blank-owner record would inherit: if a deletion or an
  // insertion changed it, write the owner out on that record so it keeps its name.
  const byFirstLine = new Map<number, RecordEntry>();
  for (const r of parsed.records) byFirstLine.set(r.entry.firstLine, r);
  const result: string[] = [];
  let inherited: string | undefined;
  const pushInserted = (items: { owner: string; text: string }[] | undefined) => {
    for (const it of items ?? []) {
      if (result.length > 0 && !(result[result.length - 1] as string).endsWith('\n')) result[result.length - 1] += eol;
      result.push(it.text + eol);
      inherited = it.owner;
    }
  };
  for (let li = 0; li < out.length; ) {
    const rec = byFirstLine.get(li);
    if (!rec) {
      result.push(out[li] as string);
      li++;
      continue;
    }
    const span = out.slice(li, rec.entry.lastLine + 1);
    li = rec.entry.lastLine + 1;
    if (!deleted.has(rec)) {
      let first = rewritten.get(rec) ?? (span[0] as string);
      if (rec.entry.blankOwner && inherited !== rec.owner) first = writeName(rec.owner, rec.origin, true) + first;
      result.push(first, ...span.slice(1));
      inherited = rec.owner;
    }
    pushInserted(insertAfter.get(rec));
  }
  pushInserted(insertAfter.get('end'));
  return { text: result.join(''), oldSerial, newSerial, changed };
}

/** Whether a `$TTL` directive precedes the record (so a line without TTL gets a defined default). */
function hasDefaultTtlAt(parsed: ParsedZone, at: RecordEntry): boolean {
  for (let li = at.entry.firstLine; li >= 0; li--) if (/^\$TTL\s/i.test(parsed.lines[li] as string)) return true;
  return false;
}
