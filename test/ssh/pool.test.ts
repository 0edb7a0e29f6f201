/**
 * SshPool against a real OpenSSH sshd this file starts on 127.0.0.1. Needs root and
 * /usr/sbin/sshd: without them the tests are skipped, except in CI (CI=true), where that fails.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { HostTarget } from '../../src/activities/executor';
import { SshPool } from '../../src/ssh/pool';
import { fingerprintOf, freePort, keygen, sshdUnavailable, startSshd, TEST_SECRETS, type Sshd } from './sshd';

const unavailable = sshdUnavailable();
const inCI = process.env.CI === 'true';

if (unavailable) {
  if (inCI) {
    it('needs a real sshd in CI', () => {
      throw new Error(`SSH pool tests cannot run: ${unavailable}`);
    });
  } else {
    console.warn(`skipping SSH pool tests: ${unavailable}`);
  }
}

/** Awaits a rejection and returns it as an ApplicationFailure. */
async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ApplicationFailure)) throw new Error(`expected an ApplicationFailure, got ${String(err)}`);
  return err;
}

/** The base64 lines of a private key file: none of them may appear in any message. */
function keyBodyLines(privateKey: string): string[] {
  return privateKey
    .split('\n')
    .filter((l) => l && !l.startsWith('-----'))
    .map((l) => l.trim());
}

function expectNoKeyMaterial(message: string, privateKey: string): void {
  for (const line of keyBodyLines(privateKey)) expect(message).not.toContain(line);
  expect(message).not.toMatch(/PRIVATE KEY/);
}

const acceptedLogins = (log: string) => (log.match(/Accepted publickey for /g) ?? []).length;

/** Is a process whose command line contains `pattern` running on this machine (the sshd's)? */
const running = (pattern: string) => spawnSync('pgrep', ['-f', pattern]).status === 0;

