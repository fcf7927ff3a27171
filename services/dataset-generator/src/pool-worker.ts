/**
 * Piscina worker thread entry: runs one generator job per call (see createJobRunner in @jetflow/worker/threads). The
 * embedding model is loaded once per thread, starting at module load; tasks await that one load.
 *
 * No top-level await on purpose: on Node 20, tsx cannot hook ESM imports inside worker threads,
 * so under tsx piscina loads this file through require(), and require() refuses a module with
 * top-level await. (Compiled to dist/ it loads either way.)
 */
import { loadEmbeddingModel, modelLoadCount } from '@jetflow/models';
import { createJobRunner, nativeCall, type WorkerJob } from '@jetflow/worker/threads';
import { generators } from './generators/index.js';
import { chunkGenerators } from './generators/insights-chunks.js';
import type { DatasetGenerator, DatasetResult, InputRecord } from './generators/types.js';

export type { TaskMeta, WorkerReply } from '@jetflow/worker/threads';

export interface GeneratorJob extends WorkerJob {
  records: InputRecord[];
}

export default createJobRunner<GeneratorJob, DatasetGenerator, DatasetResult>({
  kind: 'dataset generator',
  // The whole-batch generators (insights v1, and anyone's stage flows) and the mapped flow's chunk and merge steps.
  plugins: new Map([...generators, ...chunkGenerators]),
  // Every onnxruntime call marked, so the pool never terminates this thread inside one (that aborts the process).
  loadModel: () => loadEmbeddingModel({ guard: nativeCall }),
  modelLoads: modelLoadCount,
  run: (plugin, job, ctx) => plugin.generate(job.records, ctx),
});
