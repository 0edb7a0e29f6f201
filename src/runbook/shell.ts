/**
 * Shell quoting for commands that run on remote hosts. Every argument that comes from a plan goes
 * through `q`, even though the schema already restricts names: two independent guards.
 *
 * Values the workflow only learns while it runs (a container's new address, the destination's
 * client certificate, a checksum digest) appear in commands as placeholders `{{kind:name}}`. The dry
 * run prints them as they are; `fillPlaceholders` replaces them with values that passed a strict
 * per-kind validator, quoted, so a learned value can never turn into shell syntax.
 *
 * Placement rule: `ip`, `digest`, `stamp` and `idshift` values are plain words (quoting leaves them as they
 * are), so they may sit inside a quoted argument; `cert` and `pubkey` values need quotes of their
 * own and must stand as whole arguments. `sudo` wrapping happens after filling (`hostCommand`).
 */

// `!` is literal in non-interactive shells except as a command's first word, where q() is never used.
const SAFE = /^[A-Za-z0-9_@%+=:,./!-]+$/;
const PLACEHOLDER = /\{\{(ip|cert|pubkey|digest|stamp|idshift):([a-z0-9-]+)\}\}/g;

/** What each placeholder kind may be replaced with. */
const VALID: Record<string, RegExp> = {
  ip: /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/,
  cert: /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/,
  pubkey: /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) [A-Za-z0-9+/=]+( [A-Za-z0-9@._-]*)?$/,
  digest: /^files=\d+ sha256=[0-9a-f]{64}$/,
  stamp: /^\d{12}$/,
  // The host uid/gid a source container's root maps to (0: no shift); digits only.
  idshift: /^(0|[1-9]\d{0,9})$/,
};

export type PlaceholderKind = 'ip' | 'cert' | 'pubkey' | 'digest' | 'stamp' | 'idshift';

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
  return `{{${kind}:${name}}}`;
}

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
  return command.replace(PLACEHOLDER, (whole, kind: PlaceholderKind, name: string) => {
    const key = `${kind}:${name}`;
    const value = values[key];
    if (value === undefined) {
      if (strict) throw new Error(`no value known yet for ${key}`);
      return whole;
    }
    const bad = invalidValue(kind, value);
    if (bad) throw new Error(`${key}: ${bad}`);
    return q(value);
  });
}

/** The command as the host runs it: placeholders filled, then wrapped for sudo where the plan says. */
export function hostCommand(command: string, values: Record<string, string>, sudo: boolean | undefined, strict = false): string {
  const filled = fillPlaceholders(command, values, strict);
  return sudo ? `sudo -n sh -c ${q(filled)}` : filled;
}
