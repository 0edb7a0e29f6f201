/**
 * A sandbox that runs produced commands with a real `/bin/sh` over stub binaries, for the injection
 * test. Every program a command calls resolves through PATH to a stub directory: harmless readers
 * (cat, grep, sed, ...) link to the real ones; anything that would touch the machine is a stub that
 * only records its argv. Stubs of programs that run a nested command run it as the real one would
 * (`incus exec c -- argv`, `sudo -n sh -c X`, `timeout N prog`, `env K=V prog`, `ssh host cmd` through
 * `sh -c` as sshd does, ssh's `-o ProxyCommand=`), so a second round of shell parsing is exercised.
 *
 * An injected `touch` creates its file (only under the mark root): a file in a mark directory is
 * the proof of an injection. The stub `injected` (a word a learned certificate line may be) marks too.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Real programs that only read or print (no side effect outside the sandbox's own temp dir). */
const REAL = ['cat', 'grep', 'sed', 'awk', 'cut', 'tr', 'wc', 'sort', 'head', 'tail', 'printf', 'echo', 'test', '[', 'true', 'false', 'dirname', 'basename', 'date', 'xargs', 'mktemp', 'sleep', 'expr', 'uniq'];

/** Programs that are stubs: they record their argv, and the nested-command ones run it. */
export const STUBS = [
  'sh', 'bash', 'sudo', 'timeout', 'env', 'incus', 'lxc', 'ssh', 'touch', 'injected',
  'rsync', 'ssh-keygen', 'scp', 'iptables', 'iptables-save', 'iptables-restore', 'sysctl', 'systemctl', 'ufw',
  'tar', 'du', 'df', 'mkdir', 'rm', 'mv', 'cp', 'ln', 'chown', 'chmod', 'install', 'tee', 'dd', 'truncate', 'find', 'sha256sum', 'stat', 'id',
  'caddy', 'nslookup', 'dig', 'pkill', 'kill', 'killall', 'curl', 'wget', 'nc', 'socat', 'perl', 'python3', 'vault', 'service', 'reboot', 'shutdown',
];

const STUB_SCRIPT = `#!/bin/sh
n=\${0##*/}
if [ -n "$GBO_LOG" ]; then printf '%s\\0' "$n" "$@" > "$GBO_LOG/$$.$n"; fi
proxy() { case $1 in [Pp][Rr][Oo][Xx][Yy][Cc][Oo][Mm][Mm][Aa][Nn][Dd]=*) /bin/sh -c "\${1#*=}" </dev/null;; esac; }
case $n in
  sh|bash) exec /bin/sh "$@" ;;
  sudo)
    while [ $# -gt 0 ]; do case $1 in --) shift; break;; -u|-g|-C|-h|-p|-U|-r|-t|-D|-R|-T) shift 2;; -*) shift;; *) break;; esac; done
    [ $# -gt 0 ] || exit 0; exec "$@" ;;
  timeout)
    while [ $# -gt 0 ]; do case $1 in -s|-k) shift 2;; --) shift; break;; -*) shift;; *) break;; esac; done
    [ $# -gt 1 ] || exit 0; shift; exec "$@" ;;
  env)
    while [ $# -gt 0 ]; do case $1 in -u) shift 2;; -i|-0) shift;; --) shift; break;; *=*) export "$1" 2>/dev/null || exit 125; shift;; *) break;; esac; done
    [ $# -gt 0 ] || exit 0; exec "$@" ;;
  incus|lxc)
    [ "$1" = exec ] || exit 0
    shift; shift
    while [ $# -gt 0 ]; do a=$1; shift; [ "$a" = -- ] && break; done
    [ $# -gt 0 ] || exit 0; exec "$@" ;;
  ssh)
    while [ $# -gt 0 ]; do
      case $1 in
        --) shift; break;;
        -o) proxy "$2"; shift 2;;
        -o*) proxy "\${1#-o}"; shift;;
        -[iplFEbcDeIJLmOQRSWwB]) shift 2;;
        -*) shift;;
        *) break;;
      esac
    done
    [ $# -gt 0 ] && shift
    [ $# -gt 0 ] || exit 0
    exec /bin/sh -c "$*" ;;
  touch)
    for a in "$@"; do case $a in "$GBO_MARKROOT"/*) /usr/bin/touch -- "$a" 2>/dev/null;; esac; done
    exit 0 ;;
  injected) [ -n "$GBO_MARK" ] && /usr/bin/touch "$GBO_MARK/learned-value-ran"; exit 0 ;;
  *) exit 0 ;;
esac
`;

export interface RunResult {
  /** Files found in the mark directories afterwards, as `dir/file`. */
  marks: string[];
  /** Each stub invocation: program name and argv (only when logging was asked for). */
  calls: string[][];
}

