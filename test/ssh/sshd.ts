/**
 * A throwaway OpenSSH sshd on 127.0.0.1 for the SSH tests: its own host key, authorized key and
 * config in a temp dir, started with an absolute path, logging to a string the tests can read.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import * as path from 'node:path';
import type { SecretPolicy } from '../../src/ssh/secrets';

export const SSHD = '/usr/sbin/sshd';

/** Why the real-sshd tests cannot run here, or undefined when they can. */
export function sshdUnavailable(): string | undefined {
  if (!existsSync(SSHD)) return `${SSHD} is missing (apt-get install -y openssh-server)`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'sshd tests need root';
  try {
    execFileSync('ssh-keygen', ['-?'], { stdio: 'ignore' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'ssh-keygen is missing (openssh-client)';
  }
  return undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export function keygen(file: string, type = 'ed25519'): { privateKey: string; publicLine: string } {
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', '', '-f', file], { stdio: 'ignore' });
  return { privateKey: readFileSync(file, 'utf8'), publicLine: readFileSync(`${file}.pub`, 'utf8').trim() };
}

/** `ssh-keygen -lf`'s SHA256 fingerprint of a public key file. */
export function fingerprintOf(pubFile: string): string {
  const out = execFileSync('ssh-keygen', ['-lf', pubFile], { encoding: 'utf8' });
  const m = /SHA256:\S+/.exec(out);
  if (!m) throw new Error(`no fingerprint in ${out}`);
  return m[0];
}

export interface Sshd {
  dir: string;
  port: number;
  user: string;
  clientKeyFile: string;
  clientKey: string;
  hostPubFile: string;
  /** $HOME of its sessions: what they write there (the step guard's state) stays in the temp dir. */
  home: string;
  /** `[127.0.0.1]:PORT <type> <base64>` */
  knownHostsLine: string;
  log(): string;
  stop(): Promise<void>;
}

/** `env`: more variables for its sessions (sshd's SetEnv; values without spaces). */
export async function startSshd(options: { env?: Record<string, string> } = {}): Promise<Sshd> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gbo-sshd-'));
  // Privilege separation needs this directory; a fresh container may not have it.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const host = keygen(path.join(dir, 'host_ed25519'));
  const client = keygen(path.join(dir, 'client_ed25519'));
  writeFileSync(path.join(dir, 'authorized_keys'), `${client.publicLine}\n`);
  const home = path.join(dir, 'home');
  mkdirSync(home);
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${dir}/host_ed25519`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      `PidFile ${dir}/sshd.pid`,
      'StrictModes no',
      'UsePAM no',
      'LogLevel VERBOSE',
      'MaxSessions 10',
      `SetEnv ${Object.entries({ HOME: home, ...options.env }).map(([k, v]) => `${k}=${v}`).join(' ')}`,
      '',
    ].join('\n'),
  );
  let log = '';
  const proc: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout?.on('data', (b: Buffer) => (log += b.toString()));
  proc.stderr?.on('data', (b: Buffer) => (log += b.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start:\n${log}`)), 10_000);
    const check = setInterval(() => {
      if (/Server listening on 127\.0\.0\.1/.test(log)) {
        clearTimeout(timer);
        clearInterval(check);
        resolve();
      }
    }, 20);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      clearInterval(check);
      reject(new Error(`sshd exited with ${code}:\n${log}`));
    });
  });
  const [type, b64] = host.publicLine.split(/\s+/);
  return {
    dir,
    port,
    user: userInfo().username,
    clientKeyFile: path.join(dir, 'client_ed25519'),
    clientKey: client.privateKey,
    hostPubFile: path.join(dir, 'host_ed25519.pub'),
    home,
    knownHostsLine: `[127.0.0.1]:${port} ${type} ${b64}`,
    log: () => log,
    stop: async () => {
      if (proc.exitCode === null && proc.pid !== undefined) {
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * What a worker in these tests may resolve: the sshd fixtures' keys and known_hosts live in
 * mkdtemp directories under tmpdir(), and env: keys are GBO_TEST_* variables.
 */
export const TEST_SECRETS: SecretPolicy = { dirs: [tmpdir()], envPrefix: 'GBO_TEST_' };
