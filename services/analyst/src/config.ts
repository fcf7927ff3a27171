import { loadWorkerConfig, type WorkerServiceConfig as WorkerConfig } from '@jetflow/worker';
import { int } from '@jetflow/config';
import { storageConfigFromEnv, type StorageConfig } from '@jetflow/storage';

export interface AnalystConfig extends WorkerConfig {
  /** S3 (datasets, claim-checked inputs, large reports): the standard AWS variables plus JETFLOW_S3_BUCKET. Unused in noop mode. */
  storage: StorageConfig;
  /** A report whose JSON is larger than this goes to S3 and the task returns its reference (JETFLOW_RESULT_INLINE_BYTES). */
  resultInlineBytes: number;
  /** Datasets (and claim-checked inputs) up to this many JSON bytes are cached in the jetflow_cache KV bucket; 0 turns the cache off (JETFLOW_DATASET_CACHE_MAX_BYTES). */
  datasetCacheMaxBytes: number;
  /** How long a cached dataset is served (JETFLOW_DATASET_CACHE_TTL_MS). */
  datasetCacheTtlMs: number;
}

export function loadConfig(env = process.env): Readonly<AnalystConfig> {
  const base = loadWorkerConfig(env, { subjects: 'jetflow.task.analyst.>', service: 'analyst', metricsPort: 9466 });
  return Object.freeze({
    ...base,
    storage: storageConfigFromEnv(env),
    // Three reports plus the dataset summaries stay well under the 1 MB of a KV value / NATS message.
    resultInlineBytes: int(env, 'JETFLOW_RESULT_INLINE_BYTES', 64 * 1024, { min: 0, max: 256 * 1024 }),
    // A KV value is one NATS message (max_payload, 1 MB by default).
    datasetCacheMaxBytes: int(env, 'JETFLOW_DATASET_CACHE_MAX_BYTES', 768 * 1024, { min: 0, max: 64 * 1024 * 1024 }),
    datasetCacheTtlMs: int(env, 'JETFLOW_DATASET_CACHE_TTL_MS', 300_000, { min: 1_000, max: 86_400_000 }),
  });
}