export class Sandbox {
  readonly root: string;
  /** Plan paths live under here, so nothing a command writes through a redirection leaves the sandbox. */
  readonly fs: string;
  readonly markRoot: string;
  private readonly bin: string;
  /** The same without the argv log of `sh`/`bash` (they are /bin/sh itself): faster. */
  private readonly fastBin: string;
  private readonly home: string;
  private readonly tmp: string;
  private readonly cwd: string;
  private readonly runner: string;
  private n = 0;

  constructor() {
    this.root = mkdtempSync(join(tmpdir(), 'gbo-inject-'));
    if (!/^[A-Za-z0-9_./-]+$/.test(this.root)) throw new Error(`sandbox path needs no quoting: ${this.root}`);
    this.bin = join(this.root, 'bin');
    this.fastBin = join(this.root, 'fastbin');
    this.fs = join(this.root, 'fs');
    this.markRoot = join(this.root, 'mark');
    this.home = join(this.root, 'home');
    this.tmp = join(this.root, 'tmp');
    this.cwd = join(this.root, 'cwd');
    for (const d of [this.bin, this.fastBin, this.fs, this.markRoot, this.home, this.tmp, this.cwd, join(this.root, 'log')]) mkdirSync(d, { recursive: true });
    const stub = join(this.root, 'stub.sh');
    writeFileSync(stub, STUB_SCRIPT);
    chmodSync(stub, 0o755);
    for (const bin of [this.bin, this.fastBin]) {
      for (const name of STUBS) symlinkSync(bin === this.fastBin && (name === 'sh' || name === 'bash') ? '/bin/sh' : stub, join(bin, name));
      for (const name of REAL) {
        const real = ['/usr/bin', '/bin'].map((d) => join(d, name)).find((p) => existsSync(p));
        if (real) symlinkSync(real, join(bin, name));
      }
    }
    // Each command is parsed on its own (a subshell, as \`sh -c\` would), without stdin.
    this.runner = join(this.root, 'runner.sh');
    writeFileSync(this.runner, 'for c in "$@"; do ( set --; eval "$c" ) </dev/null >/dev/null 2>&1; done; exit 0\n');
  }

  /** A fresh, empty mark directory: embed its path in payloads. */
  newMark(): string {
    const dir = join(this.markRoot, `m${this.n++}`);
    mkdirSync(dir);
    return dir;
  }

  /** Puts a file in the sandbox (`path` absolute inside it). */
  put(path: string, text: string): void {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  }

  /**
   * Runs the commands one after another, each parsed by /bin/sh on its own; returns what the mark
   * directories hold afterwards (`learned` is where the learned-value stub marks).
   */
  run(commands: string[], marks: string[], options: { log?: boolean; learned?: string } = {}): Promise<RunResult> {
    const logDir = options.log ? mkdtempSync(join(this.root, 'log', 'l')) : '';
    const env = { PATH: options.log ? this.bin : this.fastBin, HOME: this.home, TMPDIR: this.tmp, LC_ALL: 'C', GBO_MARK: options.learned ?? marks[0] ?? '', GBO_MARKROOT: this.markRoot, GBO_LOG: logDir };
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', [this.runner, ...commands], { cwd: this.cwd, env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      const timer = setTimeout(() => process.kill(-(child.pid as number), 'SIGKILL'), 60_000);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code !== 0) return reject(new Error(`runner failed (${code}): ${stderr}\n${commands.join('\n').slice(0, 2000)}`));
        const found = [...marks, ...(options.learned ? [options.learned] : [])].flatMap((m) => readdirSync(m).map((f) => `${m}/${f}`));
        const calls = logDir ? readdirSync(logDir).map((f) => readFileSync(join(logDir, f), 'utf8').split('\0').slice(0, -1)) : [];
        resolve({ marks: found, calls });
      });
    });
  }

  /** Empties mark directories. */
  clear(marks: string[]): void {
    for (const m of marks) for (const f of readdirSync(m)) rmSync(join(m, f), { force: true, recursive: true });
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Runs async jobs with at most `limit` at a time. */
export async function pool<T, R>(items: T[], limit: number, job: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await job(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export type LeafPath = (string | number)[];

/** Every string leaf of a value (strings inside arrays included), with its path. */
export function stringLeaves(value: unknown, path: LeafPath = []): { path: LeafPath; value: string }[] {
  if (typeof value === 'string') return [{ path, value }];
  if (Array.isArray(value)) return value.flatMap((v, i) => stringLeaves(v, [...path, i]));
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => stringLeaves(v, [...path, k]));
  return [];
}

/** A deep copy of `root` with the leaf at `path` replaced. */
export function withLeaf<T>(root: T, path: LeafPath, value: string): T {
  const copy = structuredClone(root);
  let o = copy as unknown as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  o[path[path.length - 1] as string | number] = value;
  return copy;
}

export const showPath = (path: LeafPath): string => path.reduce<string>((a, k) => (typeof k === 'number' ? `${a}[${k}]` : a ? `${a}.${k}` : k), '');
