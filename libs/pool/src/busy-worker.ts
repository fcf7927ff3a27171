/**
 * A pool worker serving only the chaos-busy plugin (chaos.ts) and no model: for tests of the pool and
 * of the worker runtime over a real pool (createWorkerPool({ filename: workerFileNextTo(import.meta.url, 'busy-worker') })).
 * No top-level await (see index.ts).
 */
import { CHAOS_BUSY, busyWork, type BusyReport } from './chaos.js';
import { createJobRunner, type BusyJob } from './index.js';

export default createJobRunner<BusyJob, string, BusyReport>({
  kind: 'plugin',
  plugins: new Map([[CHAOS_BUSY, CHAOS_BUSY]]),
  loadModel: async () => undefined,
  modelLoads: () => 0,
  run: (_plugin, job, ctx) => busyWork(job.records, ctx.signal),
});
