import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adaptedHosts, countVhostsAdapted, hasStorageBlock, isIpv4, removeSites, rewriteUpstreams, storageRootFromAdapted } from '../../src/proxy/caddy';

const ROOT = '/opt/gbo/data/caddy';

/** A Caddyfile shaped like the tenant's: global block with storage, 25 vhosts over 5 backends. */
function bigCaddyfile(): string {
  const backends = ['10.16.164.5:5858', '10.16.164.12:3000', '10.16.164.50:9000', '10.16.164.51:8080', '10.16.164.120:80'];
  const sites: string[] = [];
  for (let i = 0; i < 25; i++) {
    const up = backends[i % backends.length] as string;
    sites.push(`# vhost ${i}\nsite${i}.example.test {\n\treverse_proxy ${up}\n}\n`);
  }
  return `{\n\tadmin off\n\tstorage file_system {\n\t\troot ${ROOT}\n\t}\n}\n\n${sites.join('\n')}`;
}

describe('rewriteUpstreams', () => {
  it('replaces whole addresses only, counting per old address', () => {
    const cfg = [
      'a.test {',
      '\treverse_proxy 10.0.0.1:8080',
      '}',
      'b.test {',
      '\treverse_proxy 10.0.0.12:80 110.0.0.1:80 10.0.0.1',
      '\treverse_proxy http://10.0.0.1/ {',
      '\t\theader_up X-Real 10.0.0.1}',
      '\t}',
      '\t@x remote_ip 10.0.0.1/32 10.0.0.1.5',
      '}',
      'c.test { respond "10.0.0.1"',
      '}',
      'end 10.0.0.1',
    ].join('\n');
    const { text, replaced } = rewriteUpstreams(cfg, { '10.0.0.1': '10.9.9.9', '10.0.0.77': '10.9.9.8' });
    expect(text).toBe(
      [
        'a.test {',
        '\treverse_proxy 10.9.9.9:8080',
        '}',
        'b.test {',
        '\treverse_proxy 10.0.0.12:80 110.0.0.1:80 10.9.9.9',
        '\treverse_proxy http://10.9.9.9/ {',
        '\t\theader_up X-Real 10.9.9.9}',
        '\t}',
        '\t@x remote_ip 10.9.9.9/32 10.0.0.1.5',
        '}',
        'c.test { respond "10.9.9.9"',
        '}',
        'end 10.9.9.9',
      ].join('\n'),
    );
    expect(replaced).toEqual({ '10.0.0.1': 7, '10.0.0.77': 0 });
  });

  it('applies chained mappings in one pass (A→B, B→C does not give A→C)', () => {
    const cfg = 'x {\n reverse_proxy 10.0.0.1:1 10.0.0.2:2 10.0.0.3:3\n}\n';
    const { text, replaced } = rewriteUpstreams(cfg, { '10.0.0.1': '10.0.0.2', '10.0.0.2': '10.0.0.3', '10.0.0.3': '10.0.0.1' });
    expect(text).toBe('x {\n reverse_proxy 10.0.0.2:1 10.0.0.3:2 10.0.0.1:3\n}\n');
    expect(replaced).toEqual({ '10.0.0.1': 1, '10.0.0.2': 1, '10.0.0.3': 1 });
  });

  it('leaves the rest byte-identical (CRLF, tabs, comments, unicode)', () => {
    const cfg = '# olá 10.0.0.1\r\n\tx.test {\r\n\t\treverse_proxy  10.0.0.1:80 # keep\r\n}\r\n';
    const { text } = rewriteUpstreams(cfg, { '10.0.0.1': '192.168.1.1' });
    expect(text).toBe(cfg.split('10.0.0.1').join('192.168.1.1'));
    expect(rewriteUpstreams(cfg, {}).text).toBe(cfg);
  });

  it('rejects non-IPv4 keys and values', () => {
    expect(() => rewriteUpstreams('', { '10.0.0': '10.0.0.1' })).toThrow(/not an IPv4/);
    expect(() => rewriteUpstreams('', { '10.0.0.1': 'proxy' })).toThrow(/non-IPv4/);
    expect(isIpv4('10.0.0.256')).toBe(false);
    expect(isIpv4('010.0.0.1')).toBe(false);
    expect(isIpv4('255.255.255.255')).toBe(true);
  });
});

