/**
 * Every activity heartbeats on a timer while it runs, whether or not its command prints anything,
 * with the step, the elapsed time and rsync's progress; a cancel reaches the remote command; the
 * step's main command runs under a guard keyed by workflow and step, its read-only check does not.
 */
import { CancelledFailure } from '@temporalio/common';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActivities, type Activities } from '../../src/activities';
import type { StepInput } from '../../src/activities/common';
import { DryRunExecutor, type CommandExecutor, type CommandResult, type HostTarget, type RunOptions } from '../../src/activities/executor';
import { rsyncProgress, type Progress } from '../../src/activities/heartbeat';
import { loadPlan } from '../../src/plan/load';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps, type Step } from '../../src/runbook/model';
import { inActivity } from './context';

const plan = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
const steps = allSteps(buildRunbook(plan));
const stepById = (id: string): Step => {
  const s = steps.find((x) => x.id === id);
  if (!s) throw new Error(`no step ${id}`);
  return s;
};
const stepOfKind = (kind: Step['kind']): Step => steps.find((s) => s.kind === kind)!;

interface Call {
  role: string;
  command: string;
  options: RunOptions;
}

/**
 * Hosts that answer after `delayMs`, silent unless told to print; a cancel ends the wait. By
 * default a step's main command (the guarded one) succeeds and its check finds nothing done.
 */
class SlowHosts implements CommandExecutor {
  readonly calls: Call[] = [];
  readonly connected: string[] = [];
  constructor(
    private readonly delayMs: number,
    private readonly answer: (command: string, options: RunOptions) => CommandResult = (_c, o) => ({ exitCode: o.guard ? 0 : 1, stdout: '', stderr: '' }),
    private readonly chunks: string[] = [],
  ) {}

  async run(target: HostTarget, command: string, options: RunOptions = {}): Promise<CommandResult> {
    this.calls.push({ role: target.role, command, options });
    for (const c of this.chunks) options.onOutput?.(c);
    await this.wait(options.signal);
    return this.answer(command, options);
  }

  async connect(target: HostTarget, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.wait(options.signal);
    this.connected.push(target.role);
  }

  private wait(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, this.delayMs);
      signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(new CancelledFailure('aborted'));
      });
    });
  }
}

const hosts: Record<'source' | 'destination', HostTarget> = {
  source: { role: 'source', ...plan.hosts.source },
  destination: { role: 'destination', ...plan.hosts.destination },
};
const inputOf = (step: Step, values: Record<string, string> = {}): StepInput => ({ step, hosts, values, mode: 'live' });
const activitiesOver = (live: CommandExecutor): Activities =>
  createActivities({ dryRun: new DryRunExecutor(), live, resolveSecret: async () => 'unseal-key', heartbeatIntervalMs: 40 });

describe('rsync progress', () => {
  it('reads the last complete --info=progress2 report', () => {
    const text = '\r     32,768   0%    0.00kB/s    0:00:00  \r134,217,728  49%   64.00MB/s    0:00:02 (xfr#1, to-chk=0/2)\r  268,4';
    expect(rsyncProgress(text)).toEqual({ bytes: 134217728, percent: 49, rate: '64.00MB/s' });
    expect(rsyncProgress('sending incremental file list\n')).toBeUndefined();
  });
});

