import { ConfigError, type Env } from './env.js';

/** What one tenant may do. `Infinity` means no limit (`off`). */
export interface TenantLimit {
  /** Submissions per second (POST /v1/flows, SubmitFlow) per ingest replica: the token bucket's refill rate. */
  rps: number;
  /** Submissions allowed at once after a quiet spell: the token bucket's size. */
  burst: number;
  /** Flows accepted and not finished (queued in the ingest stream or running). */
  inflight: number;
  /** Share of the orchestrator's starts under overload, relative to the other tenants' weights. */
  weight: number;
}

/** Generous: far above what one tenant of a default deployment reaches (docs/PERFORMANCE.md). */
export const DEFAULT_TENANT_LIMIT: Readonly<TenantLimit> = Object.freeze({ rps: 5_000, burst: 5_000, inflight: 50_000, weight: 1 });

const VAR = 'JETFLOW_TENANT_LIMITS';
const TENANT = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const KEYS = ['rps', 'burst', 'inflight', 'weight'] as const;
type Key = (typeof KEYS)[number];
const MAX: Record<Key, number> = { rps: 1_000_000, burst: 10_000_000, inflight: 100_000_000, weight: 1_000 };

/** The limits of every tenant: the named ones, and `*` (or the defaults) for the rest. */
export class TenantLimits {
  constructor(
    private readonly named: ReadonlyMap<string, Readonly<TenantLimit>>,
    readonly fallback: Readonly<TenantLimit> = DEFAULT_TENANT_LIMIT,
  ) {}

  of(tenant: string): Readonly<TenantLimit> {
    return this.named.get(tenant) ?? this.fallback;
  }

  /** The tenants the variable names (the orchestrator creates their ingest consumers at start). */
  tenants(): string[] {
    return [...this.named.keys()];
  }
}

/**
 * JETFLOW_TENANT_LIMITS: `tenant=key:value,...;tenant=...`, with `*` for every tenant not named.
 * Keys: rps (a number, e.g. 0.5), burst, inflight (whole numbers), weight (1-1000); `off` lifts rps,
 * burst or inflight. A key left out comes from `*`, then from the defaults; burst defaults to rps.
 *   JETFLOW_TENANT_LIMITS='acme=rps:100,inflight:500,weight:2;*=rps:1000,inflight:10000'
 */
export function tenantLimits(env: Env): TenantLimits {
  const raw = env[VAR]?.trim();
  if (!raw) return new TenantLimits(new Map());
  const specs = new Map<string, Partial<TenantLimit>>();
  for (const entry of raw
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new ConfigError(VAR, `expected "tenant=key:value,..." entries separated by ";", got "${entry}"`);
    const name = entry.slice(0, eq).trim();
    if (name !== '*' && !TENANT.test(name)) throw new ConfigError(VAR, `invalid tenant name "${name}" (lowercase letters, digits, - and _, at most 63; * for every other tenant)`);
    if (specs.has(name)) throw new ConfigError(VAR, `tenant "${name}" is listed twice`);
    specs.set(name, parseSpec(name, entry.slice(eq + 1)));
  }
  const star = specs.get('*') ?? {};
  const fallback = complete('*', star, DEFAULT_TENANT_LIMIT);
  const named = new Map<string, Readonly<TenantLimit>>();
  for (const [name, spec] of specs) if (name !== '*') named.set(name, complete(name, spec, fallback));
  return new TenantLimits(named, fallback);
}

function parseSpec(tenant: string, spec: string): Partial<TenantLimit> {
  const out: Partial<TenantLimit> = {};
  const items = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!items.length) throw new ConfigError(VAR, `tenant "${tenant}" has no limits; expected e.g. "${tenant}=rps:100,inflight:500"`);
  for (const item of items) {
    const [k, v, extra] = item.split(':').map((s) => s.trim());
    if (!k || v === undefined || extra !== undefined) throw new ConfigError(VAR, `tenant "${tenant}": expected key:value, got "${item}"`);
    if (!(KEYS as readonly string[]).includes(k)) throw new ConfigError(VAR, `tenant "${tenant}": unknown key "${k}" (known: ${KEYS.join(', ')})`);
    const key = k as Key;
    if (key in out) throw new ConfigError(VAR, `tenant "${tenant}": ${key} is given twice`);
    out[key] = value(tenant, key, v);
  }
  return out;
}

function value(tenant: string, key: Key, v: string): number {
  if (v === 'off') {
    if (key === 'weight') throw new ConfigError(VAR, `tenant "${tenant}": weight cannot be off; give 1 to ${MAX.weight}`);
    return Infinity;
  }
  const ok = key === 'rps' ? /^\d+(\.\d+)?$/.test(v) : /^\d+$/.test(v);
  const n = Number(v);
  if (!ok || n <= 0 || n > MAX[key]) {
    const what = key === 'rps' ? 'a number' : 'a whole number';
    throw new ConfigError(VAR, `tenant "${tenant}": ${key} must be ${what} above 0 and at most ${MAX[key]}${key === 'weight' ? '' : ', or off'}, got "${v}"`);
  }
  return n;
}

/** Fills what an entry leaves out; burst follows the entry's own rps unless given. */
function complete(tenant: string, spec: Partial<TenantLimit>, base: Readonly<TenantLimit>): Readonly<TenantLimit> {
  const rps = spec.rps ?? base.rps;
  const burst = spec.burst ?? (spec.rps !== undefined ? Math.max(1, Math.ceil(rps)) : base.burst);
  if (rps === Infinity && spec.burst !== undefined && spec.burst !== Infinity) throw new ConfigError(VAR, `tenant "${tenant}": burst needs an rps limit`);
  return Object.freeze({ rps, burst: rps === Infinity ? Infinity : burst, inflight: spec.inflight ?? base.inflight, weight: spec.weight ?? base.weight });
}
