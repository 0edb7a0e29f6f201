/**
 * The data steps' scripts on this machine's real tools (root needed for chown): shift-ids takes an
 * unprivileged source's idmap shift off the final copy and is idempotent; the push's tar stream
 * carries numeric owners, modes (setuid included) and hard links into a busybox tar; the owners
 * check, run by busybox sh as inside a container, passes on a faithful copy and names a wrong one.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, linkSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPlan } from '../../src/plan/load';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps } from '../../src/runbook/model';
import { CONTAINER_OWNERS_SCRIPT, OWNERS_LISTING_SCRIPT } from '../../src/runbook/scripts';
import { hostCommand, sh } from '../../src/runbook/shell';
import { rootSuite } from '../harness/needs-root';

const hasBusybox = spawnSync('busybox', ['true']).status === 0;

rootSuite('chown to other owners')('ownership kept from the source', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gbo-owners-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const base = 1000000;
  const files: [string, number, number, number][] = [
    ['html/index.html', 0, 0, 0o644],
    ['html/app.php', 33, 33, 0o640],
    ['uploads/a.png', 1000, 1000, 0o600],
    ['uploads/run.sh', 1001, 100, 0o4755],
  ];

  function seed(root: string, shift: number): void {
    for (const d of ['html', 'uploads']) mkdirSync(join(root, d), { recursive: true });
    chownSync(join(root, 'uploads'), shift + 1000, shift + 1000);
    for (const [p, uid, gid, mode] of files) {
      writeFileSync(join(root, p), `${p}\n`);
      chownSync(join(root, p), uid + shift, gid + shift);
      chmodSync(join(root, p), mode);
    }
    linkSync(join(root, 'uploads/a.png'), join(root, 'uploads/a-link.png'));
    symlinkSync('index.html', join(root, 'html/latest'));
  }

  const plan = loadPlan(join(__dirname, '..', 'plans', 'shop.yaml'));
  const step = allSteps(buildRunbook(plan)).find((s) => s.id === 'data/web/shift-ids')!;
  const run = (text: string, final: string, shift: string) => spawnSync('sh', ['-c', hostCommand(text.split('/srv/incus-data/shop/web').join(final), { 'idshift:web': shift }, false, true)], { encoding: 'utf8' });

  it('shift-ids takes the shift off (setuid bits kept), its check then passes, and a second run changes nothing', () => {
    seed(dir, base);
    expect(run(step.check!, dir, String(base)).status).not.toBe(0);
    expect(run(step.command, dir, String(base)).status).toBe(0);
    for (const [p, uid, gid, mode] of files) expect([p, statSync(join(dir, p)).uid, statSync(join(dir, p)).gid, statSync(join(dir, p)).mode & 0o7777]).toEqual([p, uid, gid, mode]);
    expect(statSync(join(dir, 'uploads')).uid).toBe(1000);
    expect(run(step.check!, dir, String(base)).status).toBe(0);
    expect(run(step.command, dir, String(base)).status).toBe(0);
    expect(statSync(join(dir, 'uploads/run.sh')).uid).toBe(1001);
    // A privileged source: nothing to shift, the check passes at once.
    expect(run(step.check!, dir, '0').status).toBe(0);
  });

  (hasBusybox ? it : it.skip)('the tar stream into a busybox tar keeps owners, modes and hard links; the busybox owners check agrees', () => {
    const final = join(dir, 'final');
    const inside = join(dir, 'inside');
    mkdirSync(final);
    mkdirSync(inside);
    seed(final, 0);
    execFileSync('sh', ['-c', `tar -C ${final} --numeric-owner -cf - . | busybox tar -C ${inside} --numeric-owner -xpf -`]);
    for (const [p, uid, gid, mode] of files) expect([p, statSync(join(inside, p)).uid, statSync(join(inside, p)).gid, statSync(join(inside, p)).mode & 0o7777]).toEqual([p, uid, gid, mode]);
    expect(statSync(join(inside, 'uploads/a-link.png')).ino).toBe(statSync(join(inside, 'uploads/a.png')).ino);
    const check = () => spawnSync('sh', ['-c', `${sh('sh', '-c', OWNERS_LISTING_SCRIPT, 'owners', final, 'html', 'uploads')} | ${sh('busybox', 'sh', '-c', CONTAINER_OWNERS_SCRIPT, 'check-owners', inside)}`], { encoding: 'utf8' });
    const good = check();
    expect(good.stdout).toMatch(/^owners ok=(\d+) bad=0 of \1$/m);
    expect(good.status).toBe(0);
    chownSync(join(inside, 'html/app.php'), 0, 0);
    const bad = check();
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('owner or mode differs: html/app.php is 0:0:640, expected 33:33:640');
  });
});
