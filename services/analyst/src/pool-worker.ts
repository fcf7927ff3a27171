/**
 * Piscina worker thread entry: runs one analyzer job per call (see createJobRunner in @jetflow/worker/threads). The
 * sentiment model is loaded once per thread, starting at module load; tasks await that one load.
 *
 * No top-level await on purpose: on Node 20, tsx cannot hook ESM imports inside worker threads,
 * so under tsx piscina loads this file through require(), and require() refuses a module with
 * top-level await. (Compiled to dist/ it loads either way.)
 */
import { loadSentimentModel, modelLoadCount } from '@jetflow/models';
import { CHAOS_BUSY, busyWork, createJobRunner, nativeCall, type WorkerJob } from '@jetflow/worker/threads';
import { analyzers } from './analyzers/index.js';
import { score } from './analyzers/sentiment.js';
import type { Analyzer, Datasets, InputRecord, Report } from './analyzers/types.js';
import { withDecoded, type EncodedDatasets } from './datasets.js';

export type { TaskMeta, WorkerReply } from '@jetflow/worker/threads';

export interface AnalyzerJob extends WorkerJob {
  records: InputRecord[];
  datasets?: Datasets;
  /** Datasets as stored (gzip JSON lines), parsed here in the thread: see datasets.ts. */
  encoded?: EncodedDatasets;
}

export default createJobRunner<AnalyzerJob, Analyzer, Report>({
  kind: 'analyzer',
  // The analyzers, and the per-chunk classifier of the mapped insights flow (jetflow.task.analyst.score).
  plugins: new Map([...analyzers, [score.name, score]]),
  // Every onnxruntime call marked, so the pool never terminates this thread inside one (that aborts the process).
  loadModel: () => loadSentimentModel({ guard: nativeCall }),
  modelLoads: modelLoadCount,
  run: (plugin, job, ctx) => plugin.analyze({ records: job.records, datasets: withDecoded(job.datasets ?? {}, job.encoded) }, ctx),
  // The fault suite's CPU-bound task (jetflow.task.test.busy), with JETFLOW_TEST_PLUGINS=1 only.
  testPlugins: new Map<string, Analyzer>([
    [CHAOS_BUSY, { name: CHAOS_BUSY, description: 'fault injection: keeps a thread busy', analyze: (input, ctx) => busyWork(input.records, ctx.signal) }],
  ]),
});