describe('hasStorageBlock', () => {
  it.each([
    ['canonical', `{\n\tstorage file_system {\n\t\troot ${ROOT}\n\t}\n}\n`],
    ['guide layout, no indentation', `{\nstorage file_system {\nroot ${ROOT}\n}\n}\nx.test {\n}\n`],
    ['extra spaces, comments, blank lines', `# top\n{\n  # storage\n\n  admin off\n   storage    file_system    {   # c\n\n      root   ${ROOT}/  \n   }\n  email a@b.test\n}\n`],
    ['quoted path', `{\n storage file_system {\n  root "${ROOT}"\n }\n}\n`],
    ['shorthand', `{\n\tstorage file_system ${ROOT}\n}\n`],
    ['one-line inner block', `{\n\tstorage file_system { root ${ROOT} }\n}\n`],
  ])('accepts %s', (_name, cfg) => {
    expect(hasStorageBlock(cfg, ROOT)).toBe(true);
  });

  it.each([
    ['no global block', `x.test {\n\treverse_proxy 10.0.0.1\n}\n`],
    ['other root', `{\n\tstorage file_system {\n\t\troot /var/lib/caddy\n\t}\n}\n`],
    ['commented out', `{\n\t# storage file_system {\n\t#\troot ${ROOT}\n\t# }\n\tadmin off\n}\n`],
    ['other module', `{\n\tstorage redis {\n\t\troot ${ROOT}\n\t}\n}\n`],
    ['storage inside a site block', `{\n\tadmin off\n}\nx.test {\n\tstorage file_system {\n\t\troot ${ROOT}\n\t}\n}\n`],
    ['root of a nested block', `{\n\tstorage file_system {\n\t\tx {\n\t\t\troot ${ROOT}\n\t\t}\n\t}\n}\n`],
    ['empty', ''],
  ])('rejects %s', (_name, cfg) => {
    expect(hasStorageBlock(cfg, ROOT)).toBe(false);
  });
});

describe('adapted JSON', () => {
  const json = JSON.stringify({
    storage: { module: 'file_system', root: ROOT },
    apps: {
      http: {
        servers: {
          srv0: {
            routes: [
              { match: [{ host: ['a.test', 'b.test'] }, { host: ['A.test'] }] },
              { match: [{ path: ['/x'] }] },
              { handle: [{ handler: 'subroute', routes: [{ match: [{ host: ['nested.test'] }] }] }] },
            ],
          },
          srv1: { routes: [{ match: [{ host: ['c.test', 'a.test'] }] }] },
        },
      },
    },
  });

  it('counts unique top-level route hosts', () => {
    expect(adaptedHosts(json)).toEqual(['a.test', 'b.test', 'c.test']);
    expect(countVhostsAdapted(json)).toBe(3);
    expect(countVhostsAdapted('{}')).toBe(0);
  });

  it('reads the file_system storage root', () => {
    expect(storageRootFromAdapted(json)).toBe(ROOT);
    expect(storageRootFromAdapted('{}')).toBeUndefined();
    expect(storageRootFromAdapted(JSON.stringify({ storage: { module: 'redis', root: ROOT } }))).toBeUndefined();
  });
});

