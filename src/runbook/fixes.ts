/**
 * Service fixes the plan names: environment values, loopback rules, Vault unseal.
 */
import type { Step } from './model';
import { step, type Ctx } from './commands';
import { ipOf } from './shell';

export function fixes(ctx: Ctx): Step[] {
  const { plan } = ctx;
  return plan.serviceFixes.flatMap((f, i): Step[] => {
    const base = { phase: 'fixes' as const, host: 'destination' as const, container: f.container };
    switch (f.kind) {
      case 'loopback-accept':
        return [
          step(ctx, {
            ...base,
            id: `fixes/${f.container}/loopback-accept-${i}`,
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
        ];
      case 'env': {
        const value = f.value.replace(/\{\{ip:([a-z0-9-]+)\}\}/g, (_m, c: string) => ipOf(c));
        const line = `${f.key}=${value}`;
        return [
          step(ctx, {
            ...base,
            id: `fixes/${f.container}/env-${f.key.toLowerCase()}`,
            title: `${f.key} in ${f.file}`,
            kind: 'run',
            command: ctx.inside(
              f.container,
              'sh',
              '-c',
              // Keeps an `Environment=` prefix (systemd units) and replaces the whole value; the new
              // text goes over a copy of the file (`cp -p`), so its owner and mode stay.
              // The key and value reach sed's regex and replacement escaped (a `#` would end its `s`).
              'f="$1"; k="$2"; v="$3"; t="$f.gbo-new"; cp -p "$f" "$t" || exit 1; ' +
                "ek=$(printf '%s' \"$k\" | sed 's/[][\\.*^$#|?+(){}]/\\\\&/g'); ev=$(printf '%s' \"$v\" | sed 's/[\\&#]/\\\\&/g'); " +
                'if grep -qE "^(Environment=\\"?)?$ek=" "$f"; then ' +
                'sed -E "s#^(Environment=\\"?)?$ek=[^\\"]*#\\1$ek=$ev#" "$f" > "$t"; else { cat "$f"; echo "$k=$v"; } > "$t"; fi && mv "$t" "$f"',
              'env-fix',
              f.file,
              f.key,
              value,
            ),
            check: ctx.inside(f.container, 'grep', '-qE', `^(Environment="?)?${f.key}=`, f.file) + ` && ${ctx.inside(f.container, 'grep', '-qF', line, f.file)}`,
          }),
          ...f.restart.map((unit) =>
            step(ctx, { ...base, id: `fixes/${f.container}/restart-${unit}`, title: `Restart ${unit}`, kind: 'run', command: ctx.inside(f.container, 'systemctl', 'restart', unit) }),
          ),
        ];
      }
      case 'vault-unseal':
        return [
          step(ctx, {
            ...base,
            id: `fixes/${f.container}/vault-unseal`,
            title: `Unseal Vault in ${f.container} (key from ${f.keyRef.split(':')[0]} reference, over stdin)`,
            kind: 'vault-unseal',
            command: ctx.inside(f.container, 'env', `VAULT_ADDR=${f.vaultAddr}`, 'VAULT_SKIP_VERIFY=true', 'sh', '-c', 'read -r k && "$1" operator unseal "$k" >/dev/null', 'unseal', f.binary),
            check: ctx.inside(f.container, 'env', `VAULT_ADDR=${f.vaultAddr}`, 'VAULT_SKIP_VERIFY=true', f.binary, 'status'),
            params: { keyRef: f.keyRef },
          }),
        ];
    }
  });
}
