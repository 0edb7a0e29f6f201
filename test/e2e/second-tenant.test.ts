/**
 * End to end on the lab, the second tenant: `shop` is unlike pragmatismo in every way the plan
 * allows (no reverse proxy, DNS hosted outside the tenant, source containers with names of their
 * own, a UDP service, a stateless container, data of several owners and modes, one container
 * privileged and a data path of its own). Real LXD, Incus, sshd, rsync, iptables, NSD and the real
 * Temporal dev server: the migration runs live, the test approves the cutover, plays the operator
 * who changes the records at the DNS provider (lab/extdns.sh) and approves the `dns` gate, then
 * the cleanup; and checks, with zero skipped steps, every file's content, numeric owner, group and
 * mode in the destination containers against the source manifest, every forwarded port through
 * NAT (TCP, HTTP, the UDP exchange), the external DNS, and that the source is cleaned up (and
 * pragmatismo, on the same source, untouched).
 *
 * Needs root (namespaces, LXD, Incus): skipped without it, failed without it under CI=true.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startMigration } from '../../src/client';
import { loadPlan } from '../../src/plan/load';
import type { Plan } from '../../src/plan/schema';
import { q } from '../../src/runbook/shell';
import { SshPool } from '../../src/ssh/pool';
import type { SecretPolicy } from '../../src/ssh/secrets';
import { createWorker } from '../../src/worker';
import { approveUpdate, statusQuery, type Approval, type MigrationStatus } from '../../src/workflows/messages';
import { rootSuite } from '../harness/needs-root';
import { quietRuntime } from '../harness/quiet-runtime';
import { httpGet, tcpConnect, udpExchange } from '../harness/net';
import type { WorkflowHandle } from '@temporalio/client';

const REPO = join(__dirname, '..', '..');
const ROOT = process.env.GBO_LAB_ROOT ?? '/var/lib/gbo-lab';
/** The external DNS server of shop.lab ("at its provider"; lab/lib.sh EXTDNS_ADDR). */
const EXTDNS = '198.18.1.2';
/** The gate the cutover waits at when the DNS is hosted elsewhere (typed as a gate once the schema has it). */
const DNS_GATE = 'dns' as unknown as Approval['gate'];
/** The worker resolves the lab key (file:$GBO_LAB_ROOT/ssh/id_ed25519) from the lab's key folder only. */
const LAB_SECRETS: SecretPolicy = { dirs: [join(ROOT, 'ssh')], envPrefix: 'GBO_' };
const suite = rootSuite('the end-to-end migration of the second lab tenant');

/** A line of lab/shop-manifest.sh output: path, type, uid, gid, mode, sha256|target|-, hard-link group. */
type Entry = string;

