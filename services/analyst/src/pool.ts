/**
 * The worker-thread pool that runs analyzers off the event loop, so the service keeps
 * acking and heartbeating while the CPU works. The machinery (soft and hard limits, error codes
 * across threads) is @jetflow/worker's (createWorkerPool); this plugs in the analyst's worker and types.
 */
import { createWorkerPool, workerFileNextTo, type PoolOptions, type WorkerPool } from '@jetflow/worker';
import type { Datasets, InputRecord, Report } from './analyzers/types.js';
import type { EncodedDatasets } from './datasets.js';
import type { AnalyzerJob } from './pool-worker.js';

export type { PoolOptions, RunOptions, TaskMeta } from '@jetflow/worker';

export type AnalystPool = WorkerPool<{ plugin: string; records: InputRecord[]; datasets?: Datasets; encoded?: EncodedDatasets }, Report>;

export function createPool(opts: PoolOptions = {}): AnalystPool {
  return createWorkerPool({
    ...opts,
    // pool-worker.js next to this file under dist, pool-worker.ts under tsx.
    filename: workerFileNextTo(import.meta.url, 'pool-worker'),
    toJob: (job): Omit<AnalyzerJob, 'abortPort'> => ({ plugin: job.plugin, records: job.records, datasets: job.datasets ?? {}, ...(job.encoded ? { encoded: job.encoded } : {}) }),
  });
}
