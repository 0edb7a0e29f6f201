/**
 * Guards of the plan schema that are about what a value is FOR rather than its characters: paths
 * a step deletes or overwrites, durations and counts a workflow must hold, argv words that reach
 * systemctl or a program, secret references. Each is a named validator so schema.ts applies it
 * to a field with a one-word change; each refusal says what is expected and why.
 */
import { z } from 'zod';
import { DNS_LABEL, hostAddressProblem, hostIpv4Problem, IPV4, subnetProblem } from './addresses';

/** Longest path a plan may name (PATH_MAX is 4096; nothing in a tenant is nested that deep). */
export const MAX_PATH = 1024;
/** A workflow holds this many containers (a child workflow each, history limits in DESIGN.md). */
export const MAX_CONTAINERS = 100;

/** A string of at most `max` characters; longer ones are refused with their length only. */
export const boundedText = (max: number) => z.string().max(max, `at most ${max} characters`);

/**
 * Refusals as zod custom issues: `check` returns what was expected, or undefined. `hint` goes to
 * the generated JSON Schema only (editors' coarse pattern); the check is what decides, with a
 * message precise enough to act on.
 */
function guarded(base: z.ZodString, check: (s: string) => string | undefined, hint: { pattern?: string; maxLength?: number } = {}): z.ZodString {
  return base
    .superRefine((s, ctx) => {
      const why = check(s);
      if (why) ctx.addIssue({ code: 'custom', message: why, input: s });
    })
    .meta(hint);
}

// ---------------------------------------------------------------------------------------- paths

const PATH_CHARS = /^\/[A-Za-z0-9._/-]*$/;

/**
 * Why `p` is not an absolute path in canonical form, or undefined. Canonical matters because the
 * runbook joins paths (`<staging>/<container>`) and compares them: `/opt//gbo`, `/opt/./gbo` and
 * `/opt/gbo/` all name /opt/gbo but would compare unequal, and `..` can climb out of any check.
 */
export function pathProblem(p: string): string | undefined {
  if (p.length > MAX_PATH) return `an absolute path of at most ${MAX_PATH} characters`;
  if (!PATH_CHARS.test(p)) return 'an absolute path of letters, digits, ".", "_", "-" and "/"';
  if (p === '/') return undefined;
  const segs = p.slice(1).split('/');
  if (segs.includes('..')) return 'a path without ".." segments';
  if (segs.includes('.')) return 'a path without "." segments (write it without /./)';
  if (p.endsWith('/')) return 'a path without a trailing "/"';
  if (segs.includes('')) return 'a path without empty segments ("//")';
  return undefined;
}

/**
 * System directories no step may delete, rsync --delete into, extract into or chown -R: the
 * directory itself and, for trees that never hold tenant data (`/etc`, `/usr` but `/usr/local`,
 * `/proc`, LXD's and Incus' own state, ...), everything below it as well.
 */
const SYSTEM_DIRS = new Set([
  '/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/libx32', '/media', '/mnt', '/opt',
  '/proc', '/root', '/run', '/sbin', '/snap', '/srv', '/sys', '/tmp', '/usr', '/usr/local', '/usr/local/bin',
  '/usr/local/lib', '/usr/local/sbin', '/usr/local/share', '/usr/local/etc', '/var', '/var/backups', '/var/cache',
  '/var/lib', '/var/local', '/var/lock', '/var/log', '/var/mail', '/var/opt', '/var/run', '/var/spool', '/var/tmp',
  '/var/www', '/var/snap', '/lost+found',
]);
const SYSTEM_TREES = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/run', '/sbin', '/sys',
  '/usr/bin', '/usr/include', '/usr/lib', '/usr/lib32', '/usr/lib64', '/usr/libexec', '/usr/sbin', '/usr/share', '/usr/src',
  '/var/lib/lxd', '/var/lib/incus', '/var/lib/lxcfs', '/var/lib/dpkg', '/var/lib/apt', '/var/lib/systemd', '/var/snap/lxd', '/snap'];

const within = (p: string, dir: string) => p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);

/** Why a canonical path cannot be the target of a destructive step, or undefined. */
export function destructiveTargetProblem(p: string): string | undefined {
  const bad = pathProblem(p);
  if (bad) return bad;
  if (SYSTEM_DIRS.has(p)) return `a dedicated directory, not the system directory ${p} (steps delete, overwrite or chown what is inside it)`;
  const tree = SYSTEM_TREES.find((t) => within(p, t));
  if (tree) return `a dedicated directory outside ${tree} (steps delete, overwrite or chown what is inside it)`;
  // A user's home itself (/home/<user>): an rsync --delete into it would empty the home.
  if (/^\/home\/[^/]+$/.test(p)) return `a dedicated directory below ${p}, not a home directory itself (steps delete what is inside it)`;
  return undefined;
}

/** An absolute path in canonical form. */
const PATH_HINT = { pattern: PATH_CHARS.source, maxLength: MAX_PATH };
export const canonicalPath = guarded(z.string(), pathProblem, PATH_HINT);

