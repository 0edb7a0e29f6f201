/**
 * NAT on the destination host: forwarding, DNAT per forwarded port, MASQUERADE, persisted rules and
 * their restore unit, the host firewall, probes through NAT, then no proxy devices.
 */
import { probeOf, type Plan, type Probe } from '../plan/schema';
import type { Step } from './model';
import { context, dirname, step, type Ctx, type StepInit } from './commands';
import { ipOf, q, sh } from './shell';

export function network(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const s = (init: Omit<StepInit, 'phase' | 'host'>) => step(ctx, { phase: 'network', host: 'destination', ...init });
  const subnet = plan.destination.bridgeSubnet;
  const rulesFile = plan.destination.iptablesRulesFile;
  const unitFile = plan.destination.restoreUnitFile;
  const unitName = unitFile.slice(unitFile.lastIndexOf('/') + 1);
  const steps: Step[] = [
    s({ id: 'network/tenant/ip-forward', title: 'IP forwarding on', kind: 'run', command: sh('sysctl', '-w', 'net.ipv4.ip_forward=1'), check: `test "$(sysctl -n net.ipv4.ip_forward)" = 1` }),
    s({
      id: 'network/tenant/loopback',
      title: 'Loopback ACCEPT at the top of INPUT (above any DROP)',
      kind: 'run',
      command: `${sh('iptables', '-D', 'INPUT', '-i', 'lo', '-j', 'ACCEPT')} 2>/dev/null; ${sh('iptables', '-I', 'INPUT', '1', '-i', 'lo', '-j', 'ACCEPT')}`,
      check: `iptables -S INPUT | sed -n 2p | grep -qx -- '-A INPUT -i lo -j ACCEPT'`,
    }),
  ];
  for (const f of plan.portForwards) {
    // -d: only traffic addressed to the host is forwarded; without it, containers' own outbound
    // traffic to any address on these ports would be captured too.
    const rule = ['PREROUTING', '-d', plan.destination.publicAddress, '-p', f.protocol, '--dport', f.port, '-j', 'DNAT', '--to-destination', `${ipOf(f.container)}:${f.containerPort ?? f.port}`];
    steps.push(
      s({
        id: `network/tenant/dnat-${f.protocol}-${f.port}`,
        title: `DNAT ${f.protocol}/${f.port} → ${f.container}${f.service ? ` (${f.service})` : ''}`,
        kind: 'run',
        // A rule for this port to another address (a container copied again) is replaced, not shadowed.
        command: `${dropDnat(plan.destination.publicAddress, f.protocol, f.port)}; ${sh('iptables', '-t', 'nat', '-A', ...rule)}`,
        check: sh('iptables', '-t', 'nat', '-C', ...rule),
      }),
    );
  }
  const masq = ['POSTROUTING', '-s', subnet, '!', '-d', subnet, '-j', 'MASQUERADE'];
  steps.push(
    s({ id: 'network/tenant/masquerade', title: `MASQUERADE ${subnet}`, kind: 'run', command: sh('iptables', '-t', 'nat', '-A', ...masq), check: sh('iptables', '-t', 'nat', '-C', ...masq) }),
    s({
      id: 'network/tenant/persist',
      title: `Persist the rules in ${rulesFile}`,
      kind: 'run',
      command: `mkdir -p ${q(dirname(rulesFile))} && iptables-save > ${q(rulesFile)}`,
    }),
    s({
      id: 'network/tenant/restore-unit',
      title: 'A boot-time unit restores the rules',
      kind: 'run',
      command:
        `mkdir -p ${q(dirname(unitFile))} && printf '%s\\n' ${q(restoreUnit(rulesFile))} > ${q(unitFile)} && ` +
        `if [ -d /run/systemd/system ]; then systemctl daemon-reload && systemctl enable ${q(unitName)}; fi`,
      check: `test -f ${q(unitFile)} && grep -qF ${q(rulesFile)} ${q(unitFile)}`,
    }),
  );
  steps.push(...firewall(ctx));
  for (const f of plan.portForwards) {
    const probe = natProbeOf(plan, f);
    const target = `${plan.destination.publicAddress}:${f.port}/${f.protocol}`;
    steps.push(
      step(ctx, {
        id: `network/tenant/nat-answers-${f.protocol}-${f.port}`,
        phase: 'network',
        title: probe.kind === 'none' ? `${target} through NAT: not probed (no probe declared for it)` : `${target} answers through NAT (${probe.kind} probe)`,
        host: 'worker',
        kind: 'probe',
        command: probe.kind === 'none' ? '' : sh(probe.kind, `${plan.destination.publicAddress}:${f.port}`),
        params: { protocol: f.protocol, address: plan.destination.publicAddress, port: f.port, probe: probe.kind, probeSpec: JSON.stringify(probe) },
      }),
    );
  }
  for (const c of plan.containers) {
    // Only once NAT answers: the guide removes Incus proxy devices because they conflict with it.
    steps.push(
      s({
        id: `network/${c.name}/remove-proxy-devices`,
        title: `No Incus proxy devices on ${c.name}`,
        container: c.name,
        kind: 'run',
        command: `for d in $(${ctx.incus('config', 'device', 'list', c.name)}); do if [ "$(${ctx.incus('config', 'device', 'get', c.name)} "$d" type)" = proxy ]; then ${ctx.incus('config', 'device', 'remove', c.name)} "$d" || exit 1; fi; done`,
      }),
    );
  }
  return steps;
}

