/**
 * The worker-thread pool that runs plugins (dataset generators, analyzers) off the event loop, so
 * a service keeps acking and heartbeating while the CPU works. Both halves live here: the main
 * thread's createWorkerPool(), and the worker thread's createJobRunner() that a service's
 * pool-worker.ts default-exports with its registry plugged in.
 *
 * Two limits: `softSignal` aborts the plugin's ctx.signal (it stops at its next checkpoint and the
 * task fails with code `timeout` or `cancelled`); `signal` is the hard limit: piscina terminates the
 * thread (and starts a fresh one, which loads the model again) and run() rejects; never while that
 * thread is inside onnxruntime (see nativeCall: terminating one there aborts the process). A job waits in
 * piscina's queue while every thread is busy: `onStart` says when a thread starts it, so the caller's
 * time limits can count running time only.
 *
 * No top-level await in this module on purpose: on Node 20, tsx cannot hook ESM imports inside
 * worker threads, so under tsx piscina loads a pool-worker.ts (and so this file) through require(),
 * and require() refuses a module with top-level await. (Compiled to dist/ it loads either way.)
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MessageChannel, threadId, workerData, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { InputRecord } from '@jetflow/plugins';

/** What every job sent to a worker carries; a service's job type adds its own fields. */
export interface WorkerJob {
  plugin: string;
  records: readonly unknown[];
  /** Set by the pool: a message on it aborts ctx.signal (the soft limit); the thread posts `{ started: true }` on it. */
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
export type WorkerReply<R> = { ok: true; result: R; meta: TaskMeta } | { ok: false; error: { name: string; code: string; message: string }; meta: TaskMeta };

// ---------------------------------------------------------------------------------------------
// Main thread

export interface PoolOptions {
  /** Worker threads, all started (and their model loaded) at once. Default: os.availableParallelism(). */
  threads?: number;
  /** Tasks allowed to wait for a thread; beyond it run() rejects (the caller should fetch less). Default: unbounded. */
  maxQueue?: number;
  /** Called after every task that reached a thread, for metrics and logs. */
  onTaskDone?: (meta: TaskMeta & { ok: boolean }) => void;
  /** Threads also serve the runner's fault-injection plugins (JETFLOW_TEST_PLUGINS; see createJobRunner). */
  testPlugins?: boolean;
}

export interface RunOptions {
  /** Hard limit / cancel: the thread running the task is terminated. */
  signal?: AbortSignal;
  /** Soft limit: seen by the plugin as ctx.signal. */
  softSignal?: AbortSignal;
  /** Called when a thread starts the job (after any wait in the queue, and the model load of a fresh thread). */
  onStart?: () => void;
}

export interface WorkerPool<In, R> {
  readonly threads: number;
  run(job: In, opts?: RunOptions): Promise<R>;
  /** run(), plus where the task ran: the thread, and the ONNX sessions that thread has created so far. */
  runDetailed(job: In, opts?: RunOptions): Promise<{ result: R; meta: TaskMeta }>;
  destroy(): Promise<void>;
}

/**
 * The worker file `name` next to the module at `baseUrl` (pass import.meta.url): `name.js` under
 * dist, `name.ts` under tsx.
 */
export function workerFileNextTo(baseUrl: string | URL, name: string): string {
  const js = new URL(`./${name}.js`, baseUrl);
  return existsSync(fileURLToPath(js)) ? js.href : new URL(`./${name}.ts`, baseUrl).href;
}

export interface WorkerPoolOptions<In, J extends WorkerJob> extends PoolOptions {
  /** The worker module (see workerFileNextTo); its default export is a createJobRunner() runner. */
  filename: string;
  /** The job sent to the thread for a job given to run(); the pool adds the abort port. */
  toJob: (job: In) => Omit<J, 'abortPort'>;
}

export function createWorkerPool<In, J extends WorkerJob, R>(opts: WorkerPoolOptions<In, J>): WorkerPool<In, R> {
  const threads = Math.max(1, opts.threads ?? availableParallelism());
  // A thread terminated while a call into onnxruntime is in flight (session creation, session.run)
  // aborts the whole process, so no thread is terminated (hard limit, cancel, destroy) inside one. The
  // threads share `native` with the pool (see nativeCall): per thread slot, its calls in flight and a
  // stop flag. To stop a thread the pool sets its flag, then reads its count: at 0 it terminates it
  // (a later call sees the flag and refuses), else it looks again in 5 ms. A model's calls are marked by
  // passing nativeCall as its loader's guard; createJobRunner marks the model load itself.
  const native = new Int32Array(new SharedArrayBuffer(4 * NATIVE_LENGTH));
  const mayStop = (slot: number) => {
    Atomics.store(native, stopIndex(slot), 1);
    return Atomics.load(native, slot) === 0;
  };
  const anyInNative = () => native.subarray(1, NATIVE_SLOTS + 1).some((n) => n > 0);
  const piscina = new Piscina<J, WorkerReply<R>>({
    filename: opts.filename,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Number.POSITIVE_INFINITY, // a thread holds a loaded model: never let it go idle-reaped
    // Not piscina's default 'sync': an idle thread would block its event loop in Atomics.wait, so a model
    // load started at module load (or any native call's completion) would wait for the thread's next task.
    atomics: 'async',
    workerData: { testPlugins: opts.testPlugins === true, native } satisfies ThreadData,
    ...(opts.maxQueue === undefined ? {} : { maxQueue: opts.maxQueue }),
  });
  const pool: WorkerPool<In, R> = {
    threads,
    async run(job, runOpts = {}) {
      return (await pool.runDetailed(job, runOpts)).result;
    },
    async runDetailed(job, runOpts = {}) {
      const { port1, port2 } = new MessageChannel();
      // The hard signal: the job is told to stop (as by the soft limit), and its thread is terminated
      // once the job has reached one (`received`, naming the thread's slot) and that thread is outside
      // native code. A job still waiting for a thread answers the caller at once and leaves the queue
      // as soon as a thread takes it (it sees the stop at its start).
      const terminate = new AbortController();
      const hard = runOpts.signal;
      let slot: number | undefined;
      let received = false;
      let held: NodeJS.Timeout | undefined;
      let answerEarly: ((err: Error) => void) | undefined;
      const early = new Promise<never>((_, reject) => (answerEarly = reject));
      early.catch(() => undefined);
      const tryTerminate = () => {
        if (terminate.signal.aborted || !received) return;
        if (slot === undefined || mayStop(slot)) {
          clearInterval(held);
          terminate.abort(hard?.reason);
        } else held ??= setInterval(tryTerminate, 5);
      };
      port1.on('message', (m: { received?: boolean; slot?: number; started?: boolean }) => {
        if (m?.received === true) {
          received = true;
          slot = typeof m.slot === 'number' && m.slot >= 1 && m.slot <= NATIVE_SLOTS ? m.slot : undefined;
          if (hard?.aborted) tryTerminate();
        }
        if (m?.started === true) runOpts.onStart?.();
      });
      const onSoftAbort = () => port1.postMessage({ timeout: isTimeout(runOpts.softSignal?.reason) });
      if (runOpts.softSignal?.aborted) onSoftAbort();
      else runOpts.softSignal?.addEventListener('abort', onSoftAbort, { once: true });
      const onHardAbort = () => {
        port1.postMessage({ timeout: isTimeout(hard?.reason) });
        if (!received) answerEarly?.(abortError(hard?.reason));
        tryTerminate();
      };
      if (hard?.aborted) onHardAbort();
      else hard?.addEventListener('abort', onHardAbort, { once: true });
      const running = piscina.run({ ...opts.toJob(job), abortPort: port2 } as J, { transferList: [port2], ...(hard ? { signal: terminate.signal } : {}) });
      void running
        .catch(() => undefined)
        .finally(() => {
          // The job ended on its own (it saw the stop) before its thread was terminated: the thread lives on.
          if (slot !== undefined && !terminate.signal.aborted) Atomics.store(native, stopIndex(slot), 0);
          clearInterval(held);
          runOpts.softSignal?.removeEventListener('abort', onSoftAbort);
          hard?.removeEventListener('abort', onHardAbort);
          port1.close();
        });
      try {
        const reply = await Promise.race([running, early]);
        opts.onTaskDone?.({ ...reply.meta, ok: reply.ok });
        if (reply.ok) return { result: reply.result, meta: reply.meta };
        if (hard?.aborted) throw abortError(hard.reason); // the job stopped itself on the hard signal's stop
        throw Object.assign(new Error(reply.error.message), { name: reply.error.name, code: reply.error.code });
      } catch (err) {
        if (hard?.aborted && (err as Error | undefined)?.name === 'AbortError' && !('code' in (err as object))) throw abortError(hard.reason);
        throw err;
      }
    },
    async destroy() {
      Atomics.store(native, STOP_ALL, 1);
      for (const until = Date.now() + 30_000; anyInNative() && Date.now() < until;) await new Promise((r) => setTimeout(r, 5));
      await piscina.destroy();
    },
  };
  return pool;
}

/** What a pool run needs of a worker's task context (libs/messaging's TaskContext has it). */
export interface LimitsContext {
  signal: AbortSignal;
  hardSignal: AbortSignal;
  pauseLimits(): () => void;
}

/**
 * runDetailed() under a task's limits: the soft limit as the plugin's ctx.signal, the hard limit as
 * thread termination, and the limits' clocks stopped while the job waits for a free thread.
 */
export async function runUnderLimits<In, R>(pool: Pick<WorkerPool<In, R>, 'runDetailed'>, job: In, ctx: LimitsContext): Promise<{ result: R; meta: TaskMeta }> {
  const resume = ctx.pauseLimits();
  try {
    return await pool.runDetailed(job, { signal: ctx.hardSignal, softSignal: ctx.signal, onStart: resume });
  } finally {
    resume();
  }
}

/** The error of a job stopped by its hard signal: code `timeout` (its time limit) or `cancelled`. */
function abortError(reason: unknown): Error {
  return Object.assign(new Error(isTimeout(reason) ? 'hard time limit reached: worker thread terminated' : 'task aborted: worker thread terminated', { cause: reason }), {
    name: 'AbortError',
    code: isTimeout(reason) ? 'timeout' : 'cancelled',
  });
}

function isTimeout(reason: unknown): boolean {
  return reason instanceof Error && reason.name === 'TimeoutError';
}

// ---------------------------------------------------------------------------------------------
// Worker thread

export interface JobRunnerOptions<J extends WorkerJob, P, R> {
  /** Names the plugins in the error for an unknown name ("no analyzer named ..."). */
  kind: string;
  plugins: ReadonlyMap<string, P>;
  /** Loads the thread's model (memoised). Called once at createJobRunner() as a preload, then by every task. */
  loadModel: () => Promise<unknown>;
  /** ONNX sessions this thread has created so far. */
  modelLoads: () => number;
  /** Runs one plugin on a job. */
  run: (plugin: P, job: J, ctx: { signal: AbortSignal }) => Promise<R>;
  /** Served too when the pool was made with testPlugins (fault injection, e.g. chaos.ts). */
  testPlugins?: ReadonlyMap<string, P>;
}

/** What the pool tells its threads (piscina's workerData). */
interface ThreadData {
  testPlugins: boolean;
  /** Calls into native code in flight, a slot per thread (see createWorkerPool and nativeCall). */
  native?: Int32Array;
}

// The shared `native` array: [0] hands out slots; [slot] (1..NATIVE_SLOTS) a thread's native calls in
// flight; [STOP_ALL] set by destroy(); [stopIndex(slot)] set when the pool is about to stop that thread.
const NATIVE_SLOTS = 256;
const STOP_ALL = NATIVE_SLOTS + 1;
const stopIndex = (slot: number) => STOP_ALL + slot;
const NATIVE_LENGTH = STOP_ALL + NATIVE_SLOTS + 1;
let mySlot: number | undefined;

/** This thread's slot in the pool's `native` array (claimed on first use; reused after 256 threads). */
function threadSlot(): number | undefined {
  const native = (workerData as ThreadData | null)?.native;
  if (!native) return undefined;
  if (mySlot === undefined) {
    mySlot = (Atomics.add(native, 0, 1) % NATIVE_SLOTS) + 1;
    Atomics.store(native, stopIndex(mySlot), 0);
  }
  return mySlot;
}

/**
 * Runs `call` (a call into native code such as onnxruntime's session creation or session.run) marked as
 * in flight for this pool thread, so the pool does not terminate the thread before it returns; once the
 * pool is stopping the thread, the call is refused (code `cancelled`). Outside a pool thread it just runs
 * `call`. Pass it as a model loader's guard (libs/models LoadOptions.guard).
 */
export async function nativeCall<T>(call: () => Promise<T>): Promise<T> {
  const slot = threadSlot();
  const native = (workerData as ThreadData | null)?.native;
  if (slot === undefined || !native) return call();
  Atomics.add(native, slot, 1);
  if (Atomics.load(native, STOP_ALL) === 1 || Atomics.load(native, stopIndex(slot)) === 1) {
    Atomics.sub(native, slot, 1);
    throw Object.assign(new Error('the pool is stopping this thread'), { name: 'AbortError', code: 'cancelled' });
  }
  try {
    return await call();
  } finally {
    Atomics.sub(native, slot, 1);
  }
}

/**
 * The worker's task function (a pool-worker.ts default-exports it): one job per call, the model
 * loaded once per thread, starting when this is called at module load; tasks await that one load.
 */
export function createJobRunner<J extends WorkerJob, P, R>(o: JobRunnerOptions<J, P, R>): (job: J) => Promise<WorkerReply<R>> {
  // Preload; a failure surfaces in the first task (which retries the load), not as an unhandled rejection.
  const data = workerData as ThreadData | null;
  nativeCall(() => o.loadModel()).catch(() => undefined); // a failure surfaces in the first task, which retries the load
  const plugins = data?.testPlugins && o.testPlugins ? new Map([...o.plugins, ...o.testPlugins]) : o.plugins;
  return async function runJob(job: J): Promise<WorkerReply<R>> {
    job.abortPort?.postMessage({ received: true, slot: threadSlot() });
    const started = performance.now();
    const controller = new AbortController();
    job.abortPort?.once('message', (m: { timeout?: boolean }) =>
      controller.abort(m.timeout ? new DOMException('soft time limit reached', 'TimeoutError') : new DOMException('aborted', 'AbortError')),
    );
    const meta = (): TaskMeta => ({ plugin: job.plugin, threadId, durationMs: performance.now() - started, modelLoads: o.modelLoads() });
    try {
      await nativeCall(() => o.loadModel()); // the preloaded session (memoised), or a retry if the preload failed
      job.abortPort?.postMessage({ started: true });
      const plugin = plugins.get(job.plugin);
      if (!plugin) throw Object.assign(new Error(`no ${o.kind} named "${job.plugin}" (have: ${[...plugins.keys()].join(', ')})`), { code: 'terminal' });
      if (!Array.isArray(job.records)) throw Object.assign(new Error('job.records must be an array'), { code: 'terminal' });
      const result = await o.run(plugin, job, { signal: controller.signal });
      return { ok: true, result, meta: meta() };
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      const c: unknown = (e as Error & { code?: unknown }).code;
      return { ok: false, error: { name: e.name, code: typeof c === 'string' ? c : 'internal', message: e.message }, meta: meta() };
    } finally {
      job.abortPort?.close();
    }
  };
}

export { CHAOS_BUSY, busyWork, type BusyReport } from './chaos.js';

/** A job of the chaos-busy pool worker (busy-worker.ts): records to be busy with. */
export interface BusyJob extends WorkerJob {
  records: InputRecord[];
}
