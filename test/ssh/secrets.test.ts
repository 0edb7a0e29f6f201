import { ApplicationFailure } from '@temporalio/common';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import * as path from 'node:path';
import { resolveSecretValue } from '../../src/worker';
import { describeSecretRef, expandFilePath, resolveSecretRef, secretPolicyFromEnv, type SecretPolicy } from '../../src/ssh/secrets';

function failureOf(fn: () => unknown): ApplicationFailure {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }
  throw new Error('expected a failure');
}

describe('resolveSecretRef', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gbo-secrets-'));
  const policy: SecretPolicy = { dirs: [dir], envPrefix: 'GBO_TEST_' };
  const saved = { sock: process.env.SSH_AUTH_SOCK };
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    if (saved.sock === undefined) delete process.env.SSH_AUTH_SOCK;
    else process.env.SSH_AUTH_SOCK = saved.sock;
    delete process.env.GBO_TEST_SECRET;
    delete process.env.GBO_TEST_EMPTY;
  });

  it('resolves agent to the worker socket, and fails without one', () => {
    process.env.SSH_AUTH_SOCK = '/tmp/agent.sock';
    expect(resolveSecretRef('agent')).toEqual({ agent: '/tmp/agent.sock' });
    delete process.env.SSH_AUTH_SOCK;
    const f = failureOf(() => resolveSecretRef('agent'));
    expect(f.type).toBe('SecretUnavailable');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('agent');
  });

  it('resolves env:NAME and never echoes values', () => {
    process.env.GBO_TEST_SECRET = 'hunter2-very-secret';
    expect(resolveSecretRef('env:GBO_TEST_SECRET', policy)).toEqual({ value: 'hunter2-very-secret' });
    process.env.GBO_TEST_EMPTY = '';
    for (const ref of ['env:GBO_TEST_EMPTY', 'env:GBO_TEST_MISSING']) {
      const f = failureOf(() => resolveSecretRef(ref, policy));
      expect(f.type).toBe('SecretUnavailable');
      expect(f.nonRetryable).toBe(true);
      expect(f.message).toContain(ref);
      expect(f.message).not.toContain('hunter2');
    }
    expect(failureOf(() => resolveSecretRef('env:bad-name', policy)).type).toBe('SecretUnavailable');
  });

  it('reads file:/path, expands ~ and names the path but not the contents on failure', () => {
    const file = path.join(dir, 'key');
    writeFileSync(file, 'TOP-SECRET-CONTENTS\n');
    expect(resolveSecretRef(`file:${file}`, policy)).toEqual({ value: 'TOP-SECRET-CONTENTS\n' });
    expect(expandFilePath('file:~/.ssh/id')).toBe(path.join(homedir(), '.ssh/id'));
    expect(expandFilePath('file:/abs')).toBe('/abs');

    const missing = failureOf(() => resolveSecretRef(`file:${dir}/nope`, policy));
    expect(missing.type).toBe('SecretUnavailable');
    expect(missing.nonRetryable).toBe(true);
    expect(missing.message).toContain(`file:${dir}/nope`);
    expect(missing.message).toContain('ENOENT');

    const isDir = failureOf(() => resolveSecretRef(`file:${dir}`, policy));
    expect(isDir.message).not.toContain('TOP-SECRET');
    expect(failureOf(() => resolveSecretRef('file:relative/key', policy)).message).toContain('absolute');
  });

  it('does not echo something that is not a reference (it may be a pasted key)', () => {
    const pasted = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----';
    const f = failureOf(() => resolveSecretRef(pasted));
    expect(f.type).toBe('SecretUnavailable');
    expect(f.message).not.toContain('b3BlbnNzaC1rZXktdjEAAAAA');
    expect(describeSecretRef('sk-live-abc def')).toMatch(/unrecognised reference/);
    expect(describeSecretRef('file:/etc/key')).toBe('file:/etc/key');
  });
});