async function waitFor(what: string, done: () => boolean, ms = 5000): Promise<void> {
  for (const deadline = Date.now() + ms; !done(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

(unavailable ? describe.skip : describe)('SshPool against a real sshd', () => {
  let sshd: Sshd;
  let knownHosts: string;
  let target: HostTarget;
  // A stand-in sudo first on the sessions' PATH (the tests log in as root): the guard's sudo path runs.
  const bin = mkdtempSync(path.join(tmpdir(), 'gbo-bin-'));
  const pools: SshPool[] = [];
  const newPool = (...args: ConstructorParameters<typeof SshPool>) => {
    const p = new SshPool({ secrets: TEST_SECRETS, ...args[0] });
    pools.push(p);
    return p;
  };

  beforeAll(async () => {
    writeFileSync(path.join(bin, 'sudo'), `#!/bin/sh\necho "$*" >> ${bin}/sudo.log\n[ "$1" = -n ] && shift\nexec "$@"\n`, { mode: 0o755 });
    sshd = await startSshd({ env: { PATH: `${bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` } });
    knownHosts = path.join(sshd.dir, 'known_hosts');
    writeFileSync(knownHosts, `# pinned by the test\n${sshd.knownHostsLine}\n`);
    target = {
      role: 'source',
      address: '127.0.0.1',
      port: sshd.port,
      user: sshd.user,
      sshKey: `file:${sshd.clientKeyFile}`,
      knownHosts: `file:${knownHosts}`,
    };
  });

  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });

  afterAll(async () => {
    await sshd?.stop();
    rmSync(bin, { recursive: true, force: true });
  });

  it('runs a command and returns stdout, stderr and the exit code', async () => {
    const pool = newPool();
    const chunks: string[] = [];
    const r = await pool.run(target, `sh -c 'echo out; echo err >&2; exit 3'`, { onOutput: (c) => chunks.push(c) });
    expect(r).toEqual({ exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
    expect(chunks.join('')).toContain('out\n');
    expect(chunks.join('')).toContain('err\n');
    expect(await pool.run(target, 'true')).toEqual({ exitCode: 0, stdout: '', stderr: '' });
  });

  it('passes stdin to the command and ends it', async () => {
    const pool = newPool();
    const input = 'line one\nsecret: s3cr3t\n' + 'x'.repeat(200_000) + '\nlast\n';
    const r = await pool.run(target, 'cat', { stdin: input });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(input);
    // Without stdin the command sees EOF at once instead of hanging.
    expect((await pool.run(target, 'cat')).stdout).toBe('');
  });

  it('keeps stderr intact around the internal PID line', async () => {
    const pool = newPool();
    const chunks: string[] = [];
    const r = await pool.run(target, `printf 'gbo-migrate partial' >&2`, { onOutput: (c) => chunks.push(c) });
    expect(r).toEqual({ exitCode: 0, stdout: '', stderr: 'gbo-migrate partial' });
    expect(chunks.join('')).toBe('gbo-migrate partial');
    const bad = await pool.run(target, `sh -c 'if then'`);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).not.toContain('gbo-migrate:pid=');
  });

  it('reports a command killed by a signal as 128+n', async () => {
    const pool = newPool();
    expect((await pool.run(target, `sh -c 'kill -TERM $$'`)).exitCode).toBe(143);
  });

  it('keeps the tail of long output', async () => {
    const pool = newPool({ maxOutputChars: 1000 });
    const r = await pool.run(target, `sh -c 'seq 1 100000; seq 1 50000 >&2'`);
    expect(r.stdout.endsWith('99999\n100000\n')).toBe(true);
    expect(r.stdout).toMatch(/^\[\.\.\. \d+ characters of earlier output dropped \.\.\.\]\n/);
    expect(r.stdout.length).toBeLessThan(1100);
    expect(r.stderr.endsWith('50000\n')).toBe(true);
  });

  it('runs 20 concurrent commands over one pooled connection (more than sshd MaxSessions)', async () => {
    const pool = newPool();
    const before = acceptedLogins(sshd.log());
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => pool.run(target, `sh -c 'sleep 0.3; echo n=${i}'`)),
    );
    results.forEach((r, i) => expect(r).toEqual({ exitCode: 0, stdout: `n=${i}\n`, stderr: '' }));
    expect(pool.stats()).toEqual({ connectionsOpened: 1, connectionsOpen: 1 });
    expect(acceptedLogins(sshd.log()) - before).toBe(1);
  });

  it('reconnects lazily when the connection dropped', async () => {
    const pool = newPool();
    expect((await pool.run(target, 'echo one')).stdout).toBe('one\n');
    // Kill this connection's sshd session process: the connection drops under the running command.
    const killed = await failureOf(pool.run(target, 'kill -9 $PPID; sleep 5'));
    expect(killed.type).toBe('CommandFailed');
    expect(killed.nonRetryable).toBe(false);
    expect(killed.message).toContain(`127.0.0.1:${sshd.port}`);
    expect((await pool.run(target, 'echo two')).stdout).toBe('two\n');
    expect(pool.stats().connectionsOpened).toBe(2);
  });

  it('refuses a host whose key does not match known_hosts, and runs nothing', async () => {
    const other = keygen(path.join(sshd.dir, 'other_host'));
    const [type, b64] = other.publicLine.split(/\s+/);
    const wrong = path.join(sshd.dir, 'known_hosts.wrong');
    writeFileSync(wrong, `[127.0.0.1]:${sshd.port} ${type} ${b64}\n`);
    const marker = path.join(sshd.dir, 'ran-despite-mismatch');
    const pool = newPool();
    const logins = acceptedLogins(sshd.log());
    const f = await failureOf(pool.run({ ...target, knownHosts: `file:${wrong}` }, `touch ${marker}`));
    expect(f.type).toBe('HostKeyMismatch');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain(`127.0.0.1:${sshd.port}`);
    expect(f.message).toContain(fingerprintOf(sshd.hostPubFile));
    expect(f.message).toContain('does not match');
    expectNoKeyMaterial(f.message, sshd.clientKey);
    expect(existsSync(marker)).toBe(false);
    // Refused during key exchange: the client never even authenticated.
    expect(acceptedLogins(sshd.log())).toBe(logins);
  });

  it('refuses a host known_hosts does not know, and a revoked key', async () => {
    const pool = newPool();
    const empty = path.join(sshd.dir, 'known_hosts.other');
    writeFileSync(empty, sshd.knownHostsLine.replace(`[127.0.0.1]:${sshd.port}`, 'elsewhere.example') + '\n');
    const unknown = await failureOf(pool.run({ ...target, knownHosts: `file:${empty}` }, 'true'));
    expect(unknown.type).toBe('HostKeyMismatch');
    expect(unknown.nonRetryable).toBe(true);
    expect(unknown.message).toContain('is not in');

    const revoked = path.join(sshd.dir, 'known_hosts.revoked');
    const [, type, b64] = sshd.knownHostsLine.split(' ');
    writeFileSync(revoked, `${sshd.knownHostsLine}\n@revoked * ${type} ${b64}\n`);
    const r = await failureOf(pool.run({ ...target, knownHosts: `file:${revoked}` }, 'true'));
    expect(r.type).toBe('HostKeyMismatch');
    expect(r.message).toContain('revoked');
  });

  it('verifies hashed known_hosts entries (ssh-keygen -H)', async () => {
    const hashed = path.join(sshd.dir, 'known_hosts.hashed');
    copyFileSync(knownHosts, hashed);
    execFileSync('ssh-keygen', ['-H', '-f', hashed], { stdio: 'ignore' });
    const text = readFileSync(hashed, 'utf8');
    expect(text).toMatch(/^\|1\|/m);
    expect(text).not.toContain('127.0.0.1');
    const pool = newPool();
    expect((await pool.run({ ...target, knownHosts: `file:${hashed}` }, 'echo hashed')).stdout).toBe('hashed\n');
  });

  it('refuses an unauthorized client key as AuthRefused, without key material in the message', async () => {
    const stranger = keygen(path.join(sshd.dir, 'stranger'));
    const pool = newPool();
    const f = await failureOf(pool.run({ ...target, sshKey: `file:${sshd.dir}/stranger` }, 'true'));
    expect(f.type).toBe('AuthRefused');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain(`${sshd.user}@127.0.0.1:${sshd.port}`);
    expectNoKeyMaterial(f.message, stranger.privateKey);
    expectNoKeyMaterial(f.message, sshd.clientKey);
  });

  it('takes the key from env:NAME and from ssh-agent', async () => {
    const pool = newPool();
    process.env.GBO_TEST_SSH_KEY = sshd.clientKey;
    try {
      expect((await pool.run({ ...target, sshKey: 'env:GBO_TEST_SSH_KEY' }, 'echo env')).stdout).toBe('env\n');
    } finally {
      delete process.env.GBO_TEST_SSH_KEY;
    }

    const sock = path.join(sshd.dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    const savedSock = process.env.SSH_AUTH_SOCK;
    try {
      for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
      const add = spawnSync('ssh-add', [sshd.clientKeyFile], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
      expect(add.status).toBe(0);
      process.env.SSH_AUTH_SOCK = sock;
      expect((await pool.run({ ...target, sshKey: 'agent' }, 'echo agent')).stdout).toBe('agent\n');
    } finally {
      if (savedSock === undefined) delete process.env.SSH_AUTH_SOCK;
      else process.env.SSH_AUTH_SOCK = savedSock;
      agent.kill('SIGTERM');
    }
  });

  it('fails with SecretUnavailable for a key reference the worker cannot resolve', async () => {
    const pool = newPool();
    const f = await failureOf(pool.run({ ...target, sshKey: 'env:GBO_TEST_NO_SUCH_KEY' }, 'true'));
    expect(f.type).toBe('SecretUnavailable');
    expect(f.nonRetryable).toBe(true);
    const notAKey = path.join(sshd.dir, 'not-a-key');
    writeFileSync(notAKey, 'just some text\n');
    const g = await failureOf(pool.run({ ...target, sshKey: `file:${notAKey}` }, 'true'));
    expect(g.type).toBe('SecretUnavailable');
    expect(g.message).not.toContain('just some text');
  });

  it('reports a refused connection as retryable, naming host:port and the code', async () => {
    const port = await freePort();
    const pool = newPool({ readyTimeoutMs: 5000 });
    const f = await failureOf(pool.run({ ...target, port }, 'true'));
    expect(f.type).toBe('CommandFailed');
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toContain(`127.0.0.1:${port}`);
    expect(f.message).toContain('ECONNREFUSED');
  });

  it('stops a long command quickly when aborted, and the remote process with it', async () => {
    const pool = newPool();
    const ac = new AbortController();
    const started = Date.now();
    const run = pool.run(target, 'sleep 30.25', { signal: ac.signal });
    setTimeout(() => ac.abort(), 500);
    await expect(run).rejects.toBeInstanceOf(CancelledFailure);
    expect(Date.now() - started).toBeLessThan(3000);
    // The remote process group got SIGTERM before the channel closed.
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      alive = spawnSync('pgrep', ['-f', 'sleep 30.25']).status === 0;
      if (alive) await new Promise((r) => setTimeout(r, 50));
    }
    expect(alive).toBe(false);
    // A compound command dies as a group, children included.
    const ac2 = new AbortController();
    const marker = path.join(sshd.dir, 'ran-after-abort');
    const run2 = pool.run(target, `sh -c 'sleep 30.5 | cat; touch ${marker}'`, { signal: ac2.signal });
    setTimeout(() => ac2.abort(), 500);
    await expect(run2).rejects.toBeInstanceOf(CancelledFailure);
    for (let i = 0; i < 50 && spawnSync('pgrep', ['-f', 'sleep 30.5']).status === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(spawnSync('pgrep', ['-f', 'sleep 30.5']).status).not.toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    expect(existsSync(marker)).toBe(false);
    // The connection is still usable, and an already-aborted signal never starts anything.
    expect((await pool.run(target, 'echo after')).stdout).toBe('after\n');
    await expect(pool.run(target, 'true', { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(CancelledFailure);
  });

  describe('with a step guard', () => {
    const state = (file: string) => path.join(sshd.home, '.gbo-migrate', file);
    /** This key's lines of the host's command log, without their timestamps. */
    const logOf = (key: string) =>
      (existsSync(state('commands.log')) ? readFileSync(state('commands.log'), 'utf8') : '')
        .split('\n')
        .filter((l) => l.split(' ')[1] === key)
        .map((l) => {
          expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ /);
          return l.split(' ').slice(2).join(' ');
        });

    it.each([false, true])('stops what an attempt whose worker died still runs before the step runs again (sudo: %s)', async (sudo) => {
      const key = `migrate-t${sudo ? 1 : 0}-${Date.now()}.copy_tables_copy`;
      const sleeper = `sleep 30.7${sudo ? 1 : 0}`;
      const marker = path.join(sshd.dir, `first-attempt-finished-${key}`);
      const dead = newPool();
      const first = dead.run(target, `${sleeper}; touch ${marker}`, { guard: { key, sudo } }).catch((e: unknown) => e);
      await waitFor('the first attempt to run', () => running(sleeper) && existsSync(state(`run/${key}.pid`)));
      const firstGroup = Number(readFileSync(state(`run/${key}.pid`), 'utf8').split(' ')[0]);
      // The worker dies: its connection goes, nobody stops the command.
      await dead.close();
      expect(await first).toBeInstanceOf(ApplicationFailure);
      await new Promise((r) => setTimeout(r, 300));
      expect(running(sleeper)).toBe(true);

      const started = Date.now();
      const r = await newPool().run(target, 'echo second; cat', { guard: { key, sudo }, stdin: 'in\n' });
      expect(r).toEqual({ exitCode: 0, stdout: 'second\nin\n', stderr: '' });
      expect(Date.now() - started).toBeLessThan(12_000);
      expect(running(sleeper)).toBe(false);
      expect(existsSync(marker)).toBe(false);
      expect(logOf(key)).toEqual(['start', `stop-previous ${firstGroup}`, 'start', 'exit 0']);
      expect(existsSync(state(`run/${key}.pid`))).toBe(false);
      // Root's processes of a sudo command are stopped through sudo.
      const sudoLog = existsSync(path.join(bin, 'sudo.log')) ? readFileSync(path.join(bin, 'sudo.log'), 'utf8') : '';
      expect(sudoLog.includes(`-TERM -${firstGroup}`)).toBe(sudo);
    });

    it("keeps the command's exit status and stderr, also through an exit in the command", async () => {
      const key = `migrate-x-${Date.now()}.data_tables_push`;
      const pool = newPool();
      const r = await pool.run(target, `echo out; echo err >&2; exit 3 # a comment ends the text`, { guard: { key } });
      expect(r).toEqual({ exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
      expect(logOf(key)).toEqual(['start', 'exit 3']);
      expect(existsSync(state(`run/${key}.pid`))).toBe(false);
    });

    it('leaves alone a live process group that only reuses the number an earlier attempt recorded', async () => {
      const key = `migrate-r-${Date.now()}.stop_tables_stop`;
      const pool = newPool();
      await pool.run(target, 'true', { guard: { key } });
      // An unrelated session leader, recorded as if it were the attempt's group with another start time.
      const stranger = spawn('sleep', ['30.72'], { detached: true, stdio: 'ignore' });
      try {
        writeFileSync(state(`run/${key}.pid`), `${stranger.pid} 1\n`);
        expect((await pool.run(target, 'echo ok', { guard: { key } })).stdout).toBe('ok\n');
        expect(stranger.exitCode).toBeNull();
        expect(running('sleep 30.72')).toBe(true);
        expect(logOf(key)).toEqual(['start', 'exit 0', 'start', 'exit 0']);
      } finally {
        stranger.kill('SIGKILL');
      }
    });

    it('refuses a key that cannot name a file', async () => {
      const f = await failureOf(newPool().run(target, 'true', { guard: { key: '../x y' } }));
      expect(f.type).toBe('BadPlan');
      expect(f.nonRetryable).toBe(true);
    });
  });

  it('connect() checks the host key and logs in without running anything', async () => {
    const pool = newPool();
    const sessions = (sshd.log().match(/Starting session: /g) ?? []).length;
    await pool.connect(target);
    expect(pool.stats().connectionsOpen).toBe(1);
    const wrong = path.join(sshd.dir, 'known_hosts.connect-wrong');
    const [type, b64] = keygen(path.join(sshd.dir, 'connect_other')).publicLine.split(/\s+/);
    writeFileSync(wrong, `[127.0.0.1]:${sshd.port} ${type} ${b64}\n`);
    const f = await failureOf(pool.connect({ ...target, knownHosts: `file:${wrong}` }));
    expect(f.type).toBe('HostKeyMismatch');
    expect((sshd.log().match(/Starting session: /g) ?? []).length).toBe(sessions);
    await pool.run(target, 'true');
    expect((sshd.log().match(/Starting session: /g) ?? []).length).toBe(sessions + 1);
  });

  it('close() ends the connections', async () => {
    const pool = newPool();
    await pool.run(target, 'true');
    expect(pool.stats().connectionsOpen).toBe(1);
    await pool.close();
    expect(pool.stats().connectionsOpen).toBe(0);
    const f = await failureOf(pool.run(target, 'true'));
    expect(f.message).toContain('closed');
  });
});
