/**
 * The tenant plan: everything one migration needs, validated before anything runs.
 *
 * Every name that ends up in a shell command (containers, users, paths, networks, pools, zone
 * names) is restricted here to a safe character set; the command builders quote them as well, so
 * a plan can never inject shell syntax. Secrets never appear in a plan: keys and the Vault unseal
 * key are *references* the worker resolves.
 */
import { z } from 'zod';
import { DNS_LABEL, hostIpv4Problem, IPV4 } from './addresses';
import {
  boundedText, canonicalPath, commandArgv, DAY, dedicatedDataRoots, destructiveTarget, dirNameProblem, hostAddressGuard,
  hostIpv4Guard, MAX_CONTAINERS, MINUTE, SECOND, secretRefGuard, subnetGuard, systemdUnit, boundedDuration,
} from './guards';

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

/** An absolute path with a safe character set, in canonical form (no "..", ".", "//" or trailing "/"). */
export const absPath = canonicalPath;

/** A relative directory name inside /opt/gbo (conf, data, logs, bin, ...). */
export const dirName = z
  .string()
  .superRefine((d, ctx) => {
    const why = dirNameProblem(d);
    if (why) ctx.addIssue({ code: 'custom', message: why, input: d });
  })
  .meta({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', maxLength: 255 });

/** An IPv4 address a host can have (canonical dotted quad; not 0.0.0.0, broadcast, multicast or reserved). */
export const ipv4 = hostIpv4Guard;

/** A host address: IPv4 or a DNS name (see plan/addresses.ts for what is refused and why). */
export const hostAddress = hostAddressGuard;

/** The bridge subnet: host bits zero, a prefix from /8 to /30. */
export const cidr = subnetGuard;

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
export const secretRef = secretRefGuard;

/** Durations as `90s`, `15m`, `2h`, `3d`. */
export const duration = z.string().regex(/^\d+(ms|s|m|h|d)$/, 'a duration such as 30s, 15m, 2h or 3d');
/** Per-field bounds: a zero poll interval spins on the host, a 10^20-day wait overflows timers. */
const pollInterval = boundedDuration(SECOND, DAY, 'polls at most once a second, at least once a day');
const longWait = (what: string) => boundedDuration(MINUTE, 90 * DAY, `${what}; longer than 90 days is a typo, not a plan`);
/** A wait that polls: how often, and for how long at most (a week unless the plan says otherwise). */
const pollWait = (what: string, every: string) =>
  z
    .object({ pollInterval: pollInterval.default(every), maxWait: longWait(what).default('7d') })
    .strict()
    .default({ pollInterval: every, maxWait: '7d' });

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
    ports: z.array(port).max(64).default([]),
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
    role: boundedText(80).optional(),
    privileged: z.boolean().default(false),
    /** Its data folders under its source folder; none: a stateless container (no data steps). */
    dataDirs: z.array(dirName).max(64).default([]),
    /** Where its data goes inside the container (tar extracts into it); default `data.containerPath`. */
    dataPath: destructiveTarget.optional(),
    services: z.array(serviceSchema).max(64).default([]),
    requiredFiles: z.array(requiredFileSchema).max(256).default([]),
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
    service: boundedText(80).optional(),
  })
  .strict();

const dnsRecordSchema = z
  .object({
    name: z.string().regex(/^(@|[a-z0-9*]([a-z0-9.-]{0,200}[a-z0-9])?)$/, 'a record owner name relative to the zone, or "@"'),
    type: z.enum(['A', 'NS']),
    /** A: an IPv4 address; NS: a host name. */
    value: z.string().min(1).max(253),
    ttl: z.number().int().min(30).max(604800).optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    const aProblem = r.type === 'A' ? (/^[\d.]+$/.test(r.value) ? hostIpv4Problem(r.value) : 'an IPv4 address') : undefined;
    const ok = r.type === 'A' ? aProblem === undefined : domainName.safeParse(r.value.replace(/\.$/, '')).success;
    if (!ok) {
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: r.type === 'A' ? `${aProblem} for an A record` : 'a host name for an NS record',
        input: r.value,
      });
    }
  });

/** A systemd unit name (restart targets). */

/** `{{ip:<container>}}`, an IPv4 address or a DNS host name: what may stand for a host. */
const hostTemplate = z
  .string()
  .refine(
    (h) => /^\{\{ip:[a-z0-9-]+\}\}$/.test(h) || IPV4.test(h) || (h.length <= 253 && h.split('.').every((l) => DNS_LABEL.test(l))),
    'a host: "{{ip:<container>}}", an IPv4 address or a DNS host name',
  );

/**
 * What an `env` fix writes: exactly one of
 * - `value`: the whole new value, literally (a template: `{{ip:<container>}}` becomes that
 *   container's new address). Written into the plan, so never a secret.
 * - `valueRef`: the whole new value is a secret the worker resolves (`env:NAME`, `file:/path`) and
 *   hands to the command over stdin; it is never in the plan, a command, history or a log.
 * - `urlHost`: only the host of the URL the key already holds changes (scheme, user, password,
 *   port, path and query stay); the rewrite happens inside the container, so a password in the
 *   URL never leaves it.
 */
