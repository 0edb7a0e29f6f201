/**
 * `npm run faults` (scripts/faults.sh builds, brings the lab up, then runs this from dist/):
 *
 *   node dist/test/faults/main.js [--seed N] [--kills N]
 *
 * The full fault suite over the lab as it is (its data size is lab/up.sh's). Prints the seed
 * first, the report at the end, and exits 0 only if the migration completed, every file matched
 * and no destructive step ran twice.
 */
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { runFaultSuite } from './suite';

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function intOf(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) {
    console.error(`${what}: expected a non-negative integer, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return Number(text);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const seed = intOf(option(args, '--seed') ?? process.env.GBO_FAULT_SEED, '--seed') ?? randomInt(1, 2 ** 31 - 1);
  const kills = intOf(option(args, '--kills'), '--kills') ?? 24;
  const repo = join(__dirname, '..', '..', '..');
  const started = Date.now();
  const report = await runFaultSuite({
    seed,
    kills,
    repo,
    labRoot: process.env.GBO_LAB_ROOT ?? '/var/lib/gbo-lab',
    reportDir: join(repo, '.data', 'faults'),
    log: (line) => console.log(line),
  });
  const ok = report.completed && report.files.ok && report.destructive.ok && report.kills.length >= Math.min(kills, 5);
  console.log(
    `fault suite seed ${seed}: ${ok ? 'PASSED' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(0)} s: ${report.kills.length} kills, ` +
      `stall median ${report.stall.medianMs === undefined ? '-' : (report.stall.medianMs / 1000).toFixed(1)} s max ${report.stall.maxMs === undefined ? '-' : (report.stall.maxMs / 1000).toFixed(1)} s, ` +
      `${report.files.verified} files verified, re-sent after the cut ${report.linkCut?.resentBytes ?? '-'} B`,
  );
  process.exit(ok ? 0 : 1);
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
