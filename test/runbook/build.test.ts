import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPlan } from '../../src/plan/load';
import { buildRunbook } from '../../src/runbook/build';
import { allSteps, PHASES, phaseSteps } from '../../src/runbook/model';
import { renderRunbook } from '../../src/runbook/print';
import { fillPlaceholders, hostCommand, placeholdersIn, q } from '../../src/runbook/shell';
import { valuesFor } from '../../src/runbook/values';

const plan = loadPlan(join(__dirname, '..', '..', 'examples', 'pragmatismo.yaml'));
const runbook = buildRunbook(plan);
const steps = allSteps(runbook);
const cmd = (id: string) => {
  const s = steps.find((x) => x.id === id);
  if (!s) throw new Error(`no step ${id}`);
  return hostCommand(s.command, {}, s.sudo);
};
const indexOf = (id: string) => steps.findIndex((s) => s.id === id);

/** Sample values for every placeholder kind, including ones that need quoting. */
const sample: Record<string, string> = {
  'cert:destination': '-----BEGIN CERTIFICATE-----\nMIIB+zCCAYGgAwIBAgIQ\n-----END CERTIFICATE-----\n',
  'pubkey:destination': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB administrator@dest',
  'stamp:run': '202603221750',
  ...Object.fromEntries(plan.containers.map((c, i) => [`ip:${c.name}`, `10.107.115.${10 + i}`])),
  ...Object.fromEntries(plan.containers.map((c) => [`digest:${c.name}`, `files=12 sha256=${'a'.repeat(64)}`])),
  ...Object.fromEntries(plan.containers.map((c) => [`idshift:${c.name}`, c.privileged ? '0' : '1000000'])),
};