describe('the worker resolves only what its configuration allows', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'gbo-policy-'));
  const allowed = path.join(root, 'secrets');
  const outside = path.join(root, 'elsewhere');
  mkdirSync(allowed);
  mkdirSync(outside);
  writeFileSync(path.join(allowed, 'key'), 'ALLOWED-KEY\n');
  writeFileSync(path.join(outside, 'key'), 'OUTSIDE-KEY\n');
  // A symlink inside the allowed directory that points out of it, and a directory link likewise.
  symlinkSync(path.join(outside, 'key'), path.join(allowed, 'escape'));
  symlinkSync(outside, path.join(allowed, 'escape-dir'));
  const policy: SecretPolicy = { dirs: [allowed], envPrefix: 'GBO_SECRET_' };
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
    delete process.env.GBO_SECRET_TEST_VALUE;
    delete process.env.OTHER_CLOUD_TOKEN;
  });

  const refusal = (ref: string) => {
    const f = failureOf(() => resolveSecretRef(ref, policy));
    expect(f.type).toBe('SecretUnavailable');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).not.toMatch(/OUTSIDE-KEY|ALLOWED-KEY|cloud-token-value/);
    return f.message;
  };

  it('reads a file inside an allowed directory', () => {
    expect(resolveSecretRef(`file:${allowed}/key`, policy)).toEqual({ value: 'ALLOWED-KEY\n' });
  });

  it('refuses a file outside, naming the kind and the configuration, not the reference', () => {
    const m = refusal(`file:${outside}/key`);
    expect(m).toContain('a file: secret reference refused by this worker');
    expect(m).toContain('GBO_SECRETS_DIRS');
    expect(m).not.toContain(`${outside}/key`);
  });

  it('follows symlinks: a link inside that points outside is refused', () => {
    expect(refusal(`file:${allowed}/escape`)).toContain('symlinks followed');
    expect(refusal(`file:${allowed}/escape-dir/key`)).toContain('symlinks followed');
  });

  it('refuses paths that are not canonical (a ".." climbs out of any prefix check)', () => {
    expect(refusal(`file:${allowed}/../elsewhere/key`)).toContain('canonical');
    expect(refusal(`file:${allowed}//key`)).toContain('canonical');
  });

  it('refuses env: names without the prefix, and resolves those with it', () => {
    process.env.OTHER_CLOUD_TOKEN = 'cloud-token-value';
    const m = refusal('env:OTHER_CLOUD_TOKEN');
    expect(m).toContain('env: secret reference refused by this worker');
    expect(m).toContain('GBO_SECRET_*');
    expect(m).not.toContain('OTHER_CLOUD_TOKEN');
    process.env.GBO_SECRET_TEST_VALUE = 'v';
    expect(resolveSecretRef('env:GBO_SECRET_TEST_VALUE', policy)).toEqual({ value: 'v' });
  });

  it('resolveSecretValue (Vault unseal keys) goes through the same policy', async () => {
    await expect(resolveSecretValue(`file:${allowed}/key`, policy)).resolves.toBe('ALLOWED-KEY');
    await expect(resolveSecretValue(`file:${allowed}/escape`, policy)).rejects.toMatchObject({ type: 'SecretUnavailable', nonRetryable: true });
  });

  it('reads its configuration from GBO_SECRETS_DIRS and GBO_SECRETS_ENV_PREFIX, with defaults', () => {
    expect(secretPolicyFromEnv({ GBO_SECRETS_DIRS: `${allowed}:~/keys`, GBO_SECRETS_ENV_PREFIX: 'GBO_SECRET_' })).toEqual({
      dirs: [allowed, path.join(homedir(), 'keys')],
      envPrefix: 'GBO_SECRET_',
    });
    expect(secretPolicyFromEnv({})).toEqual({ dirs: [path.join(homedir(), '.ssh'), path.join(homedir(), '.gbo-migrate/secrets')], envPrefix: 'GBO_' });
    expect(() => secretPolicyFromEnv({ GBO_SECRETS_DIRS: 'relative/dir' })).toThrow(/not an absolute directory/);
  });
});
