/**
 * Turns captured command output into the values later steps need. Each parser throws with a
 * message that says what it expected, so a surprising host answer fails loudly.
 */
import { IPV4 } from '../plan/addresses';
import { countVhostsAdapted } from '../proxy/caddy';
import type { DeviceMap } from '../runbook/build';
import type { CaptureKind } from '../runbook/model';

interface InstanceState {
  network?: Record<string, { addresses?: { family: string; address: string; scope: string }[] }> | null;
}

function globalIpv4(state: InstanceState | null | undefined, nic = 'eth0'): string | undefined {
  const ip = state?.network?.[nic]?.addresses?.find((a) => a.family === 'inet' && a.scope === 'global')?.address;
  // Checked here with the plan's pattern, so a surprising answer fails at the capture, not in a later command.
  if (ip !== undefined && !IPV4.test(ip)) throw new Error(`expected a dotted-quad IPv4 address on ${nic}, got ${JSON.stringify(ip.slice(0, 40))}`);
  return ip;
}

/** `incus list --format json` / `lxc query .../state`: the IPv4 of eth0 with global scope. */
export function parseListIpv4(json: string): string {
  const list = JSON.parse(json) as { name: string; state: InstanceState | null }[];
  if (list.length !== 1) throw new Error(`expected exactly one instance in the list, got ${list.length}`);
  const ip = globalIpv4(list[0]?.state);
  if (!ip) throw new Error(`instance ${list[0]?.name} has no global IPv4 on eth0 yet`);
  return ip;
}

export function parseStateIpv4(json: string): string {
  const ip = globalIpv4(JSON.parse(json) as InstanceState);
  if (!ip) throw new Error('the instance has no global IPv4 on eth0');
  return ip;
}

export interface RecordedInstance {
  name: string;
  status: string;
  /** The instance's own devices: what the migration removes and a cancel restores. */
  devices: DeviceMap;
  privileged: boolean;
  profiles: string[];
  /**
   * The host uid/gid its root maps to (its host-side data is stored shifted by it): `0` when
   * privileged, with an empty idmap, or with a data disk device shifted by the kernel
   * (`shift: true`). Absent when the record shows no idmap at all.
   */
  idShift?: string;
}

interface IdmapEntry {
  Isuid?: boolean;
  Isgid?: boolean;
  Hostid?: number;
  Nsid?: number;
  Maprange?: number;
}

/**
 * The source idmap shift of an instance, from its recorded config: `volatile.idmap.current`
 * (running), else `volatile.last_state.idmap`; a JSON list of {Isuid, Isgid, Hostid, Nsid, Maprange}.
 */
export function idShiftOf(config: Record<string, string>, devices: Record<string, Record<string, string>>): string | undefined {
  if (config['security.privileged'] === 'true') return '0';
  if (Object.values(devices).some((d) => d.type === 'disk' && d.source !== undefined && d.shift === 'true')) return '0';
  const raw = config['volatile.idmap.current'] ?? config['volatile.last_state.idmap'];
  if (raw === undefined) return undefined;
  const map = JSON.parse(raw) as IdmapEntry[] | null;
  if (!Array.isArray(map)) throw new Error(`expected the idmap to be a JSON list, got ${JSON.stringify(raw.slice(0, 80))}`);
  if (map.length === 0) return '0';
  const base = (pick: (e: IdmapEntry) => boolean | undefined) => map.find((e) => pick(e) && (e.Nsid ?? 0) === 0)?.Hostid;
  const uid = base((e) => e.Isuid);
  const gid = base((e) => e.Isgid);
  if (uid === undefined || gid === undefined) throw new Error(`the idmap maps no uid or no gid 0: ${raw.slice(0, 200)}`);
  if (uid !== gid) throw new Error(`the idmap shifts uids by ${uid} and gids by ${gid}; only one shift for both is supported`);
  if (!Number.isInteger(uid) || uid < 0) throw new Error(`an idmap Hostid that is not a whole number: ${uid}`);
  return String(uid);
}

/** `lxc query /1.0/instances/<name>`, kept small for history. */
export function parseInstance(json: string): RecordedInstance {
  const i = JSON.parse(json) as {
    name: string;
    status: string;
    devices?: Record<string, Record<string, string>>;
    expanded_devices?: Record<string, Record<string, string>>;
    config?: Record<string, string>;
    expanded_config?: Record<string, string>;
    profiles?: string[];
  };
  const config = i.expanded_config ?? i.config ?? {};
  const idShift = idShiftOf(config, i.expanded_devices ?? i.devices ?? {});
  return {
    name: i.name,
    status: i.status,
    devices: i.devices ?? {},
    privileged: config['security.privileged'] === 'true',
    profiles: i.profiles ?? [],
    ...(idShift !== undefined ? { idShift } : {}),
  };
}

/** csv `-c n` lists; Incus may append " (current)" to remotes. */
export function parseNames(csv: string): string[] {
  return csv
    .split('\n')
    .map((l) => l.split(',')[0]?.trim() ?? '')
    .filter(Boolean);
}

/** The last word of `text` as a whole number of bytes (`df`'s last line, a sum). */
export function parseBytes(text: string): string {
  const n = text.trim().split(/\s+/).pop() ?? '';
  if (/^\d+(\.\d+)?e\+?\d+$/i.test(n)) {
    // mawk's `print` of a sum past 2^31: precision already lost, so the command must print it with printf "%.0f".
    throw new Error(`expected a byte count in whole digits, got ${JSON.stringify(n)} in exponent notation; the command must print the number with printf "%.0f"`);
  }
  if (!/^\d+$/.test(n)) throw new Error(`expected a byte count, got ${JSON.stringify(text.slice(0, 80))}`);
  return n;
}

/** Parses a capture into the string kept under its key. */
export function parseCapture(kind: CaptureKind, stdout: string): string {
  switch (kind) {
    case 'text':
      return stdout.trim();
    case 'instance-json':
      return JSON.stringify(parseInstance(stdout));
    case 'state-ipv4':
      return parseStateIpv4(stdout);
    case 'list-ipv4':
      return parseListIpv4(stdout);
    case 'names':
      return parseNames(stdout).join(',');
    case 'bytes':
      return parseBytes(stdout);
    case 'digest': {
      const d = stdout.trim();
      if (!/^files=\d+ sha256=[0-9a-f]{64}$/.test(d)) throw new Error(`expected "files=<n> sha256=<hex>", got ${JSON.stringify(d.slice(0, 120))}`);
      return d;
    }
    case 'cert': {
      const pem = stdout.trim();
      if (!/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----$/.test(pem)) throw new Error('expected one PEM certificate');
      return pem + '\n';
    }
    case 'pubkey': {
      const key = stdout.trim().split(/\s+/).slice(0, 2).join(' ');
      if (!/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$/.test(key)) throw new Error('expected an OpenSSH public key');
      return key;
    }
    case 'address': {
      const a = stdout.trim();
      if (!/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(a)) throw new Error('expected an IPv4 address');
      return a;
    }
    case 'vhost-count':
      return String(countVhostsAdapted(stdout));
  }
}