/** A directory that steps delete, rsync --delete into, extract into or chown -R. */
export const destructiveTarget = guarded(z.string(), destructiveTargetProblem, PATH_HINT);

/** `a` and `b` (canonical) overlap: equal, or one inside the other. */
export const pathsOverlap = (a: string, b: string): boolean => within(a, b) || within(b, a);

/** A single directory name (no "/", not "." or ".."): what sits directly below a root. */
export function dirNameProblem(d: string): string | undefined {
  if (d.length > 255) return 'a directory name of at most 255 characters';
  if (d === '.' || d === '..') return `a directory name other than "${d}" (it must sit below its root)`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(d)) return 'a directory name of letters, digits, ".", "_" and "-"';
  return undefined;
}

// ------------------------------------------------------------------------------------ addresses

export const hostAddressGuard = guarded(z.string(), hostAddressProblem, { maxLength: 253 });
/** An IPv4 address a host, a DNAT target or an A record can have. */
export const hostIpv4Guard = guarded(z.string(), (a) => (/^[\d.]+$/.test(a) ? hostIpv4Problem(a) : 'an IPv4 address such as 192.0.2.10'), { pattern: IPV4.source });
export const subnetGuard = guarded(z.string(), (c) => subnetProblem(c), { pattern: '^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$' });
export { IPV4, DNS_LABEL };

// ------------------------------------------------------------------------------------ durations

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/** Milliseconds of `90s`, `15m`, `2h`, `3d`, or undefined. */
export function durationMs(d: string): number | undefined {
  const m = DURATION.exec(d);
  return m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : undefined;
}

function fmt(ms: number): string {
  if (ms === 0) return '0s';
  for (const [u, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms >= n && ms % n === 0) return `${ms / n}${u}`;
  return `${ms}ms`;
}

/**
 * A duration between `min` and `max`: a zero poll interval spins, and a window of 10^20 days is
 * past what a timer can hold (and certainly a typo). `why` says what the bound protects.
 */
export function boundedDuration(min: number, max: number, why: string): z.ZodString {
  return guarded(z.string(), (d) => {
    const ms = durationMs(d);
    if (ms === undefined) return 'a duration such as 30s, 15m, 2h or 3d';
    if (ms < min || ms > max) return `a duration from ${fmt(min)} to ${fmt(max)} (${why})`;
    return undefined;
  }, { pattern: DURATION.source });
}
export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const DAY = 86_400_000;

// ------------------------------------------------------------------------------- argv and units

/**
 * A systemd unit name as `systemctl restart` takes it. It never starts with "-": `-H root@host`
 * would be systemctl's option to act on another machine.
 */
export const systemdUnit = guarded(z.string(), (u) =>
  u.length <= 256 && /^[A-Za-z0-9_][A-Za-z0-9:_.@-]*\.(service|socket|target|timer|path|mount)$/.test(u)
    ? undefined
    : 'a systemd unit name such as botserver.service (letters, digits, ":_.@-", not starting with "-", ending in .service, .socket, .target, .timer, .path or .mount)',
  { pattern: '^[A-Za-z0-9_][A-Za-z0-9:_.@-]*\\.(service|socket|target|timer|path|mount)$', maxLength: 256 },
);

/**
 * One argv: the first word is the program (a name or an absolute path, never an option: a
 * leading "-" would be read by whatever runs it, `incus exec` or sudo), the others plain words.
 */
export function argvProblem(argv: readonly string[]): { index: number; message: string } | undefined {
  const [program] = argv;
  if (program !== undefined && !/^(\/[A-Za-z0-9._/-]+|[A-Za-z0-9_][A-Za-z0-9._+-]*)$/.test(program)) {
    return { index: 0, message: 'a program name or absolute path as the first word (letters, digits, "._+-", not starting with "-")' };
  }
  const i = argv.findIndex((w, k) => k > 0 && !/^[A-Za-z0-9@%+=:,./_-]+$/.test(w));
  return i > 0 ? { index: i, message: 'a plain word' } : undefined;
}

export const argvWord = z.string().max(256, 'at most 256 characters').regex(/^[A-Za-z0-9@%+=:,./_-]+$/, 'a plain word');
/** A command as argv (at most `max` words), refused per word with its index. */
export const commandArgv = (max: number) =>
  z
    .array(argvWord)
    .min(1)
    .max(max)
    .superRefine((argv, ctx) => {
      const bad = argvProblem(argv);
      if (bad) ctx.addIssue({ code: 'custom', path: [bad.index], message: bad.message, input: argv[bad.index] });
    });

// ------------------------------------------------------------------------------ secret references

/**
 * Why `ref` is not a secret reference, or undefined. `file:` paths are absolute (or `~/` in the
 * worker's home) and canonical, so the worker's allowed-directory check cannot be climbed out of.
 */
export function secretRefProblem(ref: string): string | undefined {
  const expected = 'a secret reference: "agent", "env:NAME" or "file:/absolute/path"';
  if (ref === 'agent') return undefined;
  if (ref.startsWith('env:')) return /^env:[A-Z_][A-Z0-9_]{0,127}$/.test(ref) ? undefined : `${expected}; NAME in capitals, digits and "_"`;
  if (ref.startsWith('file:')) {
    const p = ref.slice('file:'.length);
    const abs = p.startsWith('~/') ? p.slice(1) : p;
    if (!abs.startsWith('/')) return `${expected}; a file: path is absolute (or ~/ in the worker's home)`;
    const bad = pathProblem(abs);
    return bad ? `${expected}; the file: path must be ${bad.replace(/^an? /, 'a ')}` : undefined;
  }
  return expected;
}

export const secretRefGuard = guarded(z.string(), secretRefProblem, { pattern: '^(agent|env:[A-Z_][A-Z0-9_]*|file:~?/[A-Za-z0-9._/-]+)$', maxLength: MAX_PATH + 6 });

// --------------------------------------------------------------------------- values in messages

/**
 * How a refused value appears in a message. Values that look like key material or a password are
 * described, never echoed: a plan is often where someone pasted a key by mistake, and validation
 * output lands in terminals, CI logs and tickets. `secretField` is for fields that hold secret
 * references (a plain word there is likely a password).
 */
export function describeValue(value: unknown, secretField = false): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|PRIVATE KEY/.test(value)) return 'a private key (not shown)';
  if (/-----BEGIN [A-Z0-9 ]+-----/.test(value)) return 'a PEM block (not shown)';
  if (/(^|\s)(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-ssh-ed25519@openssh\.com)\s+AAAA/.test(value) || /AAAA[A-Za-z0-9+/]{40,}/.test(value)) return 'an SSH key (not shown)';
  if (value.length > 256) return `a ${value.length}-character string (not shown)`;
  // Long runs of mixed-case letters and digits (base64, API tokens); paths have short segments.
  const tokenLike = (value.match(/[A-Za-z0-9+/=_-]{32,}/g) ?? []).some(
    (run) => /[A-Z]/.test(run) && /[a-z]/.test(run) && /\d/.test(run) && run.split('/').some((seg) => seg.length >= 24),
  );
  if (tokenLike) return `a ${value.length}-character token-like string (not shown)`;
  if (secretField && secretRefProblem(value) !== undefined) return `a ${value.length}-character string that is not a reference (not shown)`;
  return undefined;
}

