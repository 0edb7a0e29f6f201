/**
 * verifyHostKeys against two real OpenSSH sshds (source and destination): a destination whose
 * key known_hosts does not pin stops the run as HostKeyMismatch, and nothing ran on either host.
 * Needs root and /usr/sbin/sshd, like test/ssh/pool.test.ts.
 */
import { ApplicationFailure } from '@temporalio/common';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createActivities } from '../../src/activities';
import type { StepInput } from '../../src/activities/common';
import { DryRunExecutor, type HostTarget } from '../../src/activities/executor';
import type { Step } from '../../src/runbook/model';
import { SshPool } from '../../src/ssh/pool';
import { keygen, sshdUnavailable, startSshd, TEST_SECRETS, type Sshd } from '../ssh/sshd';
import { inActivity } from './context';

const unavailable = sshdUnavailable();
if (unavailable) {
  if (process.env.CI === 'true') {
    it('needs a real sshd in CI', () => {
      throw new Error(`host key tests cannot run: ${unavailable}`);
    });
  } else {
    console.warn(`skipping host key tests: ${unavailable}`);
  }
}

const step: Step = {
  id: 'preflight/tenant/host-keys',
  phase: 'preflight',
  title: 'The worker reaches both hosts',
  host: 'worker',
  kind: 'verify-host-keys',
  command: 'ssh handshake with source and destination (host keys against known_hosts, no command)',
  profile: 'quick',
};

/** Commands sshd started: it logs each session it starts at LogLevel VERBOSE. */
const sessions = (d: Sshd) => (d.log().match(/Starting session: /g) ?? []).length;
const logins = (d: Sshd) => (d.log().match(/Accepted publickey for /g) ?? []).length;

(unavailable ? describe.skip : describe)('verifyHostKeys against real sshds', () => {
  let source: Sshd;
  let destination: Sshd;
  let pool: SshPool;
  const targetOf = (role: HostTarget['role'], d: Sshd, knownHosts: string): HostTarget => ({ role, address: '127.0.0.1', port: d.port, user: d.user, sshKey: `file:${d.clientKeyFile}`, knownHosts: `file:${knownHosts}` });
  const pinned = (d: Sshd, name: string, line = d.knownHostsLine) => {
    const file = path.join(d.dir, name);
    writeFileSync(file, `${line}\n`);
    return file;
  };

  beforeAll(async () => {
    [source, destination] = await Promise.all([startSshd(), startSshd()]);
  });
  beforeEach(() => {
    pool = new SshPool({ secrets: TEST_SECRETS });
  });
  afterEach(async () => {
    await pool.close();
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), destination?.stop()]);
  });

  const verify = (hosts: StepInput['hosts'], mode: StepInput['mode'] = 'live') => {
    const acts = createActivities({ dryRun: new DryRunExecutor(), live: pool });
    return inActivity(() => acts.verifyHostKeys({ step, hosts, values: {}, mode })).result;
  };

  it('refuses a destination whose host key known_hosts does not pin, with nothing run on either host', async () => {
    const [type, b64] = keygen(path.join(destination.dir, 'impostor')).publicLine.split(/\s+/);
    const wrong = pinned(destination, 'known_hosts.wrong', `[127.0.0.1]:${destination.port} ${type} ${b64}`);
    const before = { source: sessions(source), destination: sessions(destination), destinationLogins: logins(destination) };
    const err = await verify({ source: targetOf('source', source, pinned(source, 'known_hosts')), destination: targetOf('destination', destination, wrong) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApplicationFailure);
    const f = err as ApplicationFailure;
    expect(f.type).toBe('HostKeyMismatch');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain(`127.0.0.1:${destination.port}`);
    expect(f.message).toContain('does not match');
    expect(sessions(source)).toBe(before.source);
    expect(sessions(destination)).toBe(before.destination);
    // Refused during key exchange: the worker never even logged in to the destination.
    expect(logins(destination)).toBe(before.destinationLogins);
  });

  it('passes when both keys match, logging in to both and running nothing', async () => {
    const before = [sessions(source), sessions(destination), logins(source), logins(destination)];
    const out = await verify({ source: targetOf('source', source, pinned(source, 'known_hosts')), destination: targetOf('destination', destination, pinned(destination, 'known_hosts')) });
    expect(out).toMatchObject({ id: step.id, status: 'done', host: 'worker' });
    expect(out.output).toContain('host keys match known_hosts');
    expect([sessions(source), sessions(destination), logins(source), logins(destination)]).toEqual([before[0], before[1], before[2]! + 1, before[3]! + 1]);
  });

  it('records in a dry run, connecting nowhere', async () => {
    const before = [logins(source), logins(destination)];
    const hosts = { source: targetOf('source', source, '/nonexistent'), destination: targetOf('destination', destination, '/nonexistent') };
    expect(await verify(hosts, 'dry-run')).toMatchObject({ status: 'recorded', command: step.command });
    expect([logins(source), logins(destination)]).toEqual(before);
  });

  it('reaches a host the plan names at its recorded address, checking its key under the name', async () => {
    // known_hosts pins the key under a name that resolves nowhere: only the alias can match it.
    const named = pinned(source, 'known_hosts.named', source.knownHostsLine.replace(/^\S+/, `[source.gbo-test.invalid]:${source.port}`));
    const target = { ...targetOf('source', source, named), hostKeyAlias: 'source.gbo-test.invalid' };
    const hosts = { source: target, destination: targetOf('destination', destination, pinned(destination, 'known_hosts')) };
    expect(await verify(hosts)).toMatchObject({ status: 'done' });
    // Without the alias the same key is looked up under 127.0.0.1, which known_hosts does not pin.
    const { hostKeyAlias: _alias, ...unaliased } = target;
    await expect(verify({ ...hosts, source: unaliased })).rejects.toMatchObject({ type: 'HostKeyMismatch' });
  });
});
