import type { KV, KvEntry, NatsConnection } from 'nats';
import type { Registry } from 'prom-client';
import { isCasConflict } from '@jetflow/messaging';
import { toKvKey } from './keys.js';
import { cacheCounters, type CacheCounters } from './metrics.js';

export const DEFAULT_CACHE_BUCKET = 'jetflow_cache';

/** The subset of a pino logger the cache uses. */
export interface CacheLogger {
  warn(obj: object, msg: string): void;
}

export interface KvCacheOptions {
  nc: NatsConnection;
  /** Default `jetflow_cache`. */
  bucket?: string;
  /**
   * How long an entry is served. Enforced on read from the entry's write time, so it holds even when
   * the bucket already exists with a longer max_age; the bucket's max_age (set to this when the cache
   * creates the bucket) is what deletes old entries.
   */
  ttlMs: number;
  /** Default prom-client's global registry. */
  registry?: Registry;
  /** A KV call slower than this counts as failed and the loader is used. Default 500 ms. */
  timeoutMs?: number;
  /** After a failed KV call, skip the KV for this long (the loader answers). Default 2000 ms. */
  retryAfterMs?: number;
  /** Replicas when the cache creates the bucket. Default 1. */
  replicas?: number;
  logger?: CacheLogger;
}

export interface KvCacheStats {
  /** Answered from the KV bucket. */
  hits: number;
  /** Looked up, not found (or expired): the loader was called. */
  misses: number;
  /** KV unavailable, timed out or held an undecodable value: the loader was called. */
  errors: number;
  /** Joined a lookup already in flight for the same key in this process. */
  coalesced: number;
}

export interface KvCache {
  /**
   * The cached value of `key`, or the loader's (then cached). Concurrent calls for one key share one
   * lookup and at most one loader call. Only the loader's own failure reaches the caller: any KV
   * problem falls back to the loader. An `undefined` result is returned but not cached.
   */
  getOrLoad<T>(key: string, loader: () => Promise<T>): Promise<T>;
  /** Removes `key`; a load in flight for it will not be cached. Returns false if the KV was unreachable. */
  invalidate(key: string): Promise<boolean>;
  stats(): KvCacheStats;
}

interface Flight {
  promise: Promise<unknown>;
  /** Set by invalidate(): the value being loaded may predate the change, so do not cache it. */
  stale: boolean;
}

/**
 * Cache-aside over a JetStream KV bucket with a TTL. Values are JSON. Writes are compare-and-set
 * against the revision seen at lookup, so a load that raced an invalidation (or another writer) does
 * not overwrite the newer state. Creating the cache does no I/O: the bucket is opened (or created) on
 * first use, and a KV outage at any point only means more loader calls.
 */
