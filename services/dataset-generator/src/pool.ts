/**
 * The worker-thread pool that runs dataset generators off the event loop, so the service keeps
 * acking and heartbeating while the CPU works. The machinery (soft and hard limits, error codes
 * across threads) is @jetflow/worker's (createWorkerPool); this plugs in the generators' worker and types.
 */
import { createWorkerPool, workerFileNextTo, type PoolOptions, type WorkerPool } from '@jetflow/worker';
import type { DatasetResult, InputRecord } from './generators/types.js';
import type { GeneratorJob } from './pool-worker.js';

export type { PoolOptions, RunOptions, TaskMeta } from '@jetflow/worker';

export type GeneratorPool = WorkerPool<{ plugin: string; records: InputRecord[] }, DatasetResult>;

export function createPool(opts: PoolOptions = {}): GeneratorPool {
  return createWorkerPool({
    ...opts,
    // pool-worker.js next to this file under dist, pool-worker.ts under tsx.
    filename: workerFileNextTo(import.meta.url, 'pool-worker'),
    toJob: (job): Omit<GeneratorJob, 'abortPort'> => ({ plugin: job.plugin, records: job.records }),
  });
}
