/**
 * A stateful fake of both hosts (the LXD source, the Incus destination) for the workflow tests.
 *
 * `ScriptedHosts` answers by pattern and remembers nothing, so every check says "not there" and a
 * step that is not idempotent, runs twice or undoes the wrong thing goes unnoticed. Here each
 * command the runbook builds (src/runbook/build.ts) is recognised by a distinctive pattern and
 * applied to plain state objects; a check exits 0 only when the state holds its effect, and a
 * command fails the way the real host would (stopping a stopped container, adding a device twice).
 *
 * This is not a shell: a handful of wrappers (`test "$(X)" = V`, `X | grep -q P`, `! X >/dev/null
 * 2>&1`, ...) evaluate an inner command only when it is itself a recognised read-only query. Any
 * other command is refused loudly (exit 99, listed in `unscripted`), never answered with success.
 *
 * Faults for the workflow tests: `failNext` (fails without effect), `hang` (silent until its
 * signal aborts or `release()`), `slowTransfer` (a data pull printing rsync progress for a while),
 * `refuseConnect`. Observability: `log`, `effects`, `running()`,
 * `peakConcurrency()`, `sourceSnapshot()`, `destinationSnapshot()`.
 */
import { CancelledFailure } from '@temporalio/common';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandExecutor, CommandResult, HostTarget, RunOptions } from '../../src/activities/executor';
import { loadPlan } from '../../src/plan/load';
import { sourceNameOf, type ContainerPlan, type HostRole, type Plan } from '../../src/plan/schema';
import type { NetProbes } from '../../src/probe/probes';
import type { DeviceMap } from '../../src/runbook/build';
import { adaptedHosts } from '../../src/proxy/caddy';

// ---- the test plan -------------------------------------------------------------------------------

/** A worker known_hosts pinning a fresh ed25519 key for `host` (the pin step copies it to the destination). */
export function knownHostsFor(host: string): string {
  const raw = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const blob = Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]);
  const file = join(mkdtempSync(join(tmpdir(), 'gbo-kh-')), 'known_hosts');
  writeFileSync(file, `${host} ssh-ed25519 ${blob.toString('base64')}\n`);
  return file;
}

let planSeq = 0;

/**
 * examples/pragmatismo.yaml made safe for tests: a unique tenant, a worker known_hosts that pins
 * the source, no wait for old DNS TTLs, and nothing that reaches real addresses from the worker (no firewall, no port
 * forwards and their NAT probes, no service fixes). `overrides` replace top-level fields.
 */
export function testPlan(overrides: Partial<Plan> = {}): Plan {
  const example = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
  return {
    ...example,
    tenant: `op${Date.now() % 100000}x${planSeq++}`,
    hosts: { ...example.hosts, source: { ...example.hosts.source, knownHosts: `file:${knownHostsFor(example.hosts.source.address)}` } },
    destination: { ...example.destination, firewall: undefined },
    // The cutover's wait for old TTLs is a real timer: an hour in the example.
    dns: { ...example.dns, oldTtlSeconds: 0 },
    portForwards: [],
    serviceFixes: [],
    ...overrides,
  };
}

/**
 * test/plans/shop.yaml: a second tenant unlike pragmatismo (no Caddy, DNS hosted elsewhere, a UDP
 * service, renamed and stateless containers), with a unique tenant name and a worker known_hosts
 * that pins its source. Its port forwards stay: the fake's `net()` answers the NAT probes.
 */
export function shopPlan(overrides: Partial<Plan> = {}): Plan {
  const shop = loadPlan(join(__dirname, '..', 'plans', 'shop.yaml'));
  return {
    ...shop,
    tenant: `shop${Date.now() % 100000}x${planSeq++}`,
    hosts: { ...shop.hosts, source: { ...shop.hosts.source, knownHosts: `file:${knownHostsFor(shop.hosts.source.address)}` } },
    ...overrides,
  };
}

/** The plan's hosts as the workflow hands them to activities (`hostTargets` in src/workflows/run-steps.ts). */
export function hostTargetsOf(plan: Plan): Record<HostRole, HostTarget> {
  const pick = (role: HostRole): HostTarget => {
    const h = plan.hosts[role];
    return { role, address: h.address, port: h.port, user: h.user, sshKey: h.sshKey, ...(h.knownHosts ? { knownHosts: h.knownHosts } : {}) };
  };
  return { source: pick('source'), destination: pick('destination') };
}

// ---- state ---------------------------------------------------------------------------------------

/** A folder's files: path relative to the folder → content. */
export type Files = Record<string, string>;
export type Status = 'Running' | 'Stopped';

/** iptables, per table and chain: each rule as `iptables -S` prints it, without `-A <chain> `. */
export interface IptablesState {
  filter: Record<string, string[]>;
  nat: Record<string, string[]>;
}

/** A file's numeric owner, group and mode (octal, as `stat -c %a` prints it). */
export interface Meta {
  uid: number;
  gid: number;
  mode: string;
}

/** What both hosts have: data folders (path → files), single files (path → text), iptables. */
export interface HostFs {
  folders: Record<string, Files>;
  /** Owner, group and mode of each folder's files (as stored on that host: shifted, on an unprivileged source). */
  meta: Record<string, Record<string, Meta>>;
  files: Record<string, string>;
  iptables: IptablesState;
}

export interface SourceContainer {
  name: string;
  status: Status;
  /** The instance's own devices (what `lxc config device list` shows; profile devices are not here). */
  devices: DeviceMap;
  config: Record<string, string>;
  /** eth0's address while it runs. */
  address: string;
}

export interface SourceState extends HostFs {
  containers: Record<string, SourceContainer>;
  /** core.https_address ('' = not listening). */
  httpsAddress: string;
  /** Client certificates the LXD daemon trusts. */
  trusted: string[];
}

export interface ContainerFile {
  content: string;
  /** Numeric, as the container sees them. */
  uid: number;
  gid: number;
  mode: string;
  /** Written since the push (its mtime differs from the pushed one): counted, not failed, by the check. */
  modified: boolean;
}

export interface DestinationInstance {
  name: string;
  status: Status;
  devices: DeviceMap;
  config: Record<string, string>;
  /** DHCP lease on the bridge, kept across restarts. */
  ip?: string;
  /** `incus list` calls left before the address shows (DHCP takes a moment). */
  pollsUntilAddress: number;
  /** Files inside the container by absolute path (only what the migration puts there). */
  files: Record<string, ContainerFile>;
  /** /etc/passwd: name → uid. */
  users: Record<string, number>;
  /** Config each service last (re)loaded: `caddy`, `coredns`. */
  loaded: Record<string, string>;
  /** Left by an interrupted copy: its root disk is partial, so it does not start. */
  incomplete?: boolean;
}

export interface DestinationState extends HostFs {
  instances: Record<string, DestinationInstance>;
  /** The incus client certificate, once generated. */
  clientCert?: string;
  /** Incus remotes: name → URL. */
  remotes: Record<string, string>;
  ipForward: string;
  ufw: { active: boolean; allowed: string[]; routed: boolean };
}

export interface StatefulHostsOptions {
  /** `du -sb` bytes per container (plan name); default the size of its seeded files. Past 2 GiB is fine. */
  dataBytes?: Record<string, number>;
  /** `df` on the destination's staging folder. Default 500 GiB. */
  freeBytes?: number;
  /** Vhosts in the seeded Caddyfile. Default the plan's `caddy.minVhosts`. */
  vhosts?: number;
  /** `incus list` calls after a start before the instance shows its IPv4. Default 0. */
  addressAfterPolls?: number;
  /** Every command takes this long (abortable), so overlapping runs show in `peakConcurrency()`. */
  delayMs?: number;
  /**
   * Source containers that are unprivileged, with their idmap base (host uid = base + N). Default:
   * every container the plan does not mark privileged, at 1000000 (the lab's).
   */
  idmapBase?: Record<string, number>;
  /** Further files of a container's data, as the container sees them (owner, group, mode). */
  extraFiles?: Record<string, { path: string; content: string; uid: number; gid: number; mode: string }[]>;
  /** What a UDP service answers, by `container:port` (the probes' `expect` must be in it). */
  udpReplies?: Record<string, string>;
}

export interface LogEntry {
  host: HostRole;
  /** As built (the `sudo -n sh -c` wrapper removed). */
  command: string;
  at: number;
}

export interface Effect {
  host: HostRole;
  what: string;
}

export type CommandMatch = RegExp | ((command: string, host: HostRole) => boolean);

export interface HangOptions {
  /** How many matching commands hang. Default 1. */
  times?: number;
  /** Hang this long, silently, then complete (a long step that prints nothing). Default: until `release()`. */
  ms?: number;
  /**
   * The command has done half its work while it hangs: a copy exists but is unmarked, an rsync or
   * a push has half the files. Only for those; any other command records an `unscripted` entry.
   */
  halfDone?: boolean;
}

export interface SlowTransferOptions {
  /** The size the transfer pretends to move (the folder's files are what it really copies). */
  bytes: number;
  /** How long it takes, printing rsync progress all along. */
  ms: number;
  /** How many matching transfers are slow. Default 1. */
  times?: number;
}

/** One planned container's source side, as a test compares it before and after. */
export interface SourceContainerSnapshot {
  /** `Absent` once deleted (devices and config are then empty). */
  status: Status | 'Absent';
  devices: DeviceMap;
  /** Without `volatile.*` keys (LXD rewrites those on every start and stop). */
  config: Record<string, string>;
  /** Its data folder exists on the source. */
  data: boolean;
}

/** Keyed by the plan's container name (`tables`, not `pragmatismo-tables`). */
export type SourceSnapshot = Record<string, SourceContainerSnapshot>;

export interface DestinationSnapshot {
  instances: Record<string, { status: Status; devices: DeviceMap; config: Record<string, string>; ip?: string; files: string[]; incomplete?: true }>;
  folders: string[];
  files: string[];
  remotes: Record<string, string>;
  iptables: { filter: string[]; nat: string[] };
  ipForward: string;
  clientCert: boolean;
}

// ---- small helpers -------------------------------------------------------------------------------

const ok = (stdout = ''): CommandResult => ({ exitCode: 0, stdout, stderr: '' });
const fail = (stderr: string, exitCode = 1, stdout = ''): CommandResult => ({ exitCode, stdout, stderr: stderr === '' || stderr.endsWith('\n') ? stderr : `${stderr}\n` });
const lines = (xs: string[]) => xs.map((x) => `${x}\n`).join('');
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const nonVolatile = (config: Record<string, string>) => Object.fromEntries(Object.entries(config).filter(([k]) => !k.startsWith('volatile.')));

