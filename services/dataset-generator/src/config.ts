import { loadWorkerConfig, type WorkerServiceConfig as WorkerConfig } from '@jetflow/worker';
import { storageConfigFromEnv, type StorageConfig } from '@jetflow/storage';

export interface DatasetGeneratorConfig extends WorkerConfig {
  /** S3 (datasets, claim-checked inputs): the standard AWS variables plus JETFLOW_S3_BUCKET. Unused in noop mode. */
  storage: StorageConfig;
}

export function loadConfig(env = process.env): Readonly<DatasetGeneratorConfig> {
  const base = loadWorkerConfig(env, { subjects: 'jetflow.task.dataset.>', service: 'dataset-generator', metricsPort: 9465 });
  return Object.freeze({ ...base, storage: storageConfigFromEnv(env) });
}