const envSetSchema = z
  .object({
    value: z
      .string()
      .max(4096)
      .regex(/^[^\n\r\0]*$/, 'a one-line value (no newline, carriage return or NUL)')
      .refine((v) => !/:\/\/[^/?#@\s]*:[^/?#@\s]*@/.test(v), 'a value with no password in it: a secret goes in "valueRef", and "urlHost" changes only a URL\'s host')
      .optional(),
    valueRef: z.string().regex(/^(env:[A-Z_][A-Z0-9_]*|file:\/[A-Za-z0-9._/-]+)$/, 'a secret reference: "env:NAME" or "file:/absolute/path"').optional(),
    urlHost: hostTemplate.optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    const given = (['value', 'valueRef', 'urlHost'] as const).filter((k) => s[k] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `exactly one of "value" (the whole value), "valueRef" (the whole value, a secret) or "urlHost" (only a URL's host)${given.length ? `, not ${given.join(' and ')}` : ''}`,
        input: s,
      });
    }
  });

const serviceFixSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('env'),
      container: instanceName,
      /**
       * File holding KEY=value lines: an env file, or a systemd unit's `Environment=` lines when the
       * path is under /etc/systemd/ or ends in `.service` (then `systemctl daemon-reload` follows).
       */
      file: absPath,
      key: z.string().max(128).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name (letters, digits and "_", not starting with a digit)'),
      set: envSetSchema,
      /** Units restarted after every fix (and the daemon-reload) of this container. */
      restart: z.array(systemdUnit).max(16).default([]),
    })
    .strict(),
  z
    .object({
      kind: z.literal('hosts-entry'),
      container: instanceName,
      /** The hosts file; `/etc/hosts` unless said otherwise. */
      file: absPath.default('/etc/hosts'),
      /** The name that must resolve to `address` (and only to it: other lines lose this name). */
      hostname: z.string().refine((h) => h.length <= 253 && h.split('.').every((l) => DNS_LABEL.test(l)), 'a host name such as system or db.example.com'),
      address: z
        .string()
        .refine((a) => /^\{\{ip:[a-z0-9-]+\}\}$/.test(a) || IPV4.test(a), 'an address: "{{ip:<container>}}" or an IPv4 address'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('ssh-config-host'),
      container: instanceName,
      /** The ssh_config file (it must exist), e.g. /root/.ssh/config. */
      file: absPath,
      /** The `Host` pattern whose block gets the HostName (an exact pattern, not a wildcard). */
      host: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/, 'a Host alias of letters, digits, ".", "_" and "-" (no wildcard)'),
      hostName: hostTemplate,
    })
    .strict(),
  z
    .object({
      kind: z.literal('vault-unseal'),
      container: instanceName,
      vaultAddr: z.string().max(256).regex(/^https?:\/\/[A-Za-z0-9.:-]+$/, 'a Vault URL such as https://127.0.0.1:8200'),
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

/** A service fix as validated. */
export type ServiceFix = z.output<typeof serviceFixSchema>;

/** A unit file: systemd reads it, so `systemctl daemon-reload` follows an edit. */
export function isUnitFile(path: string): boolean {
  return path.startsWith('/etc/systemd/') || path.startsWith('/lib/systemd/') || path.startsWith('/usr/lib/systemd/') || path.endsWith('.service');
}

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
        containerPrefix: z.string().max(40).regex(/^([a-z][a-z0-9-]*)?$/, 'a prefix of lowercase letters, digits and "-"').default(''),
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
        firewall: z.object({ allow: z.array(port).max(64).default([80, 443]) }).strict().optional(),
        /** The systemd unit that restores the rules at boot (the guide's iptables-restore.service). */
        restoreUnitFile: absPath.default('/etc/systemd/system/iptables-restore.service'),
      })
      .strict(),
    containers: z.array(containerSchema).min(1).max(MAX_CONTAINERS),
    data: z
      .object({
        /** Tenant data on the source host; one folder per container. */
        sourceRoot: destructiveTarget.default('/opt/gbo'),
        /** Where the destination's rsync pull lands first. */
        staging: destructiveTarget,
        /** Final home: `<tenantsRoot>/<tenant>/<container>`. */
        tenantsRoot: destructiveTarget.default('/opt/gbo/tenants'),
        /** Mount point of the data inside each container. */
        containerPath: destructiveTarget.default('/opt/gbo'),
        /**
         * Private key file ON THE DESTINATION HOST that its rsync uses to pull from the source (a
         * path, never key material; the guide's dest→source key exchange). Default: ssh's own.
         */
        pullIdentity: absPath,
        /** known_hosts file on the destination host that pins the source's host key for the pull. */
        pullKnownHosts: absPath.optional(),
        /**
         * rsync's `--bwlimit` for the warm pull, which runs while the source serves its users: a
         * number of KiB/s, or with K, M or G (`40M`). The final pull, during the downtime, is never limited.
         */
        warmBandwidthLimit: z
          .string()
          .regex(/^[1-9][0-9]{0,6}[KMG]?$/, 'a rate for rsync --bwlimit: KiB/s, or a number with K, M or G, like 40M')
          .optional(),
      })
      .strict(),
    portForwards: z.array(portForwardSchema).max(256).default([]),
    /** The tenant's reverse proxy; without it the proxy phase has no steps. */
    caddy: z
      .object({
        container: instanceName,
        configPath: absPath.default('/opt/gbo/conf/config'),
        storageRoot: absPath.default('/opt/gbo/data/caddy'),
        binary: absPath.default('/usr/bin/caddy'),
        /** Refuse any rewritten config with fewer vhosts than this (the guide's full config has ~25). */
        minVhosts: z.number().int().min(1).max(10000),
        /**
         * Caddy's JSON log with its `tls.obtain` lines (the global `log` block): the certificate
         * wait reads it to tell a CA's rate limit (and its retry time) from other ACME errors.
         */
        logFile: absPath.optional(),
        /**
         * argv of a Caddy restart, run in its container: after domains that no DNS record points
         * here are removed from the config (the guide: restart only after removing them).
         */
        restartCommand: commandArgv(16).default(['systemctl', 'restart', 'caddy']),
        /**
         * How a certificate wait makes Caddy retry at once (after the cutover, and when a CA's
         * rate limit ends): `reload` (`caddy reload --force`: no interruption, but Caddy's own
         * throttle, 10 orders a minute per CA account, survives it, so after a busy limit the
         * certificates can take up to a minute) or `restart` (the restart command: a fresh
         * throttle, certificates in seconds, connections cut for about a second).
         */
        certificateRetry: z.enum(['reload', 'restart']).default('reload'),
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
        reloadCommand: commandArgv(16).optional(),
        records: z.array(dnsRecordSchema).min(1).max(256),
        /** Servers whose answers prove propagation (addresses or names). */
        authoritativeServers: z.array(hostAddress).min(1).max(16),
        /** Previous TTL of the changed records; the cutover waits at least this long. */
        oldTtlSeconds: z.number().int().min(0).max(604800).default(3600),
        /**
         * The zone's delegation at its parent (NS records and glue at the registrar), when the
         * migration changes the nameservers: the tool cannot change it, so the cutover names the
         * change at the `registrar` gate, then waits until `parentServers` refer to `nameservers`.
         */
        delegation: z
          .object({
            parentServers: z.array(hostAddress).min(1).max(8),
            nameservers: z.array(domainName).min(1).max(16),
          })
          .strict()
          .optional(),
        /** How often the authoritative servers are asked, and for how long at most. */
        wait: pollWait('the longest wait for DNS to propagate', '30s'),
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
        domains: z.array(domainName).min(1).max(100),
        /**
         * PEM file on the worker with the root(s) a served certificate must chain to (the CA the
         * proxy uses). Without it: the worker's system roots (the public web PKI).
         */
        caFile: absPath.optional(),
        /** Expected in the issuing certificate's subject (its CN or O), e.g. "Let's Encrypt". */
        issuer: z.string().min(1).max(200).regex(/^[^\n\r]+$/, 'one line').optional(),
        wait: pollWait('the longest wait for a certificate', '5m'),
      })
      .strict()
      .optional(),
    serviceFixes: z.array(serviceFixSchema).max(64).default([]),
    approvals: z
      .object({
        cutover: z.boolean().default(true),
        cleanup: z.boolean().default(true),
        /** Time the migrated tenant must run before cleanup may be approved. */
        verificationWindow: boundedDuration(0, 90 * DAY, 'longer than 90 days is a typo, not a plan').default('24h'),
        /** How long a gate waits for an operator before it reports a timeout. */
        gateTimeout: boundedDuration(MINUTE, 365 * DAY, 'an operator answers within a year or the gate reports a timeout').default('14d'),
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
    const fixed = new Map<string, number>();
    plan.serviceFixes.forEach((f, i) => {
      ref(['serviceFixes', i, 'container'], f.container);
      const what =
        f.kind === 'env' ? `${f.key} in ${f.file}` : f.kind === 'hosts-entry' ? `${f.hostname} in ${f.file}` : f.kind === 'ssh-config-host' ? `Host ${f.host} in ${f.file}` : f.kind;
      const prior = fixed.get(`${f.container} ${f.kind} ${what}`);
      if (prior !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['serviceFixes', i], message: `one fix per target: serviceFixes[${prior}] already sets ${what} in ${f.container}`, input: what });
      } else fixed.set(`${f.container} ${f.kind} ${what}`, i);
      const templates: [(string | number)[], string | undefined][] =
        f.kind === 'env'
          ? [[['set', 'value'], f.set.value], [['set', 'urlHost'], f.set.urlHost]]
          : f.kind === 'hosts-entry'
            ? [[['address'], f.address]]
            : f.kind === 'ssh-config-host'
              ? [[['hostName'], f.hostName]]
              : [];
      for (const [field, text] of templates) {
        for (const m of (text ?? '').matchAll(/\{\{ip:([^}]*)\}\}/g)) ref(['serviceFixes', i, ...field], m[1] ?? '');
      }
    });
  })
  .superRefine(dedicatedDataRoots);

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
