/**
 * The preflight's size of the source data, past 2 GiB: the exact command the runbook builds, run
 * by a real sh over a stand-in `du`, gives a byte count the capture parser accepts. (mawk's
 * `print` of such a sum is `2.14832e+09`, which the parser refuses by name.)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCapture, parseInstance } from '../../src/activities/parse';
import { loadPlan } from '../../src/plan/load';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps } from '../../src/runbook/model';
import { fillPlaceholders, hostCommand } from '../../src/runbook/shell';
import { derivedValues } from '../../src/runbook/values';

const plan = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));

describe('the source data size', () => {
  let bin: string;
  beforeAll(() => {
    bin = mkdtempSync(join(tmpdir(), 'gbo-du-'));
    // Two folders whose sum, 5147483648, is past 2^31 and 2^32.
    writeFileSync(join(bin, 'du'), '#!/bin/sh\nprintf "2147483648\\t/a\\n3000000000\\t/b\\n"\n', { mode: 0o755 });
  });
  afterAll(() => rmSync(bin, { recursive: true, force: true }));

  // Each awk here must sum alike: mawk's `print` gave `2.14832e+09`.
  const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
  const awks = [...['mawk', 'gawk', 'nawk'].filter(has), ...(has('busybox') ? ['busybox awk'] : [])];

  it.each(['awk', ...awks])('is a whole byte count with %s', (awk) => {
    const step = allSteps(buildRunbook(plan)).find((s) => s.id === 'preflight/tenant/source-data-size')!;
    expect(step.captureAs).toEqual({ kind: 'bytes', key: 'bytes:source-data' });
    const command = hostCommand(step.command, {}, step.sudo, true);
    if (awk !== 'awk') writeFileSync(join(bin, 'awk'), `#!/bin/sh\nexec ${awk} "$@"\n`, { mode: 0o755 });
    const out = execFileSync('sh', ['-c', command], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    rmSync(join(bin, 'awk'), { force: true });
    expect(parseCapture('bytes', out)).toBe('5147483648');
  });
});

describe('a byte count', () => {
  it('is refused in exponent notation, saying how the command must print it', () => {
    expect(() => parseCapture('bytes', '2.14832e+09\n')).toThrow(/exponent notation; the command must print the number with printf "%\.0f"/);
    expect(() => parseCapture('bytes', '5E9')).toThrow(/exponent notation/);
  });

  it("is df's last word, digits only", () => {
    expect(parseCapture('bytes', '     Avail\n 98765432100\n')).toBe('98765432100');
    expect(() => parseCapture('bytes', 'du: cannot access')).toThrow(/expected a byte count/);
  });
});

describe('the source idmap shift, from the recorded instance', () => {
  const instance = (config: Record<string, string>, devices: Record<string, Record<string, string>> = {}) =>
    JSON.stringify({ name: 'c', status: 'Running', config, expanded_config: config, devices, expanded_devices: { root: { type: 'disk', path: '/', pool: 'default' }, ...devices } });
  const map = (uid: number, gid = uid) => JSON.stringify([{ Isuid: true, Isgid: false, Hostid: uid, Nsid: 0, Maprange: 1000000000 }, { Isuid: false, Isgid: true, Hostid: gid, Nsid: 0, Maprange: 1000000000 }]);

  it('is the Hostid of uid/gid 0 for an unprivileged container', () => {
    expect(parseInstance(instance({ 'volatile.idmap.current': map(1000000) })).idShift).toBe('1000000');
    expect(parseInstance(instance({ 'volatile.last_state.idmap': map(100000) })).idShift).toBe('100000');
    expect(parseInstance(instance({ 'volatile.idmap.current': JSON.stringify([{ Isuid: true, Isgid: true, Hostid: 165536, Nsid: 0, Maprange: 65536 }]) })).idShift).toBe('165536');
  });

  it('is 0 when privileged, with an empty idmap, or with a kernel-shifted data disk', () => {
    expect(parseInstance(instance({ 'security.privileged': 'true', 'volatile.idmap.current': '[]' })).idShift).toBe('0');
    expect(parseInstance(instance({ 'volatile.idmap.current': '[]' })).idShift).toBe('0');
    expect(parseInstance(instance({ 'volatile.idmap.current': map(1000000) }, { gbo: { type: 'disk', source: '/opt/gbo/x', path: '/opt/gbo', shift: 'true' } })).idShift).toBe('0');
  });

  it('is absent without an idmap, and refused when uids and gids shift differently', () => {
    expect(parseInstance(instance({})).idShift).toBeUndefined();
    expect(() => parseInstance(instance({ 'volatile.idmap.current': map(1000000, 2000000) }))).toThrow(/only one shift for both/);
  });

  it('reaches the workflow as idshift:<container>, and nothing else does', () => {
    const recorded = parseCapture('instance-json', instance({ 'volatile.idmap.current': map(1000000) }));
    expect(derivedValues('instance:web', recorded)).toEqual({ 'idshift:web': '1000000' });
    expect(derivedValues('oldip:web', '10.0.0.1')).toEqual({});
    expect(fillPlaceholders('x {{idshift:web}}', { 'idshift:web': '1000000' })).toBe('x 1000000');
    expect(() => fillPlaceholders('x {{idshift:web}}', { 'idshift:web': '1000000; reboot' })).toThrow(/not a valid idshift/);
  });
});
