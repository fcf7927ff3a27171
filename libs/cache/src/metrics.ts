import { Counter, register as globalRegistry, type Registry } from 'prom-client';

export interface CacheCounters {
  hits: Counter<'bucket'>;
  misses: Counter<'bucket'>;
  errors: Counter<'bucket'>;
}

/**
 * The cache counters on `registry` (default: prom-client's global one). Reuses counters already
 * registered under these names, so creating several caches, or one per bucket, does not throw.
 */
export function cacheCounters(registry: Registry = globalRegistry): CacheCounters {
  return {
    hits: counter(registry, 'jetflow_cache_hits_total', 'Cache lookups answered from the KV bucket.'),
    misses: counter(registry, 'jetflow_cache_misses_total', 'Cache lookups that had to call the loader.'),
    errors: counter(registry, 'jetflow_cache_errors_total', 'Cache operations that failed (KV unreachable, timed out, undecodable value); the loader was used instead.'),
  };
}

function counter(registry: Registry, name: string, help: string): Counter<'bucket'> {
  const existing = registry.getSingleMetric(name);
  if (existing) {
    // Duck-typed: a second copy of prom-client would fail an instanceof check.
    if (typeof (existing as Partial<Counter<'bucket'>>).inc !== 'function' || 'dec' in existing || 'observe' in existing) {
      throw new Error(`metric ${name} is already registered with a different type`);
    }
    return existing;
  }
  return new Counter({ name, help, labelNames: ['bucket'], registers: [registry] });
}
