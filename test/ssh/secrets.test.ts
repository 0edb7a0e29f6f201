import { ApplicationFailure } from '@temporalio/common';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import * as path from 'node:path';
import { describeSecretRef, expandFilePath, resolveSecretRef } from '../../src/ssh/secrets';

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
    expect(resolveSecretRef('env:GBO_TEST_SECRET')).toEqual({ value: 'hunter2-very-secret' });
    process.env.GBO_TEST_EMPTY = '';
    for (const ref of ['env:GBO_TEST_EMPTY', 'env:GBO_TEST_MISSING']) {
      const f = failureOf(() => resolveSecretRef(ref));
      expect(f.type).toBe('SecretUnavailable');
      expect(f.nonRetryable).toBe(true);
      expect(f.message).toContain(ref);
      expect(f.message).not.toContain('hunter2');
    }
    expect(failureOf(() => resolveSecretRef('env:bad-name')).type).toBe('SecretUnavailable');
  });

  it('reads file:/path, expands ~ and names the path but not the contents on failure', () => {
    const file = path.join(dir, 'key');
    writeFileSync(file, 'TOP-SECRET-CONTENTS\n');
    expect(resolveSecretRef(`file:${file}`)).toEqual({ value: 'TOP-SECRET-CONTENTS\n' });
    expect(expandFilePath('file:~/.ssh/id')).toBe(path.join(homedir(), '.ssh/id'));
    expect(expandFilePath('file:/abs')).toBe('/abs');

    const missing = failureOf(() => resolveSecretRef(`file:${dir}/nope`));
    expect(missing.type).toBe('SecretUnavailable');
    expect(missing.nonRetryable).toBe(true);
    expect(missing.message).toContain(`file:${dir}/nope`);
    expect(missing.message).toContain('ENOENT');

    const isDir = failureOf(() => resolveSecretRef(`file:${dir}`));
    expect(isDir.message).not.toContain('TOP-SECRET');
    expect(failureOf(() => resolveSecretRef('file:relative/key')).message).toContain('absolute');
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
