import { runWorkerService } from '../../../libs/messaging/src/index.js';
import { createStorage } from '../../../libs/storage/src/index.js';
import { loadConfig } from './config.js';
import { NOOP_OUTPUT, datasetHandler } from './handlers/dataset.js';
import { createPool } from './pool.js';

const cfg = loadConfig();
await runWorkerService('dataset-generator', cfg, async (log) => {
  if (cfg.mode === 'noop') return { handler: async () => NOOP_OUTPUT };
  const storage = createStorage(cfg.storage);
  try {
    await storage.objects.ensureBucket();
  } catch (err) {
    storage.close();
    throw new Error(`dataset-generator: S3 bucket ${storage.objects.bucket} is not usable (AWS_ENDPOINT_URL_S3, AWS_REGION, JETFLOW_S3_BUCKET): ${(err as Error).message}`, { cause: err });
  }
  // Every thread starts (and loads its model) now, not on the first task.
  const pool = createPool({ threads: cfg.threads });
  log.info({ threads: pool.threads, bucket: storage.objects.bucket }, 'generator pool started');
  return {
    handler: datasetHandler({ pool, objects: storage.objects, instance: cfg.instanceId }),
    close: async () => {
      await pool.destroy();
      storage.close();
    },
  };
});
