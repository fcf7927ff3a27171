/**
 * @jetflow/worker/threads: the worker-thread side of a service's thread pool (createWorkerPool in the
 * main entry). A pool's worker file default-exports createJobRunner(...) with its plugins: one job per
 * call, the model loaded once per thread (starting when the file loads), the soft limit as the plugin's
 * signal, errors back as data so their code (terminal, timeout, cancelled) survives the thread boundary.
 *
 * Its own entry so that a thread loads only this (not NATS, the logger, the runtime). No top-level
 * await: under tsx on Node 20 a worker thread loads its file through require().
 */
export { CHAOS_BUSY, busyWork, createJobRunner, nativeCall, type BusyReport, type JobRunnerOptions, type TaskMeta, type WorkerJob, type WorkerReply } from '@jetflow/pool';
