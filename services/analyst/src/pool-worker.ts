/**
 * Piscina worker thread entry: runs one analyzer job per call. The sentiment model is loaded once
 * per thread, starting at module load; tasks await that one load.
 *
 * No top-level await on purpose: on Node 20, tsx cannot hook ESM imports inside worker threads,
 * so under tsx piscina loads this file through require(), and require() refuses a module with
 * top-level await. (Compiled to dist/ it loads either way.)
 */
import { threadId, type MessagePort } from 'node:worker_threads';
import { loadSentimentModel, modelLoadCount } from '../../../libs/models/src/index.js';
import { analyzers } from './analyzers/index.js';
import type { Datasets, InputRecord, Report } from './analyzers/types.js';

// Preload; a failure surfaces in the first task (which retries the load), not as an unhandled rejection.
loadSentimentModel().catch(() => undefined);

export interface AnalyzerJob {
  plugin: string;
  records: InputRecord[];
  datasets?: Datasets;
  /** Set by pool.ts: a message on it aborts ctx.signal (the soft limit). */
  abortPort?: MessagePort;
}

export interface TaskMeta {
  plugin: string;
  threadId: number;
  durationMs: number;
  /** ONNX sessions this thread has created so far: stays at 1 however many tasks ran. */
  modelLoads: number;
}

/** Errors cross the thread boundary as data: piscina keeps only name and message, and callers match on code. */
export type WorkerReply<R> =
  | { ok: true; result: R; meta: TaskMeta }
  | { ok: false; error: { name: string; code: string; message: string }; meta: TaskMeta };

export default async function runJob(job: AnalyzerJob): Promise<WorkerReply<Report>> {
  const started = performance.now();
  const controller = new AbortController();
  job.abortPort?.once('message', (m: { timeout?: boolean }) =>
    controller.abort(m.timeout ? new DOMException('soft time limit reached', 'TimeoutError') : new DOMException('aborted', 'AbortError')),
  );
  const meta = (): TaskMeta => ({ plugin: job.plugin, threadId, durationMs: performance.now() - started, modelLoads: modelLoadCount() });
  try {
    await loadSentimentModel(); // the preloaded session (memoised), or a retry if the preload failed
    const plugin = analyzers.get(job.plugin);
    if (!plugin) throw Object.assign(new Error(`no analyzer named "${job.plugin}" (have: ${[...analyzers.keys()].join(', ')})`), { code: 'terminal' });
    if (!Array.isArray(job.records)) throw Object.assign(new Error('job.records must be an array'), { code: 'terminal' });
    const result = await plugin.analyze({ records: job.records, datasets: job.datasets ?? {} }, { signal: controller.signal });
    return { ok: true, result, meta: meta() };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const c: unknown = (e as Error & { code?: unknown }).code;
    return { ok: false, error: { name: e.name, code: typeof c === 'string' ? c : 'internal', message: e.message }, meta: meta() };
  } finally {
    job.abortPort?.close();
  }
}
