import { runWorkerService } from '@jetflow/worker';
import { loadConfig } from './config.js';
import { chaosHandler, chaosTasks } from './handlers/chaos.js';

// Noop mode answers at once; it loads neither the AWS SDK nor the model runtime (memory, start time).
const NOOP_OUTPUT = { outputJson: new TextEncoder().encode('{"noop":true}') };

const cfg = loadConfig();
// Fault-injection tasks (JETFLOW_TEST_PLUGINS=1) run in any mode.
const isChaos = (subject: string) => cfg.testPlugins && subject.startsWith('jetflow.task.test.');

await runWorkerService('analyst', cfg, async (log, nc) => {
  if (cfg.mode === 'noop') return { handler: async (task, ctx) => (isChaos(task.subject) ? chaosHandler(task, ctx) : NOOP_OUTPUT) };
  const [{ createStorage }, { analystHandler }, { createPool }, { createKvCache }] = await Promise.all([
    import('@jetflow/storage'),
    import('./handlers/analyze.js'),
    import('./pool.js'),
    import('@jetflow/cache'),
  ]);
  const storage = createStorage(cfg.storage);
  try {
    await storage.objects.ensureBucket();
  } catch (err) {
    storage.close();
    throw new Error(`analyst: S3 bucket ${storage.objects.bucket} is not usable (AWS_ENDPOINT_URL_S3, AWS_REGION, JETFLOW_S3_BUCKET): ${(err as Error).message}`, { cause: err });
  }
  // Every thread starts (and loads its model) now, not on the first task.
  const pool = createPool({ threads: cfg.threads, testPlugins: cfg.testPlugins });
  const cache = cfg.datasetCacheMaxBytes > 0 ? createKvCache({ nc, ttlMs: cfg.datasetCacheTtlMs, logger: log }) : undefined;
  log.info({ threads: pool.threads, bucket: storage.objects.bucket, cache: cache ? 'jetflow_cache' : 'off' }, 'analyst pool started');
  const analyse = analystHandler({
    pool,
    objects: storage.objects,
    ...(cache ? { cache } : {}),
    cacheMaxBytes: cfg.datasetCacheMaxBytes,
    resultInlineBytes: cfg.resultInlineBytes,
    instance: cfg.instanceId,
  });
  const chaos = chaosTasks({ pool });
  return {
    handler: async (task, ctx) => (isChaos(task.subject) ? chaos(task, ctx) : analyse(task, ctx)),
    close: async () => {
      await pool.destroy();
      storage.close();
    },
  };
});