/** A DNS A query over UDP (RD=0): the addresses answered. */
async function resolveA(server: string, name: string): Promise<string[]> {
  const r = spawnSync('dig', ['+time=2', '+tries=1', '+short', '+norecurse', `@${server}`, name, 'A'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dig @${server} ${name}: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean);
}

suite('migrating the second lab tenant (shop)', () => {
  let plan: Plan;
  let native: NativeConnection;
  let connection: Connection;
  let client: Client;
  let pool: SshPool;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = `lab-shop-${Date.now()}`;

  const ssh = (host: string, command: string, input?: string): string => {
    const r = spawnSync('ssh', ['-i', `${ROOT}/ssh/id_ed25519`, '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${ROOT}/ssh/known_hosts`, '-o', 'StrictHostKeyChecking=yes', `root@${host}`, command], {
      encoding: 'utf8',
      input,
      timeout: 120_000,
    });
    if (r.status !== 0) throw new Error(`ssh ${host} ${command}: exit ${r.status}\n${r.stderr}`);
    return r.stdout;
  };
  const src = (cmd: string) => ssh(plan.hosts.source.address, cmd);
  const dst = (cmd: string, input?: string) => ssh(plan.hosts.destination.address, cmd, input);
  const sourceNameOf = (c: Plan['containers'][number]) => c.source ?? `${plan.source.containerPrefix}${c.name}`;
  /** The source manifest (container view, written by lab/up.sh), per destination container. */
  const manifest = (): Map<string, Entry[]> => {
    const byContainer = new Map<string, Entry[]>();
    for (const line of readFileSync(`${ROOT}/src/shop-manifest.tsv`, 'utf8').split('\n').filter(Boolean)) {
      const [container, ...rest] = line.split('\t');
      byContainer.set(container!, [...(byContainer.get(container!) ?? []), rest.join('\t')]);
    }
    return byContainer;
  };

  async function until(handle: WorkflowHandle, what: string, pred: (s: MigrationStatus) => boolean, ms = 8 * 60_000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const s = await handle.query(statusQuery);
      if (pred(s)) return s;
      const failed = Object.entries(s.failures);
      if (failed.length || s.skipped.length || Date.now() > deadline) {
        // Cancel, so the workflow puts the source back for the next test; terminate if that hangs.
        await handle.cancel().catch(() => undefined);
        await Promise.race([handle.result().catch(() => undefined), new Promise((r) => setTimeout(r, 120_000))]);
        await handle.terminate(`test: ${what} not reached`).catch(() => undefined);
        if (failed.length) throw new Error(`waiting for ${what}: failed steps: ${failed.map(([k, v]) => `${k}: ${v}`).join('\n')}`);
        if (s.skipped.length) throw new Error(`waiting for ${what}: skipped steps: ${JSON.stringify(s.skipped)}`);
        throw new Error(`timed out waiting for ${what}; phase ${s.phase}, waiting for ${s.waitingFor}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  const waitingAt = (gate: string) => (s: MigrationStatus) => (s.waitingFor ?? '').startsWith(`approval of the ${gate} gate`);

  beforeAll(async () => {
    execFileSync('bash', [join(REPO, 'lab', 'up.sh')], { stdio: 'inherit', timeout: 15 * 60_000 });
    const lab = loadPlan(`${ROOT}/plan-shop.yaml`);
    // The verification window is seconds here, days in production.
    plan = { ...lab, approvals: { ...lab.approvals, verificationWindow: '3s' } };
    quietRuntime();
    native = await NativeConnection.connect({ address: process.env.TEMPORAL_TEST_ADDRESS! });
    connection = await Connection.connect({ address: process.env.TEMPORAL_TEST_ADDRESS! });
    client = new Client({ connection });
    pool = new SshPool({ secrets: LAB_SECRETS });
    worker = await createWorker({ connection: native, taskQueue, deps: { live: pool }, secrets: LAB_SECRETS });
    running = worker.run();
  }, 20 * 60_000);

  afterAll(async () => {
    // A failed test may leave its migration waiting for an operator: end it before the worker goes.
    await client?.workflow.getHandle(`migrate-${plan?.tenant}`).terminate('test over').catch(() => undefined);
    worker?.shutdown();
    await running;
    await pool?.close();
    await connection?.close();
    await native?.close();
  });

  test('shop migrates live: cutover, the DNS change at the provider, cleanup; every file, owner and mode as on the source', async () => {
    const machineFirewall = () => ['filter', 'nat'].map((t) => execFileSync('iptables', ['-t', t, '-S'], { encoding: 'utf8' }));
    const firewallBefore = machineFirewall();
    const pragmatismoBefore = src('lxc list --format csv -c ns').split('\n').filter((l) => l.startsWith('pragmatismo-')).sort();
    expect(pragmatismoBefore.length).toBe(10);
    const source = manifest();
    const dataContainers = plan.containers.filter((c) => c.dataDirs.length > 0);
    expect(dataContainers.map((c) => c.name).sort()).toEqual([...source.keys()].sort());
    const names = ['@', 'www', 'voip'].map((n) => (n === '@' ? plan.dns.zone : `${n}.${plan.dns.zone}`));
    for (const n of names) expect(await resolveA(EXTDNS, n)).toEqual([plan.hosts.source.address]);

    const handle = await startMigration(client, plan, 'live', taskQueue);

    // Cutover gate: every service (TCP, HTTP, the UDP exchange) answers on the destination.
    const atGate = await until(handle, 'the cutover gate', (s) => s.phase === 'cutover' && waitingAt('cutover')(s));
    const ports = plan.containers.flatMap((c) => c.services.flatMap((s) => s.ports)).length;
    expect(atGate.matrix.length).toBeGreaterThanOrEqual(ports);
    expect(atGate.matrix.filter((m) => !m.ok)).toEqual([]);
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cutover', by: 'e2e', reason: 'matrix green' }] });

    // The DNS is hosted elsewhere: the migration waits for the operator's change at the provider.
    const atDns = await until(handle, 'the dns gate', waitingAt('dns'), 5 * 60_000);
    expect(atDns.phase).toBe('cutover');
    // The gate names exactly the records to change at the provider.
    for (const r of plan.dns.records) {
      expect(atDns.waitingFor).toContain(`${r.name === '@' ? plan.dns.zone : `${r.name}.${plan.dns.zone}`} ${r.type} ${r.value}`);
    }
    // Nothing changed the external records on its own.
    for (const n of names) expect(await resolveA(EXTDNS, n)).toEqual([plan.hosts.source.address]);
    execFileSync('bash', [join(REPO, 'lab', 'extdns.sh'), 'set', plan.destination.publicAddress], { stdio: 'pipe' });
    await handle.executeUpdate(approveUpdate, { args: [{ gate: DNS_GATE, by: 'e2e', reason: 'records changed at the provider' }] });

    // wait-dns sees the new records; the verification window passes; cleanup is approved.
    await until(handle, 'the cleanup gate', (s) => s.phase === 'cleanup' && waitingAt('cleanup')(s), 5 * 60_000);
    await handle.executeUpdate(approveUpdate, { args: [{ gate: 'cleanup', by: 'e2e', reason: 'verified' }] });
    const report = await handle.result();
    const status = await handle.query(statusQuery);

    // Completely, and with zero skips.
    expect(status.phase).toBe('done');
    expect(status.skipped).toEqual([]);
    expect(report.skipped).toEqual([]);
    expect(Object.entries(status.steps).filter(([, v]) => v === 'skipped' || v === 'precondition-skipped' || v === 'failed')).toEqual([]);
    expect(report.phases.flatMap((p) => p.steps).filter((s) => /skip/.test(JSON.stringify(s.status)))).toEqual([]);
    expect(report.approvals.map((a) => `${a.gate}:${a.by}`)).toEqual(['cutover:e2e', 'dns:e2e', 'cleanup:e2e']);
    expect(report.matrix.every((m) => m.ok)).toBe(true);

    // Every file of every data container: content, numeric owner and group, mode, type; the hard
    // links still one file, the symlinks still links (the manifest script, run in each container).
    const script = readFileSync(join(REPO, 'lab', 'shop-manifest.sh'), 'utf8');
    for (const c of dataContainers) {
      const inContainer = (c as { dataPath?: string }).dataPath ?? plan.data.containerPath;
      const got = dst(`incus exec ${q(c.name)} -- sh -s -- ${q(inContainer)} ${c.dataDirs.map(q).join(' ')}`, script).split('\n').filter(Boolean);
      expect({ container: c.name, entries: got }).toEqual({ container: c.name, entries: source.get(c.name) });
    }

    // The stateless container runs on the destination, without any data device.
    const listed = dst('incus list --format csv -c ns4').split('\n').filter(Boolean);
    for (const c of plan.containers) expect(listed.some((l) => l.startsWith(`${c.name},RUNNING,`))).toBe(true);
    const stateless = plan.containers.find((c) => c.dataDirs.length === 0)!;
    const devices = dst(`incus config device list ${q(stateless.name)}`).split('\n').filter(Boolean);
    expect(devices.filter((d) => d !== 'eth0' && d !== 'root')).toEqual([]);
    const statelessIp = /,RUNNING,(\d+\.\d+\.\d+\.\d+)/.exec(listed.find((l) => l.startsWith(`${stateless.name},`))!)![1]!;
    dst(`timeout 3 bash -c 'exec 3<>/dev/tcp/${statelessIp}/${stateless.services[0]!.ports[0]}'`);

    // Every forwarded port answers through NAT on the destination's public address.
    const pub = plan.destination.publicAddress;
    for (const f of plan.portForwards.filter((x) => x.protocol === 'tcp')) await tcpConnect(pub, f.port);
    const web = plan.portForwards.find((f) => f.container === 'shop-web')!;
    const page = await httpGet(pub, web.port, `www.${plan.dns.zone}`);
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/^acme-storefront Storefront 80/);
    for (const f of plan.portForwards.filter((x) => x.protocol === 'udp')) {
      const svc = plan.containers.find((c) => c.name === f.container)!.services.find((s) => s.protocol === 'udp')!;
      const probe = (svc as { probe?: { kind: string; send: string; expect: string } }).probe!;
      expect(await udpExchange(pub, f.port, probe.send)).toContain(probe.expect);
    }

    // The external DNS answers the new address.
    for (const n of names) expect(await resolveA(EXTDNS, n)).toEqual([pub]);

    // The source is cleaned up: containers and data gone; pragmatismo, on the same host, untouched.
    const after = src('lxc list --format csv -c ns').split('\n').filter(Boolean);
    for (const c of plan.containers) {
      expect(after.some((l) => l.startsWith(`${sourceNameOf(c)},`))).toBe(false);
      if (c.dataDirs.length) expect(spawnSync('test', ['-e', `${plan.data.sourceRoot}/${c.sourceFolder ?? c.name}`]).status).not.toBe(0);
    }
    expect(after.filter((l) => l.startsWith('pragmatismo-')).sort()).toEqual(pragmatismoBefore);
    execFileSync('sh', ['-c', `cd ${q(plan.data.sourceRoot)} && sha256sum -c --quiet ${q(`${ROOT}/src/manifest.sha256`)}`]);

    // What the migration did to "the hosts" stayed on the lab's hosts.
    expect(machineFirewall()).toEqual(firewallBefore);
  }, 25 * 60_000);
});
