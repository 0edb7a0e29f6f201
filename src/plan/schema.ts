/**
 * The tenant plan: everything one migration needs, validated before anything runs.
 *
 * Every name that ends up in a shell command (containers, users, paths, networks, pools, zone
 * names) is restricted here to a safe character set; the command builders quote them as well, so
 * a plan can never inject shell syntax. Secrets never appear in a plan: keys and the Vault unseal
 * key are *references* the worker resolves.
 */
import { z } from 'zod';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** LXD/Incus instance names: a hostname label, starting with a letter. */
export const instanceName = z
  .string()
  .regex(/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a container name: lowercase letters, digits and "-", starting with a letter');

/** Unix user or group name. */
export const unixName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'a Unix user name: lowercase letters, digits, "_" and "-"');

/** Network, pool and remote names used by LXD/Incus. */
export const resourceName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'a name of letters, digits, "_" and "-"');

/** An absolute path with a safe character set and no ".." segments. */
export const absPath = z
  .string()
  .regex(/^\/[A-Za-z0-9._/-]*$/, 'an absolute path of letters, digits, ".", "_", "-" and "/"')
  .refine((p) => !p.split('/').includes('..'), 'a path without ".." segments');

/** A relative directory name inside /opt/gbo (conf, data, logs, bin, ...). */
export const dirName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a directory name of letters, digits, ".", "_" and "-"')
  .refine((d) => d !== '..', 'a directory name other than ".."');

const ipv4Octet = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4 = new RegExp(`^${ipv4Octet}(\\.${ipv4Octet}){3}$`);
export const ipv4 = z.string().regex(IPV4, 'an IPv4 address such as 192.0.2.10');

/** A host address: IPv4 or a DNS name. */
export const hostAddress = z
  .string()
  .refine(
    (a) => IPV4.test(a) || (a.length <= 253 && a.split('.').every((l) => DNS_LABEL.test(l))),
    'an IPv4 address or a DNS host name',
  );

export const cidr = z
  .string()
  .refine((c) => {
    const [addr, len, ...rest] = c.split('/');
    return rest.length === 0 && addr !== undefined && IPV4.test(addr) && /^\d{1,2}$/.test(len ?? '') && Number(len) <= 32;
  }, 'an IPv4 subnet such as 10.107.115.0/24');

export const domainName = z
  .string()
  .refine(
    (d) => d.length <= 253 && d.split('.').length >= 2 && d.split('.').every((l) => DNS_LABEL.test(l)),
    'a fully qualified domain name such as example.com',
  );

export const port = z.number().int().min(1).max(65535);

/**
 * A reference to a secret the worker resolves: `file:/path`, `env:NAME` or `agent` (SSH agent).
 * Key material itself is refused so that it can never reach workflow input or history.
 */
export const secretRef = z
  .string()
  .regex(/^(agent|env:[A-Z_][A-Z0-9_]*|file:[A-Za-z0-9._/~-]+)$/, 'a secret reference: "agent", "env:NAME" or "file:/path"');

/** Durations as `90s`, `15m`, `2h`, `3d`. */
export const duration = z.string().regex(/^\d+(ms|s|m|h|d)$/, 'a duration such as 30s, 15m, 2h or 3d');

const hostSchema = z
  .object({
    address: hostAddress,
    port: port.default(22),
    user: unixName,
    /** Prefix privileged commands with `sudo -n` (the guide's destination user is not root). */
    sudo: z.boolean().default(false),
    sshKey: secretRef,
    /** known_hosts file that pins this host's key; host keys are never accepted blindly. */
    knownHosts: secretRef.optional(),
    /** authorized_keys file the guide's dest→source key exchange appends to (on the source). */
    authorizedKeys: absPath.optional(),
  })
  .strict();

/** Printable ASCII (space to "~"): what a UDP probe sends and expects back. */
const printable = z.string().min(1).max(200).regex(/^[\x20-\x7e]+$/, 'printable ASCII characters');

/**
 * How a service's ports are probed, on the destination (each container's address) and through NAT
 * (a forward to that port). Default `tcp` for a TCP service; a UDP service must name its own.
 */
