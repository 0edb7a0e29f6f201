import {
  checkHostKey,
  fingerprint,
  hostLookupName,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
  verifyHostKey,
} from '../../src/ssh/known-hosts';

// Fixed keys made with ssh-keygen; the hashed lines are `ssh-keygen -H` output for
// `example.com` (K1) and `[10.0.0.1]:2222` (K2), so hashing is checked against OpenSSH itself.
const K1 = 'AAAAC3NzaC1lZDI1NTE5AAAAIKkQZWmUWEZlr8ab9/bWauwKCHyaCxvnG4iQvEXsvdzm';
const K2 = 'AAAAC3NzaC1lZDI1NTE5AAAAIEVvD9OcuBP8zSOUKG2hTrgyWdLCFfJJoSQTO/e94sEf';
const K3 =
  'AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMlvJJrR5n3uz/d8oTWKSUzo2aWn07334ZY9LqBJknipioabc/5n2/7VdqyFTv5hXd+ljjbShinPYVdPe+UQfnE=';
const K4 =
  'AAAAB3NzaC1yc2EAAAADAQABAAABAQDXF4vRLfcKqyU9OcGRuZTScJGS2V8rDzGVbSfGmndrXLvKZjRZH17Gr/gUiCy8rnpMhpixjHP2xyxVY+5MmBVzSVsFaHbwv2rTd8WSoFO2hLH4D+o9N0sisSlWICesqCAkJZ8sFVHLhPtPUWhHXuRDCT2k1XIaZ8U4uvba9qxeYB8tAWQEARrld4Bn5JxpFm4lF+LXAggmNvla5BoyVigkmL9Ol0iJXnyccESxUsH9OTkVkC5jL/A110m93hNcdKvmt2gSxIVATIBIHJYm7JSfZkgFkTuIepMawmcfilgoUK9GVdcMu/MIfKEkPNbcLfrjw2ufGoZTRNcstVIawxsV';
const HASHED = [
  `|1|DqqAS469VK3BCC7+m0eqkcYdcyw=|hhZWwu6uqC6CtjGhvn8WstIwFQw= ssh-ed25519 ${K1}`,
  `|1|VC0ovU9ggN/7k7pVTvyxtz28nQk=|qEifvrDrX3FPchmk54TXVJdCoN4= ssh-ed25519 ${K2}`,
].join('\n');

const blob = (b64: string) => Buffer.from(b64, 'base64');

describe('parseKnownHosts', () => {
  it('reads plain, hashed and marked lines and skips comments, blanks, CA lines and garbage', () => {
    const text = [
      '# a comment',
      '',
      `host-a,10.0.0.5 ssh-ed25519 ${K1} root@somewhere`,
      `[host-b]:2200 ecdsa-sha2-nistp256 ${K3}`,
      `host-c ssh-rsa ${K4}`,
      `@cert-authority *.example.com ssh-ed25519 ${K2}`,
      `@revoked * ssh-ed25519 ${K2}`,
      'host-d ssh-ed25519 not-base64!!',
      `host-e ssh-rsa ${K1}`, // type field disagrees with the blob
      'only-one-field',
      HASHED,
    ].join('\r\n');
    const entries = parseKnownHosts(text);
    expect(entries.map((e) => [e.line, e.keyType, e.marker ?? null, e.hosts.kind])).toEqual([
      [3, 'ssh-ed25519', null, 'patterns'],
      [4, 'ecdsa-sha2-nistp256', null, 'patterns'],
      [5, 'ssh-rsa', null, 'patterns'],
      [7, 'ssh-ed25519', 'revoked', 'patterns'],
      [11, 'ssh-ed25519', null, 'hashed'],
      [12, 'ssh-ed25519', null, 'hashed'],
    ]);
    expect(entries[0]?.hosts).toEqual({ kind: 'patterns', patterns: ['host-a', '10.0.0.5'] });
  });
});