function which(cmd: string): string | undefined {
  try {
    return execFileSync('which', [cmd], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

describe('with the real caddy adapter', () => {
  const caddy = which('caddy');
  const run = caddy ? it : process.env.CI === 'true' ? it : it.skip;
  if (!caddy && process.env.CI !== 'true') {
    // eslint-disable-next-line no-console
    console.warn('caddy not installed: skipping `caddy adapt` tests (install Debian package caddy to run them)');
  }

  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'caddy-test-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function adapt(text: string): string {
    if (!caddy) throw new Error('caddy is required when CI=true (install Debian package caddy)');
    const file = join(dir, `Caddyfile-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, text);
    return execFileSync(caddy, ['adapt', '--config', file, '--adapter', 'caddyfile'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  run('counts 25 vhosts and reads the storage root; rewritten upstreams still adapt', () => {
    const cfg = bigCaddyfile();
    expect(hasStorageBlock(cfg, ROOT)).toBe(true);
    const json = adapt(cfg);
    expect(countVhostsAdapted(json)).toBe(25);
    expect(storageRootFromAdapted(json)).toBe(ROOT);

    const { text, replaced } = rewriteUpstreams(cfg, { '10.16.164.5': '10.107.115.229', '10.16.164.12': '10.107.115.4', '10.16.164.120': '10.107.115.12' });
    expect(replaced).toEqual({ '10.16.164.5': 5, '10.16.164.12': 5, '10.16.164.120': 5 });
    const after = adapt(text);
    expect(countVhostsAdapted(after)).toBe(25);
    const dials = [...after.matchAll(/"dial":"([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(dials)).toEqual(new Set(['10.107.115.229:5858', '10.107.115.4:3000', '10.16.164.50:9000', '10.16.164.51:8080', '10.107.115.12:80']));
  });

  run('agrees with hasStorageBlock on the variants Caddy accepts', () => {
    const variants = [
      `{\nstorage file_system {\nroot ${ROOT}\n}\n}\nx.test {\n\trespond hi\n}\n`,
      `{\n  storage   file_system   {  # c\n\n    root "${ROOT}"\n  }\n}\nx.test {\n\trespond hi\n}\n`,
      `{\n\tstorage file_system ${ROOT}\n}\nx.test {\n\trespond hi\n}\n`,
      `{\n\tadmin off\n}\nx.test {\n\trespond hi\n}\n`,
    ];
    for (const v of variants) {
      const root = storageRootFromAdapted(adapt(v));
      expect(hasStorageBlock(v, ROOT)).toBe(root === ROOT);
    }
  });
});

describe('removeSites', () => {
  const config = [
    '{',
    '\tstorage file_system {',
    '\t\troot /opt/gbo/data/caddy',
    '\t}',
    '}',
    '',
    '(common) {',
    '\tencode gzip',
    '}',
    '',
    'http://dead.example.com, https://dead.example.com {',
    '\treverse_proxy 10.0.0.2:80',
    '}',
    '',
    'live.example.com, dead2.example.com:443 {',
    '\timport common',
    '\treverse_proxy 10.0.0.3:80 {',
    '\t\theader_up Host {host}',
    '\t}',
    '}',
    '',
    'kept.example.com {',
    '\treverse_proxy 10.0.0.4:80',
    '}',
    '',
  ].join('\n');

  test('a site left without addresses goes whole; others lose only the dead address; the rest is byte-identical', () => {
    const { text, removed } = removeSites(config, ['dead.example.com', 'DEAD2.example.com', 'absent.example.com']);
    expect(removed).toEqual(['dead.example.com', 'dead2.example.com']);
    expect(text).toBe(config.replace('http://dead.example.com, https://dead.example.com {\n\treverse_proxy 10.0.0.2:80\n}\n\n', '').replace('live.example.com, dead2.example.com:443 {', 'live.example.com {'));
    expect(hasStorageBlock(text, '/opt/gbo/data/caddy')).toBe(true);
  });

  test('nothing to remove leaves the text as it was; a site without braces is refused', () => {
    expect(removeSites(config, ['other.example.com'])).toEqual({ text: config, removed: [] });
    expect(() => removeSites('example.com\nreverse_proxy 10.0.0.1:80\n', ['example.com'])).toThrow(/no braces/);
  });
});
