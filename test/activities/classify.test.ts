/**
 * Which failed commands are retried: what a retry can fix (the network, a lock, a busy device, a
 * lost ssh connection) stays `CommandFailed`; what every attempt would repeat (a missing command
 * or file, a refused permission) is `CommandCannotSucceed`, which the workflow does not retry.
 */
import { ApplicationFailure } from '@temporalio/common';
import { commandFailed } from '../../src/activities/common';
import type { HostTarget } from '../../src/activities/executor';
import { FailureType, NON_RETRYABLE } from '../../src/errors';
import type { Step } from '../../src/runbook/model';

const step: Step = { id: 'copy/tables/copy', phase: 'copy', title: 'Copy', host: 'destination', kind: 'run', command: 'incus copy a b', profile: 'transfer' };
const target: HostTarget = { role: 'destination', address: '203.0.113.9', port: 22, user: 'administrator', sshKey: 'agent' };
const command = "sudo -n sh -c 'incus copy --instance-only lxd-source:pragmatismo-tables tables --storage default'";

const cases: [string, 'CommandFailed' | 'CommandCannotSucceed', number, string, string][] = [
  ['a missing command (127)', 'CommandCannotSucceed', 127, '', 'sh: 1: incus: not found'],
  ['a command that is not executable (126)', 'CommandCannotSucceed', 126, '', 'sh: 1: /opt/gbo/bin/tool: Permission denied'],
  ['bash: command not found', 'CommandCannotSucceed', 1, '', 'bash: line 1: rsync: command not found'],
  ['a missing file', 'CommandCannotSucceed', 2, '', 'cat: /opt/gbo/conf/config: No such file or directory'],
  ['a refused permission', 'CommandCannotSucceed', 1, '', 'mkdir: cannot create directory /opt/gbo/tenants: Permission denied'],
  ['an unauthorized API call', 'CommandCannotSucceed', 1, '', 'Error: not authorized'],
  ['an operation not permitted', 'CommandCannotSucceed', 1, '', 'chown: changing ownership of /opt/gbo/data: Operation not permitted'],
  ['sudo without a password-less rule', 'CommandCannotSucceed', 1, '', 'sudo: a password is required'],
  ['the reason on stdout', 'CommandCannotSucceed', 1, 'ERROR: /opt/gbo/conf/config: No such file or directory', ''],
  ['a reset connection', 'CommandFailed', 1, '', 'rsync: connection unexpectedly closed\nread: Connection reset by peer'],
  ['a timeout', 'CommandFailed', 124, '', 'Error: websocket: timed out waiting for the operation'],
  ['a busy device', 'CommandFailed', 1, '', 'umount: /mnt/x: target is busy'],
  ['a resource temporarily unavailable', 'CommandFailed', 1, '', 'fork: Resource temporarily unavailable'],
  ['a lock held elsewhere, "try again"', 'CommandFailed', 1, '', 'Error: another operation holds the lock, try again later'],
  ['ssh losing its connection (255), whatever it says', 'CommandFailed', 255, '', 'root@198.18.0.1: Permission denied (publickey).'],
  ['a transient line beside a permanent one', 'CommandFailed', 23, '', 'rsync: link_stat "/x" failed: No such file or directory (2)\nrsync: connection unexpectedly closed: Connection reset by peer'],
  ['an unknown failure', 'CommandFailed', 1, '', 'Error: Failed instance creation: something odd'],
  ['no output at all', 'CommandFailed', 1, '', ''],
];

describe('a failed command', () => {
  it.each(cases)('%s: %s', (_what, type, exitCode, stdout, stderr) => {
    const f = commandFailed(step, command, { exitCode, stdout, stderr }, target);
    expect(f).toBeInstanceOf(ApplicationFailure);
    expect(f.type).toBe(type);
    expect(f.nonRetryable).toBe(type === 'CommandCannotSucceed');
    // What failed where, and why.
    expect(f.message).toContain('copy/tables/copy failed on destination administrator@203.0.113.9');
    expect(f.message).toContain(`exit ${exitCode}`);
    expect(f.message).toContain(`$ ${command}`);
    const why = (stderr || stdout).split('\n')[0]!;
    if (why) expect(f.message).toContain(why.trim());
    if (type === 'CommandCannotSucceed') expect(f.message).toMatch(/a retry would repeat \(.+\); fix the host or the plan, then retry the step/);
  });

  it('that cannot succeed is a type the workflow never retries', () => {
    expect(NON_RETRYABLE).toContain(FailureType.CommandCannotSucceed);
    expect(NON_RETRYABLE).not.toContain(FailureType.CommandFailed);
  });

  it('keeps secrets out of the reason it quotes', () => {
    const f = commandFailed(step, command, { exitCode: 1, stdout: '', stderr: 'vault: password=hunter2 Permission denied' });
    expect(f.type).toBe('CommandCannotSucceed');
    expect(f.message).not.toContain('hunter2');
  });
});
