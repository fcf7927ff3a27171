export { createKvCache, DEFAULT_CACHE_BUCKET, type CacheLogger, type KvCache, type KvCacheOptions, type KvCacheStats } from './kv-cache.js';
export { MAX_KV_KEY_LENGTH, toKvKey } from './keys.js';
export { cacheCounters, type CacheCounters } from './metrics.js';
