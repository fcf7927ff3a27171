import { runWorkerService } from '@jetflow/worker';
import { loadConfig } from './config.js';

// Noop mode answers at once; it loads neither the AWS SDK nor the model runtime (memory, start time).
const NOOP_OUTPUT = { outputJson: new TextEncoder().encode('{"noop":true}') };

const cfg = loadConfig();
await runWorkerService('dataset-generator', cfg, async (log) => {
  if (cfg.mode === 'noop') return { handler: async () => NOOP_OUTPUT };
  const [{ createStorage }, { datasetHandler }, { createPool }] = await Promise.all([import('@jetflow/storage'), import('./handlers/dataset.js'), import('./pool.js')]);
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