describe('the runbook for pragmatismo', () => {
  it('has every phase of the guide, in order, none empty', () => {
    expect(runbook.phases.map((p) => p.id)).toEqual(PHASES.map((p) => p.id));
    for (const p of runbook.phases) expect(p.steps.length).toBeGreaterThan(0);
  });

  it('verifies both host keys before any command runs on either host', () => {
    expect(steps[0]).toMatchObject({ id: 'preflight/tenant/host-keys', kind: 'verify-host-keys', host: 'worker' });
    expect(steps.filter((s) => s.kind === 'verify-host-keys')).toHaveLength(1);
  });

  it('has unique step ids', () => {
    expect(new Set(steps.map((s) => s.id)).size).toBe(steps.length);
  });

  it('copies each container with the prefix mapping, on the destination, via sudo', () => {
    // An unmarked instance of the name is a copy an earlier attempt left half made: it goes first;
    // the mark comes in the same command once the copy is whole.
    expect(cmd('copy/proxy/copy')).toBe(
      "sudo -n sh -c 'if incus query /1.0/instances/proxy >/dev/null 2>&1; then incus delete --force proxy || exit 1; fi; incus copy --instance-only lxd-source:pragmatismo-proxy proxy --storage default && incus config set proxy user.gbo-migrate.tenant=pragmatismo'",
    );
    expect(cmd('copy/alm-ci/nic')).toBe("sudo -n sh -c 'incus config device add alm-ci eth0 nic name=eth0 network=incusbr0'");
    expect(cmd('copy/system/privileged')).toBe("sudo -n sh -c 'incus config set system security.privileged=true'");
    expect(steps.filter((s) => s.id.endsWith('/privileged')).map((s) => s.container)).toEqual(['system']);
    expect(cmd('copy/tables/address')).toBe("sudo -n sh -c 'incus list '\\''^tables$'\\'' --format json'");
  });

  it('runs the canary first', () => {
    expect(phaseSteps(runbook, 'copy')[0]?.container).toBe('tables');
  });

  it('stops and strips the source only after recording it, and pulls data from the destination', () => {
    expect(cmd('stop/proxy/stop')).toBe('lxc stop pragmatismo-proxy');
    expect(indexOf('record/proxy/instance')).toBeLessThan(indexOf('stop/proxy/stop'));
    expect(indexOf('stop/proxy/stop')).toBeLessThan(indexOf('stop/proxy/remove-devices'));
    expect(indexOf('stop/proxy/remove-devices')).toBeLessThan(indexOf('copy/proxy/copy'));
    expect(cmd('presync/proxy/rsync')).toContain('rsync -aHAX --numeric-ids -z --partial --delete --info=progress2');
    expect(cmd('presync/proxy/rsync')).toContain('root@82.29.59.188:/opt/gbo/proxy/ /home/administrator/gbo/proxy/');
    expect(cmd('data/system/push')).toContain('tar -C /opt/gbo/tenants/pragmatismo/system --numeric-owner -cf - . | incus exec system -- tar -C /opt/gbo --numeric-owner -xpf -');
    // Ownership is the source's: no chown; the IDs are shifted to the container's view before the push.
    expect(steps.some((s) => s.id.endsWith('/chown'))).toBe(false);
    expect(indexOf('data/system/shift-ids')).toBeLessThan(indexOf('data/system/push'));
    expect(cmd('data/system/shift-ids')).toContain(' shift-ids /opt/gbo/tenants/pragmatismo/system {{idshift:system}}');
  });

  it("tolerates files vanishing during the warm pull (rsync's 24), never during the final one", () => {
    // The commands as built, run by a real sh over a stub rsync that exits with the code given. The
    // stub is all the PATH holds: the example's source address is data here, never reached.
    const dir = mkdtempSync(join(tmpdir(), 'gbo-rsync-'));
    writeFileSync(join(dir, 'rsync'), '#!/bin/sh\nexit "$RSYNC_RC"\n', { mode: 0o755 });
    const exit = (id: string, rc: number) => {
      const command = steps.find((x) => x.id === id)!.command.replace(/^mkdir -p \S+ && /, '');
      return spawnSync('/bin/sh', ['-c', command], { env: { PATH: dir, RSYNC_RC: String(rc) } }).status;
    };
    try {
      expect([0, 24, 23, 12].map((rc) => exit('presync/proxy/rsync', rc))).toEqual([0, 0, 1, 1]);
      expect([0, 24].map((rc) => exit('data/proxy/final-sync', rc))).toEqual([0, 24]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("limits the warm pull's bandwidth when the plan says so, never the final pull's", () => {
    const limited = allSteps(buildRunbook({ ...plan, data: { ...plan.data, warmBandwidthLimit: '40M' } }));
    expect(limited.find((x) => x.id === 'presync/system/rsync')!.command).toContain(' --delete --bwlimit=40M --info=progress2 ');
    expect(limited.find((x) => x.id === 'data/system/final-sync')!.command).not.toContain('--bwlimit');
    expect(cmd('presync/system/rsync')).not.toContain('--bwlimit');
  });

  it('forwards every port of the NAT table with check-before-add, then masquerades the bridge', () => {
    const dnat = phaseSteps(runbook, 'network').filter((s) => s.id.includes('/dnat-'));
    expect(dnat).toHaveLength(12);
    const smtp = steps.find((s) => s.id === 'network/tenant/dnat-tcp-25')!;
    const add = 'iptables -t nat -A PREROUTING -d 63.141.255.9 -p tcp --dport 25 -j DNAT --to-destination {{ip:email}}:25';
    expect(smtp.command.endsWith(`; ${add}`)).toBe(true);
    // A stale rule for the port (an earlier copy's address) is dropped first, not shadowed.
    expect(smtp.command).toContain("grep -F -- '-A PREROUTING -d 63.141.255.9/32 -p tcp -m tcp --dport 25 -j DNAT '");
    expect(smtp.check).toBe(add.replace(' -A ', ' -C '));
    expect(cmd('network/tenant/masquerade')).toContain('iptables -t nat -A POSTROUTING -s 10.107.115.0/24 ! -d 10.107.115.0/24 -j MASQUERADE');
    // Proxy devices go only after NAT answers.
    const lastProbe = Math.max(...phaseSteps(runbook, 'network').filter((s) => s.kind === 'probe').map((s) => indexOf(s.id)));
    expect(indexOf('network/proxy/remove-proxy-devices')).toBeGreaterThan(lastProbe);
    expect(indexOf('network/tenant/loopback')).toBeLessThan(indexOf('network/tenant/dnat-tcp-80'));
  });

  it('enables a host firewall only after SSH is allowed, and the enable itself checks it', () => {
    const withFirewall = buildRunbook({ ...plan, destination: { ...plan.destination, firewall: { allow: [80, 443] } } });
    const ids = phaseSteps(withFirewall, 'network').map((s) => s.id);
    const fw = ids.filter((id) => id.includes('/firewall-'));
    expect(fw).toEqual(['network/tenant/firewall-allow-22', 'network/tenant/firewall-forward', 'network/tenant/firewall-allow-80', 'network/tenant/firewall-allow-443', 'network/tenant/firewall-enable']);
    const enable = phaseSteps(withFirewall, 'network').find((s) => s.id === 'network/tenant/firewall-enable')!;
    expect(enable.command).toMatch(/^ufw status \| grep -qE '\^22\/tcp \+ALLOW' \|\| \{ echo 'refusing to enable the firewall/);
    const without = buildRunbook({ ...plan, destination: { ...plan.destination, firewall: undefined } });
    expect(allSteps(without).some((s) => s.id.includes('firewall'))).toBe(false);
  });

  it('backs up, validates and counts the Caddy config before reloading it', () => {
    const order = ['proxy/tenant/vhosts-before', 'proxy/tenant/backup', 'proxy/tenant/rewrite', 'proxy/tenant/validate', 'proxy/tenant/vhosts-after', 'proxy/tenant/storage-block', 'proxy/tenant/install', 'proxy/tenant/reload'];
    expect(order.map(indexOf)).toEqual([...order.map(indexOf)].sort((a, b) => a - b));
    expect(cmd('proxy/tenant/backup')).toContain('cp -p /opt/gbo/conf/config /opt/gbo/conf/config.bak-{{stamp:run}}');
    expect(cmd('proxy/tenant/reload')).toContain('/usr/bin/caddy reload --config /opt/gbo/conf/config --adapter caddyfile');
    expect(steps.find((s) => s.id === 'proxy/tenant/vhosts-after')?.params).toMatchObject({ atLeast: 25 });
  });

  it('keeps every destructive step behind the cleanup gate', () => {
    const gate = indexOf('cleanup/tenant/gate');
    const destructive = steps.filter((s) => s.destructive);
    expect(destructive.length).toBeGreaterThan(0);
    for (const s of destructive) {
      expect(indexOf(s.id)).toBeGreaterThan(gate);
      expect(s.gate).toBe('cleanup');
    }
    expect(indexOf('cutover/tenant/gate')).toBeGreaterThan(indexOf('verify/system/file-opt-gbo-bin-botserver'));
  });

  it('never puts the Vault key in a command', () => {
    const unseal = steps.find((s) => s.kind === 'vault-unseal')!;
    expect(unseal.command).not.toMatch(/GBO_VAULT_UNSEAL_KEY/);
    expect(unseal.params).toMatchObject({ keyRef: 'env:GBO_VAULT_UNSEAL_KEY' });
  });

  it('produces only commands a shell parses, with every placeholder filled', () => {
    for (const s of [...steps, ...runbook.compensation]) {
      if (s.host === 'worker' || s.kind === 'caddy-rewrite' || s.kind === 'zone-update' || s.kind === 'pin-host-key' || (s.id.startsWith('undo/') && s.id.endsWith('restore-devices'))) continue;
      for (const [text, sudo] of [[s.command, s.sudo], [s.check, s.checkSudo]] as const) {
        if (!text) continue;
        const full = hostCommand(text, sample, sudo, true);
        expect(placeholdersIn(full)).toEqual([]);
        try {
          execFileSync('bash', ['-n', '-c', full], { stdio: 'pipe' });
        } catch (err) {
          throw new Error(`${s.id}: bash -n rejects: ${full}\n${(err as { stderr: Buffer }).stderr}`);
        }
      }
    }
  });

  it('hands a certificate to the trust script as one argument', () => {
    const trust = steps.find((s) => s.id === 'preflight/tenant/trust-destination')!;
    // Replace the LXD call by printing the file it would trust.
    const probe = hostCommand(trust.command, sample, trust.sudo, true).replace('lxc config trust add "$f"', 'cat "$f"; true');
    const out = execFileSync('bash', ['-c', probe.replace('case "$out"', 'printf "%s" "$out"; case "$out"')], { encoding: 'utf8' });
    expect(out).toBe(sample['cert:destination']!.trimEnd());
  });

  it('prints the whole runbook with hosts and commands', () => {
    const text = renderRunbook(plan, runbook);
    for (const p of runbook.phases) expect(text).toContain(`${p.id}: ${p.title}`);
    expect(text).toContain('incus copy --instance-only lxd-source:pragmatismo-system system --storage default && incus config set system user.gbo-migrate.tenant=pragmatismo');
    expect(text).toContain('source root@82.29.59.188 $ lxc stop pragmatismo-system');
    expect(text).toContain('On cancel before cutover');
  });
});

describe('quoting', () => {
  it('quotes shell syntax and leaves plain words alone', () => {
    expect(q('proxy')).toBe('proxy');
    expect(q("a'b; rm -rf /")).toBe(`'a'\\''b; rm -rf /'`);
    expect(execFileSync('sh', ['-c', `printf %s ${q("$(id) `x` 'y'")}`], { encoding: 'utf8' })).toBe("$(id) `x` 'y'");
  });

  it('refuses learned values that are not what their placeholder allows', () => {
    expect(() => fillPlaceholders('ping {{ip:proxy}}', { 'ip:proxy': '1.2.3.4; reboot' })).toThrow(/ip:proxy: not a valid ip/);
    expect(() => fillPlaceholders('x {{pubkey:destination}}', { 'pubkey:destination': "ssh-ed25519 AAAA' ; reboot" })).toThrow(/not a valid pubkey/);
    expect(() => fillPlaceholders('ping {{ip:proxy}}', {}, true)).toThrow(/no value known yet for ip:proxy/);
    expect(fillPlaceholders('ping {{ip:proxy}}', {})).toBe('ping {{ip:proxy}}');
  });
});

describe('values a step is given', () => {
  const values = { 'ip:proxy': '10.0.0.2', 'oldip:proxy': '10.1.0.2', 'ip:email': '10.0.0.3', 'digest:tables': `files=1 sha256=${'c'.repeat(64)}`, 'bytes:source-data': '100', 'stamp:run': '202611281200' };
  const byId = (id: string) => steps.find((s) => s.id === id)!;

  it('are only those its command, check and parameters name', () => {
    expect(valuesFor(byId('network/tenant/dnat-tcp-25'), values)).toEqual({ 'ip:email': '10.0.0.3' });
    expect(valuesFor(byId('proxy/tenant/backup'), values)).toEqual({ 'stamp:run': '202611281200' });
    expect(valuesFor(byId('preflight/tenant/destination-space'), values)).toEqual({ 'bytes:source-data': '100' });
    expect(valuesFor(byId('data/tables/verify-transfer'), values)).toEqual({ 'digest:tables': values['digest:tables'] });
  });

  it('give the Caddy rewrite every old and new address', () => {
    expect(valuesFor(byId('proxy/tenant/rewrite'), values)).toEqual({ 'ip:proxy': '10.0.0.2', 'oldip:proxy': '10.1.0.2', 'ip:email': '10.0.0.3' });
  });
});
