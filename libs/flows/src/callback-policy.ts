import { BlockList, isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

/**
 * Server-side request forgery guard for callback URLs: private, loopback, link-local and other
 * non-public targets are refused unless JETFLOW_CALLBACK_ALLOWLIST names the host or a CIDR holding it.
 * IPv6 forms that carry an IPv4 address (mapped, translated, NAT64, 6to4, Teredo) are judged by that
 * address too, and the deprecated IPv4-compatible form (`::127.0.0.1`) is always refused.
 */

/** One resolved address of a callback host. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to all its addresses (dns.lookup with all: true, or a test's resolver). */
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

/** Where a callback goes: the checked address to connect to, or why it may not. */
export type CallbackTarget = { ok: true; host: string; address: ResolvedAddress } | { ok: false; reason: string };

const ipv4Of = (b: number[], at: number) => b.slice(at, at + 4).join('.');

/**
 * An IPv6 address in the WHATWG URL parser's canonical form (`::127.0.0.1` → `::7f00:1`): ipaddr.js reads
 * `::a.b.c.d` as `::ffff:a.b.c.d`, so it only ever sees hex groups.
 */
function canonicalV6(ip: string): string | undefined {
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return undefined; // a zone id (fe80::1%eth0) or other text URL hosts cannot carry
  }
}

/** Why an address is not a public unicast address, or undefined when it is one. */
export function nonPublicReason(ip: string): string | undefined {
  const fam = isIP(ip);
  const text = fam === 6 ? canonicalV6(ip) : fam === 4 ? ip : undefined;
  if (!text || !ipaddr.isValid(text)) return 'not an IP address';
  const a = ipaddr.parse(text);
  if (a.kind() === 'ipv4') {
    const r = a.range();
    return r === 'unicast' ? undefined : `IPv4 ${r}`;
  }
  const v6 = a as ipaddr.IPv6;
  const b = v6.toByteArray();
  const r = v6.range();
  const embedded = (what: string, ...v4: string[]) => {
    for (const x of v4) {
      const why = nonPublicReason(x);
      if (why) return `${what} of ${x} (${why})`;
    }
    return undefined;
  };
  switch (r) {
    case 'unicast':
      // ::a.b.c.d (IPv4-compatible, deprecated): nothing legitimate uses it, and stacks treat it differently.
      return b.slice(0, 12).every((x) => x === 0) ? `IPv4-compatible IPv6 (deprecated) of ${ipv4Of(b, 12)}` : undefined;
    case 'ipv4Mapped':
      return embedded('IPv4-mapped IPv6', ipv4Of(b, 12));
    case 'rfc6145':
      return embedded('IPv4-translated IPv6', ipv4Of(b, 12));
    case 'rfc6052':
      // 64:ff9b:1::/48 is for local NAT64 deployments (RFC 8215): inside by definition.
      if (b[4] === 0 && b[5] === 1) return 'local-use NAT64 IPv6';
      return embedded('NAT64 IPv6', ipv4Of(b, 12));
    case '6to4':
      return embedded('6to4 IPv6', ipv4Of(b, 2));
    case 'teredo':
      // Server address in bits 32-63, the client's inverted in the last 32.
      return embedded(
        'Teredo IPv6',
        ipv4Of(b, 4),
        b
          .slice(12, 16)
          .map((x) => x ^ 0xff)
          .join('.'),
      );
    default:
      return `IPv6 ${r}`;
  }
}

/** Host of a URL as compared and resolved: no brackets, lower case, no trailing dot. */
const hostOf = (u: URL) =>
  u.hostname
    .replace(/^\[|\]$/g, '')
    .toLowerCase()
    .replace(/\.$/, '');

export class CallbackPolicy {
  private readonly hosts = new Set<string>();
  private readonly nets = new BlockList();

  constructor(allowlist: string[]) {
    for (const entry of allowlist) {
      const [addr, bits] = entry.split('/');
      const fam = isIP(addr ?? '');
      if (fam && bits !== undefined) this.nets.addSubnet(addr!, Number(bits), fam === 4 ? 'ipv4' : 'ipv6');
      else if (fam) this.nets.addAddress(addr!, fam === 4 ? 'ipv4' : 'ipv6');
      else this.hosts.add(entry.toLowerCase().replace(/\.$/, ''));
    }
  }

  static validateEntries(allowlist: string[]): string | undefined {
    for (const entry of allowlist) {
      const [addr, bits] = entry.split('/');
      if (bits !== undefined) {
        const fam = isIP(addr ?? '');
        const n = Number(bits);
        if (!fam || !/^\d{1,3}$/.test(bits) || n > (fam === 4 ? 32 : 128)) return `bad CIDR "${entry}"`;
      } else if (!isIP(entry) && !/^[a-z0-9.-]+$/i.test(entry)) return `bad host "${entry}"`;
    }
    return undefined;
  }

  /** Why this address may not be a callback target, or undefined. The allowlist's CIDRs win (an IPv4 rule also covers its ::ffff: form). */
  whyRefused(ip: string): string | undefined {
    const fam = isIP(ip);
    if (!fam) return 'not an IP address';
    if (this.nets.check(ip, fam === 4 ? 'ipv4' : 'ipv6')) return undefined;
    return nonPublicReason(ip);
  }

  /** Check at submission time (no DNS): the scheme, literal addresses in any spelling the URL parser accepts, and local names. */
  checkUrl(url: string): string | undefined {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return 'not a valid URL';
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must be http or https';
    // The WHATWG parser has already turned 0x7f.1, 2130706433, 0177.0.0.1 and [::ffff:127.0.0.1] into canonical addresses.
    const host = hostOf(u);
    if (this.hosts.has(host)) return undefined;
    if (isIP(host)) {
      const why = this.whyRefused(host);
      return why ? `target ${host} is not a public address (${why}) and not in JETFLOW_CALLBACK_ALLOWLIST` : undefined;
    }
    if (host === 'localhost' || host.endsWith('.localhost') || host.endsWith('.internal') || host.endsWith('.local')) {
      return `target ${host} is not public and not in JETFLOW_CALLBACK_ALLOWLIST`;
    }
    return undefined;
  }

  /**
   * At send time: resolves the host once, checks every address it has, and names the one to connect
   * to. The sender must connect to exactly that address (a second lookup could answer differently:
   * DNS rebinding). A resolver failure rejects (worth a retry); a refusal is `ok: false`.
   */
  async target(url: string, resolve: Resolver = systemResolver): Promise<CallbackTarget> {
    const quick = this.checkUrl(url);
    if (quick) return { ok: false, reason: quick };
    const host = hostOf(new URL(url));
    const fam = isIP(host);
    if (fam) return { ok: true, host, address: { address: host, family: fam === 6 ? 6 : 4 } };
    const addrs = await resolve(host);
    if (addrs.length === 0) return { ok: false, reason: `${host} resolves to no address` };
    // A host the allowlist names is trusted with whatever it resolves to; any other must resolve to allowed addresses only.
    if (!this.hosts.has(host)) {
      for (const a of addrs) {
        const why = this.whyRefused(a.address);
        if (why) return { ok: false, reason: `${host} resolves to ${a.address}, which is not a public address (${why}) and not in JETFLOW_CALLBACK_ALLOWLIST` };
      }
    }
    return { ok: true, host, address: addrs[0]! };
  }
}
