/**
 * The worker-thread side of a `thread` task (piscina runs this file): imports the task's module once
 * per thread (so a model it loads at its top level is loaded once per thread) and calls its default
 * export. Errors go back as data so their code (terminal, retryable) survives the thread boundary.
 */
import type { TaskContext, ThreadJob, WorkerLogger } from './index.js';

const modules = new Map<string, Promise<{ default?: unknown }>>();
const silent: WorkerLogger = { child: () => silent, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

export default async function runInThread(job: ThreadJob) {
  try {
    let m = modules.get(job.module);
    if (!m) modules.set(job.module, (m = import(job.module) as Promise<{ default?: unknown }>));
    const run = (await m).default;
    if (typeof run !== 'function') throw new TypeError(`${job.module} has no default export function (input, ctx)`);
    const ctx: TaskContext = {
      ...job.ctx,
      signal: AbortSignal.timeout(Math.max(0, job.ctx.softDeadlineAt - Date.now())),
      // The hard limit terminates this thread; nothing to observe here.
      hardSignal: new AbortController().signal,
      heartbeat: () => undefined,
      log: silent,
    };
    return { ok: true, output: await (run as (i: unknown, c: TaskContext) => unknown)(job.input, ctx) };
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown; name?: unknown } | null;
    return {
      ok: false,
      error: {
        code: typeof e?.code === 'string' ? e.code : undefined,
        message: typeof e?.message === 'string' ? e.message : String(err),
        name: typeof e?.name === 'string' ? e.name : 'Error',
      },
    };
  }
}
