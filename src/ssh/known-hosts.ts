/**
 * OpenSSH known_hosts: which host keys the worker accepts. Plain and hashed (`|1|salt|hash`) host
 * fields, `[host]:port` for ports other than 22, wildcards and negations as OpenSSH reads them,
 * `@revoked` keys refused, `@cert-authority` lines ignored (no certificate support here).
 */
import { createHash, createHmac } from 'node:crypto';

export type HostField = { kind: 'patterns'; patterns: string[] } | { kind: 'hashed'; salt: Buffer; hash: Buffer };

export interface KnownHostEntry {
  /** 1-based line in the file, for messages. */
  line: number;
  marker?: 'revoked';
  hosts: HostField;
  keyType: string;
  /** The public key blob in SSH wire format, as the server presents it. */
  key: Buffer;
}

export type HostKeyVerdict = 'match' | 'mismatch' | 'unknown';

/** Reads the type string at the start of an SSH wire-format key blob. */
export function keyTypeOf(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || blob.length < 4 + len) return undefined;
  return blob.subarray(4, 4 + len).toString('latin1');
}

/** `SHA256:...` as `ssh-keygen -l` prints it. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function parseHostField(field: string): HostField | undefined {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return undefined;
    const s = Buffer.from(salt, 'base64');
    const h = Buffer.from(hash, 'base64');
    if (s.length === 0 || h.length !== 20) return undefined;
    return { kind: 'hashed', salt: s, hash: h };
  }
  const patterns = field.split(',').filter(Boolean).map((p) => p.toLowerCase());
  return patterns.length > 0 ? { kind: 'patterns', patterns } : undefined;
}

/**
 * Parses a known_hosts file. Malformed lines, comments and `@cert-authority` lines are skipped:
 * a line this parser cannot read can only ever fail to vouch for a host, never vouch wrongly.
 */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: 'revoked' | undefined;
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m === '@revoked') marker = 'revoked';
      else return; // @cert-authority or unknown markers
    }
    const [hostField, keyType, b64] = fields;
    if (!hostField || !keyType || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return;
    const hosts = parseHostField(hostField);
    const key = Buffer.from(b64, 'base64');
    if (!hosts || keyTypeOf(key) !== keyType) return;
    entries.push({ line: i + 1, ...(marker ? { marker } : {}), hosts, keyType, key });
  });
  return entries;
}

/** The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise. */
export function hostLookupName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

function globMatch(text: string, pattern: string): boolean {
  const re = new RegExp(
    `^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`,
    's',
  );
  return re.test(text);
}

/** OpenSSH's match_hostname: any negated match vetoes, else any positive match wins. */
function patternsMatch(name: string, patterns: string[]): boolean {
  let positive = false;
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (globMatch(name, p.slice(1))) return false;
    } else if (globMatch(name, p)) {
      positive = true;
    }
  }
  return positive;
}

function hostMatches(field: HostField, name: string): boolean {
  if (field.kind === 'patterns') return patternsMatch(name, field.patterns);
  const digest = createHmac('sha1', field.salt).update(name).digest();
  return digest.equals(field.hash);
}

/** The entries that name this host and port. */
export function entriesFor(entries: KnownHostEntry[], host: string, port: number): KnownHostEntry[] {
  const name = hostLookupName(host, port);
  return entries.filter((e) => hostMatches(e.hosts, name));
}

/**
 * Like {@link verifyHostKey} but tells a revoked key apart, for messages.
 */
export function checkHostKey(
  entries: KnownHostEntry[],
  host: string,
  port: number,
  keyBlob: Buffer,
): HostKeyVerdict | 'revoked' {
  const mine = entriesFor(entries, host, port);
  // A revoked key is refused whatever else vouches for it (`@revoked * ...` names every host).
  if (mine.some((e) => e.marker === 'revoked' && e.key.equals(keyBlob))) return 'revoked';
  const pinned = mine.filter((e) => e.marker === undefined);
  if (pinned.some((e) => e.key.equals(keyBlob))) return 'match';
  const presentedType = keyTypeOf(keyBlob);
  // A pinned key of the same type that differs is a changed key; a host known only by other key
  // types has never vouched for this one (OpenSSH refuses both under StrictHostKeyChecking).
  return pinned.some((e) => e.keyType === presentedType) ? 'mismatch' : 'unknown';
}

/**
 * Whether the key a server presents is the one known_hosts pins for `host:port`. `@revoked` keys
 * are a `mismatch`. Only `match` may proceed.
 */
export function verifyHostKey(entries: KnownHostEntry[], host: string, port: number, keyBlob: Buffer): HostKeyVerdict {
  const v = checkHostKey(entries, host, port, keyBlob);
  return v === 'revoked' ? 'mismatch' : v;
}

const ALGORITHMS_BY_KEY_TYPE: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};

/** ssh2's default host key algorithms, strongest first. */
export const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

/**
 * Host key algorithms to offer, those known_hosts pins for this host first (as OpenSSH orders
 * them), so a server with several host keys presents the one that is pinned.
 */
export function preferredHostKeyAlgorithms(entries: KnownHostEntry[], host: string, port: number): string[] {
  const pinned = entriesFor(entries, host, port)
    .filter((e) => e.marker === undefined)
    .flatMap((e) => ALGORITHMS_BY_KEY_TYPE[e.keyType] ?? []);
  return [...new Set([...pinned, ...DEFAULT_HOST_KEY_ALGORITHMS])];
}
