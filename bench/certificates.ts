/**
 * Benchmark: how soon after a CA's rate limit ends is every certificate served and verified?
 * The lab tenant is migrated with the lab's CA refusing new certificates for --window seconds
 * after the DNS cutover (tests/harness/certificate-scenario.ts); measured in the same run:
 * - the migration: the first certificate (and every one) verified over TLS, this long after the limit ended;
 * - Caddy on its own: its next attempt after the limit, as its own `will retry` lines announced.
 * Prints both and their ratio; writes bench/results/certificates.json.
 *
 *   npm run bench:certificates [-- --window 200]     (needs root: the lab)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { runCertificateScenario } from '../test/harness/certificate-scenario';

/** The checkout: this file runs compiled from dist/bench/ (`npm run bench:certificates` builds first). */
const REPO = join(__dirname, '..', '..');
const ROOT = process.env.GBO_LAB_ROOT ?? '/var/lib/gbo-lab';

async function main(): Promise<void> {
  const i = process.argv.indexOf('--window');
  const windowS = i > 0 ? Number(process.argv[i + 1]) : 200;
  if (!Number.isInteger(windowS) || windowS < 30 || windowS > 3600) throw new Error(`--window: seconds between 30 and 3600, got ${process.argv[i + 1]}`);
  if (process.getuid?.() !== 0) throw new Error('the benchmark runs on the lab: it needs root');
  execFileSync('bash', [join(REPO, 'lab', 'up.sh')], { stdio: 'inherit' });
  const r = await runCertificateScenario({ repo: REPO, labRoot: ROOT, windowS, faults: false, log: (l) => console.log(`  ${l}`) });
  const ours = r.firstVerifiedAfterMs / 1000;
  const all = r.verifiedAfterMs / 1000;
  const caddy = r.caddyOwnRetryAfterMs === undefined ? undefined : r.caddyOwnRetryAfterMs / 1000;
  const first = r.caddyFirstObtainedAfterMs === undefined ? undefined : r.caddyFirstObtainedAfterMs / 1000;
  const result = {
    at: new Date().toISOString(),
    machine: `${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB`,
    windowS,
    caddyFirstObtainedAfterS: first === undefined ? null : Number(first.toFixed(1)),
    firstDomainVerifiedAfterS: Number(ours.toFixed(1)),
    allVerifiedAfterS: Number(all.toFixed(1)),
    caddyOwnNextAttemptAfterS: caddy === undefined ? null : Number(caddy.toFixed(1)),
    ratio: caddy ? Number((ours / caddy).toFixed(3)) : null,
    caddyAttemptsDuringLimit: r.caddyAttemptsDuringLimit,
  };
  console.log(`rate limit of ${windowS} s; after it ended: Caddy's first certificate ${first === undefined ? '-' : first.toFixed(1)} s, the plan's first domain verified over TLS ${ours.toFixed(1)} s (all its domains ${all.toFixed(1)} s; Caddy lets 10 orders through per 10 s); Caddy alone would have tried again ${caddy === undefined ? '(not announced)' : `${caddy.toFixed(1)} s after`}; ratio ${result.ratio ?? '-'} (goal: within 5 s)`);
  mkdirSync(join(REPO, 'bench', 'results'), { recursive: true });
  writeFileSync(join(REPO, 'bench', 'results', 'certificates.json'), `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((err: unknown) => {
  console.error(`error: ${(err as Error).message}`);
  process.exitCode = 1;
});