/**
 * The probe of a forwarded port: the one its container's service declares for that port (the
 * forward's `containerPort`, else its port); a TCP connect for a TCP forward no service declares;
 * none (reported as not probed, not failed) for a UDP forward no service declares.
 */
export function natProbeOf(plan: Plan, f: Plan['portForwards'][number]): Probe {
  const port = f.containerPort ?? f.port;
  const svc = plan.containers.find((c) => c.name === f.container)?.services.find((s) => s.protocol === f.protocol && s.ports.includes(port));
  if (svc) return probeOf(svc);
  return f.protocol === 'tcp' ? { kind: 'tcp' } : { kind: 'none' };
}

/**
 * The guide's host firewall: SSH allowed FIRST, forwarding allowed (containers), the plan's ports,
 * and only then enable, which itself refuses when the SSH rule is missing: never a locked-out host.
 */
function firewall(ctx: Ctx): Step[] {
  const fw = ctx.plan.destination.firewall;
  if (!fw) return [];
  const s = (init: Omit<StepInit, 'phase' | 'host'>) => step(ctx, { phase: 'network', host: 'destination', ...init });
  const allowed = (p: number) => `ufw status | grep -qE ${q(`^${p}/tcp +ALLOW`)}`;
  return [
    s({ id: 'network/tenant/firewall-allow-22', title: 'Firewall: allow SSH (22/tcp) before anything else', kind: 'run', command: sh('ufw', 'allow', '22/tcp'), check: allowed(22) }),
    s({ id: 'network/tenant/firewall-forward', title: 'Firewall: forwarding allowed (DEFAULT_FORWARD_POLICY=ACCEPT, for the containers)', kind: 'run', command: sh('ufw', 'default', 'allow', 'routed'), check: `ufw status verbose | grep -q 'allow (routed)'` }),
    ...fw.allow
      .filter((p) => p !== 22)
      .map((p) => s({ id: `network/tenant/firewall-allow-${p}`, title: `Firewall: allow ${p}/tcp`, kind: 'run', command: sh('ufw', 'allow', `${p}/tcp`), check: allowed(p) })),
    s({
      id: 'network/tenant/firewall-enable',
      title: 'Firewall: enable (refused unless 22/tcp is allowed)',
      kind: 'run',
      command: `${allowed(22)} || { echo 'refusing to enable the firewall: 22/tcp is not allowed' >&2; exit 1; }; ufw --force enable`,
      check: `ufw status | grep -q '^Status: active'`,
      refuses: true,
    }),
  ];
}

/** Deletes every PREROUTING DNAT rule for traffic to `address` on `protocol`/`port`, whatever its target. */
function dropDnat(address: string, protocol: string, port: number): string {
  const match = `-A PREROUTING -d ${address}/32 -p ${protocol} -m ${protocol} --dport ${port} -j DNAT `;
  return `iptables -t nat -S PREROUTING | grep -F -- ${q(match)} | sed 's/^-A /-D /' | while read -r r; do iptables -t nat $r || exit 1; done`;
}

/**
 * What a cancel before cutover undoes on the destination host: this plan's DNAT rules, saved
 * again. The MASQUERADE rule and ip_forward stay: other tenants' containers may rely on them.
 */
export function networkCompensationSteps(plan: Plan): Step[] {
  const ctx = context(plan);
  return [
    ...plan.portForwards.map((f) =>
      step(ctx, {
        id: `undo/tenant/dnat-${f.protocol}-${f.port}`,
        phase: 'network',
        title: `Remove the DNAT rule for ${f.protocol}/${f.port}`,
        host: 'destination',
        kind: 'run',
        command: dropDnat(plan.destination.publicAddress, f.protocol, f.port),
      }),
    ),
    step(ctx, {
      id: 'undo/tenant/persist',
      phase: 'network',
      title: `Save the rules again in ${plan.destination.iptablesRulesFile}`,
      host: 'destination',
      kind: 'run',
      command: `if [ -f ${q(plan.destination.iptablesRulesFile)} ]; then iptables-save > ${q(plan.destination.iptablesRulesFile)}; fi`,
    }),
  ];
}

/** Text for inside a double-quoted systemd argument: escapes, `$` and `%` specifiers, no line breaks. */
const systemdQuoted = (s: string) => s.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\n').replace(/\$/g, '$$$$').replace(/%/g, '%%');

/** The guide's iptables-restore unit. */
export function restoreUnit(rulesFile: string): string {
  return [
    '[Unit]',
    'Description=Restore iptables rules on boot',
    'After=network-pre.target',
    'Before=network.target',
    'DefaultDependencies=no',
    '[Service]',
    'Type=oneshot',
    `ExecStart=/bin/sh -c "${systemdQuoted(`/sbin/iptables-restore < ${q(rulesFile)}`)}"`,
    'RemainAfterExit=yes',
    '[Install]',
    'WantedBy=multi-user.target',
  ].join('\n');
}