export const probeSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('tcp') }).strict(),
  /** Any HTTP status line (1xx–4xx) counts as answering. */
  z.object({ kind: z.literal('http'), path: z.string().regex(/^\/[A-Za-z0-9._~\/?=&%+-]*$/, 'an HTTP path such as /health').default('/') }).strict(),
  /** A DNS query (type SOA) for `name`; NOERROR counts as answering. */
  z.object({ kind: z.literal('dns'), name: domainName }).strict(),
  /** A UDP datagram `send`; a reply containing `expect` counts as answering. */
  z.object({ kind: z.literal('udp'), send: printable, expect: printable }).strict(),
  /** Not probed: shown as such in the matrix, never red. */
  z.object({ kind: z.literal('none') }).strict(),
]);
export type Probe = z.output<typeof probeSchema>;

const serviceSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,40}$/, 'a service name of letters, digits, spaces and ".-_+"'),
    ports: z.array(port).default([]),
    protocol: z.enum(['tcp', 'udp']).default('tcp'),
    /** false for services the guide lists as internal-only and not expected to answer on a port. */
    required: z.boolean().default(true),
    probe: probeSchema.optional(),
  })
  .strict()
  .superRefine((svc, ctx) => {
    const kind = svc.probe?.kind;
    if (svc.protocol === 'udp' && svc.ports.length > 0 && kind !== 'dns' && kind !== 'udp' && kind !== 'none') {
      ctx.addIssue({ code: 'custom', path: ['probe'], message: 'a probe for a UDP service: dns, udp or none', input: svc.probe });
    }
    if (svc.protocol === 'tcp' && kind !== undefined && kind !== 'tcp' && kind !== 'http' && kind !== 'none') {
      ctx.addIssue({ code: 'custom', path: ['probe'], message: 'a probe for a TCP service: tcp, http or none', input: svc.probe });
    }
  });

/** The probe a service's ports get: the declared one, else a TCP connect (UDP services must declare one). */
export function probeOf(svc: { protocol: 'tcp' | 'udp'; probe?: Probe | undefined }): Probe {
  return svc.probe ?? (svc.protocol === 'tcp' ? { kind: 'tcp' } : { kind: 'none' });
}

const requiredFileSchema = z
  .object({
    path: absPath,
    owner: unixName.optional(),
    executable: z.boolean().default(false),
  })
  .strict();

const containerSchema = z
  .object({
    /** Destination name. */
    name: instanceName,
    /** Source name; defaults to `source.containerPrefix + name`. */
    source: instanceName.optional(),
    /** Folder of this container's data under `data.sourceRoot` on the source; defaults to `name`. */
    sourceFolder: dirName.optional(),
    role: z.string().max(80).optional(),
    privileged: z.boolean().default(false),
    /** Its data folders under its source folder; none: a stateless container (no data steps). */
    dataDirs: z.array(dirName).default([]),
    /** Where its data goes inside the container; default `data.containerPath`. */
    dataPath: absPath.optional(),
    services: z.array(serviceSchema).default([]),
    requiredFiles: z.array(requiredFileSchema).default([]),
    /** Copied and verified first, before the others start. */
    canary: z.boolean().default(false),
  })
  .strict();

const portForwardSchema = z
  .object({
    port,
    protocol: z.enum(['tcp', 'udp']),
    container: instanceName,
    containerPort: port.optional(),
    service: z.string().max(80).optional(),
  })
  .strict();

const dnsRecordSchema = z
  .object({
    name: z.string().regex(/^(@|[a-z0-9*]([a-z0-9.-]{0,200}[a-z0-9])?)$/, 'a record owner name relative to the zone, or "@"'),
    type: z.enum(['A', 'NS']),
    /** A: an IPv4 address; NS: a host name. */
    value: z.string().min(1),
    ttl: z.number().int().min(30).max(604800).optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    const ok = r.type === 'A' ? IPV4.test(r.value) : domainName.safeParse(r.value.replace(/\.$/, '')).success;
    if (!ok) {
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: r.type === 'A' ? 'an IPv4 address for an A record' : 'a host name for an NS record',
        input: r.value,
      });
    }
  });

const serviceFixSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('env'),
      container: instanceName,
      /** File holding KEY=value lines (an env file or a systemd unit's Environment=). */
      file: absPath,
      key: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'an environment variable name'),
      /** Value template; `{{ip:<container>}}` becomes that container's new address. No secrets. */
      value: z.string().regex(/^[A-Za-z0-9:/@._%{}?=&-]*$/, 'a value of URL-safe characters'),
      restart: z.array(z.string().regex(/^[A-Za-z0-9@._-]+$/, 'a systemd unit name')).default([]),
    })
    .strict(),
  z
    .object({
      kind: z.literal('vault-unseal'),
      container: instanceName,
      vaultAddr: z.string().regex(/^https?:\/\/[A-Za-z0-9.:-]+$/, 'a Vault URL such as https://127.0.0.1:8200'),
      binary: absPath,
      /** Resolved by the worker; never in the plan, input or history. */
      keyRef: secretRef,
    })
    .strict(),
  z
    .object({
      kind: z.literal('loopback-accept'),
      container: instanceName,
    })
    .strict(),
]);

export const planSchema = z
  .object({
    apiVersion: z.literal('gbo-migrate/v1'),
    tenant: z.string().regex(/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a tenant name: lowercase letters, digits and "-", starting with a letter'),
    hosts: z.object({ source: hostSchema, destination: hostSchema }).strict(),
    source: z
      .object({
        engine: z.literal('lxd'),
        /** Name of the LXD source as an Incus remote on the destination. */
        remoteName: resourceName.default('lxd-source'),
        /** Address of LXD's API (core.https_address) as the destination reaches it. */
        apiAddress: hostAddress,
        apiPort: port.default(8443),
        containerPrefix: z.string().regex(/^([a-z][a-z0-9-]*)?$/, 'a prefix of lowercase letters, digits and "-"').default(''),
      })
      .strict(),
    destination: z
      .object({
        engine: z.literal('incus'),
        bridge: resourceName.default('incusbr0'),
        /** The bridge's IPv4 subnet, for MASQUERADE. */
        bridgeSubnet: cidr,
        storagePool: resourceName.default('default'),
        /** The address clients reach the destination on; NAT targets and DNS A records use it. */
        publicAddress: ipv4,
        /** Where rules.v4 is persisted and restored from at boot. */
        iptablesRulesFile: absPath.default('/etc/iptables/rules.v4'),
        /**
         * A host firewall (ufw) to enable, with the TCP ports it allows. Port 22 is always allowed
         * first, and the enable step refuses to run unless that rule is in place.
         */
        firewall: z.object({ allow: z.array(port).default([80, 443]) }).strict().optional(),
        /** The systemd unit that restores the rules at boot (the guide's iptables-restore.service). */
        restoreUnitFile: absPath.default('/etc/systemd/system/iptables-restore.service'),
      })
      .strict(),
    containers: z.array(containerSchema).min(1),
    data: z
      .object({
        /** Tenant data on the source host; one folder per container. */
        sourceRoot: absPath.default('/opt/gbo'),
        /** Where the destination's rsync pull lands first. */
        staging: absPath,
        /** Final home: `<tenantsRoot>/<tenant>/<container>`. */
        tenantsRoot: absPath.default('/opt/gbo/tenants'),
        /** Mount point of the data inside each container. */
        containerPath: absPath.default('/opt/gbo'),
        /**
         * Private key file ON THE DESTINATION HOST that its rsync uses to pull from the source (a
         * path, never key material; the guide's dest→source key exchange). Default: ssh's own.
         */
        pullIdentity: absPath,
        /** known_hosts file on the destination host that pins the source's host key for the pull. */
        pullKnownHosts: absPath.optional(),
      })
      .strict(),
    portForwards: z.array(portForwardSchema).default([]),
    /** The tenant's reverse proxy; without it the proxy phase has no steps. */
    caddy: z
      .object({
        container: instanceName,
        configPath: absPath.default('/opt/gbo/conf/config'),
        storageRoot: absPath.default('/opt/gbo/data/caddy'),
        binary: absPath.default('/usr/bin/caddy'),
        /** Refuse any rewritten config with fewer vhosts than this (the guide's full config has ~25). */
        minVhosts: z.number().int().min(1),
      })
      .strict()
      .optional(),
    dns: z
      .object({
        zone: domainName,
        /**
         * The tenant's own DNS server: `container`, `zoneFile` and `reloadCommand`, all three or none.
         * None: DNS is hosted elsewhere, and the cutover waits at the `dns` gate for the operator
         * to change the records at the provider.
         */
        container: instanceName.optional(),
        zoneFile: absPath.optional(),
        /** argv of the reload, run in the DNS container (CoreDNS reloads on SIGHUP). */
        reloadCommand: z.array(z.string().regex(/^[A-Za-z0-9@%+=:,./_-]+$/, 'a plain word')).min(1).optional(),
        records: z.array(dnsRecordSchema).min(1),
        /** Servers whose answers prove propagation (addresses or names). */
        authoritativeServers: z.array(hostAddress).min(1),
        /** Previous TTL of the changed records; the cutover waits at least this long. */
        oldTtlSeconds: z.number().int().min(0).default(3600),
      })
      .strict()
      .superRefine((dns, ctx) => {
        const fields = ['container', 'zoneFile', 'reloadCommand'] as const;
        const missing = fields.filter((f) => dns[f] === undefined);
        if (missing.length > 0 && missing.length < fields.length) {
          ctx.addIssue({
            code: 'custom',
            path: [missing[0] as string],
            message: `dns.container, dns.zoneFile and dns.reloadCommand together (a DNS server in the tenant) or none of them (DNS hosted elsewhere); missing: ${missing.map((f) => `dns.${f}`).join(', ')}`,
            input: undefined,
          });
        }
      }),
    certificates: z
      .object({
        domains: z.array(domainName).min(1),
        wait: z
          .object({
            pollInterval: duration.default('5m'),
            maxWait: duration.default('7d'),
          })
          .strict()
          .default({ pollInterval: '5m', maxWait: '7d' }),
      })
      .strict()
      .optional(),
    serviceFixes: z.array(serviceFixSchema).default([]),
    approvals: z
      .object({
        cutover: z.boolean().default(true),
        cleanup: z.boolean().default(true),
        /** Time the migrated tenant must run before cleanup may be approved. */
        verificationWindow: duration.default('24h'),
        /** How long a gate waits for an operator before it reports a timeout. */
        gateTimeout: duration.default('14d'),
      })
      .strict()
      .default({ cutover: true, cleanup: true, verificationWindow: '24h', gateTimeout: '14d' }),
    concurrency: z
      .object({ containers: z.number().int().min(1).max(32).default(3) })
      .strict()
      .default({ containers: 3 }),
  })
  .strict()
  .superRefine((plan, ctx) => {
    const names = new Set<string>();
    const sources = new Set<string>();
    plan.containers.forEach((c, i) => {
      if (names.has(c.name)) {
        ctx.addIssue({ code: 'custom', path: ['containers', i, 'name'], message: 'a unique container name', input: c.name });
      }
      names.add(c.name);
      const src = c.source ?? plan.source.containerPrefix + c.name;
      if (!/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/.test(src)) {
        ctx.addIssue({ code: 'custom', path: ['containers', i, 'source'], message: 'a valid source container name (prefix + name)', input: src });
      }
      if (sources.has(src)) {
        ctx.addIssue({ code: 'custom', path: ['containers', i, 'source'], message: 'a unique source container', input: src });
      }
      sources.add(src);
    });
    const known = (name: string) => names.has(name);
    const ref = (path: (string | number)[], name: string) => {
      if (!known(name)) {
        ctx.addIssue({ code: 'custom', path, message: `one of the plan's containers (${[...names].join(', ')})`, input: name });
      }
    };
    const forwarded = new Set<string>();
    plan.portForwards.forEach((f, i) => {
      ref(['portForwards', i, 'container'], f.container);
      const key = `${f.protocol}/${f.port}`;
      if (forwarded.has(key)) {
        ctx.addIssue({ code: 'custom', path: ['portForwards', i, 'port'], message: `a port forwarded once per protocol (${key} repeats)`, input: f.port });
      }
      forwarded.add(key);
    });
    if (plan.caddy) ref(['caddy', 'container'], plan.caddy.container);
    if (plan.dns.container) ref(['dns', 'container'], plan.dns.container);
    plan.serviceFixes.forEach((f, i) => {
      ref(['serviceFixes', i, 'container'], f.container);
      if (f.kind === 'env') {
        for (const m of f.value.matchAll(/\{\{ip:([^}]*)\}\}/g)) ref(['serviceFixes', i, 'value'], m[1] ?? '');
      }
    });
  });

/** A plan as written (defaults optional). */
export type PlanInput = z.input<typeof planSchema>;
/** A validated plan with every default filled in. */
export type Plan = z.output<typeof planSchema>;
export type ContainerPlan = Plan['containers'][number];
export type HostRole = 'source' | 'destination';

/** The source name of a container, after the prefix mapping. */
export function sourceNameOf(plan: Plan, c: ContainerPlan): string {
  return c.source ?? plan.source.containerPrefix + c.name;
}
