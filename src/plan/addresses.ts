/**
 * The one place that says what an address is: the plan schema, the command builders'
 * placeholder validator (runbook/shell.ts) and the capture parsers (activities/parse.ts) all use
 * these, so a value one of them accepts is never one another refuses or reads differently.
 *
 * Pure functions over strings (no zod, no node imports): workflow code may import it.
 */

/** One decimal octet, 0-255, without leading zeros. */
export const IPV4_OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
/**
 * A dotted-quad IPv4 address in its canonical form. Leading zeros are refused on purpose:
 * inet_aton and most resolvers read `010` as octal (8), so `010.0.0.1` would reach 8.0.0.1.
 */
export const IPV4 = new RegExp(`^${IPV4_OCTET}(\\.${IPV4_OCTET}){3}$`);

/** A DNS label (lowercase, as plans write them). */
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The 32-bit value of a canonical dotted quad, or undefined. */
export function ipv4ToInt(a: string): number | undefined {
  if (!IPV4.test(a)) return undefined;
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

export function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/**
 * Why `a` is not a canonical dotted-quad IPv4 address, or undefined when it is one. Only
 * meaningful for strings that look numeric (digits and dots).
 */
export function ipv4Problem(a: string): string | undefined {
  if (IPV4.test(a)) return undefined;
  const parts = a.split('.');
  if (parts.length !== 4 || parts.some((p) => p === '')) return `an IPv4 address has four dot-separated numbers (found ${parts.length})`;
  const zero = parts.find((p) => /^0\d/.test(p));
  if (zero !== undefined) {
    const octal = parts.map((p) => (/^0\d+$/.test(p) && /^[0-7]+$/.test(p) ? parseInt(p, 8) : Number(p)));
    const read = octal.every((n) => n <= 255) ? `, so ${a} may reach ${octal.join('.')}` : '';
    return `an IPv4 address without leading zeros: resolvers read "${zero}" as an octal number${read}`;
  }
  return 'an IPv4 address whose four numbers are 0-255';
}

/**
 * Why an IPv4 address cannot be a host's address (something a connection, a DNAT rule or an A
 * record points at), or undefined. Loopback stays allowed: tests and single-host setups use it.
 */
export function hostIpv4Problem(a: string): string | undefined {
  const n = ipv4ToInt(a);
  if (n === undefined) return ipv4Problem(a);
  if (n === 0xffffffff) return 'a host address, not the limited broadcast address 255.255.255.255';
  if (n < 2 ** 24) return 'a host address, not one in 0.0.0.0/8 ("this network": a connection to 0.0.0.0 reaches the local machine)';
  const first = Math.floor(n / 2 ** 24);
  if (first >= 224 && first <= 239) return 'a host address, not a multicast address (224.0.0.0/4)';
  if (first >= 240) return 'a host address, not a reserved address (240.0.0.0/4)';
  return undefined;
}

/** A host name: dot-separated DNS labels; the last label is not all digits (that is a mistyped IPv4). */
export function isHostName(a: string): boolean {
  const labels = a.split('.');
  return a.length <= 253 && labels.every((l) => DNS_LABEL.test(l)) && !/^\d+$/.test(labels[labels.length - 1] ?? '');
}

/**
 * Why `a` is neither a usable host IPv4 address nor a host name, or undefined. Anything made of
 * digits and dots is read as an IPv4 attempt, never as a name: `010.0.0.1` is refused, not resolved.
 */
export function hostAddressProblem(a: string): string | undefined {
  if (/^[\d.]+$/.test(a)) return hostIpv4Problem(a);
  if (isHostName(a)) return undefined;
  if (a.length > 253) return `an IPv4 address or a DNS host name of at most 253 characters (found ${a.length})`;
  return 'an IPv4 address such as 192.0.2.10 or a DNS host name (lowercase letters, digits, "-" and ".")';
}

export interface Ipv4Subnet {
  network: number;
  prefix: number;
}

/** `a.b.c.d/len` parsed, host bits included (see subnetProblem), or undefined. */
export function parseCidr(c: string): Ipv4Subnet | undefined {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(c);
  const addr = m ? ipv4ToInt(m[1]!) : undefined;
  if (!m || addr === undefined || Number(m[2]) > 32) return undefined;
  return { network: addr, prefix: Number(m[2]) };
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff - (2 ** (32 - prefix) - 1)) >>> 0;
}

/**
 * Why `c` is not a subnet a bridge can use, or undefined. Host bits must be zero
 * (`10.0.0.5/24` names 10.0.0.0/24 ambiguously: MASQUERADE rules take the network), and the
 * prefix must hold containers yet not cover half the internet (a /0 MASQUERADE rewrites everything).
 */
export function subnetProblem(c: string, minPrefix = 8, maxPrefix = 30): string | undefined {
  const [addr, len, ...rest] = c.split('/');
  if (rest.length || addr === undefined || len === undefined || !/^\d{1,2}$/.test(len)) return 'an IPv4 subnet such as 10.107.115.0/24';
  const bad = ipv4Problem(addr);
  if (bad) return bad;
  const s = parseCidr(c);
  if (!s) return 'an IPv4 subnet whose prefix length is 0-32, such as 10.107.115.0/24';
  if (s.prefix < minPrefix || s.prefix > maxPrefix) return `an IPv4 subnet with a prefix length from /${minPrefix} to /${maxPrefix}`;
  const network = (s.network & maskOf(s.prefix)) >>> 0;
  if (network !== s.network) return `a network address with zero host bits (probably ${intToIpv4(network)}/${s.prefix})`;
  return undefined;
}
