/**
 * The worker-thread pool that runs dataset generators off the event loop, so the service keeps
 * acking and heartbeating while the CPU works.
 *
 * Two limits: `softSignal` aborts the plugin's ctx.signal (it stops at its next checkpoint and the
 * task fails with code `timeout` or `cancelled`); `signal` is the hard limit: piscina terminates the
 * thread (and starts a fresh one, which loads the model again) and run() rejects.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { DatasetResult, InputRecord } from './generators/types.js';
import type { GeneratorJob, TaskMeta, WorkerReply } from './pool-worker.js';

export type { TaskMeta } from './pool-worker.js';

export interface PoolOptions {
  /** Worker threads, all started (and their model loaded) at once. Default: os.availableParallelism(). */
  threads?: number;
  /** Tasks allowed to wait for a thread; beyond it run() rejects (the caller should fetch less). Default: unbounded. */
  maxQueue?: number;
  /** Called after every task that reached a thread, for metrics and logs. */
  onTaskDone?: (meta: TaskMeta & { ok: boolean }) => void;
}

export interface RunOptions {
  /** Hard limit / cancel: the thread running the task is terminated. */
  signal?: AbortSignal;
  /** Soft limit: seen by the plugin as ctx.signal. */
  softSignal?: AbortSignal;
}

export interface GeneratorPool {
  readonly threads: number;
  run(job: { plugin: string; records: InputRecord[] }, opts?: RunOptions): Promise<DatasetResult>;
  /** run(), plus where the task ran: the thread, and the ONNX sessions that thread has created so far. */
  runDetailed(job: { plugin: string; records: InputRecord[] }, opts?: RunOptions): Promise<{ result: DatasetResult; meta: TaskMeta }>;
  destroy(): Promise<void>;
}

/** pool-worker.js next to this file under dist, pool-worker.ts under tsx. */
function workerFile(): string {
  const js = new URL('./pool-worker.js', import.meta.url);
  return existsSync(fileURLToPath(js)) ? js.href : new URL('./pool-worker.ts', import.meta.url).href;
}

export function createPool(opts: PoolOptions = {}): GeneratorPool {
  const threads = Math.max(1, opts.threads ?? availableParallelism());
  const piscina = new Piscina<GeneratorJob, WorkerReply<DatasetResult>>({
    filename: workerFile(),
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Number.POSITIVE_INFINITY, // a thread holds a loaded model: never let it go idle-reaped
    ...(opts.maxQueue === undefined ? {} : { maxQueue: opts.maxQueue }),
  });
  const pool: GeneratorPool = {
    threads,
    async run(job, runOpts = {}) {
      return (await pool.runDetailed(job, runOpts)).result;
    },
    async runDetailed(job, runOpts = {}) {
      const { port1, port2 } = new MessageChannel();
      const onSoftAbort = () => port1.postMessage({ timeout: isTimeout(runOpts.softSignal?.reason) });
      if (runOpts.softSignal?.aborted) onSoftAbort();
      else runOpts.softSignal?.addEventListener('abort', onSoftAbort, { once: true });
      try {
        const reply = await piscina.run(
          { plugin: job.plugin, records: job.records, abortPort: port2 },
          { transferList: [port2], ...(runOpts.signal ? { signal: runOpts.signal } : {}) },
        );
        opts.onTaskDone?.({ ...reply.meta, ok: reply.ok });
        if (reply.ok) return { result: reply.result, meta: reply.meta };
        throw Object.assign(new Error(reply.error.message), { name: reply.error.name, code: reply.error.code });
      } catch (err) {
        if (runOpts.signal?.aborted && (err as Error | undefined)?.name === 'AbortError' && !('code' in (err as object))) {
          const reason: unknown = runOpts.signal.reason;
          throw Object.assign(new Error(isTimeout(reason) ? 'hard time limit reached: worker thread terminated' : 'task aborted: worker thread terminated', { cause: reason }), {
            name: 'AbortError',
            code: isTimeout(reason) ? 'timeout' : 'cancelled',
          });
        }
        throw err;
      } finally {
        runOpts.softSignal?.removeEventListener('abort', onSoftAbort);
        port1.close();
      }
    },
    destroy: () => piscina.destroy(),
  };
  return pool;
}

function isTimeout(reason: unknown): boolean {
  return reason instanceof Error && reason.name === 'TimeoutError';
}