/** Fields whose values are secret references: anything else there may be the secret itself. */
export const SECRET_FIELD = /^(sshKey|keyRef|knownHosts)$|password|passwd|secret|token|credential|privateKey/i;

// ------------------------------------------------------------------------------ dedicated roots

interface DataRoots {
  hosts: { source: { address: string }; destination: { address: string } };
  data: { sourceRoot: string; staging: string; tenantsRoot: string };
}

const isLoopback = (a: string) => a === 'localhost' || /^127\./.test(a);
/** Both addresses name this one machine as far as the plan can tell. */
export const sameHost = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase() || (isLoopback(a) && isLoopback(b));

/**
 * The data roots must not overlap where they share a filesystem. Staging and tenantsRoot are both
 * on the destination: the data step moves `<staging>/<c>` to `<tenantsRoot>/<tenant>/<c>` and
 * cleanup deletes `<staging>/<c>`, so one inside the other deletes or clobbers the other's data.
 * sourceRoot is on the source; when both hosts are the same machine, the rsync pull into a
 * staging inside sourceRoot copies into itself, and cleanup's `rm -rf <sourceRoot>/<folder>` can
 * delete the migrated copy.
 */
export function dedicatedDataRoots(plan: DataRoots, ctx: z.RefinementCtx): void {
  const { sourceRoot, staging, tenantsRoot } = plan.data;
  // Malformed roots already have their own issue; comparing them would only add noise.
  if ([sourceRoot, staging, tenantsRoot].some((p) => pathProblem(p) !== undefined)) return;
  const relation = (a: string, b: string) => (a === b ? 'equal to' : within(a, b) ? 'inside' : 'containing');
  if (pathsOverlap(staging, tenantsRoot)) {
    ctx.addIssue({
      code: 'custom',
      path: ['data', 'staging'],
      message: `a dedicated staging directory, not ${relation(staging, tenantsRoot)} data.tenantsRoot (${tenantsRoot}): the data step moves <staging>/<container> into <tenantsRoot>/<tenant>/<container> and cleanup deletes the staging copies`,
      input: staging,
    });
  }
  const { source, destination } = plan.hosts;
  if (!sameHost(source.address, destination.address)) return;
  for (const [field, p] of [['staging', staging], ['tenantsRoot', tenantsRoot]] as const) {
    if (pathsOverlap(p, sourceRoot)) {
      ctx.addIssue({
        code: 'custom',
        path: ['data', field],
        message: `a directory apart from data.sourceRoot (${sourceRoot}), not ${relation(p, sourceRoot)} it: source and destination are the same host (${destination.address}), and cleanup deletes <sourceRoot>/<folder>`,
        input: p,
      });
    }
  }
}