describe('activities heartbeat on a timer', () => {
  it('while a silent command runs, with the step and the elapsed time', async () => {
    const live = new SlowHosts(400);
    const step = stepById('data/tables/push');
    const run = inActivity(() => activitiesOver(live).runStep(inputOf(step)));
    expect((await run.result).status).toBe('done');
    expect(run.beats.length).toBeGreaterThanOrEqual(5);
    const last = run.beats.at(-1) as Progress;
    expect(last).toMatchObject({ step: 'data/tables/push', doing: 'command' });
    expect(typeof last.elapsedS).toBe('number');
  });

  it("with rsync's bytes, percent and rate, also from a report split over two chunks", async () => {
    const live = new SlowHosts(200, undefined, ['sending incremental file list\r  1,048,576  12%  ', ' 10.50MB/s    0:00:07  ']);
    const run = inActivity(() => activitiesOver(live).runStep(inputOf(stepById('presync/tables/rsync'))));
    await run.result;
    expect(run.beats.at(-1)).toMatchObject({ step: 'presync/tables/rsync', bytes: 1048576, percent: 12, rate: '10.50MB/s' });
  });

  it('a transfer beats as its progress comes, once a second at most, whatever the timer says', async () => {
    // rsync prints a report every 200 ms for 2.5 s; the timer alone (a minute) would beat once, at the start.
    const progressing: CommandExecutor = {
      connect: async () => undefined,
      run: async (_t, command, options = {}) => {
        if (!options.guard) return { exitCode: 1, stdout: '', stderr: '' };
        for (let i = 1; i <= 12; i++) {
          await new Promise((r) => setTimeout(r, 200));
          options.onOutput?.(`\r ${(i * 10_485_760).toLocaleString('en-US')}  ${i * 8}%   50.00MB/s    0:00:0${9 - Math.floor(i / 2)}  `);
        }
        return { exitCode: 0, stdout: '', stderr: '' };
      },
    };
    const acts = createActivities({ dryRun: new DryRunExecutor(), live: progressing, heartbeatIntervalMs: 60_000 });
    const run = inActivity(() => acts.runStep(inputOf(stepById('presync/tables/rsync'))));
    await run.result;
    const withBytes = (run.beats as Progress[]).filter((b) => b.bytes !== undefined);
    expect(withBytes.length).toBeGreaterThanOrEqual(2);
    expect(withBytes.length).toBeLessThanOrEqual(3);
    expect(new Set(withBytes.map((b) => b.percent)).size).toBe(withBytes.length);
  });

  const zone = ['$ORIGIN pragmatismo.com.br.', '$TTL 3600', '@ IN SOA ns1 hostmaster (2026010101 7200 3600 1209600 300)', '@ IN A 10.0.0.1', ''].join('\n');
  const caddy = 'chat.example.com {\n  reverse_proxy 10.16.164.12:5859\n}\n';
  const cases: [string, (a: Activities, input: StepInput) => Promise<unknown>, Step, Record<string, string>][] = [
    ['runStep', (a, i) => a.runStep(i), stepById('preflight/tenant/source-api-address'), {}],
    ['probe', (a, i) => a.probe(i), steps.find((s) => s.kind === 'probe' && s.host === 'destination')!, Object.fromEntries(plan.containers.map((c, n) => [`ip:${c.name}`, `10.107.115.${10 + n}`]))],
    ['rewriteCaddy', (a, i) => a.rewriteCaddy(i), stepOfKind('caddy-rewrite'), { 'oldip:proxy': '10.16.164.12', 'ip:proxy': '10.107.115.12' }],
    ['unsealVault', (a, i) => a.unsealVault(i), stepOfKind('vault-unseal'), {}],
    ['updateZone', (a, i) => a.updateZone(i), stepOfKind('zone-update'), {}],
    ['verifyHostKeys', (a, i) => a.verifyHostKeys(i), stepOfKind('verify-host-keys'), {}],
  ];

  it.each(cases)('%s', async (_name, call, step, values) => {
    const live = new SlowHosts(250, (c, o) => {
      if (c.includes(' cat /opt/gbo/conf/config')) return { exitCode: 0, stdout: caddy, stderr: '' };
      if (c.includes('.zone')) return { exitCode: 0, stdout: zone, stderr: '' };
      return { exitCode: o.guard ? 0 : 1, stdout: '', stderr: '' };
    });
    const run = inActivity(() => call(activitiesOver(live), inputOf(step, values)));
    expect(await run.result).toMatchObject({ id: step.id, status: 'done' });
    expect(run.beats.length).toBeGreaterThanOrEqual(3);
    expect(run.beats.every((b) => (b as Progress).step === step.id)).toBe(true);
  });

  it('pinSourceHostKey, checkDns and checkCertificate too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gbo-kh-'));
    try {
      const knownHosts = join(dir, 'known_hosts');
      writeFileSync(knownHosts, `${hosts.source.address} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEk8Fb0jU0cOe4Kc0Ci7+pPaZ8Yzb7mvGZXUmdqbRXRK\n`);
      const live = new SlowHosts(250);
      const acts = activitiesOver(live);
      const pinStep = stepOfKind('pin-host-key');
      const pin = inActivity(() => acts.pinSourceHostKey({ ...inputOf(pinStep), hosts: { ...hosts, source: { ...hosts.source, knownHosts: `file:${knownHosts}` } } }));
      expect((await pin.result).status).toBe('done');
      expect(pin.beats.length).toBeGreaterThanOrEqual(3);
      const dns = inActivity(() => acts.checkDns(inputOf({ ...stepOfKind('wait-dns'), params: { ...stepOfKind('wait-dns').params, servers: [] } })));
      expect((await dns.result).ok).toBe(true);
      expect(dns.beats[0]).toMatchObject({ step: stepOfKind('wait-dns').id });
      const cert = inActivity(() => acts.checkCertificate(inputOf({ ...stepOfKind('wait-cert'), params: { ...stepOfKind('wait-cert').params, address: '127.0.0.1' } })));
      // No certificate yet: a retryable failure the server retries (no history event per attempt).
      await expect(cert.result).rejects.toMatchObject({ type: 'NotYet', nonRetryable: false, message: expect.stringContaining('not yet: pragmatismo.com.br: ') });
      expect(cert.beats[0]).toMatchObject({ step: stepOfKind('wait-cert').id });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a step's commands", () => {
  it('run the main command under a guard keyed by workflow and step (sudo as the step), the check without', async () => {
    const live = new SlowHosts(0);
    const step = stepById('copy/tables/copy');
    const run = inActivity(() => activitiesOver(live).runStep(inputOf(step)), 'migrate-pragmatismo/tables');
    expect((await run.result).status).toBe('done');
    const [check, main] = live.calls;
    expect(check?.options.guard).toBeUndefined();
    expect(main?.options.guard).toEqual({ key: 'migrate-pragmatismo_tables.copy_tables_copy', sudo: true });
    // Outside a worker (an operator's re-check) the key still names the step.
    await activitiesOver(live).runStep(inputOf(stepById('preflight/tenant/source-api-address')));
    expect(live.calls.at(-1)?.options.guard).toEqual({ key: 'local.preflight_tenant_source-api-address' });
  });

  it("stop when the activity is cancelled: the worker's cancel reaches the remote command", async () => {
    const live = new SlowHosts(30_000);
    const run = inActivity(() => activitiesOver(live).runStep(inputOf(stepById('data/tables/push'))));
    setTimeout(() => run.cancel.abort(), 100);
    await expect(run.result).rejects.toBeInstanceOf(CancelledFailure);
    expect(live.calls.at(-1)?.options.signal?.aborted).toBe(true);
  });
});
