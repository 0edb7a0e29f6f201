/**
 * Shell quoting for commands that run on remote hosts. Every argument that comes from a plan goes
 * through `q`, even though the schema already restricts names: two independent guards.
 *
 * Values the workflow only learns while it runs (a container's new address, the destination's
 * client certificate, a checksum digest) appear in commands as placeholders `{{kind:name}}`. The dry
 * run prints them as they are; `fillPlaceholders` replaces them with values that passed a strict
 * per-kind validator, quoted, so a learned value can never turn into shell syntax.
 *
 * Placement rule: `ip`, `addr`, `digest`, `stamp` and `idshift` values are plain words (quoting leaves them as they
 * are), so they may sit inside a quoted argument; `cert` and `pubkey` values need quotes of their
 * own and must stand as whole arguments. `sudo` wrapping happens after filling (`hostCommand`).
 */

import { IPV4 } from '../plan/addresses';

// `!` is literal in non-interactive shells except as a command's first word, where q() is never used.
const SAFE = /^[A-Za-z0-9_@%+=:,./!-]+$/;
const PLACEHOLDER = /\{\{(ip|addr|cert|pubkey|digest|stamp|idshift):([a-z0-9-]+)\}\}/g;

/** What each placeholder kind may be replaced with. */
const VALID: Record<string, RegExp> = {
  // The plan's own IPv4 pattern (plan/addresses.ts): canonical dotted quads only.
  ip: IPV4,
  addr: IPV4,
  cert: /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/,
  pubkey: /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) [A-Za-z0-9+/=]+( [A-Za-z0-9@._-]*)?$/,
  digest: /^files=\d+ sha256=[0-9a-f]{64}$/,
  stamp: /^\d{12}$/,
  // The host uid/gid a source container's root maps to (0: no shift); digits only.
  idshift: /^(0|[1-9]\d{0,9})$/,
};

export type PlaceholderKind = 'ip' | 'addr' | 'cert' | 'pubkey' | 'digest' | 'stamp' | 'idshift';

/** Quotes one argument for a POSIX shell. */
export function q(arg: string | number): string {
  const s = String(arg);
  if (s === '') return "''";
  if (SAFE.test(s.replace(PLACEHOLDER, 'x'))) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Joins arguments into one shell command line, each quoted. */
export function sh(...args: (string | number)[]): string {
  return args.map(q).join(' ');
}

/** A placeholder for a value learned at run time. */
export function ph(kind: PlaceholderKind, name: string): string {
  // A name outside the placeholder alphabet would stay in the command as raw text, unfilled and
  // unquoted: refuse to build such a command at all (validation refuses such names first).
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`cannot build a command for ${JSON.stringify(name)}: not a name a learned value can be kept under`);
  return `{{${kind}:${name}}}`;
}

/** Is this a dotted-quad IPv4 address (as opposed to a host name)? */
export const isIPv4 = (s: string): boolean => IPV4.test(s);

/**
 * A plan address as commands use it: an IPv4 address as it is; a host name as the address
 * preflight resolved it to once (`{{addr:<role>}}`), so a DNS change mid-migration (the cutover
 * itself changes records) can never point a later step at another machine.
 */
export const pinnedAddress = (address: string, role: string): string => (IPV4.test(address) ? address : ph('addr', role));

/** A container's address on the destination bridge, known only after it starts. */
export const ipOf = (container: string): string => ph('ip', container);

/** Keys (`kind:name`) of the placeholders a command still holds. */
export function placeholdersIn(command: string): string[] {
  return [...command.matchAll(PLACEHOLDER)].map((m) => `${m[1]}:${m[2]}`);
}

/** Checks a learned value against its placeholder kind; returns an error message or undefined. */
function invalidValue(kind: PlaceholderKind, value: string): string | undefined {
  return VALID[kind]?.test(value) ? undefined : `not a valid ${kind}: ${JSON.stringify(value.slice(0, 80))}`;
}

/**
 * Replaces the placeholders whose values are known (`values['ip:proxy']`), quoting each value.
 * Unknown ones stay as they are; `strict` makes them an error instead, so a half-filled command
 * never reaches a shell.
 */
export function fillPlaceholders(command: string, values: Record<string, string>, strict = false): string {
  return command.replace(PLACEHOLDER, (whole, kind: PlaceholderKind, name: string, at: number) => {
    const key = `${kind}:${name}`;
    const value = values[key];
    if (value === undefined) {
      if (strict) throw new Error(`no value known yet for ${key}`);
      return whole;
    }
    const bad = invalidValue(kind, value);
    if (bad) throw new Error(`${key}: ${bad}`);
    // A quoted value inside quotes would end them (a plan value that looks like a placeholder).
    if (q(value) !== value && !unquotedAt(command, at)) throw new Error(`${key}: its value needs quotes of its own, but the placeholder stands inside quotes`);
    return q(value);
  });
}

/** Is position `at` of a command outside every quote and command substitution? */
function unquotedAt(command: string, at: number): boolean {
  const stack: string[] = [];
  for (let i = 0; i < at; i++) {
    const ch = command[i];
    const top = stack[stack.length - 1];
    if (top === "'") {
      if (ch === "'") stack.pop();
    } else if (ch === '\\') {
      i++;
    } else if (ch === '$' && command[i + 1] === '(') {
      stack.push('(');
      i++;
    } else if (top === '"') {
      if (ch === '"') stack.pop();
    } else if (ch === "'" || ch === '"' || ch === '(') {
      stack.push(ch);
    } else if (ch === ')' && top === '(') {
      stack.pop();
    }
  }
  return stack.length === 0;
}

/** The command as the host runs it: placeholders filled, then wrapped for sudo where the plan says. */
export function hostCommand(command: string, values: Record<string, string>, sudo: boolean | undefined, strict = false): string {
  const filled = fillPlaceholders(command, values, strict);
  return sudo ? `sudo -n sh -c ${q(filled)}` : filled;
}
