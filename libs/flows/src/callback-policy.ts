import { BlockList, isIP } from 'node:net';
import { lookup } from 'node:dns/promises';

/**
 * Server-side request forgery guard for callback URLs: private, loopback, link-local and other
 * non-public targets are refused unless JETFLOW_CALLBACK_ALLOWLIST names the host or a CIDR holding it.
 */
const PRIVATE = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) PRIVATE.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['::ffff:0:0', 96]] as const) PRIVATE.addSubnet(net, bits, 'ipv6');

export class CallbackPolicy {
  private readonly hosts = new Set<string>();
  private readonly nets = new BlockList();

  constructor(allowlist: string[]) {
    for (const entry of allowlist) {
      const [addr, bits] = entry.split('/');
      const fam = isIP(addr ?? '');
      if (fam && bits !== undefined) this.nets.addSubnet(addr!, Number(bits), fam === 4 ? 'ipv4' : 'ipv6');
      else if (fam) this.nets.addAddress(addr!, fam === 4 ? 'ipv4' : 'ipv6');
      else this.hosts.add(entry.toLowerCase());
    }
  }

  static validateEntries(allowlist: string[]): string | undefined {
    for (const entry of allowlist) {
      const [addr, bits] = entry.split('/');
      if (bits !== undefined) {
        const fam = isIP(addr ?? '');
        const n = Number(bits);
        if (!fam || !Number.isInteger(n) || n < 0 || n > (fam === 4 ? 32 : 128)) return `bad CIDR "${entry}"`;
      } else if (!isIP(entry) && !/^[a-z0-9.-]+$/i.test(entry)) return `bad host "${entry}"`;
    }
    return undefined;
  }

  private ipAllowed(ip: string): boolean {
    const fam = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (this.nets.check(ip, fam)) return true;
    return !PRIVATE.check(ip, fam);
  }

  /** Cheap check at submission time (no DNS): literal addresses and localhost. */
  checkUrl(url: string): string | undefined {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return 'not a valid URL';
    }
    const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    if (this.hosts.has(host)) return undefined;
    if (isIP(host)) return this.ipAllowed(host) ? undefined : `target ${host} is not a public address and not in JETFLOW_CALLBACK_ALLOWLIST`;
    if (host === 'localhost' || host.endsWith('.localhost') || host.endsWith('.internal') || host.endsWith('.local')) {
      return `target ${host} is not public and not in JETFLOW_CALLBACK_ALLOWLIST`;
    }
    return undefined;
  }

  /** Full check at send time: every address the name resolves to must be allowed. */
  async checkResolved(url: string): Promise<string | undefined> {
    const quick = this.checkUrl(url);
    if (quick) return quick;
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '').toLowerCase();
    if (this.hosts.has(host) || isIP(host)) return undefined;
    const addrs = await lookup(host, { all: true });
    for (const a of addrs) if (!this.ipAllowed(a.address)) return `${host} resolves to ${a.address}, which is not public and not in JETFLOW_CALLBACK_ALLOWLIST`;
    return undefined;
  }
}
