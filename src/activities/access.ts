/**
 * Host access for the guide's dest→source rsync: the source's host key, as the worker itself pins
 * it, goes into the destination's known_hosts. Learning it from the network (ssh-keyscan) would
 * trust whoever answers.
 */
import { readFileSync } from 'node:fs';
import { FailureType } from '../errors';
import { entriesFor, hostLookupName, parseKnownHosts } from '../ssh/known-hosts';
import { expandFilePath } from '../ssh/secrets';
import { commandFailed, commandOf, liveExecutor, outcomeOf, refused, type ActivityDeps, type StepInput, type StepOutcome } from './common';

export function createAccessActivities(deps: ActivityDeps) {
  return {
    async pinSourceHostKey(input: StepInput): Promise<StepOutcome> {
      const { step, hosts } = input;
      const outcome = outcomeOf(step);
      const source = hosts.source;
      const file = expandFilePath(source.knownHosts ?? 'file:~/.ssh/known_hosts');
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw refused(FailureType.HostKeyMismatch, `${step.id}: the worker's known_hosts for the source (${source.knownHosts ?? '~/.ssh/known_hosts'}) cannot be read (${(err as NodeJS.ErrnoException).code})`);
      }
      const name = hostLookupName(source.address, source.port);
      const lines = entriesFor(parseKnownHosts(text), source.address, source.port)
        .filter((e) => e.marker === undefined)
        .map((e) => `${name} ${e.keyType} ${e.key.toString('base64')}`);
      if (lines.length === 0) throw refused(FailureType.HostKeyMismatch, `${step.id}: the worker pins no host key for ${name}; add it to the worker's known_hosts first`);
      const write = commandOf(input, String(step.params?.write));
      const r = await liveExecutor(deps).run(hosts.destination, write, { stdin: lines.join('\n') + '\n' });
      if (r.exitCode !== 0) throw commandFailed(step, write, r);
      return outcome({ status: 'done', command: write, exitCode: 0, output: `${lines.length} key(s) for ${name}` });
    },
  };
}
