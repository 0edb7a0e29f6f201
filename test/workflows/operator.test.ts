/**
 * Operator messages on the real Temporal dev server, with a scripted executor standing in for the
 * hosts (the lab tests run the real ones): a failed step waits for retryStep or skipStep, the
 * validators refuse what they must, pause holds the run, and a cancel before cutover runs the
 * compensation commands in reverse.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandExecutor, CommandResult, HostTarget } from '../../src/activities/executor';
import { DryRunExecutor } from '../../src/activities/executor';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import type { Plan } from '../../src/plan/schema';
import { createWorker } from '../../src/worker';
import { approveUpdate, pauseUpdate, resumeUpdate, retryStepUpdate, skipStepUpdate, statusQuery, type MigrationStatus } from '../../src/workflows/messages';
import { quietRuntime } from '../harness/quiet-runtime';

const ok = (stdout = ''): CommandResult => ({ exitCode: 0, stdout, stderr: '' });
const no = (stderr = ''): CommandResult => ({ exitCode: 1, stdout: '', stderr });
const DIGEST = `files=3 sha256=${'b'.repeat(64)}`;

/** Answers the runbook's commands like hosts where nothing has been done yet. */
class ScriptedHosts implements CommandExecutor {
  readonly log: string[] = [];
  /** The pulled copy does not match until the "operator" fixes it. */
  transferBroken = true;
  private nextIp = 10;

  constructor(private readonly plan: Plan) {}

  async run(target: HostTarget, command: string): Promise<CommandResult> {
    // The example's destination user goes through sudo; answer for the command inside.
    const wrapped = /^sudo -n sh -c '([\s\S]*)'$/.exec(command);
    const c = wrapped ? wrapped[1]!.replace(/'\\''/g, "'") : command;
    this.log.push(`${target.role}: ${c}`);
    const names = this.plan.containers.map((x) => x.name);
    if (/^lxc version|^incus version/.test(c)) return ok('5.0.2');
    if (c.startsWith('cat ') && c.includes('client.crt')) return ok('-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n');
    if (c.startsWith('lxc list --format csv')) return ok(names.map((n) => `pragmatismo-${n}`).join('\n'));
    if (c.startsWith('incus list --format csv')) return ok('');
    if (c.startsWith('incus list lxd-source:')) return ok(names.map((n) => `pragmatismo-${n}`).join('\n'));
    if (c.startsWith('du -sb')) return ok('1000');
    if (c.includes('df -B1')) return ok('100000');
    if (c.startsWith('ssh-keygen -y')) return ok('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB dest');
    const inst = /^lxc query \/1\.0\/instances\/pragmatismo-([a-z-]+)$/.exec(c);
    if (inst) return ok(JSON.stringify({ name: `pragmatismo-${inst[1]}`, status: 'Running', devices: { gbo: { type: 'disk', source: `/opt/gbo/${inst[1]}`, path: '/opt/gbo' } }, config: {} }));
    if (/^lxc query \/1\.0\/instances\/pragmatismo-[a-z-]+\/state$/.test(c)) return ok(JSON.stringify({ network: { eth0: { addresses: [{ family: 'inet', scope: 'global', address: `10.16.164.${this.nextIp++}` }] } } }));
    const list = /^incus list '\^([a-z-]+)\$' --format json$/.exec(c);
    if (list) return ok(JSON.stringify([{ name: list[1], state: { network: { eth0: { addresses: [{ family: 'inet', scope: 'global', address: `10.107.115.${this.nextIp++}` }] } } } }]));
    if (c.startsWith("sh -c 'cd \"$1\" || exit 1; shift; l=$(mktemp)")) return ok(DIGEST);
    if (c.includes(' adapt --config ')) return ok(JSON.stringify({ apps: { http: { servers: { s: { routes: Array.from({ length: 25 }, (_, i) => ({ match: [{ host: [`h${i}.example.com`] }] })) } } } }, storage: { module: 'file_system', root: '/opt/gbo/data/caddy' } }));
    if (c.includes(' cat /opt/gbo/conf/config')) return ok('{\n  storage file_system {\n    root /opt/gbo/data/caddy\n  }\n}\nchat.example.com {\n  reverse_proxy 10.16.164.12:5859\n}\n');
    if (c.startsWith('test "$(sh -c') && c.includes(' manifest ')) {
      return this.transferBroken && c.includes('/tables ') ? no('rsync: write failed: No space left on device') : ok();
    }
    // Checks: nothing is done yet on these hosts, so every check says "not there".
    if (/^(test |grep -q|iptables -t nat -C|iptables -C|! |iptables -S INPUT)|incus query \/1\.0\/instances\/[a-z-]+ [>|]|\| grep -q|incus config device list [a-z-]+ \| grep|^incus remote list|^lxc query \/1\.0\/instances\/[a-z-]+ \|/.test(c)) {
      return no();
    }
    if (c.startsWith('tar -C') || c.includes('listing')) return ok('files ok=3 changed-by-services=0 bad=0 of 3');
    return ok();
  }
}

/** A worker known_hosts pinning a fresh ed25519 key for `host` (the pin step copies it to the destination). */
function knownHostsFor(host: string): string {
  const raw = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const blob = Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]);
  const file = join(mkdtempSync(join(tmpdir(), 'gbo-kh-')), 'known_hosts');
  writeFileSync(file, `${host} ssh-ed25519 ${blob.toString('base64')}\n`);
  return file;
}