export function createKvCache(opts: KvCacheOptions): KvCache {
  const bucket = opts.bucket ?? DEFAULT_CACHE_BUCKET;
  if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) {
    throw new Error(`createKvCache: ttlMs must be a positive number of milliseconds, got ${opts.ttlMs}`);
  }
  const ttlMs = opts.ttlMs;
  const timeoutMs = opts.timeoutMs ?? 500;
  const retryAfterMs = opts.retryAfterMs ?? 2_000;
  const counters: CacheCounters = cacheCounters(opts.registry);
  const hitCounter = counters.hits.labels({ bucket });
  const missCounter = counters.misses.labels({ bucket });
  const errorCounter = counters.errors.labels({ bucket });
  const stats: KvCacheStats = { hits: 0, misses: 0, errors: 0, coalesced: 0 };
  const flights = new Map<string, Flight>();
  let kvPromise: Promise<KV> | undefined;
  let skipUntil = 0;

  const hit = () => {
    stats.hits++;
    hitCounter.inc();
  };
  const miss = () => {
    stats.misses++;
    missCounter.inc();
  };
  const error = () => {
    stats.errors++;
    errorCounter.inc();
  };

  const failed = (op: string, err: unknown) => {
    error();
    const tripping = Date.now() >= skipUntil;
    skipUntil = Date.now() + retryAfterMs;
    kvPromise = undefined; // re-open after an outage: the handle may be stale
    if (tripping) {
      opts.logger?.warn({ err, bucket, op }, `cache bucket ${bucket} unavailable; using loaders for ${retryAfterMs} ms`);
    }
  };

  const openKv = (): Promise<KV> => {
    kvPromise ??= opts.nc.jetstream({ timeout: timeoutMs }).views.kv(bucket, { ttl: ttlMs, history: 1, replicas: opts.replicas ?? 1, timeout: timeoutMs });
    return kvPromise;
  };

  /** The KV handle, or undefined when the KV is known to be down (counted as an error). */
  const kvOrSkip = async (op: string): Promise<KV | undefined> => {
    if (opts.nc.isClosed() || Date.now() < skipUntil) {
      error();
      return undefined;
    }
    try {
      return await withTimeout(openKv(), timeoutMs, `opening KV bucket ${bucket}`);
    } catch (err) {
      failed(op, err);
      return undefined;
    }
  };

  async function lookupOrLoad<T>(kvKey: string, loader: () => Promise<T>, flight: Flight): Promise<T> {
    const kv = await kvOrSkip('get');
    if (!kv) return loader();

    let entry: KvEntry | null;
    try {
      entry = await withTimeout(kv.get(kvKey), timeoutMs, `KV get ${bucket}/${kvKey}`);
    } catch (err) {
      failed('get', err);
      return loader();
    }

    if (entry && entry.operation === 'PUT' && Date.now() - entry.created.getTime() < ttlMs) {
      try {
        const value = JSON.parse(new TextDecoder().decode(entry.value)) as T;
        hit();
        return value;
      } catch (err) {
        // Written by something else or truncated: reload and overwrite.
        error();
        opts.logger?.warn({ err, bucket, key: kvKey }, 'cache entry is not valid JSON; reloading');
      }
    } else {
      miss();
    }

    const value = await loader();
    if (value === undefined || flight.stale) return value;
    let data: Uint8Array;
    try {
      data = new TextEncoder().encode(JSON.stringify(value));
    } catch (err) {
      // Not JSON-serialisable (a BigInt, a cycle): serve it uncached rather than fail the caller.
      error();
      opts.logger?.warn({ err, bucket, key: kvKey }, 'cache value is not JSON-serialisable; not cached');
      return value;
    }
    const maxPayload = opts.nc.info?.max_payload ?? 1024 * 1024;
    if (data.byteLength > maxPayload - 4096) return value; // too big for one message: serve uncached

    try {
      // previousSeq 0 means "the key has no entry": the same guard for a first write.
      await withTimeout(kv.put(kvKey, data, { previousSeq: entry?.revision ?? 0 }), timeoutMs, `KV put ${bucket}/${kvKey}`);
    } catch (err) {
      // A lost compare-and-set: someone else wrote the key since we read it; theirs stands.
      if (!isCasConflict(err)) failed('put', err);
    }
    return value;
  }

  return {
    getOrLoad<T>(key: string, loader: () => Promise<T>): Promise<T> {
      const kvKey = toKvKey(key);
      const current = flights.get(kvKey);
      if (current) {
        stats.coalesced++;
        return current.promise as Promise<T>;
      }
      const flight: Flight = { promise: Promise.resolve(), stale: false };
      const promise = lookupOrLoad(kvKey, loader, flight).finally(() => {
        if (flights.get(kvKey) === flight) flights.delete(kvKey);
      });
      flight.promise = promise;
      flights.set(kvKey, flight);
      return promise;
    },

    async invalidate(key: string): Promise<boolean> {
      const kvKey = toKvKey(key);
      const flight = flights.get(kvKey);
      if (flight) {
        flight.stale = true;
        flights.delete(kvKey);
      }
      const kv = await kvOrSkip('delete');
      if (!kv) return false;
      try {
        await withTimeout(kv.delete(kvKey), timeoutMs, `KV delete ${bucket}/${kvKey}`);
        return true;
      } catch (err) {
        failed('delete', err);
        return false;
      }
    },

    stats: () => ({ ...stats }),
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  // race() subscribes to `promise`, so its late rejection is not unhandled.
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
