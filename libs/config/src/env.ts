/**
 * Helpers for the per-service config.ts modules: the only code that reads process.env.
 * Blank means unset; an invalid value fails at start with a message naming the variable.
 */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

export function str(env: Env, name: string, def: string): string {
  const v = env[name]?.trim();
  return v ? v : def;
}

export function optStr(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

export function int(env: Env, name: string, def: number, opts: { min?: number; max?: number } = {}): number {
  const raw = env[name]?.trim();
  if (!raw) return def;
  if (!/^-?\d+$/.test(raw)) throw new ConfigError(name, `expected an integer, got "${raw}"`);
  const n = Number(raw);
  if (opts.min !== undefined && n < opts.min) throw new ConfigError(name, `must be >= ${opts.min}, got ${n}`);
  if (opts.max !== undefined && n > opts.max) throw new ConfigError(name, `must be <= ${opts.max}, got ${n}`);
  return n;
}

export function bool(env: Env, name: string, def: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (!raw) return def;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

export function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], def: T): T {
  const raw = env[name]?.trim();
  if (!raw) return def;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

/**
 * JETFLOW_REPLICAS: how many copies JetStream keeps of every stream and KV bucket (1 on a single
 * server, 3 on a three-node cluster so that losing a node loses nothing). At most 5, JetStream's limit.
 */
export function replicas(env: Env): number {
  return int(env, 'JETFLOW_REPLICAS', 1, { min: 1, max: 5 });
}

/** NATS_URL is a comma-separated list; the nats client wants an array. */
export function natsServers(env: Env): string[] {
  const raw = str(env, 'NATS_URL', 'nats://127.0.0.1:4222');
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const u of list) {
    if (!/^(nats|tls|ws|wss):\/\/[^\s]+$|^[\w.-]+:\d+$/.test(u)) throw new ConfigError('NATS_URL', `not a NATS server URL: "${u}"`);
  }
  return list;
}

/** Parses "a:b,c:d" pairs (JETFLOW_API_KEYS, JETFLOW_CALLBACK_SECRETS). */
export function pairs(env: Env, name: string): Array<[string, string]> {
  const raw = env[name]?.trim();
  if (!raw) return [];
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const i = item.indexOf(':');
      if (i <= 0 || i === item.length - 1) throw new ConfigError(name, `expected "tenant:value" pairs, got "${item}"`);
      const tenant = item.slice(0, i);
      if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(tenant)) throw new ConfigError(name, `invalid tenant name "${tenant}"`);
      return [tenant, item.slice(i + 1)] as [string, string];
    });
}

export function list(env: Env, name: string): string[] {
  const raw = env[name]?.trim();
  if (!raw) return [];
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
