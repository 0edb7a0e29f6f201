/**
 * Certificates across a CA rate limit, end to end on the lab (real LXD, Incus, Caddy, NSD, the
 * lab's ACME CA: pebble behind the project's rate-limiting front): the CA refuses new
 * certificates for a while after the DNS cutover; status says what is awaited and until when;
 * the worker is SIGKILLed and the Temporal server restarted during the wait; when the limit ends,
 * Caddy is made to retry and every certificate is verified over TLS against the lab CA's root.
 * The delay after the limit and Caddy's own next attempt are printed (bench/certificates.ts
 * measures them on their own), not asserted.
 *
 * Needs root (namespaces, LXD, Incus): skipped without it, failed without it under CI=true.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { dnsQuery } from '../../src/probe/probes';
import { rootSuite } from '../harness/needs-root';
import { certificatePlan, runCertificateScenario } from '../harness/certificate-scenario';

const REPO = join(__dirname, '..', '..');
const ROOT = process.env.GBO_LAB_ROOT ?? '/var/lib/gbo-lab';
const print = (line: string) => process.stdout.write(`${line}\n`);
const suite = rootSuite('the certificate wait on the lab');

suite('certificates across a CA rate limit', () => {
  beforeAll(() => {
    // The worker runs from dist/ as its own process (it is killed): build what it runs.
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'inherit', timeout: 10 * 60_000 });
    execFileSync('bash', [join(REPO, 'lab', 'up.sh')], { stdio: 'inherit', timeout: 20 * 60_000 });
  }, 30 * 60_000);

  test('the wait survives a worker kill and a server restart; every certificate is verified once the limit ends', async () => {
    const plan = certificatePlan(ROOT);
    const r = await runCertificateScenario({ repo: REPO, labRoot: ROOT, windowS: 75, faults: true, log: print });

    // Status said what was awaited and until when: the CA's own retry time.
    expect(r.limitWait.what).toMatch(/the CA's rate limit for .* to end/);
    expect(Math.abs(Date.parse(r.limitWait.until) - r.limitEndsAt)).toBeLessThanOrEqual(1000);
    expect(r.statusDuringWait.waitingFor).toContain(r.limitWait.id);
    // The faults happened inside the wait, and the wait was still there after them.
    expect(r.faults).toBeDefined();
    expect(r.faults!.workerBackAt).toBeLessThan(r.limitEndsAt);
    expect(r.statusAfterFaults?.waits.find((w) => w.id === r.limitWait.id)).toMatchObject({ state: 'waiting' });

    // The authoritative DNS server (NSD in the migrated dns container, through NAT) answers the new records.
    for (const rec of plan.dns.records) {
      const name = rec.name === '@' ? plan.dns.zone : `${rec.name.replace('*', 'any-name')}.${plan.dns.zone}`;
      const answer = await dnsQuery(plan.dns.authoritativeServers[0]!, 53, name, rec.type, 3000);
      expect({ name, aa: answer.aa, has: answer.answers.some((a) => a.data.replace(/\.$/, '') === rec.value.replace(/\.$/, '')) }).toEqual({ name, aa: true, has: true });
    }

    // Every domain: a certificate valid now, for its name, chaining to the lab CA's root, from pebble.
    const certs = r.report.phases.find((p) => p.id === 'certificates')!.steps;
    for (const domain of plan.certificates!.domains) {
      const step = certs.find((s) => s.id === `certificates/tenant/${domain.replace(/[^a-z0-9]+/g, '-')}`);
      expect(step).toMatchObject({ ok: true, output: expect.stringMatching(/valid until .*issued by .*Pebble/) });
    }
    // The limit was seen and waited out, not polled through.
    expect(certs.some((s) => /rate-limited until/.test(s.output ?? ''))).toBe(true);
    expect(r.verifiedAfterMs).toBeGreaterThanOrEqual(0);
    // The TTL wake is recorded with who and why.
    expect(r.statusDuringWait.waits.find((w) => w.id === 'cutover/tenant/dns-propagated/old-ttl')).toMatchObject({
      state: 'woken',
      actions: [{ action: 'wake', by: 'certificate-scenario', reason: 'the lab has no caching resolvers' }],
    });

    const s = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
    print(
      `after the CA's limit ended: Caddy's first certificate ${s(r.caddyFirstObtainedAfterMs)}, ${plan.certificates!.domains[0]} verified ${s(r.firstVerifiedAfterMs)}, ` +
        `all ${plan.certificates!.domains.length} verified ${s(r.verifiedAfterMs)}; ` +
        `Caddy on its own: next attempt for ${plan.certificates!.domains[0]} ${r.caddyOwnRetryAfterMs === undefined ? 'not announced' : `${s(r.caddyOwnRetryAfterMs)} after`} ` +
        `(${r.caddyAttemptsDuringLimit} attempts during the limit)`,
    );
  }, 30 * 60_000);
});