describe('verifyHostKey', () => {
  const plain = parseKnownHosts(
    [
      `host-a,10.0.0.5 ssh-ed25519 ${K1}`,
      `[host-b]:2200 ecdsa-sha2-nistp256 ${K3}`,
      `*.lab,!bad.lab ssh-rsa ${K4}`,
      `[198.18.0.?]:22?? ssh-ed25519 ${K2}`,
    ].join('\n'),
  );

  it('matches plain names, comma lists and case-insensitively', () => {
    expect(verifyHostKey(plain, 'host-a', 22, blob(K1))).toBe('match');
    expect(verifyHostKey(plain, '10.0.0.5', 22, blob(K1))).toBe('match');
    expect(verifyHostKey(plain, 'HOST-A', 22, blob(K1))).toBe('match');
  });

  it('uses [host]:port for ports other than 22, and only then', () => {
    expect(hostLookupName('h', 22)).toBe('h');
    expect(hostLookupName('H', 2222)).toBe('[h]:2222');
    expect(verifyHostKey(plain, 'host-b', 2200, blob(K3))).toBe('match');
    expect(verifyHostKey(plain, 'host-b', 22, blob(K3))).toBe('unknown');
    expect(verifyHostKey(plain, 'host-a', 2222, blob(K1))).toBe('unknown');
  });

  it('honours wildcards and negations', () => {
    expect(verifyHostKey(plain, 'x.lab', 22, blob(K4))).toBe('match');
    expect(verifyHostKey(plain, 'bad.lab', 22, blob(K4))).toBe('unknown');
    expect(verifyHostKey(plain, '198.18.0.2', 2201, blob(K2))).toBe('match');
    expect(verifyHostKey(plain, '198.18.0.2', 22, blob(K2))).toBe('unknown');
  });

  it('says mismatch for a different key of a pinned type, unknown for an unpinned type or host', () => {
    expect(verifyHostKey(plain, 'host-a', 22, blob(K2))).toBe('mismatch');
    expect(verifyHostKey(plain, 'host-a', 22, blob(K4))).toBe('unknown');
    expect(verifyHostKey(plain, 'nowhere', 22, blob(K1))).toBe('unknown');
    expect(verifyHostKey([], 'host-a', 22, blob(K1))).toBe('unknown');
  });

  it('matches hashed entries written by ssh-keygen -H', () => {
    const hashed = parseKnownHosts(HASHED);
    expect(verifyHostKey(hashed, 'example.com', 22, blob(K1))).toBe('match');
    expect(verifyHostKey(hashed, '10.0.0.1', 2222, blob(K2))).toBe('match');
    expect(verifyHostKey(hashed, 'example.com', 22, blob(K2))).toBe('mismatch');
    expect(verifyHostKey(hashed, 'example.org', 22, blob(K1))).toBe('unknown');
    expect(verifyHostKey(hashed, '10.0.0.1', 22, blob(K2))).toBe('unknown');
  });

  it('refuses @revoked keys even when another line pins them', () => {
    const entries = parseKnownHosts([`host-a ssh-ed25519 ${K1}`, `@revoked * ssh-ed25519 ${K1}`].join('\n'));
    expect(checkHostKey(entries, 'host-a', 22, blob(K1))).toBe('revoked');
    expect(verifyHostKey(entries, 'host-a', 22, blob(K1))).toBe('mismatch');
  });

  it('ignores @cert-authority lines: they vouch for no plain key', () => {
    const entries = parseKnownHosts(`@cert-authority host-a ssh-ed25519 ${K1}`);
    expect(verifyHostKey(entries, 'host-a', 22, blob(K1))).toBe('unknown');
  });
});

describe('helpers', () => {
  it('prints fingerprints as ssh-keygen -l does', () => {
    expect(fingerprint(blob(K1))).toBe('SHA256:XP6QIqwPPn/KPpAUIg6KagVQKRCbpY3ZDcdp5xgAcss');
  });

  it('offers the pinned host key algorithms first', () => {
    const entries = parseKnownHosts(`host-c ssh-rsa ${K4}\nhost-b ecdsa-sha2-nistp256 ${K3}`);
    expect(preferredHostKeyAlgorithms(entries, 'host-c', 22).slice(0, 3)).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
    ]);
    expect(preferredHostKeyAlgorithms(entries, 'host-b', 22)[0]).toBe('ecdsa-sha2-nistp256');
    expect(preferredHostKeyAlgorithms(entries, 'nowhere', 22)[0]).toBe('ssh-ed25519');
    expect(new Set(preferredHostKeyAlgorithms(entries, 'host-c', 22)).size).toBe(7);
  });
});
