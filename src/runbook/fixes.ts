/**
 * Service fixes the plan names: environment values (whole, from a secret, or a URL's host only),
 * hosts entries, ssh_config HostNames, loopback rules, Vault unseal.
 *
 * Order: every fix in plan order (file edits, loopback, unseal), then one `systemctl daemon-reload`
 * per container whose unit files were edited, then the restarts the fixes name (each unit once).
 */
import { isUnitFile, type ServiceFix } from '../plan/schema';
import type { Step } from './model';
import { slug, step, type Ctx } from './commands';
import { ENV_AWK, FILE_EDIT, HOSTS_AWK, SSH_CONFIG_AWK } from './fix-scripts';

/** `sh -c FILE_EDIT <program> <mode> <file> <assignments...>` inside the container. */
function fileEdit(ctx: Ctx, container: string, program: string, mode: 'apply' | 'check', file: string, assignments: string[]): string {
  return ctx.inside(container, 'sh', '-c', FILE_EDIT, 'gbo-fix', program, mode, file, ...assignments);
}

/** What a file-editing fix runs: the awk program, a title, an id suffix and the assignments. */
function edit(f: ServiceFix): { program: string; name: string; title: string; file: string; assignments: string[]; secret?: string } | undefined {
  switch (f.kind) {
    case 'env': {
      const unit = isUnitFile(f.file) ? '1' : '0';
      const common = [`GBO_K=${f.key}`, `GBO_U=${unit}`];
      const name = `env-${slug(f.file)}-${slug(f.key)}`;
      if (f.set.urlHost !== undefined) {
        return { program: ENV_AWK, name, file: f.file, title: `Host of the URL in ${f.key} in ${f.file} → ${f.set.urlHost} (user, password, port, path kept)`, assignments: [...common, 'GBO_P=url-host', `GBO_V=${f.set.urlHost}`] };
      }
      if (f.set.valueRef !== undefined) {
        return { program: ENV_AWK, name, file: f.file, title: `${f.key} in ${f.file} (secret from ${f.set.valueRef.split(':')[0]} reference, over stdin)`, assignments: [...common, 'GBO_P=whole', 'GBO_V'], secret: f.set.valueRef };
      }
      return { program: ENV_AWK, name, file: f.file, title: `${f.key} in ${f.file}`, assignments: [...common, 'GBO_P=whole', `GBO_V=${f.set.value ?? ''}`] };
    }
    case 'hosts-entry':
      return { program: HOSTS_AWK, name: `hosts-entry-${slug(f.file)}-${slug(f.hostname)}`, file: f.file, title: `${f.hostname} → ${f.address} in ${f.file} of ${f.container}`, assignments: [`GBO_H=${f.hostname}`, `GBO_A=${f.address}`] };
    case 'ssh-config-host':
      return { program: SSH_CONFIG_AWK, name: `ssh-config-${slug(f.file)}-${slug(f.host)}`, file: f.file, title: `HostName ${f.hostName} for Host ${f.host} in ${f.file} of ${f.container}`, assignments: [`GBO_H=${f.host}`, `GBO_N=${f.hostName}`] };
    default:
      return undefined;
  }
}

export function fixes(ctx: Ctx): Step[] {
  const { plan } = ctx;
  const out: Step[] = [];
  const ids = new Set<string>();
  /** A stable, unique id (two files whose slugs collide get `-2`, `-3` in plan order). */
  const idOf = (base: string) => {
    let id = base;
    for (let n = 2; ids.has(id); n++) id = `${base}-${n}`;
    ids.add(id);
    return id;
  };
  const reloads: string[] = [];
  const restarts: { container: string; unit: string }[] = [];
  const base = (container: string) => ({ phase: 'fixes' as const, host: 'destination' as const, container });

  for (const f of plan.serviceFixes) {
    const e = edit(f);
    if (e) {
      out.push(
        step(ctx, {
          ...base(f.container),
          id: idOf(`fixes/${f.container}/${e.name}`),
          title: e.title,
          kind: e.secret ? 'env-secret' : 'run',
          command: fileEdit(ctx, f.container, e.program, 'apply', e.file, e.assignments),
          check: fileEdit(ctx, f.container, e.program, 'check', e.file, e.assignments),
          ...(e.secret ? { params: { valueRef: e.secret } } : {}),
        }),
      );
      if (f.kind === 'env') {
        if (isUnitFile(f.file) && !reloads.includes(f.container)) reloads.push(f.container);
        for (const unit of f.restart) if (!restarts.some((r) => r.container === f.container && r.unit === unit)) restarts.push({ container: f.container, unit });
      }
      continue;
    }
    switch (f.kind) {
      case 'loopback-accept':
        out.push(
          step(ctx, {
            ...base(f.container),
            id: idOf(`fixes/${f.container}/loopback-accept`),
            title: `Loopback ACCEPT above any DROP inside ${f.container} (Valkey on 127.0.0.1)`,
            kind: 'run',
            command: ctx.inside(
              f.container,
              'sh',
              '-c',
              'iptables -D INPUT -i lo -j ACCEPT 2>/dev/null; iptables -I INPUT 1 -i lo -j ACCEPT && if [ -d /etc/iptables ]; then iptables-save > /etc/iptables/rules.v4; fi',
            ),
            check: ctx.inside(f.container, 'sh', '-c', "iptables -S INPUT | sed -n 2p | grep -qx -- '-A INPUT -i lo -j ACCEPT'"),
          }),
        );
        break;
      case 'vault-unseal':
        out.push(
          step(ctx, {
            ...base(f.container),
            id: idOf(`fixes/${f.container}/vault-unseal`),
            title: `Unseal Vault in ${f.container} (key from ${f.keyRef.split(':')[0]} reference, over stdin)`,
            kind: 'vault-unseal',
            command: ctx.inside(f.container, 'env', `VAULT_ADDR=${f.vaultAddr}`, 'VAULT_SKIP_VERIFY=true', 'sh', '-c', 'read -r k && "$1" operator unseal "$k" >/dev/null', 'unseal', f.binary),
            check: ctx.inside(f.container, 'env', `VAULT_ADDR=${f.vaultAddr}`, 'VAULT_SKIP_VERIFY=true', f.binary, 'status'),
            params: { keyRef: f.keyRef },
          }),
        );
        break;
    }
  }
  // systemd reads edited unit files only on a daemon-reload: before any restart.
  for (const c of reloads) {
    out.push(step(ctx, { ...base(c), id: idOf(`fixes/${c}/daemon-reload`), title: `systemctl daemon-reload in ${c} (unit files edited)`, kind: 'run', command: ctx.inside(c, 'systemctl', 'daemon-reload') }));
  }
  for (const { container, unit } of restarts) {
    out.push(step(ctx, { ...base(container), id: idOf(`fixes/${container}/restart-${unit}`), title: `Restart ${unit} in ${container}`, kind: 'run', command: ctx.inside(container, 'systemctl', 'restart', unit) }));
  }
  return out;
}