const address = process.env.TEMPORAL_TEST_ADDRESS!;
let native: NativeConnection;
let connection: Connection;
let client: Client;

beforeAll(async () => {
  quietRuntime();
  native = await NativeConnection.connect({ address });
  connection = await Connection.connect({ address });
  client = new Client({ connection });
});
afterAll(async () => {
  await connection?.close();
  await native?.close();
});

async function until(handle: { query: (q: typeof statusQuery) => Promise<MigrationStatus> }, what: string, pred: (s: MigrationStatus) => boolean): Promise<MigrationStatus> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s = await handle.query(statusQuery);
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify({ phase: s.phase, waitingFor: s.waitingFor, failures: s.failures })}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const updateRefusal = async (p: Promise<unknown>) => (((await p.then(() => undefined, (e: Error) => e)) as Error | undefined)?.cause as Error | undefined)?.message;

test('a failed step waits for the operator; retry re-runs it; gates and cancel behave as the guide demands', async () => {
  const example = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
  // No NAT probes or DNS waits to real addresses: this test stops at the cutover gate.
  const plan: Plan = {
    ...example,
    tenant: `op${Date.now() % 100000}`,
    hosts: { ...example.hosts, source: { ...example.hosts.source, knownHosts: `file:${knownHostsFor(example.hosts.source.address)}` } },
    destination: { ...example.destination, firewall: undefined },
    portForwards: [],
    serviceFixes: [],
    concurrency: { containers: 4 },
  };
  const hosts = new ScriptedHosts(plan);
  const taskQueue = `operator-${Date.now()}`;
  const worker = await createWorker({ connection: native, taskQueue, deps: { dryRun: new DryRunExecutor(), live: hosts } });
  await worker.runUntil(async () => {
    const handle = await startMigration(client, plan, 'live', taskQueue);

    // The canary's pulled data does not match (a refusal, not retried blindly): the run waits for a decision.
    const failed = await until(handle, 'the failed transfer check', (s) => s.steps['data/tables/verify-transfer'] === 'failed' && (s.waitingFor ?? '').includes('data/tables/verify-transfer'));
    expect(failed.failures['data/tables/verify-transfer']).toMatch(/refused[\s\S]*exit 1[\s\S]*No space left on device/);
    expect(await updateRefusal(handle.executeUpdate(skipStepUpdate, { args: [{ stepId: 'data/tables/verify-transfer', by: 'ops', reason: ' ' }] }))).toMatch(/reason: skipping a step needs a reason/);
    expect(await updateRefusal(handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'preflight/tenant/source-version', by: 'ops' }] }))).toMatch(/preflight\/tenant\/source-version is done, not failed/);
    expect(await updateRefusal(handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'no/such/step', by: 'ops' }] }))).toMatch(/no step "no\/such\/step"/);

    // Pause before retrying: the retried child runs, but no later tenant phase starts while paused.
    await handle.executeUpdate(pauseUpdate, { args: [{ by: 'ops', reason: 'lunch' }] });
    hosts.transferBroken = false;
    await handle.executeUpdate(retryStepUpdate, { args: [{ stepId: 'data/tables/verify-transfer', by: 'ops' }] });
    await until(handle, 'the pause to hold', (s) => (s.waitingFor ?? '').startsWith('resume'));
    await handle.executeUpdate(resumeUpdate, { args: [{ by: 'ops' }] });

    const gate = await until(handle, 'the cutover gate', (s) => s.phase === 'cutover' && (s.waitingFor ?? '').includes('cutover'));
    expect(gate.steps['data/tables/verify-transfer']).toBe('done');
    expect(gate.failures).toEqual({});
    expect(gate.matrix.length).toBeGreaterThan(10);
    expect(gate.downtimeOver).toBe(true);
    expect(await updateRefusal(handle.executeUpdate(approveUpdate, { args: [{ gate: 'cleanup', by: 'ops', reason: 'early' }] }))).toMatch(/not waiting at the cleanup gate/);
    expect(await updateRefusal(handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: 'ops', reason: '' }] }))).toMatch(/reason: a reason is required/);

    // Cancel at the gate: copies deleted (if ours), devices restored as recorded, sources started.
    const before = hosts.log.length;
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow();
    const undo = hosts.log.slice(before);
    const proxyUndo = undo.filter((l) => / proxy( |$)|pragmatismo-proxy/.test(l));
    expect(proxyUndo.find((l) => l.includes('incus delete --force proxy'))).toBeDefined();
    expect(undo).toContain('source: lxc config device add pragmatismo-proxy gbo disk source=/opt/gbo/proxy path=/opt/gbo');
    expect(undo).toContain('source: lxc start pragmatismo-proxy');
    expect(undo.indexOf('source: lxc start pragmatismo-proxy')).toBeGreaterThan(undo.indexOf('source: lxc config device add pragmatismo-proxy gbo disk source=/opt/gbo/proxy path=/opt/gbo'));
    expect((await handle.query(statusQuery)).phase).toBe('compensated');
    // Nothing destructive ever ran on the source.
    expect(hosts.log.filter((l) => l.startsWith('source: ') && /rm -rf|lxc delete/.test(l))).toEqual([]);
  });
});