/** Splits one simple command line into words the way sh would (quotes, backslashes), expanding nothing. */
export function words(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unbalanced quote in ${line}`);
      cur += line.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (ch === '"') {
      for (i++; i < line.length && line[i] !== '"'; i++) {
        if (line[i] === '\\' && /["\\$`]/.test(line[i + 1] ?? '')) i++;
        cur += line[i];
      }
      if (i >= line.length) throw new Error(`unbalanced quote in ${line}`);
      inWord = true;
    } else if (ch === '\\') {
      cur += line[++i] ?? '';
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

/** One shell word, unquoted. */
const unq = (word: string): string => words(word)[0] ?? '';

/** The command inside `sudo -n sh -c '<inner>'` (the plan's sudo wrapping, see hostCommand). */
function unwrapSudo(command: string): { inner: string; sudo: boolean } {
  const wrapped = /^sudo -n sh -c '([\s\S]*)'$/.exec(command);
  return wrapped ? { inner: (wrapped[1] as string).replace(/'\\''/g, "'"), sudo: true } : { inner: command, sudo: false };
}

/**
 * A regex literal with `<name>` (instance), `<path>` (absolute path) and `<arg>` (one word) capture
 * groups, and `<1>`, `<2>` for backreferences to them (a literal `\\1` would refer to no group).
 */
function rx(re: RegExp): RegExp {
  return new RegExp(
    re.source
      .replace(/<name>/g, '([a-z][a-z0-9-]*)')
      .replace(/<path>/g, '(/[A-Za-z0-9._/-]*)')
      .replace(/<arg>/g, "('[^']*'|\\S+)")
      .replace(/<(\d)>/g, '\\$1'),
  );
}

/** grep's basic (or -E extended) pattern as a JS regex; BRE's `+?(){}|` are literal. */
function grepRegex(pattern: string, extended: boolean, whole: boolean): RegExp {
  const src = extended ? pattern : pattern.replace(/\\?([+?(){}|])/g, (m, c: string) => (m.startsWith('\\') ? c : `\\${c}`));
  return new RegExp(whole ? `^(?:${src})$` : src, 'm');
}

/** `sh -c MANIFEST_SCRIPT`: `files=<n> sha256=<hex>` over the files under `dirs` (same on both hosts). */
function manifestOf(files: Files, dirs: string[]): string {
  const paths = underDirs(files, dirs);
  const h = createHash('sha256');
  for (const p of paths) h.update(`${p}\0${files[p]}\0`);
  return `files=${paths.length} sha256=${h.digest('hex')}`;
}

function underDirs(files: Files, dirs: string[]): string[] {
  return Object.keys(files)
    .filter((p) => dirs.some((d) => p.startsWith(`${d}/`)))
    .sort();
}

/** mawk's `print t+0`: integers past 2^31 go through OFMT (%.6g), e.g. `2.14832e+09`. */
function mawkPrint(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 2 ** 31) return String(n);
  const [mant = '', exp = '0'] = n.toExponential(5).split('e');
  const e = Number(exp);
  return `${mant.replace(/\.?0+$/, '')}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
}

/** `iptables -S` form of a rule spec: addresses get their mask, `-p P --dport` gets `-m P`. */
function normalizeRule(args: string[]): string {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const next = args[i + 1];
    out.push(a);
    if ((a === '-d' || a === '-s') && next !== undefined) {
      out.push(next.includes('/') ? next : `${next}/32`);
      i++;
    } else if (a === '-p' && next !== undefined) {
      out.push(next);
      if (args.includes('--dport') && args[i + 2] !== '-m') out.push('-m', next);
      i++;
    }
  }
  return out.join(' ');
}

/**
 * What `caddy adapt` makes of a Caddyfile, for the configs this fake seeds (tokens separated by
 * whitespace): each site's hosts as a route, its reverse_proxy upstreams, and the storage block.
 */
export function adaptCaddyfile(text: string): { json: string } | { error: string } {
  const toks = text.replace(/#[^\n]*/g, '').split(/\s+/).filter(Boolean);
  let storage: { module: string; root: string } | undefined;
  const routes: { match: { host: string[] }[]; handle: { handler: string; upstreams: { dial: string }[] }[]; terminal: boolean }[] = [];
  let i = 0;
  // One `{ ... }` block from toks[i] (which is `{`); returns its tokens with nesting kept flat.
  const block = (): string[] | undefined => {
    const body: string[] = [];
    let depth = 0;
    for (; i < toks.length; i++) {
      const t = toks[i] as string;
      if (t === '{') depth++;
      else if (t === '}') depth--;
      if (depth === 0) {
        i++;
        return body.slice(1);
      }
      body.push(t);
    }
    return undefined;
  };
  let first = true;
  while (i < toks.length) {
    const addresses: string[] = [];
    while (i < toks.length && toks[i] !== '{') addresses.push(toks[i++] as string);
    if (i >= toks.length) return { error: `Error: adapting config using caddyfile: ${addresses.join(' ')}: expected a block` };
    const body = block();
    if (!body) return { error: 'Error: adapting config using caddyfile: unexpected EOF: missing }' };
    if (first && addresses.length === 0) {
      const s = body.indexOf('storage');
      if (s >= 0 && body[s + 1] === 'file_system') {
        const root = body[s + 2] === '{' ? body[body.indexOf('root', s) + 1] : body[s + 2];
        if (root) storage = { module: 'file_system', root };
      }
    } else {
      const hosts = addresses.flatMap((a) => a.split(',')).filter(Boolean).map((a) => a.replace(/^https?:\/\//, '').replace(/:\d+$/, ''));
      const upstreams = body.flatMap((t, k) => (t === 'reverse_proxy' && body[k + 1] ? [{ dial: body[k + 1] as string }] : []));
      routes.push({ match: [{ host: hosts }], handle: [{ handler: 'reverse_proxy', upstreams }], terminal: true });
    }
    first = false;
  }
  return { json: JSON.stringify({ ...(storage ? { storage } : {}), apps: { http: { servers: { srv0: { listen: [':443'], routes } } } } }) };
}

// ---- handlers ------------------------------------------------------------------------------------

interface Exec {
  host: HostRole;
  command: string;
  /** The match, groups as strings ('' when a group did not take part). */
  m: string[];
  stdin?: string;
}

/** One recognised command: its pattern and what it does to the state. */
interface Handler {
  name: string;
  on: HostRole | 'any';
  re: RegExp;
  /** Read-only: the wrappers (`test "$(X)" = V`, `X | grep -q`) may evaluate it. */
  query?: boolean | ((m: string[]) => boolean);
  /** A further condition on the match (the table goes on to the next handler when false). */
  when?: (m: string[]) => boolean;
  run: (x: Exec) => CommandResult;
  /** The state while the command hangs halfway (`hang(match, { half: true })`). */
  half?: (x: Exec) => void;
}

/** A command run inside a destination container: the pattern is matched after `incus exec <name> -- `. */
interface InsideHandler {
  name: string;
  re: RegExp;
  query?: boolean;
  run: (i: DestinationInstance, m: string[], x: Exec) => CommandResult;
}

interface Fault {
  match: CommandMatch;
  result: Partial<CommandResult>;
  times: number;
}

interface HangFault {
  match: CommandMatch;
  options: HangOptions;
  times: number;
}

interface Hung {
  key: string;
  release: () => void;
}

const DEST_PUBKEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdiby1taWdyYXRlIGZha2UgZGVzdGluYXRpb24ga2V5';
const CLIENT_CERT = '-----BEGIN CERTIFICATE-----\nMIIBgboMigrateFakeDestinationClientCertificate\n-----END CERTIFICATE-----';
const MISSING_INSTANCE = 'Error: Instance not found';
/** /etc/passwd of the seeded containers. */
const DEFAULT_USERS: Record<string, number> = { root: 0, 'www-data': 33, gbuser: 1000 };

// ---- the fake --------------------------------------------------------------------------------------

export class StatefulHosts implements CommandExecutor {
  readonly source: SourceState;
  readonly destination: DestinationState;
  /** Every command that reached a host, checks included. */
  readonly log: LogEntry[] = [];
  /** State changes only (a command that changes nothing adds nothing). */
  readonly effects: Effect[] = [];
  /** Commands no handler recognises; tests assert it stays empty. */
  readonly unscripted: string[] = [];
  /** Commands that arrived without sudo on a host the plan says needs it (they fail). */
  readonly withoutSudo: string[] = [];
  /** Hosts `connect()` was called for, in order. */
  readonly connections: HostRole[] = [];
  /**
   * What the tenant's authoritative DNS servers (hosted elsewhere) answer: absolute name → IPv4.
   * Seeded with the source's address; a test changes it as an operator does at the provider.
   */
  readonly publicDns: Record<string, string> = {};
  /** The zone's delegation at its parent (what the registrar's servers refer to); the operator changes it by hand. */
  readonly parent: { ns: string[]; glue: Record<string, string> } = { ns: ['ns1.old-provider.example.'], glue: {} };
  /** NS records the authoritative servers answer, by owner name (set at the start from the plan). */
  readonly publicNs: Record<string, string[]> = {};

  private readonly table: Handler[];
  private readonly inside: InsideHandler[];
  private readonly faults: Fault[] = [];
  private readonly hangs: HangFault[] = [];
  private readonly slowTransfers: { match: CommandMatch; options: SlowTransferOptions; times: number }[] = [];
  private readonly connectFaults: { role: HostRole | 'any'; error: Error; times: number }[] = [];
  private readonly hung: Hung[] = [];
  private readonly inFlight = new Map<string, number>();
  private readonly peaks = new Map<string, number>();
  private readonly watchers: { match: CommandMatch; resolve: (key: string) => void }[] = [];
  private readonly down = new Set<string>();
  private nextIp = 10;

  constructor(
    readonly plan: Plan,
    readonly options: StatefulHostsOptions = {},
  ) {
    this.source = this.seedSource();
    this.destination = {
      instances: {},
      remotes: {},
      folders: {},
      meta: {},
      files: {},
      iptables: {
        filter: { INPUT: ['-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-p tcp -m tcp --dport 22 -j ACCEPT'], FORWARD: [], OUTPUT: [] },
        nat: { PREROUTING: [], INPUT: [], OUTPUT: [], POSTROUTING: [] },
      },
      ipForward: '0',
      ufw: { active: false, allowed: [], routed: false },
    };
    const owner = (name: string) => (name === '@' ? plan.dns.zone : `${name}.${plan.dns.zone}`);
    for (const r of plan.dns.records.filter((x) => x.type === 'A')) this.publicDns[owner(r.name)] = plan.hosts.source.address;
    for (const r of plan.dns.records.filter((x) => x.type === 'NS')) (this.publicNs[owner(r.name)] ??= []).push(r.value);
    this.inside = this.insideHandlers();
    this.table = [...this.sourceHandlers(), ...this.sharedHandlers(), ...this.destinationHandlers(), ...this.networkHandlers(), ...this.wrappers()];
  }

  // ---- CommandExecutor ----------------------------------------------------------------------------

  async run(target: HostTarget, command: string, options: RunOptions = {}): Promise<CommandResult> {
    const { signal } = options;
    // As the SSH pool: an aborted run never reaches the host.
    if (signal?.aborted) throw this.cancelled(target);
    const host = target.role;
    const { inner, sudo } = unwrapSudo(command);
    const key = `${host}: ${inner}`;
    this.log.push({ host, command: inner, at: Date.now() });
    this.enter(key);
    try {
      const fault = this.take(this.faults, host, inner);
      if (fault) return { exitCode: fault.result.exitCode ?? 1, stdout: fault.result.stdout ?? '', stderr: fault.result.stderr ?? 'stateful-hosts: injected failure\n' };
      const hang = this.take(this.hangs, host, inner);
      if (hang) await this.hangHere(key, target, inner, hang.options, signal, options.stdin);
      const slow = this.take(this.slowTransfers, host, inner);
      if (slow) await this.transferSlowly(target, inner, slow.options, options);
      if (this.options.delayMs) await this.pause(this.options.delayMs, target, signal);
      if (this.plan.hosts[host].sudo && !sudo) {
        this.withoutSudo.push(key);
        return fail(`stateful-hosts: ${host} runs this only through sudo: ${inner.slice(0, 200)}`);
      }
      const result = this.execute(host, inner, options.stdin);
      if (result.stdout || result.stderr) options.onOutput?.(result.stdout + result.stderr);
      return result;
    } finally {
      this.leave(key);
    }
  }

  /** The host-key check's connection (the `verify-host-keys` step): resolves unless `refuseConnect` says otherwise. */
  async connect(target: HostTarget, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (options.signal?.aborted) throw this.cancelled(target);
    this.connections.push(target.role);
    const i = this.connectFaults.findIndex((f) => f.times > 0 && (f.role === 'any' || f.role === target.role));
    const f = this.connectFaults[i];
    if (f) {
      if (--f.times === 0) this.connectFaults.splice(i, 1);
      throw f.error;
    }
  }

  /**
   * The worker's network as this fake sees it: probes of the destination's public address go
   * through its DNAT rules to the container behind them; DNS questions to the plan's authoritative
   * servers are answered from `publicDns`. Nothing reaches a real address.
   */
  net(): NetProbes {
    const behind = (protocol: string, address: string, port: number): { i: DestinationInstance; port: string } | undefined => {
      if (address !== this.plan.destination.publicAddress) return undefined;
      const rule = (this.destination.iptables.nat.PREROUTING ?? []).find((r) => r.startsWith(`-d ${address}/32 -p ${protocol} -m ${protocol} --dport ${port} -j DNAT `));
      const [ip, p = ''] = (/--to-destination (\S+)/.exec(rule ?? '')?.[1] ?? '').split(':');
      const i = Object.values(this.destination.instances).find((x) => x.ip === ip && x.status === 'Running');
      return i && !this.down.has(`${i.name}:${p}`) ? { i, port: p } : undefined;
    };
    const noAnswer = (error: string) => ({ ok: false, rcode: -1, answers: [], aa: false, error });
    return {
      tcpProbe: async (host, port) => (behind('tcp', host, port) ? { ok: true, ms: 1 } : { ok: false, ms: 1, error: 'ECONNREFUSED' }),
      httpProbe: async (host, port) => (behind('tcp', host, port) ? { ok: true, reply: 'HTTP/1.1 200 OK' } : { ok: false, error: 'ECONNREFUSED' }),
      udpProbe: async (host, port, _send, expect) => {
        const b = behind('udp', host, port);
        const reply = b ? this.options.udpReplies?.[`${b.i.name}:${b.port}`] : undefined;
        return reply?.includes(expect) ? { ok: true, reply } : { ok: false, error: 'no reply after 3000 ms' };
      },
      dnsQuery: async (server, port, name, type) => {
        // The zone's parent (the registrar's servers): a referral, NS in authority, glue in additional.
        if (this.plan.dns.delegation?.parentServers.includes(server) && port === 53 && type === 'NS') {
          const owner = `${name.replace(/\.$/, '')}.`;
          return {
            ok: true,
            rcode: 0,
            aa: false,
            answers: [],
            authority: this.parent.ns.map((data) => ({ name: owner, type: 'NS', ttl: 86400, data })),
            additional: Object.entries(this.parent.glue).map(([n, data]) => ({ name: `${n}.`, type: 'A', ttl: 86400, data })),
          };
        }
        if (this.plan.dns.authoritativeServers.includes(server) && port === 53) {
          const bare = name.replace(/\.$/, '');
          if (type === 'NS') {
            const ns = this.publicNs[bare] ?? [];
            return { ok: true, rcode: 0, aa: true, answers: ns.map((data) => ({ name: `${bare}.`, type: 'NS', ttl: 300, data })) };
          }
          // A name of its own, else the zone's wildcard.
          const a = this.publicDns[bare] ?? this.publicDns[`*.${bare.split('.').slice(1).join('.')}`];
          return { ok: true, rcode: 0, aa: true, answers: a && type === 'A' ? [{ name: `${name}.`, type: 'A', ttl: 300, data: a }] : [] };
        }
        return behind('udp', server, port) ? { ok: true, rcode: 0, aa: true, answers: [] } : noAnswer('timeout after 3000 ms');
      },
      // Served once the fake CA issued it (Caddy obtains on a reload), for the destination's address only.
      tlsCertificate: async (host, port, name) =>
        host === this.plan.destination.publicAddress && port === 443 && this.acme.issued.has(name)
          ? { ok: true, subject: `CN=${name}`, issuer: 'O=Fake ACME, CN=Fake ACME Intermediate', altNames: [name], validFrom: new Date(Date.now() - 60_000).toISOString(), validTo: new Date(Date.now() + 90 * 86_400_000).toISOString() }
          : { ok: false, error: 'Client network socket disconnected before secure TLS connection was established (alert 80)' },
      // Test plans name their hosts by address: nothing here resolves, and nothing asks the machine's resolver.
      resolve4: async (name: string) => Promise.reject(new Error(`the fake network resolves no names (${name})`)),
    };
  }

  // ---- faults -------------------------------------------------------------------------------------

  /** The next `times` matching commands fail with `result` (default exit 1) and change nothing. */
  failNext(match: CommandMatch, result: Partial<CommandResult>, times = 1): void {
    this.faults.push({ match, result, times });
  }

  /** The next matching commands hang silently until their signal aborts (CancelledFailure) or `release()`. */
  hang(match: CommandMatch, options: HangOptions = {}): void {
    this.hangs.push({ match, options, times: options.times ?? 1 });
  }

  /**
   * The next matching data pulls (rsync into staging) take `ms` and print rsync's
   * `--info=progress2` lines all along, as if moving `bytes`, before their effect, which is the
   * same as any pull's. The live view's transfer progress comes from those lines.
   */
  slowTransfer(match: CommandMatch, options: SlowTransferOptions): void {
    this.slowTransfers.push({ match, options, times: options.times ?? 1 });
  }

  /** Lets hung commands (all, or the matching ones) go on: they complete with their full effect. Returns how many. */
  release(match?: CommandMatch): number {
    const go = this.hung.filter((h) => match === undefined || this.matchesKey(match, h.key));
    for (const h of go) h.release();
    return go.length;
  }

  /**
   * What the authoritative servers answer once the DNS server reloads `zoneText`: its A and NS
   * records (owner names made absolute, a blank owner repeats the last one).
   */
  /** While true, a reloaded zone is not answered yet (propagation to the authoritative servers lags). */
  holdDns = false;
  private heldZone: string | undefined;

  /** The authoritative servers catch up with the last reloaded zone. */
  releaseDns(): void {
    this.holdDns = false;
    if (this.heldZone !== undefined) this.publish(this.heldZone);
  }

  private publish(zoneText: string): void {
    if (this.holdDns) {
      this.heldZone = zoneText;
      return;
    }
    const zone = this.plan.dns.zone;
    const abs = (n: string) => (n === '@' ? zone : n.endsWith('.') ? n.slice(0, -1) : `${n}.${zone}`);
    let owner = zone;
    const ns: Record<string, string[]> = {};
    for (const raw of zoneText.split('\n')) {
      const line = raw.replace(/;.*$/, '');
      if (!line.trim() || line.startsWith('$')) continue;
      const f = line.trim().split(/\s+/);
      if (!/^\s/.test(line)) owner = abs(f.shift()!);
      const rest = f.filter((x) => x !== 'IN' && !/^\d+$/.test(x));
      if (rest[0] === 'A' && rest[1]) this.publicDns[owner] = rest[1];
      if (rest[0] === 'NS' && rest[1]) (ns[owner] ??= []).push(rest[1].endsWith('.') ? rest[1] : `${abs(rest[1])}.`);
    }
    for (const k of Object.keys(this.publicNs)) delete this.publicNs[k];
    Object.assign(this.publicNs, ns);
  }

  /**
   * The CA behind the destination's Caddy: it refuses new certificates with `rateLimited` until
   * `rateLimitedUntil` (ms); Caddy logs each attempt as Caddy 2.6 does (`tls.obtain` JSON lines).
   */
  readonly acme = { rateLimitedUntil: 0, issued: new Set<string>(), attempts: 0, log: [] as string[] };

  /** Caddy in `i` tries to obtain a certificate for each name its loaded config serves (of the plan's domains) and lacks. */
  private obtainCertificates(i: DestinationInstance): void {
    const line = (o: Record<string, unknown>) => this.acme.log.push(JSON.stringify({ ts: Date.now() / 1000, logger: 'tls.obtain', ...o }));
    const adapted = adaptCaddyfile(i.loaded.caddy ?? '');
    const served = new Set('json' in adapted ? adaptedHosts(adapted.json) : []);
    for (const name of this.plan.certificates?.domains ?? []) {
      if (this.acme.issued.has(name) || !served.has(name)) continue;
      this.acme.attempts++;
      line({ level: 'info', msg: 'obtaining certificate', identifier: name });
      // The CA validates the name: it must resolve to the destination (HTTP-01 reaches this Caddy).
      const zoneWildcard = `*.${name.split('.').slice(1).join('.')}`;
      if (Date.now() >= this.acme.rateLimitedUntil && (this.publicDns[name] ?? this.publicDns[zoneWildcard]) !== this.plan.destination.publicAddress) {
        const error = `[${name}] Obtain: [${name}] solving challenges: ${name}: HTTP 400 urn:ietf:params:acme:error:connection - the CA could not connect to ${this.publicDns[name] ?? 'no address'}:80`;
        line({ level: 'error', msg: 'could not get certificate from issuer', identifier: name, error });
        line({ level: 'error', msg: 'will retry', error, attempt: 1, retrying_in: 60 });
      } else if (Date.now() < this.acme.rateLimitedUntil) {
        // A CA states its retry time in whole seconds, at or after the limit's end.
        const until = new Date(Math.ceil(this.acme.rateLimitedUntil / 1000) * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
        line({ level: 'error', msg: 'could not get certificate from issuer', identifier: name, error: `HTTP 429 urn:ietf:params:acme:error:rateLimited - too many certificates already issued: retry after ${until}` });
        line({ level: 'error', msg: 'will retry', error: `[${name}] Obtain: [${name}] HTTP 429 urn:ietf:params:acme:error:rateLimited - retry after ${until}`, attempt: 1, retrying_in: 60 });
      } else {
        this.acme.issued.add(name);
        line({ level: 'info', msg: 'certificate obtained successfully', identifier: name });
      }
    }
  }

  /** A service in a destination container stops answering its port (the verify probes go red). */
  serviceDown(container: string, port: number): void {
    this.down.add(`${container}:${port}`);
  }

  serviceUp(container: string, port: number): void {
    this.down.delete(`${container}:${port}`);
  }

  /** What an operator does by hand when the nic step fails: eth0 on the plan's bridge. */
  addNicByHand(container: string): void {
    const i = this.destination.instances[container];
    if (!i) throw new Error(`stateful-hosts: no destination instance ${container}`);
    i.devices.eth0 = { type: 'nic', name: 'eth0', network: this.plan.destination.bridge };
    this.effect('destination', `device add ${container} eth0 nic (by hand)`);
  }

  /** The next `connect()` for `role` rejects with `error`. */
  refuseConnect(role: HostRole | 'any', error: Error = new Error(`stateful-hosts: host key mismatch on the ${role} host`), times = 1): void {
    this.connectFaults.push({ role, error, times });
  }

  // ---- observability ------------------------------------------------------------------------------

  /** Commands in flight now, as `<host>: <command>`. */
  running(): string[] {
    return [...this.inFlight.entries()].flatMap(([k, n]) => Array<string>(n).fill(k));
  }

  /** Resolves with the first in-flight command that matches (already running, or when it starts). */
  whenRunning(match: CommandMatch): Promise<string> {
    const now = this.running().find((k) => this.matchesKey(match, k));
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => this.watchers.push({ match, resolve }));
  }

  /** The most copies of each identical command (`<host>: <command>`) ever in flight at once. */
  peakConcurrency(): Record<string, number> {
    return Object.fromEntries(this.peaks);
  }

  /** Commands that ever ran twice at the same time (a step must never overlap itself). */
  overlaps(): string[] {
    return [...this.peaks.entries()].filter(([, n]) => n > 1).map(([k]) => k);
  }

  /** The most copies of matching commands ever in flight at once (1: never overlapped). */
  maxConcurrent(match: CommandMatch): number {
    return Math.max(0, ...[...this.peaks.entries()].filter(([k]) => this.matchesKey(match, k)).map(([, n]) => n));
  }

  /** The source as a test compares it: per planned container, status, devices, non-volatile config, data folder. */
  sourceSnapshot(): SourceSnapshot {
    return clone(
      Object.fromEntries(
        this.plan.containers.map((p) => {
          const c = this.source.containers[sourceNameOf(this.plan, p)];
          const data = this.source.folders[this.sourceDataOf(p)] !== undefined;
          return [p.name, c ? { status: c.status, devices: c.devices, config: nonVolatile(c.config), data } : { status: 'Absent', devices: {}, config: {}, data }];
        }),
      ),
    );
  }

  destinationSnapshot(): DestinationSnapshot {
    const d = this.destination;
    const rules = (t: Record<string, string[]>) => Object.entries(t).flatMap(([chain, rs]) => rs.map((r) => `-A ${chain} ${r}`));
    return clone({
      instances: Object.fromEntries(
        Object.values(d.instances).map((i) => [
          i.name,
          { status: i.status, devices: i.devices, config: nonVolatile(i.config), ...(i.ip ? { ip: i.ip } : {}), files: Object.keys(i.files).sort(), ...(i.incomplete ? { incomplete: true as const } : {}) },
        ]),
      ),
      folders: Object.keys(d.folders).sort(),
      files: Object.keys(d.files).sort(),
      remotes: d.remotes,
      iptables: { filter: rules(d.iptables.filter), nat: rules(d.iptables.nat) },
      ipForward: d.ipForward,
      clientCert: d.clientCert !== undefined,
    });
  }

  /** Where a planned container's data lives on the source. */
  sourceDataOf(c: ContainerPlan): string {
    return `${this.plan.data.sourceRoot}/${c.sourceFolder ?? c.name}`;
  }

  // ---- dispatch -----------------------------------------------------------------------------------

  private execute(host: HostRole, command: string, stdin?: string): CommandResult {
    const found = this.find(host, command);
    if (!found) return this.refuse(host, command);
    return found.handler.run({ host, command, m: found.m, stdin });
  }

  /** A read-only command's answer, for the wrappers; undefined when it is not a recognised query. */
  private query(host: HostRole, command: string): CommandResult | undefined {
    const found = this.find(host, command);
    if (!found) return undefined;
    const q = found.handler.query;
    if (!(typeof q === 'function' ? q(found.m) : q)) return undefined;
    return found.handler.run({ host, command, m: found.m });
  }

  private find(host: HostRole, command: string): { handler: Handler; m: string[] } | undefined {
    for (const handler of this.table) {
      if (handler.on !== 'any' && handler.on !== host) continue;
      const r = handler.re.exec(command);
      if (!r) continue;
      const m = Array.from(r, (s) => s ?? '');
      if (handler.when && !handler.when(m)) continue;
      return { handler, m };
    }
    return undefined;
  }

  private refuse(host: HostRole, command: string): CommandResult {
    this.unscripted.push(`${host}: ${command}`);
    return fail(`stateful-hosts: unscripted command: ${command}`, 99);
  }

  private effect(host: HostRole, what: string): void {
    this.effects.push({ host, what });
  }

  private fs(host: HostRole): HostFs {
    return host === 'source' ? this.source : this.destination;
  }

  // ---- faults, hangs, concurrency -----------------------------------------------------------------

  private matches(match: CommandMatch, command: string, host: HostRole): boolean {
    return typeof match === 'function' ? match(command, host) : match.test(command);
  }

  private matchesKey(match: CommandMatch, key: string): boolean {
    const at = key.indexOf(': ');
    return this.matches(match, key.slice(at + 2), key.slice(0, at) as HostRole);
  }

  private take<F extends { match: CommandMatch; times: number }>(list: F[], host: HostRole, command: string): F | undefined {
    const i = list.findIndex((f) => f.times > 0 && this.matches(f.match, command, host));
    const f = list[i];
    if (f && --f.times === 0) list.splice(i, 1);
    return f;
  }

  /** Silent until released, aborted (CancelledFailure, nothing more happens) or, with `ms`, that long. */
  private async hangHere(key: string, target: HostTarget, command: string, options: HangOptions, signal: AbortSignal | undefined, stdin?: string): Promise<void> {
    if (options.halfDone) {
      const found = this.find(target.role, command);
      if (found?.handler.half) found.handler.half({ host: target.role, command, m: found.m, stdin });
      else this.unscripted.push(`${target.role}: (no half effect) ${command}`);
    }
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const entry: Hung = {
        key,
        release: () => {
          if (settled) return;
          done();
          resolve();
        },
      };
      const onAbort = () => {
        if (settled) return;
        done();
        reject(this.cancelled(target));
      };
      const done = () => {
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        const i = this.hung.indexOf(entry);
        if (i >= 0) this.hung.splice(i, 1);
      };
      this.hung.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (options.ms !== undefined) setTimeout(entry.release, options.ms).unref();
    });
  }

  /** rsync's progress lines (`\r`-separated, as it rewrites one line) for `slowTransfer`, abortable between them. */
  private async transferSlowly(target: HostTarget, command: string, o: SlowTransferOptions, run: RunOptions): Promise<void> {
    if (this.find(target.role, command)?.handler.name !== 'pull the data (rsync into staging)') {
      this.unscripted.push(`${target.role}: (not a data pull: no slow transfer) ${command}`);
      return;
    }
    const ticks = Math.max(1, Math.round(o.ms / 200));
    // rsync's MB are 1024², its rate has two decimals.
    const rate = `${(o.bytes / (o.ms / 1000) / 1024 ** 2).toFixed(2)}MB/s`;
    for (let i = 1; i <= ticks; i++) {
      await this.pause(o.ms / ticks, target, run.signal);
      const bytes = Math.floor((o.bytes * i) / ticks);
      const left = Math.round(((ticks - i) * o.ms) / ticks / 1000);
      const eta = `${Math.floor(left / 3600)}:${String(Math.floor((left % 3600) / 60)).padStart(2, '0')}:${String(left % 60).padStart(2, '0')}`;
      run.onOutput?.(`\r${bytes.toLocaleString('en-US').padStart(15)} ${String(Math.floor((bytes * 100) / o.bytes)).padStart(3)}%   ${rate}    ${eta} (xfr#${i}, to-chk=${ticks - i}/${ticks})`);
    }
  }

  private pause(ms: number, target: HostTarget, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(this.cancelled(target));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** What the SSH pool throws when a run's signal aborts. */
  private cancelled(target: HostTarget): CancelledFailure {
    return new CancelledFailure(`command on ${target.user}@${target.address}:${target.port} aborted`);
  }

  private enter(key: string): void {
    const n = (this.inFlight.get(key) ?? 0) + 1;
    this.inFlight.set(key, n);
    this.peaks.set(key, Math.max(n, this.peaks.get(key) ?? 0));
    for (const w of [...this.watchers]) {
      if (this.matchesKey(w.match, key)) {
        this.watchers.splice(this.watchers.indexOf(w), 1);
        w.resolve(key);
      }
    }
  }

  private leave(key: string): void {
    const n = (this.inFlight.get(key) ?? 1) - 1;
    if (n > 0) this.inFlight.set(key, n);
    else this.inFlight.delete(key);
  }

  // ---- seeding --------------------------------------------------------------------------------------

  private seedSource(): SourceState {
    const { plan } = this;
    const containers: Record<string, SourceContainer> = {};
    const folders: Record<string, Files> = {};
    const meta: Record<string, Record<string, Meta>> = {};
    const address = (i: number) => `10.16.164.${10 + i}`;
    plan.containers.forEach((c, i) => {
      const name = sourceNameOf(plan, c);
      // The guide's LXD containers mount their data from the host; the proxy also has proxy devices.
      const devices: DeviceMap = { gbo: { type: 'disk', source: this.sourceDataOf(c), path: plan.data.containerPath } };
      if (c.name === plan.caddy?.container) {
        devices.http = { type: 'proxy', listen: 'tcp:0.0.0.0:80', connect: 'tcp:127.0.0.1:80' };
        devices.https = { type: 'proxy', listen: 'tcp:0.0.0.0:443', connect: 'tcp:127.0.0.1:443' };
      }
      const base = this.idmapBaseOf(c);
      const idmap = base ? JSON.stringify([true, false].map((uid) => ({ Isuid: uid, Isgid: !uid, Hostid: base, Nsid: 0, Maprange: 1000000000 }))) : '[]';
      const config: Record<string, string> = {
        'image.os': 'Debian',
        'image.release': 'bookworm',
        ...(base ? {} : { 'security.privileged': 'true' }),
        'volatile.base_image': createHash('sha256').update(name).digest('hex'),
        'volatile.eth0.hwaddr': `00:16:3e:00:00:${(10 + i).toString(16).padStart(2, '0')}`,
        'volatile.idmap.current': idmap,
        'volatile.last_state.power': 'RUNNING',
      };
      containers[name] = { name, status: 'Running', devices, config, address: address(i) };
    });
    // Stateless containers have no data folder on the source.
    plan.containers.filter((c) => c.dataDirs.length > 0).forEach((c) => {
      const seeded = this.seedData(c, plan.containers.map((x, i) => ({ c: x, ip: address(i) })));
      folders[this.sourceDataOf(c)] = Object.fromEntries(Object.entries(seeded).map(([p, f]) => [p, f.content]));
      // Stored on the host as the source's idmap shifts them.
      const base = this.idmapBaseOf(c);
      meta[this.sourceDataOf(c)] = Object.fromEntries(Object.entries(seeded).map(([p, f]) => [p, { uid: f.uid + base, gid: f.gid + base, mode: f.mode }]));
    });
    return {
      containers,
      folders,
      meta,
      files: {},
      iptables: { filter: { INPUT: [], FORWARD: [], OUTPUT: [] }, nat: { PREROUTING: [], INPUT: [], OUTPUT: [], POSTROUTING: [] } },
      httpsAddress: '',
      trusted: [],
    };
  }

  /** The idmap base of a source container (0: privileged, no shift). */
  idmapBaseOf(c: ContainerPlan): number {
    const set = this.options.idmapBase;
    if (set) return set[c.name] ?? 0;
    return c.privileged ? 0 : 1000000;
  }

  /**
   * A container's data folder, as the container sees it: a file per data dir, plus the Caddyfile,
   * the zone, required files and the test's extra files where they belong.
   */
  private seedData(c: ContainerPlan, all: { c: ContainerPlan; ip: string }[]): Record<string, { content: string; uid: number; gid: number; mode: string }> {
    const { plan } = this;
    const files: Record<string, { content: string; uid: number; gid: number; mode: string }> = {};
    const root = (content: string) => ({ content, uid: 0, gid: 0, mode: '644' });
    for (const d of c.dataDirs) files[`${d}/${c.name}-${d}.txt`] = root(`${c.name} ${d}\n`);
    const dataPath = c.dataPath ?? plan.data.containerPath;
    const rel = (p: string) => (p.startsWith(`${dataPath}/`) ? p.slice(dataPath.length + 1) : undefined);
    const caddyPath = plan.caddy ? rel(plan.caddy.configPath) : undefined;
    if (plan.caddy && c.name === plan.caddy.container && caddyPath) {
      const sites = Array.from({ length: this.options.vhosts ?? plan.caddy.minVhosts }, (_, i) => {
        const up = all[i % all.length] as { c: ContainerPlan; ip: string };
        const port = up.c.services.flatMap((s) => s.ports)[0] ?? 80;
        // The certificate domains first (Caddy obtains certificates for the names it serves), then more vhosts.
        const name = plan.certificates?.domains[i] ?? `site${i}.${plan.dns.zone}`;
        return `${name} {\n\treverse_proxy ${up.ip}:${port}\n}\n`;
      });
      files[caddyPath] = root(`{\n\tstorage file_system {\n\t\troot ${plan.caddy.storageRoot}\n\t}\n}\n\n${sites.join('\n')}`);
    }
    const zonePath = plan.dns.zoneFile ? rel(plan.dns.zoneFile) : undefined;
    if (c.name === plan.dns.container && zonePath) {
      const z = plan.dns.zone;
      const old = plan.hosts.source.address;
      files[zonePath] = root([
        `$ORIGIN ${z}.`,
        '$TTL 3600',
        `@\tIN\tSOA\tns1.${z}. hostmaster.${z}. (`,
        '\t\t2026010101\t; serial',
        '\t\t7200\t\t; refresh',
        '\t\t3600\t\t; retry',
        '\t\t1209600\t\t; expire',
        '\t\t300 )\t\t; minimum',
        '\tIN\tNS\tns1',
        '\tIN\tNS\tns2',
        `@\tIN\tA\t${old}`,
        `ns1\tIN\tA\t${old}`,
        `ns2\tIN\tA\t${old}`,
        `*\tIN\tA\t${old}`,
        '',
      ].join('\n'));
    }
    for (const f of c.requiredFiles) {
      const p = rel(f.path);
      // Owned at the source by the user the plan requires (gbuser is 1000 in the seeded containers).
      const uid = f.owner ? (DEFAULT_USERS[f.owner] ?? 0) : 0;
      if (p) files[p] = { content: `required ${f.path}\n`, uid, gid: uid, mode: f.executable ? '755' : '644' };
    }
    for (const f of this.options.extraFiles?.[c.name] ?? []) files[f.path] = { content: f.content, uid: f.uid, gid: f.gid, mode: f.mode };
    return files;
  }

  // ---- source: LXD ----------------------------------------------------------------------------------

  private sourceHandlers(): Handler[] {
    const src = this.source;
    const withContainer = (name: string, f: (c: SourceContainer) => CommandResult) => {
      const c = src.containers[name];
      return c ? f(c) : fail(MISSING_INSTANCE);
    };
    return [
      { name: 'lxc version', on: 'source', query: true, re: /^lxc version$/, run: () => ok('Client version: 5.21.2\nServer version: 5.21.2\n') },
      { name: 'read the API address', on: 'source', query: true, re: /^lxc config get core\.https_address$/, run: () => ok(`${src.httpsAddress}\n`) },
      {
        name: 'set the API address',
        on: 'source',
        re: /^lxc config set core\.https_address (\S+)$/,
        run: ({ m: [, address = ''] }) => {
          if (src.httpsAddress !== address) this.effect('source', `core.https_address=${address}`);
          src.httpsAddress = address;
          return ok();
        },
      },
      { name: 'list the containers', on: 'source', query: true, re: /^lxc list --format csv -c n$/, run: () => ok(lines(Object.keys(src.containers))) },
      {
        name: 'query an instance',
        on: 'source',
        query: true,
        re: rx(/^lxc query \/1\.0\/instances\/<name>$/),
        run: ({ m: [, name = ''] }) => withContainer(name, (c) => ok(`${JSON.stringify(this.lxdInstance(c), null, 4)}\n`)),
      },
      {
        name: 'query an instance state',
        on: 'source',
        query: true,
        re: rx(/^lxc query \/1\.0\/instances\/<name>\/state$/),
        run: ({ m: [, name = ''] }) =>
          withContainer(name, (c) =>
            ok(
              `${JSON.stringify(
                {
                  status: c.status,
                  status_code: c.status === 'Running' ? 103 : 102,
                  // A stopped container has no addresses.
                  network: c.status === 'Running' ? { eth0: nic(c.address), lo: { addresses: [{ family: 'inet', address: '127.0.0.1', netmask: '8', scope: 'local' }] } } : {},
                },
                null,
                4,
              )}\n`,
            ),
          ),
      },
      {
        name: 'list devices',
        on: 'source',
        query: true,
        re: rx(/^lxc config device list <name>$/),
        run: ({ m: [, name = ''] }) => withContainer(name, (c) => ok(lines(Object.keys(c.devices)))),
      },
      {
        name: 'add a device',
        on: 'source',
        re: rx(/^lxc config device add <name> (.+)$/),
        run: ({ m: [, name = '', rest = ''] }) =>
          withContainer(name, (c) => {
            const [dev = '', type = '', ...kv] = words(rest);
            if (c.devices[dev]) return fail('Error: The device already exists');
            c.devices[dev] = { type, ...Object.fromEntries(kv.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)])) };
            this.effect('source', `device add ${name} ${dev} ${type}`);
            return ok(`Device ${dev} added to ${name}\n`);
          }),
      },
      {
        name: 'remove a device',
        on: 'source',
        re: rx(/^lxc config device remove <name> <arg>$/),
        run: ({ m: [, name = '', dev = ''] }) => withContainer(name, (c) => this.removeSourceDevice(c, unq(dev))),
      },
      {
        name: 'remove every device (stop phase)',
        on: 'source',
        re: rx(/^for d in \$\(lxc config device list <name>\); do lxc config device remove <1> "\$d" \|\| exit 1; done$/),
        // $(...) of a missing instance is empty: the loop does nothing and exits 0.
        run: ({ m: [, name = ''] }) => {
          const c = src.containers[name];
          for (const dev of Object.keys(c?.devices ?? {})) {
            const r = this.removeSourceDevice(c as SourceContainer, dev);
            if (r.exitCode !== 0) return r;
          }
          return ok();
        },
      },
      {
        name: 'lxc stop',
        on: 'source',
        re: rx(/^lxc stop <name>$/),
        run: ({ m: [, name = ''] }) =>
          withContainer(name, (c) => {
            if (c.status === 'Stopped') return fail('Error: The instance is already stopped');
            c.status = 'Stopped';
            c.config['volatile.last_state.power'] = 'STOPPED';
            this.effect('source', `stop ${name}`);
            return ok();
          }),
      },
      {
        name: 'lxc start',
        on: 'source',
        re: rx(/^lxc start <name>$/),
        run: ({ m: [, name = ''] }) =>
          withContainer(name, (c) => {
            if (c.status === 'Running') return fail('Error: The instance is already running');
            // A disk device whose host folder is gone (cleanup ran) keeps the container down.
            for (const [dev, d] of Object.entries(c.devices)) {
              if (d.type === 'disk' && d.source && !this.existsOn('source', d.source)) return fail(`Error: Failed to start device "${dev}": Missing source path "${d.source}" for disk "${dev}"`);
            }
            c.status = 'Running';
            c.config['volatile.last_state.power'] = 'RUNNING';
            this.effect('source', `start ${name}`);
            return ok();
          }),
      },
      {
        name: 'lxc delete',
        on: 'source',
        re: rx(/^lxc delete <name>$/),
        run: ({ m: [, name = ''] }) =>
          withContainer(name, (c) => {
            if (c.status === 'Running') return fail('Error: The instance is currently running, stop it first or use --force');
            delete src.containers[name];
            this.effect('source', `delete ${name}`);
            return ok();
          }),
      },
      {
        name: "trust the destination's certificate",
        on: 'source',
        re: /^sh -c '[^']*lxc config trust add "\$f"[^']*' gbo-trust ('[^']*'|\S+)$/,
        run: ({ m: [, cert = ''] }) => {
          const pem = unq(cert).trim();
          // The script turns "already trusted" into success.
          if (!src.trusted.includes(pem)) {
            src.trusted.push(pem);
            this.effect('source', 'trust the destination certificate');
          }
          return ok();
        },
      },
      {
        name: "authorize the destination's pull key",
        on: 'source',
        re: /^mkdir -p "\$\(dirname (.+?)\)" && printf '%s\\n' ('[^']*'|\S+) >> (.+)$/,
        run: ({ m: [, , key = '', file = ''] }) => {
          const path = unq(file);
          src.files[path] = (src.files[path] ?? '') + `${unq(key)}\n`;
          this.effect('source', `append a key to ${path}`);
          return ok();
        },
      },
      {
        name: 'total data size (du | awk)',
        on: 'source',
        query: true,
        re: /^du -sb (.+?) \| awk '\{t\+=\$1\} END \{(printf "%\.0f\\n", t|print t\+0)\}'$/,
        run: ({ m: [, paths = '', print = ''] }) => {
          let total = 0;
          const errors: string[] = [];
          for (const p of words(paths)) {
            const bytes = this.duOf(p);
            if (bytes === undefined) errors.push(`du: cannot access '${p}': No such file or directory`);
            else total += bytes;
          }
          return { exitCode: 0, stdout: `${print.startsWith('printf') ? total.toFixed(0) : mawkPrint(total)}\n`, stderr: lines(errors) };
        },
      },
      {
        name: 'record what cleanup deletes',
        on: 'source',
        query: true,
        re: rx(/^du -sb <path> 2>\/dev\/null; find <1> -maxdepth 2 2>\/dev\/null \| head -n 50$/),
        run: ({ m: [, path = ''] }) => {
          const files = src.folders[path];
          if (!files) return ok();
          const entries = new Set<string>([path]);
          for (const f of Object.keys(files)) {
            const parts = f.split('/');
            for (let k = 1; k <= Math.min(2, parts.length); k++) entries.add(`${path}/${parts.slice(0, k).join('/')}`);
          }
          return ok(`${this.duOf(path) ?? 0}\t${path}\n${lines([...entries].sort().slice(0, 50))}`);
        },
      },
    ];
  }

  private lxdInstance(c: SourceContainer) {
    return {
      name: c.name,
      status: c.status,
      status_code: c.status === 'Running' ? 103 : 102,
      type: 'container',
      architecture: 'x86_64',
      profiles: ['default'],
      config: c.config,
      devices: c.devices,
      expanded_config: c.config,
      expanded_devices: { eth0: { type: 'nic', nictype: 'bridged', parent: 'lxdbr0', name: 'eth0' }, root: { type: 'disk', path: '/', pool: 'default' }, ...c.devices },
      stateful: false,
      ephemeral: false,
      description: '',
    };
  }

  private removeSourceDevice(c: SourceContainer, dev: string): CommandResult {
    if (!c.devices[dev]) return fail(`Error: Device doesn't exist`);
    delete c.devices[dev];
    this.effect('source', `device remove ${c.name} ${dev}`);
    return ok(`Device ${dev} removed from ${c.name}\n`);
  }

  private duOf(path: string): number | undefined {
    const files = this.source.folders[path];
    if (!files) return undefined;
    const c = this.plan.containers.find((x) => this.sourceDataOf(x) === path);
    const size = c ? this.options.dataBytes?.[c.name] : undefined;
    return size ?? 4096 + Object.values(files).reduce((n, s) => n + Buffer.byteLength(s), 0);
  }

  // ---- both hosts -----------------------------------------------------------------------------------

  private sharedHandlers(): Handler[] {
    return [
      {
        name: 'checksum manifest of a data folder',
        on: 'any',
        query: true,
        re: /^sh -c '[^']*' manifest (\S+)((?: \S+)*)$/,
        run: ({ host, m: [, root = '', dirs = ''] }) => {
          const files = this.fs(host).folders[root];
          return files ? ok(`${manifestOf(files, words(dirs))}\n`) : fail(`sh: 1: cd: can't cd to ${root}`, 2);
        },
      },
      {
        name: 'rm -rf',
        on: 'any',
        re: /^rm -rf --one-file-system ((?:\/[A-Za-z0-9._/-]*(?: |$))+)$/,
        run: ({ host, m: [, paths = ''] }) => {
          const fs = this.fs(host);
          for (const p of words(paths)) {
            for (const store of [fs.folders, fs.files, fs.meta] as Record<string, unknown>[]) {
              for (const k of Object.keys(store).filter((k) => k === p || k.startsWith(`${p}/`))) {
                delete store[k];
                this.effect(host, `rm -rf ${k}`);
              }
            }
          }
          return ok();
        },
      },
      { name: 'test ! -e', on: 'any', query: true, re: rx(/^test ! -e <path>$/), run: ({ host, m: [, p = ''] }) => (this.existsOn(host, p) ? fail('') : ok()) },
      {
        name: 'grep -qxF a line in a file',
        on: 'any',
        query: true,
        re: /^grep -qxF ('[^']*'|\S+) (\S+|"[^"]*")$/,
        run: ({ host, m: [, line = '', file = ''] }) => {
          const text = this.fs(host).files[unq(file)];
          if (text === undefined) return fail(`grep: ${unq(file)}: No such file or directory`, 2);
          return text.split('\n').includes(unq(line)) ? ok() : fail('');
        },
      },
      // Simple iptables calls only (compound ones have handlers of their own).
      { name: 'iptables', on: 'any', re: /^iptables ([^;|&<>]+)$/, query: (m) => /(^| )-[CS]( |$)/.test(m[1] ?? ''), run: ({ host, m: [, args = ''] }) => this.iptables(host, words(args)) },
    ];
  }

  private existsOn(host: HostRole, path: string): boolean {
    const fs = this.fs(host);
    return [...Object.keys(fs.folders), ...Object.keys(fs.files)].some((k) => k === path || k.startsWith(`${path}/`));
  }

  // ---- destination: Incus, data -------------------------------------------------------------------------

  private destinationHandlers(): Handler[] {
    const dst = this.destination;
    const { plan } = this;
    const withInstance = (name: string, f: (i: DestinationInstance) => CommandResult) => {
      const i = dst.instances[name];
      return i ? f(i) : fail(MISSING_INSTANCE);
    };
    const CERT = String.raw`"\$\{INCUS_CONF:-\$HOME/\.config/incus\}/client\.crt"`;
    return [
      { name: 'incus version', on: 'destination', query: true, re: /^incus version$/, run: () => ok('Client version: 6.0.4\nServer version: 6.0.4\n') },
      { name: 'client certificate exists', on: 'destination', query: true, re: new RegExp(`^test -s ${CERT}$`), run: () => (dst.clientCert ? ok() : fail('')) },
      {
        name: 'read the client certificate',
        on: 'destination',
        query: true,
        re: new RegExp(`^cat ${CERT}$`),
        run: () => (dst.clientCert ? ok(`${dst.clientCert}\n`) : fail('cat: /root/.config/incus/client.crt: No such file or directory')),
      },
      {
        name: 'generate the client certificate',
        on: 'destination',
        re: /^incus remote generate-certificate$/,
        run: () => {
          if (dst.clientCert) return fail('Error: Client certificate already exists');
          dst.clientCert = CLIENT_CERT;
          this.effect('destination', 'generate the client certificate');
          return ok();
        },
      },
      {
        name: 'add the source remote',
        on: 'destination',
        re: rx(/^incus remote add <arg> (https:\/\/\S+) --protocol incus --accept-certificate$/),
        run: ({ m: [, name = '', url = ''] }) => {
          const remote = unq(name);
          if (dst.remotes[remote]) return fail(`Error: Remote ${remote} exists as <${dst.remotes[remote]}>`);
          const refused = this.sourceApi(url);
          if (refused) return refused;
          dst.remotes[remote] = url;
          this.effect('destination', `remote add ${remote} ${url}`);
          return ok();
        },
      },
      {
        name: 'list the remotes',
        on: 'destination',
        query: true,
        re: /^incus remote list --format csv$/,
        run: () => ok(lines(['images,https://images.linuxcontainers.org,simplestreams,none,YES,NO,NO', 'local (current),unix://,incus,file access,NO,YES,NO', ...Object.entries(dst.remotes).map(([n, u]) => `${n},${u},incus,tls,NO,NO,NO`)])),
      },
      {
        name: 'list the containers through the remote',
        on: 'destination',
        query: true,
        re: rx(/^incus list <name>: --format csv -c n$/),
        run: ({ m: [, remote = ''] }) => this.throughRemote(remote) ?? ok(lines(Object.keys(this.source.containers))),
      },
      { name: 'list the instances', on: 'destination', query: true, re: /^incus list --format csv -c n$/, run: () => ok(lines(Object.keys(dst.instances))) },
      {
        name: "an instance's address (incus list --format json)",
        on: 'destination',
        query: true,
        re: rx(/^incus list '\^<name>\$' --format json$/),
        run: ({ m: [, name = ''] }) => {
          const i = dst.instances[name];
          if (!i) return ok('[]\n');
          // DHCP takes a moment after the start: a few polls see no IPv4 yet.
          const showing = i.status === 'Running' && i.ip !== undefined && i.pollsUntilAddress-- <= 0;
          const eth0 = showing ? nic(i.ip as string) : { addresses: [{ family: 'inet6', address: 'fe80::216:3eff:fe00:1', netmask: '64', scope: 'link' }] };
          return ok(`${JSON.stringify([{ name, status: i.status, state: i.status === 'Running' ? { status: i.status, network: { eth0 } } : { status: i.status, network: null } }])}\n`);
        },
      },
      {
        name: 'query an instance',
        on: 'destination',
        query: true,
        re: rx(/^incus query \/1\.0\/instances\/<name>$/),
        run: ({ m: [, name = ''] }) =>
          withInstance(name, (i) => ok(`${JSON.stringify({ name, status: i.status, type: 'container', profiles: ['default'], config: i.config, devices: i.devices, expanded_config: i.config, expanded_devices: i.devices }, null, 4)}\n`)),
      },
      {
        name: 'read a config key',
        on: 'destination',
        query: true,
        re: rx(/^incus config get <name> (\S+)$/),
        run: ({ m: [, name = '', key = ''] }) => withInstance(name, (i) => ok(`${i.config[key] ?? ''}\n`)),
      },
      {
        name: 'set a config key (the mark, privileged)',
        on: 'destination',
        re: rx(/^incus config set <name> ([^=\s]+)=(\S*)$/),
        run: ({ m: [, name = '', key = '', value = ''] }) =>
          withInstance(name, (i) => {
            if (i.config[key] !== value) this.effect('destination', `config set ${name} ${key}=${value}`);
            i.config[key] = value;
            return ok();
          }),
      },
      { name: 'list devices', on: 'destination', query: true, re: rx(/^incus config device list <name>$/), run: ({ m: [, name = ''] }) => withInstance(name, (i) => ok(lines(Object.keys(i.devices)))) },
      {
        name: 'read a device key',
        on: 'destination',
        query: true,
        re: rx(/^incus config device get <name> (\S+) (\S+)$/),
        run: ({ m: [, name = '', dev = '', key = ''] }) => withInstance(name, (i) => (i.devices[dev] ? ok(`${i.devices[dev]?.[key] ?? ''}\n`) : fail("Error: Device doesn't exist"))),
      },
      {
        name: 'add a device (eth0)',
        on: 'destination',
        re: rx(/^incus config device add <name> (.+)$/),
        run: ({ m: [, name = '', rest = ''] }) =>
          withInstance(name, (i) => {
            const [dev = '', type = '', ...kv] = words(rest);
            if (i.devices[dev]) return fail('Error: The device already exists');
            i.devices[dev] = { type, ...Object.fromEntries(kv.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)])) };
            this.effect('destination', `device add ${name} ${dev} ${type}`);
            return ok(`Device ${dev} added to ${name}\n`);
          }),
      },
      {
        name: 'remove a device',
        on: 'destination',
        re: rx(/^incus config device remove <name> <arg>$/),
        run: ({ m: [, name = '', dev = ''] }) =>
          withInstance(name, (i) => {
            if (!i.devices[unq(dev)]) return fail("Error: Device doesn't exist");
            delete i.devices[unq(dev)];
            this.effect('destination', `device remove ${name} ${unq(dev)}`);
            return ok();
          }),
      },
      {
        name: 'remove the proxy devices (network phase)',
        on: 'destination',
        re: rx(/^for d in \$\(incus config device list <name>\); do if \[ "\$\(incus config device get <1> "\$d" type\)" = proxy \]; then incus config device remove <1> "\$d" \|\| exit 1; fi; done$/),
        run: ({ m: [, name = ''] }) => {
          const i = dst.instances[name];
          for (const [dev, d] of Object.entries(i?.devices ?? {})) {
            if (d.type !== 'proxy' || !i) continue;
            delete i.devices[dev];
            this.effect('destination', `device remove ${name} ${dev}`);
          }
          return ok();
        },
      },
      {
        name: 'copy from the source (deleting a half-made copy first)',
        on: 'destination',
        re: rx(/^(?:if incus query \/1\.0\/instances\/<name> >\/dev\/null 2>&1; then incus delete --force <1> \|\| exit 1; fi; )?incus copy --instance-only <name>:<name> <name> --storage (\S+)(?: && incus config set <4> ([^=\s]+)=(\S+))?$/),
        when: ([, guarded = '', , , name = '']) => guarded === '' || guarded === name,
        run: ({ m: [, guarded = '', remote = '', src = '', name = '', pool = '', key = '', value = ''] }) => {
          if (guarded) this.deleteInstance(name);
          const copied = this.copyInstance(remote, src, name, pool);
          // The mark, in the same command, once the copy is whole.
          if (copied.exitCode === 0 && key) {
            (this.destination.instances[name] as DestinationInstance).config[key] = value;
            this.effect('destination', `config set ${name} ${key}=${value}`);
          }
          return copied;
        },
        // Halfway: the copy exists, unmarked (the mark comes only once it is whole) and unusable.
        half: ({ m: [, guarded = '', remote = '', src = '', name = '', pool = ''] }) => {
          if (guarded) this.deleteInstance(name);
          if (this.copyInstance(remote, src, name, pool).exitCode === 0) (this.destination.instances[name] as DestinationInstance).incomplete = true;
        },
      },
      {
        name: 'delete a copy if this migration marked it (undo)',
        on: 'destination',
        re: rx(/^if test "\$\(incus config get <name> (\S+) 2>\/dev\/null\)" = <arg>; then incus delete --force <1>; fi$/),
        run: ({ m: [, name = '', key = '', value = ''] }) => {
          if (dst.instances[name]?.config[key] === unq(value)) this.deleteInstance(name);
          return ok();
        },
      },
      {
        name: 'delete whatever holds a name that was free at preflight (undo)',
        on: 'destination',
        re: rx(/^if incus query \/1\.0\/instances\/<name> >\/dev\/null 2>&1; then incus delete --force <1>; fi$/),
        run: ({ m: [, name = ''] }) => {
          if (dst.instances[name]) this.deleteInstance(name);
          return ok();
        },
      },
      {
        name: 'incus delete --force',
        on: 'destination',
        re: rx(/^incus delete --force <name>$/),
        run: ({ m: [, name = ''] }) =>
          withInstance(name, () => {
            this.deleteInstance(name);
            return ok();
          }),
      },
      {
        name: 'incus start',
        on: 'destination',
        re: rx(/^incus start <name>$/),
        run: ({ m: [, name = ''] }) =>
          withInstance(name, (i) => {
            if (i.status === 'Running') return fail('Error: The instance is already running');
            if (i.incomplete) return fail(`Error: Failed to start instance "${name}": its root disk is incomplete (an interrupted copy)`);
            // A disk device copied from LXD points at a source host path the destination lacks.
            for (const [dev, d] of Object.entries(i.devices)) {
              if (d.type === 'disk' && d.source && !this.existsOn('destination', d.source)) return fail(`Error: Failed to start device "${dev}": Missing source path "${d.source}" for disk "${dev}"`);
            }
            i.status = 'Running';
            const eth0 = i.devices.eth0;
            if (eth0?.type === 'nic' && eth0.network === plan.destination.bridge && !i.ip) i.ip = this.leaseIp();
            i.pollsUntilAddress = this.options.addressAfterPolls ?? 0;
            this.effect('destination', `start ${name}`);
            return ok();
          }),
      },
      {
        name: 'incus stop',
        on: 'destination',
        re: rx(/^incus stop (?:--force )?<name>$/),
        run: ({ m: [, name = ''] }) =>
          withInstance(name, (i) => {
            if (i.status === 'Stopped') return fail('Error: The instance is already stopped');
            i.status = 'Stopped';
            this.effect('destination', `stop ${name}`);
            return ok();
          }),
      },
      {
        name: 'free space under staging',
        on: 'destination',
        query: true,
        re: rx(/^mkdir -p <path> && df -B1 --output=avail <1> \| tail -n 1$/),
        run: () => ok(`${this.options.freeBytes ?? 500 * 2 ** 30}\n`),
      },
      { name: "the destination's public key", on: 'destination', query: true, re: rx(/^ssh-keygen -y -f <path>$/), run: () => ok(`${DEST_PUBKEY} administrator@destination\n`) },
      {
        name: 'pin the source host key (stdin)',
        on: 'destination',
        re: rx(/^sh -c '[^']*while IFS= read -r l; do grep -qxF[^']*' pin <path>$/),
        run: ({ m: [, file = ''], stdin = '' }) => {
          const have = (dst.files[file] ?? '').split('\n').filter(Boolean);
          const add = stdin.split('\n').filter((l) => l && !have.includes(l));
          if (add.length || dst.files[file] === undefined) dst.files[file] = lines([...have, ...add]);
          if (add.length) this.effect('destination', `pin ${add.length} host key(s) in ${file}`);
          return ok();
        },
      },
      {
        name: 'log in to the source (pull SSH)',
        on: 'destination',
        query: true,
        re: /^ssh (.+) (\S+)@(\S+) true$/,
        run: ({ m: [, opts = '', , address = ''] }) => this.pullAccess(opts, address) ?? ok(),
      },
      {
        name: 'a TCP port answers (/dev/tcp probe)',
        on: 'destination',
        query: true,
        re: /^timeout 5 bash -c ': <\/dev\/tcp\/([\d.]+)\/(\d+)'$/,
        run: ({ m: [, ip = '', port = ''] }) => {
          if (`${ip}:${port}` === `${plan.source.apiAddress}:${plan.source.apiPort}`) return this.source.httpsAddress === `${ip}:${port}` ? ok() : fail(`bash: connect: Connection refused\nbash: line 1: /dev/tcp/${ip}/${port}: Connection refused`);
          const i = Object.values(dst.instances).find((x) => x.ip === ip);
          if (i?.status !== 'Running') return fail('bash: connect: No route to host', 124);
          return this.down.has(`${i.name}:${port}`) ? fail(`bash: connect: Connection refused\nbash: line 1: /dev/tcp/${ip}/${port}: Connection refused`) : ok();
        },
      },
      {
        name: 'a service answers its declared probe (dns, udp, http over bash /dev/udp, /dev/tcp)',
        on: 'destination',
        query: true,
        re: /^timeout 5 bash -c '[^']*' (dns|udp|http)-probe ([\d.]+) (\d+)((?: (?:'[^']*'|\S+))*)$/,
        run: ({ m: [, kind = '', ip = '', port = '', rest = ''] }) => {
          const i = Object.values(dst.instances).find((x) => x.ip === ip);
          if (i?.status !== 'Running') return fail('bash: connect: No route to host', 124);
          if (this.down.has(`${i.name}:${port}`)) return fail(kind === 'http' ? `bash: connect: Connection refused` : 'no reply', 124);
          if (kind !== 'udp') return ok();
          const [, expect = ''] = words(rest);
          const reply = this.options.udpReplies?.[`${i.name}:${port}`];
          return reply?.includes(expect) ? ok() : fail('no reply containing the expected text', 124);
        },
      },
      {
        name: 'pull the data (rsync into staging)',
        on: 'destination',
        re: rx(/^mkdir -p <path> && rsync -aHAX --numeric-ids -z --partial --delete (?:--bwlimit=\S+ )?--info=progress2 -e ('[^']*') (\S+)@([^:\s]+):<path>\/ <1>\/(?: \|\| \[ \$\? -eq 24 \])?$/),
        run: (x) => this.pull(x, false),
        half: (x) => void this.pull(x, true),
      },
      {
        name: 'the data is already in its final place',
        on: 'destination',
        query: true,
        re: rx(/^test -d <path> && test ! -e <path>$/),
        run: ({ m: [, final = '', staging = ''] }) => (dst.folders[final] && !this.existsOn('destination', staging) ? ok() : fail('')),
      },
      {
        name: 'move staging to the final folder',
        on: 'destination',
        re: rx(/^sh -c '[^']*' move <path> <path> <path>$/),
        run: ({ m: [, staging = '', , final = ''] }) => {
          const files = dst.folders[staging];
          if (!files) return dst.folders[final] ? fail(`rsync: [sender] change_dir "${staging}" failed: No such file or directory (2)`, 23) : fail(`mv: cannot stat '${staging}': No such file or directory`);
          dst.folders[final] = files;
          dst.meta[final] = dst.meta[staging] ?? {};
          delete dst.folders[staging];
          delete dst.meta[staging];
          this.effect('destination', `move ${staging} → ${final}`);
          return ok();
        },
      },
      {
        name: 'push the data into the container (tar)',
        on: 'destination',
        re: rx(/^incus exec <name> -- mkdir -p <path> && tar -C <path> --numeric-owner -cf - \. \| incus exec <1> -- tar -C <2> --numeric-owner -xpf -$/),
        run: (x) => this.push(x, false),
        half: (x) => void this.push(x, true),
      },
      {
        name: "the push's check: the content check && the owners check",
        on: 'destination',
        query: true,
        re: /^(sh -c '[^']*' listing [^|]+ \| incus exec \S+ -- sh -c '[^']*' check \S+) && (sh -c '[^']*' owners [^|]+ \| incus exec \S+ -- sh -c '[^']*' check-owners \S+)$/,
        run: ({ host, m: [, content = '', owners = ''] }) => {
          const a = this.query(host, content) ?? this.refuse(host, content);
          return a.exitCode !== 0 ? a : (this.query(host, owners) ?? this.refuse(host, owners));
        },
      },
      {
        name: 'every pushed file is in the container (listing | check)',
        on: 'destination',
        query: true,
        re: rx(/^sh -c '[^']*' listing <path>((?: \S+)*) \| incus exec <name> -- sh -c '[^']*' check <path>$/),
        run: ({ m: [, final = '', dirs = '', name = '', into = ''] }) => this.withRunning(name, (i) => this.checkPushed(i, final, words(dirs), into)),
      },
      {
        name: 'shift the final copy to the container view (shift-ids)',
        on: 'destination',
        re: rx(/^bash -c '[^']*' shift-ids <path> (\d+)$/),
        run: ({ m: [, final = '', base = ''] }) => {
          const b = Number(base);
          const meta = dst.meta[final];
          if (!dst.folders[final] || !meta) return fail(`bash: line 1: cd: ${final}: No such file or directory`);
          let n = 0;
          for (const m of Object.values(meta)) {
            if (b === 0 || (m.uid < b && m.gid < b)) continue;
            if (m.uid >= b) m.uid -= b;
            if (m.gid >= b) m.gid -= b;
            n++;
          }
          if (n) this.effect('destination', `shift ${n} file(s) of ${final} by -${b}`);
          return ok();
        },
      },
      {
        name: 'no file of the final copy is shifted (shift-ids check)',
        on: 'destination',
        query: true,
        re: rx(/^bash -c '[^']*' shifted <path> (\d+)$/),
        run: ({ m: [, final = '', base = ''] }) => {
          const b = Number(base);
          return b === 0 || Object.values(dst.meta[final] ?? {}).every((m) => m.uid < b && m.gid < b) ? ok() : fail('');
        },
      },
      {
        name: 'every pushed file has the numeric owner and mode of the final copy (owners | check-owners)',
        on: 'destination',
        query: true,
        re: rx(/^sh -c '[^']*' owners <path>((?: \S+)*) \| incus exec <name> -- sh -c '[^']*' check-owners <path>$/),
        run: ({ m: [, final = '', dirs = '', name = '', into = ''] }) =>
          this.withRunning(name, (i) => {
            const files = dst.folders[final];
            if (!files) return fail(`sh: 1: cd: can't cd to ${final}`, 1, 'owners ok=0 bad=0 of \n');
            const meta = dst.meta[final] ?? {};
            const paths = underDirs(files, words(dirs));
            const bad = paths.filter((p) => {
              const f = i.files[`${into}/${p}`];
              const m = meta[p];
              return !f || !m || f.uid !== m.uid || f.gid !== m.gid || f.mode !== m.mode;
            });
            const out = `owners ok=${paths.length - bad.length} bad=${bad.length} of ${paths.length}\n`;
            return bad.length === 0 ? ok(out) : { exitCode: 1, stdout: out, stderr: lines(bad.map((p) => `owner or mode differs: ${p}`)) };
          }),
      },
      {
        name: 'incus exec <container> -- <command>',
        on: 'destination',
        re: rx(/^incus exec <name> -- ([\s\S]+)$/),
        when: ([, , inner = '']) => this.insideHandler(inner) !== undefined,
        query: ([, , inner = '']) => this.insideHandler(inner)?.h.query === true,
        run: (x) => {
          const [, name = '', inner = ''] = x.m;
          const found = this.insideHandler(inner);
          return this.withRunning(name, (i) => (found ? found.h.run(i, found.m, x) : this.refuse(x.host, x.command)));
        },
      },
    ];
  }

  /** The source API at `url` answers and trusts the destination's client certificate. */
  private sourceApi(url: string): CommandResult | undefined {
    if (url !== `https://${this.source.httpsAddress}`) return fail(`Error: Unable to connect to: ${url.replace(/^https:\/\//, '')}`);
    if (!this.destination.clientCert || !this.source.trusted.includes(this.destination.clientCert)) return fail('Error: not authorized');
    return undefined;
  }

  private throughRemote(remote: string): CommandResult | undefined {
    const url = this.destination.remotes[remote];
    if (!url) return fail(`Error: The remote "${remote}" doesn't exist`);
    return this.sourceApi(url);
  }

  private copyInstance(remote: string, src: string, name: string, pool: string): CommandResult {
    const refused = this.throughRemote(remote);
    if (refused) return refused;
    const s = this.source.containers[src];
    if (!s) return fail(`Error: Failed getting instance "${src}": ${MISSING_INSTANCE}`);
    if (s.status === 'Running') return fail("Error: Failed instance creation: Unable to perform container live migration. CRIU isn't installed on the source server");
    if (this.destination.instances[name]) return fail(`Error: Failed creating instance record: Instance "${name}" already exists`);
    // A remote copy: the source's config (volatile keys regenerated) and own devices; no data mounts come along.
    this.destination.instances[name] = {
      name,
      status: 'Stopped',
      devices: clone(s.devices),
      config: { ...nonVolatile(s.config), 'volatile.uuid': createHash('sha256').update(`${name}${this.effects.length}`).digest('hex').slice(0, 32) },
      pollsUntilAddress: 0,
      files: {},
      users: { ...DEFAULT_USERS },
      loaded: {},
    };
    this.effect('destination', `copy ${remote}:${src} → ${name} (pool ${pool})`);
    return ok();
  }

  private deleteInstance(name: string): void {
    if (!this.destination.instances[name]) return;
    delete this.destination.instances[name];
    this.effect('destination', `delete --force ${name}`);
  }

  private leaseIp(): string {
    const prefix = this.plan.destination.bridgeSubnet.split('/')[0]?.split('.').slice(0, 3).join('.') ?? '10.0.0';
    return `${prefix}.${this.nextIp++}`;
  }

  /** `ssh` (or rsync's) from the destination to the source: the host key pinned, the key authorized. */
  private pullAccess(sshOpts: string, address: string): CommandResult | undefined {
    // rsync's `-e '<ssh command>'` is one quoted word; the pull-ssh step's options are plain words.
    const opts = words(sshOpts.startsWith("'") ? unq(sshOpts) : sshOpts);
    const kh = opts.map((o) => /^UserKnownHostsFile=(.+)$/.exec(o)?.[1]).find(Boolean) ?? '~/.ssh/known_hosts';
    const { source } = this.plan.hosts;
    if (address !== source.address) return fail(`ssh: connect to host ${address} port ${source.port}: Connection refused`, 255);
    const name = source.port === 22 ? source.address : `[${source.address}]:${source.port}`;
    const pinned = (this.destination.files[kh] ?? '').split('\n').some((l) => (l.split(' ')[0] ?? '').split(',').includes(name));
    if (!pinned) return fail('Host key verification failed.', 255);
    const authorized = (this.source.files[source.authorizedKeys ?? '$HOME/.ssh/authorized_keys'] ?? '').split('\n').includes(DEST_PUBKEY);
    if (!authorized) return fail(`${source.user}@${address}: Permission denied (publickey).`, 255);
    return undefined;
  }

  private pull({ m: [, staging = '', sshOpts = '', , address = '', from = ''] }: Exec, half: boolean): CommandResult {
    const refused = this.pullAccess(sshOpts, address);
    if (refused) return { ...refused, stderr: `${refused.stderr}rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]\n` };
    const files = this.source.folders[from];
    if (!files) return fail(`rsync: [sender] change_dir "${from}" failed: No such file or directory (2)`, 23);
    const paths = Object.keys(files).sort();
    const copied = Object.fromEntries((half ? paths.slice(0, Math.ceil(paths.length / 2)) : paths).map((p) => [p, files[p] as string]));
    // --numeric-ids: the owners as the source host stores them (shifted, for an unprivileged source).
    const srcMeta = this.source.meta[from] ?? {};
    const meta = Object.fromEntries(Object.keys(copied).map((p) => [p, { ...(srcMeta[p] ?? { uid: 0, gid: 0, mode: '644' }) }]));
    // --delete: staging becomes exactly the source (or half of it, mid-transfer).
    if (JSON.stringify(this.destination.folders[staging]) !== JSON.stringify(copied) || JSON.stringify(this.destination.meta[staging]) !== JSON.stringify(meta)) {
      this.effect('destination', `rsync ${from}/ → ${staging}/${half ? ' (half)' : ''}`);
    }
    this.destination.folders[staging] = copied;
    this.destination.meta[staging] = meta;
    return ok(`${this.duOf(from) ?? 0} 100%  10.00MB/s    0:00:01 (xfr#${paths.length}, to-chk=0/${paths.length})\n`);
  }

  private push({ m: [, name = '', into = '', final = ''] }: Exec, half: boolean): CommandResult {
    return this.withRunning(name, (i) => {
      const files = this.destination.folders[final];
      if (!files) return fail(`tar: ${final}: Cannot open: No such file or directory\ntar: This does not look like a tar archive`, 2);
      const paths = Object.keys(files).sort();
      let changed = 0;
      for (const p of half ? paths.slice(0, Math.ceil(paths.length / 2)) : paths) {
        const target = `${into}/${p}`;
        const was = i.files[target];
        // tar keeps the mtime, the numeric owner and group (--numeric-owner) and the mode (-p, as root).
        const m = this.destination.meta[final]?.[p] ?? { uid: 0, gid: 0, mode: '644' };
        const now = { content: files[p] as string, uid: m.uid, gid: m.gid, mode: m.mode, modified: false };
        if (JSON.stringify(was) !== JSON.stringify(now)) changed++;
        i.files[target] = now;
      }
      if (changed) this.effect('destination', `push ${changed} file(s) into ${name}:${into}${half ? ' (half)' : ''}`);
      return ok();
    });
  }

  /** CONTAINER_CHECK_SCRIPT over LISTING_SCRIPT: every file of the final copy is in the container. */
  private checkPushed(i: DestinationInstance, final: string, dirs: string[], into: string): CommandResult {
    const files = this.destination.folders[final];
    if (!files) return fail(`sh: 1: cd: can't cd to ${final}`, 1, 'files ok=0 changed-by-services=0 bad=0 of \n');
    let good = 0;
    let changed = 0;
    const bad: string[] = [];
    const paths = underDirs(files, dirs);
    for (const p of paths) {
      const f = i.files[`${into}/${p}`];
      if (!f) bad.push(`missing: ${p}`);
      else if (f.modified) changed++;
      else if (f.content === files[p]) good++;
      else bad.push(`differs: ${p}`);
    }
    const out = `files ok=${good} changed-by-services=${changed} bad=${bad.length} of ${paths.length}\n`;
    return bad.length === 0 && good + changed === paths.length ? ok(out) : { exitCode: 1, stdout: out, stderr: lines(bad) };
  }

  /** Runs `f` on a running instance, else fails as `incus exec` does. */
  private withRunning(name: string, f: (i: DestinationInstance) => CommandResult): CommandResult {
    const i = this.destination.instances[name];
    if (!i) return fail(MISSING_INSTANCE);
    if (i.status !== 'Running') return fail('Error: Instance is not running');
    return f(i);
  }

  // ---- inside a destination container ----------------------------------------------------------------

  private insideHandler(inner: string): { h: InsideHandler; m: string[] } | undefined {
    for (const h of this.inside) {
      const r = h.re.exec(inner);
      if (r) return { h, m: Array.from(r, (s) => s ?? '') };
    }
    return undefined;
  }

  private insideHandlers(): InsideHandler[] {
    // Written over a copy of the live file: owner, group and mode stay as they were.
    const write = (i: DestinationInstance, path: string, content: string, like: ContainerFile) => {
      const was = i.files[path];
      if (was?.content === content && was.uid === like.uid && was.gid === like.gid && was.mode === like.mode) return;
      i.files[path] = { content, uid: like.uid, gid: like.gid, mode: like.mode, modified: true };
      this.effect('destination', `write ${i.name}:${path}`);
    };
    const noFile = (p: string) => fail(`cat: ${p}: No such file or directory`);
    const caddyfile = (i: DestinationInstance, p: string): { text: string; json: string } | CommandResult => {
      const f = i.files[p];
      if (!f) return fail(`Error: reading input file: open ${p}: no such file or directory`);
      const adapted = adaptCaddyfile(f.content);
      return 'error' in adapted ? fail(adapted.error) : { text: f.content, json: adapted.json };
    };
    return [
      {
        name: 'caddy adapt',
        query: true,
        re: rx(/^(\S+) adapt --config <path> --adapter caddyfile$/),
        run: (i, [, , p = '']) => {
          const c = caddyfile(i, p);
          return 'json' in c ? ok(`${c.json}\n`) : c;
        },
      },
      {
        name: 'caddy validate',
        query: true,
        re: rx(/^(\S+) validate --config <path> --adapter caddyfile$/),
        run: (i, [, , p = '']) => {
          const c = caddyfile(i, p);
          return 'json' in c ? ok('Valid configuration\n') : c;
        },
      },
      {
        name: 'caddy reload',
        re: rx(/^(\S+) reload --config <path> --adapter caddyfile( --force)?$/),
        run: (i, [, , p = '', force]) => {
          const c = caddyfile(i, p);
          if (!('json' in c)) return c;
          const changed = i.loaded.caddy !== c.text;
          if (changed || force) this.effect('destination', `caddy reload${force ? ' --force' : ''} in ${i.name}`);
          i.loaded.caddy = c.text;
          // Like Caddy: a (re)load with a new config, or a forced one, tries every name without a certificate now.
          if (changed || force) this.obtainCertificates(i);
          return ok();
        },
      },
      {
        name: "Caddy's log (tls.obtain lines)",
        query: true,
        re: rx(/^sh -c 'tail -c \d+ "\$1" \| grep -F .*tls\.obtain.* \| tail -n \d+' read-log <path>$/),
        run: (i, [, p = '']) => (i.name === this.plan.caddy?.container && p === this.plan.caddy.logFile ? ok(this.acme.log.map((l) => `${l}\n`).join('')) : noFile(p)),
      },
      {
        name: 'cp -p',
        re: rx(/^cp -p <path> <path>$/),
        run: (i, [, from = '', to = '']) => {
          const f = i.files[from];
          if (!f) return fail(`cp: cannot stat '${from}': No such file or directory`);
          if (JSON.stringify(i.files[to]) !== JSON.stringify(f)) this.effect('destination', `cp -p ${i.name}:${from} ${to}`);
          i.files[to] = { ...f };
          return ok();
        },
      },
      {
        name: 'mv',
        re: rx(/^mv <path> <path>$/),
        run: (i, [, from = '', to = '']) => {
          const f = i.files[from];
          if (!f) return fail(`mv: cannot stat '${from}': No such file or directory`);
          i.files[to] = f;
          delete i.files[from];
          this.effect('destination', `mv ${i.name}:${from} ${to}`);
          return ok();
        },
      },
      { name: 'test -f', query: true, re: rx(/^test -f <path>$/), run: (i, [, p = '']) => (i.files[p] ? ok() : fail('')) },
      { name: 'test ! -e', query: true, re: rx(/^test ! -e <path>$/), run: (i, [, p = '']) => (i.files[p] ? fail('') : ok()) },
      { name: 'cat', query: true, re: rx(/^cat <path>$/), run: (i, [, p = '']) => (i.files[p] ? ok(i.files[p]?.content) : noFile(p)) },
      {
        // The service fixes' file edits (src/runbook/fix-scripts.ts): the real script, run by /bin/sh
        // on a copy of the container's file, so the fake agrees with the container by construction.
        name: 'service fix file edit (gbo-fix)',
        re: /^sh -c '([^']*)' gbo-fix ([\s\S]*)$/,
        run: (i, [, script = '', rest = ''], { stdin }) => {
          const [prog = '', mode = '', path = '', ...assignments] = words(rest);
          const f = i.files[path];
          if (!f) return fail(`gbo: ${path}: no such file in the container; nothing changed`, 2);
          const dir = mkdtempSync(join(tmpdir(), 'gbo-fix-'));
          const copy = join(dir, 'file');
          writeFileSync(copy, f.content);
          const r = spawnSync('/bin/sh', ['-c', script, 'gbo-fix', prog, mode, copy, ...assignments], { input: stdin ?? '', encoding: 'utf8' });
          const after = readFileSync(copy, 'utf8');
          rmSync(dir, { recursive: true, force: true });
          if (mode === 'apply' && after !== f.content) write(i, path, after, f);
          return { exitCode: r.status ?? 1, stdout: r.stdout.split(copy).join(path), stderr: r.stderr.split(copy).join(path) };
        },
      },
      {
        name: 'systemctl daemon-reload / restart',
        re: /^systemctl (daemon-reload|restart \S+)$/,
        run: (i, [, what = '']) => {
          this.effect('destination', `systemctl ${what} in ${i.name}`);
          // Caddy restarted: it loads its config and tries every name without a certificate.
          if (what === 'restart caddy' && i.name === this.plan.caddy?.container) {
            i.loaded.caddy = i.files[this.plan.caddy.configPath]?.content ?? '';
            this.obtainCertificates(i);
          }
          return ok();
        },
      },
      {
        name: 'write the new Caddyfile next to the live one (stdin)',
        re: rx(/^sh -c 'cp -p "\$2" "\$1" && cat > "\$1"' write <path> <path>$/),
        run: (i, [, next = '', live = ''], { stdin = '' }) => {
          const f = i.files[live];
          if (!f) return fail(`cp: cannot stat '${live}': No such file or directory`);
          write(i, next, stdin, f);
          return ok();
        },
      },
      {
        name: 'write the zone through a .new file (stdin)',
        re: rx(/^sh -c 'cp -p "\$1" "\$1\.new" && cat > "\$1\.new" && mv "\$1\.new" "\$1"' write <path>$/),
        run: (i, [, p = ''], { stdin = '' }) => {
          const f = i.files[p];
          if (!f) return fail(`cp: cannot stat '${p}': No such file or directory`);
          write(i, p, stdin, f);
          return ok();
        },
      },
      {
        name: 'reload the DNS server (pkill -HUP)',
        re: /^pkill -HUP (\S+)$/,
        run: (i) => {
          const zone = this.plan.dns.zoneFile ? (i.files[this.plan.dns.zoneFile]?.content ?? '') : '';
          if (i.loaded.coredns !== zone) this.effect('destination', `reload the DNS server in ${i.name}`);
          i.loaded.coredns = zone;
          this.publish(zone);
          return ok();
        },
      },
      {
        name: 'required files (test -e / -x / owner)',
        query: true,
        re: /^sh -c '(test -e [^']*)'$/,
        run: (i, [, tests = '']) => {
          for (const t of tests.split(' && ')) {
            const exists = /^test -[ex] (\S+)$/.exec(t);
            const owner = /^test "\$\(stat -c %U (\S+)\)" = (\S+)$/.exec(t);
            if (exists) {
              if (!i.files[exists[1] as string]) return fail('');
            } else if (owner) {
              const uid = i.users[owner[2] as string];
              if (uid === undefined || i.files[owner[1] as string]?.uid !== uid) return fail('');
            } else return this.refuse('destination', `incus exec ${i.name} -- sh -c '${tests}'`);
          }
          return ok();
        },
      },
    ];
  }

  // ---- destination: network ---------------------------------------------------------------------------

  private networkHandlers(): Handler[] {
    const dst = this.destination;
    const saved = () => this.iptablesSave('destination');
    const writeFile = (path: string, text: string) => {
      if (dst.files[path] === text) return;
      dst.files[path] = text;
      this.effect('destination', `write ${path}`);
    };
    const allowed = (p: string) => dst.ufw.allowed.includes(p);
    return [
      {
        name: 'ip_forward on',
        on: 'destination',
        re: /^sysctl -w net\.ipv4\.ip_forward=([01])$/,
        run: ({ m: [, v = ''] }) => {
          if (dst.ipForward !== v) this.effect('destination', `net.ipv4.ip_forward=${v}`);
          dst.ipForward = v;
          return ok(`net.ipv4.ip_forward = ${v}\n`);
        },
      },
      { name: 'read ip_forward', on: 'destination', query: true, re: /^sysctl -n net\.ipv4\.ip_forward$/, run: () => ok(`${dst.ipForward}\n`) },
      {
        name: 'loopback ACCEPT at the top of INPUT',
        on: 'any',
        re: /^iptables -D INPUT -i lo -j ACCEPT 2>\/dev\/null; iptables -I INPUT 1 -i lo -j ACCEPT$/,
        run: ({ host }) => {
          const input = this.fs(host).iptables.filter.INPUT ?? [];
          if (input[0] === '-i lo -j ACCEPT' && input.indexOf('-i lo -j ACCEPT', 1) < 0) return ok();
          const at = input.indexOf('-i lo -j ACCEPT');
          if (at >= 0) input.splice(at, 1);
          input.unshift('-i lo -j ACCEPT');
          this.effect(host, 'iptables -I INPUT 1 -i lo -j ACCEPT');
          return ok();
        },
      },
      {
        name: 'loopback is the first INPUT rule',
        on: 'any',
        query: true,
        re: /^iptables -S INPUT \| sed -n 2p \| grep -qx -- '-A INPUT -i lo -j ACCEPT'$/,
        run: ({ host }) => (this.fs(host).iptables.filter.INPUT?.[0] === '-i lo -j ACCEPT' ? ok() : fail('')),
      },
      {
        name: 'drop DNAT rules for a port (then maybe add one)',
        on: 'destination',
        re: /^iptables -t nat -S PREROUTING \| grep -F -- ('[^']*') \| sed 's\/\^-A \/-D \/' \| while read -r r; do iptables -t nat \$r \|\| exit 1; done(?:; iptables (-t nat -A [^;|&<>]+))?$/,
        run: ({ m: [, match = '', add = ''] }) => {
          const pre = dst.iptables.nat.PREROUTING ?? [];
          for (const rule of pre.filter((r) => `-A PREROUTING ${r}`.includes(unq(match)))) {
            pre.splice(pre.indexOf(rule), 1);
            this.effect('destination', `iptables -t nat -D PREROUTING ${rule}`);
          }
          return add ? this.iptables('destination', words(add)) : ok();
        },
      },
      {
        name: 'persist the rules (iptables-save)',
        on: 'destination',
        re: rx(/^mkdir -p <path> && iptables-save > <path>$/),
        run: ({ m: [, , file = ''] }) => {
          writeFile(file, saved());
          return ok();
        },
      },
      {
        name: 'save the rules again if persisted (undo)',
        on: 'destination',
        re: rx(/^if \[ -f <path> \]; then iptables-save > <1>; fi$/),
        run: ({ m: [, file = ''] }) => {
          if (dst.files[file] !== undefined) writeFile(file, saved());
          return ok();
        },
      },
      {
        name: 'the boot-time restore unit',
        on: 'destination',
        re: rx(/^mkdir -p <path> && printf '%s\\n' ('[^']*') > <path> && if \[ -d \/run\/systemd\/system \]; then systemctl daemon-reload && systemctl enable (\S+); fi$/),
        run: ({ m: [, , text = '', file = ''] }) => {
          writeFile(file, `${unq(text)}\n`);
          return ok();
        },
      },
      {
        name: 'the restore unit names the rules file',
        on: 'destination',
        query: true,
        re: rx(/^test -f <path> && grep -qF <path> <1>$/),
        run: ({ m: [, file = '', rules = ''] }) => (dst.files[file]?.includes(rules) ? ok() : fail('')),
      },
      {
        name: 'ufw allow',
        on: 'destination',
        re: /^ufw allow (\d+\/tcp)$/,
        run: ({ m: [, p = ''] }) => {
          if (!allowed(p)) {
            dst.ufw.allowed.push(p);
            this.effect('destination', `ufw allow ${p}`);
          }
          return ok('Rules updated\n');
        },
      },
      {
        name: 'ufw default allow routed',
        on: 'destination',
        re: /^ufw default allow routed$/,
        run: () => {
          if (!dst.ufw.routed) this.effect('destination', 'ufw default allow routed');
          dst.ufw.routed = true;
          return ok();
        },
      },
      {
        name: 'ufw status',
        on: 'destination',
        query: true,
        re: /^ufw status( verbose)?$/,
        run: ({ m: [, verbose = ''] }) =>
          ok(
            dst.ufw.active
              ? `Status: active\n${verbose ? `Default: deny (incoming), allow (outgoing), ${dst.ufw.routed ? 'allow' : 'disabled'} (routed)\n` : ''}\nTo                         Action      From\n--                         ------      ----\n${lines(dst.ufw.allowed.map((p) => `${p.padEnd(27)}ALLOW       Anywhere`))}`
              : 'Status: inactive\n',
          ),
      },
      {
        name: 'ufw enable (refused without 22/tcp)',
        on: 'destination',
        re: /^ufw status \| grep -qE '\^22\/tcp \+ALLOW' \|\| \{ echo '[^']*' >&2; exit 1; \}; ufw --force enable$/,
        run: () => {
          if (!allowed('22/tcp')) return fail('refusing to enable the firewall: 22/tcp is not allowed');
          if (!dst.ufw.active) this.effect('destination', 'ufw enable');
          dst.ufw.active = true;
          return ok('Firewall is active and enabled on system startup\n');
        },
      },
    ];
  }

  /** `iptables [-t nat] -A|-I|-C|-D|-S ...` against one host's rules. */
  private iptables(host: HostRole, argv: string[]): CommandResult {
    const fs = this.fs(host);
    let args = argv;
    let table: keyof IptablesState = 'filter';
    if (args[0] === '-t') {
      if (args[1] !== 'nat' && args[1] !== 'filter') return this.refuse(host, `iptables ${argv.join(' ')}`);
      table = args[1];
      args = args.slice(2);
    }
    const chains = fs.iptables[table];
    const [op = '', chain, ...rest] = args;
    if (op === '-S') {
      const names = chain ? [chain] : Object.keys(chains);
      if (chain && !chains[chain]) return fail('iptables: No chain/target/match by that name.');
      return ok(lines([...names.map((c) => (chains[c] && ['INPUT', 'FORWARD', 'OUTPUT', 'PREROUTING', 'POSTROUTING'].includes(c) ? `-P ${c} ACCEPT` : `-N ${c}`)), ...names.flatMap((c) => (chains[c] ?? []).map((r) => `-A ${c} ${r}`))]));
    }
    const rules = chain === undefined ? undefined : chains[chain];
    if (!rules) return fail('iptables: No chain/target/match by that name.');
    let position = 1;
    if (op === '-I' && /^\d+$/.test(rest[0] ?? '')) position = Number(rest.shift());
    const spec = normalizeRule(rest);
    const at = rules.indexOf(spec);
    const bad = 'iptables: Bad rule (does a matching rule exist in that chain?).';
    switch (op) {
      case '-C':
        return at >= 0 ? ok() : fail(bad);
      case '-A':
        rules.push(spec);
        break;
      case '-I':
        rules.splice(position - 1, 0, spec);
        break;
      case '-D':
        if (at < 0) return fail(bad);
        rules.splice(at, 1);
        break;
      default:
        return this.refuse(host, `iptables ${argv.join(' ')}`);
    }
    this.effect(host, `iptables ${table === 'nat' ? '-t nat ' : ''}${op} ${chain} ${spec}`);
    return ok();
  }

  private iptablesSave(host: HostRole): string {
    const t = this.fs(host).iptables;
    const table = (name: string, chains: Record<string, string[]>) => [`*${name}`, ...Object.keys(chains).map((c) => `:${c} ACCEPT [0:0]`), ...Object.entries(chains).flatMap(([c, rs]) => rs.map((r) => `-A ${c} ${r}`)), 'COMMIT'];
    return lines(['# Generated by iptables-save', ...table('filter', t.filter), ...table('nat', t.nat)]);
  }

  // ---- wrappers: a recognised query inside a test, a grep, a redirect --------------------------------

  private wrappers(): Handler[] {
    const inner = (host: HostRole, command: string, f: (r: CommandResult) => CommandResult): CommandResult => {
      const r = this.query(host, command);
      return r ? f(r) : this.refuse(host, command);
    };
    return [
      {
        name: '! X >/dev/null 2>&1',
        on: 'any',
        query: true,
        re: /^! ([\s\S]+) >\/dev\/null 2>&1$/,
        run: ({ host, m: [, x = ''] }) => inner(host, x, (r) => (r.exitCode === 0 ? fail('') : ok())),
      },
      { name: 'X >/dev/null 2>&1', on: 'any', query: true, re: /^([\s\S]+) >\/dev\/null 2>&1$/, run: ({ host, m: [, x = ''] }) => inner(host, x, (r) => ({ exitCode: r.exitCode, stdout: '', stderr: '' })) },
      {
        name: 'test "$(X)" = V',
        on: 'any',
        query: true,
        re: /^test "\$\(([\s\S]+?)( 2>\/dev\/null)?\)" = ('[^']*'|\S+)$/,
        // $(...) keeps only stdout, without trailing newlines; a failed X compares as its output.
        run: ({ host, m: [, x = '', , v = ''] }) => inner(host, x, (r) => (r.stdout.replace(/\n+$/, '') === unq(v) ? ok() : fail(''))),
      },
      { name: 'test -z "$(X)"', on: 'any', query: true, re: /^test -z "\$\(([\s\S]+)\)"$/, run: ({ host, m: [, x = ''] }) => inner(host, x, (r) => (r.stdout.trim() === '' ? ok() : fail(''))) },
      {
        name: 'X | grep -qx LINE',
        on: 'any',
        query: true,
        re: /^([\s\S]+) \| grep -qx ('[^']*'|\S+)$/,
        run: ({ host, m: [, x = '', p = ''] }) => inner(host, x, (r) => (grepRegex(unq(p), false, true).test(r.stdout) ? ok() : fail(''))),
      },
      {
        name: 'X | grep -q[E] PATTERN',
        on: 'any',
        query: true,
        re: /^([\s\S]+) \| grep -q(E?) ('[^']*'|\S+)$/,
        run: ({ host, m: [, x = '', e = '', p = ''] }) => inner(host, x, (r) => (grepRegex(unq(p), e === 'E', false).test(r.stdout) ? ok() : fail(''))),
      },
    ];
  }
}

/** An eth0 entry of an instance state with one global IPv4. */
function nic(address: string) {
  return {
    addresses: [
      { family: 'inet', address, netmask: '24', scope: 'global' },
      { family: 'inet6', address: 'fe80::216:3eff:fe00:1', netmask: '64', scope: 'link' },
    ],
    state: 'up',
    type: 'broadcast',
  };
}
