import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CHAOS_BUSY,
  RetryableError,
  TerminalError,
  runUnderLimits,
  type Task,
  type TaskMessageContext as TaskContext,
  type TaskMessageHandler as TaskHandler,
  type TaskMessageOutput as TaskOutput,
} from '@jetflow/worker';
import type { AnalystPool } from '../pool.js';

/**
 * Fault-injection tasks for the fault suite, served only with JETFLOW_TEST_PLUGINS=1 (subjects
 * jetflow.task.test.*). Parameters come from the flow input's "chaos" object.
 *   echo  — succeeds with the names of its inputs
 *   fail  — always throws a retryable error (retried, then dead-lettered)
 *   hang  — spins a CPU-bound thread forever; only the hard limit (thread termination) ends it
 *   slow  — takes chaos.slowMs (default 7000), well past the consumer's ack wait, kept alive by heartbeats
 *   flaky — fails its first chaos.failTimes attempts (default 2), then succeeds
 *   busy  — keeps a worker-pool thread busy for chaos.busyMs (default 1000), checking its soft signal
 *           unless chaos.ignoreSignal (then only thread termination stops it); real task mode only
 */
interface Chaos {
  slowMs?: number;
  failTimes?: number;
  busyMs?: number;
  ignoreSignal?: boolean;
}

const dec = new TextDecoder();

function chaosOf(input: Uint8Array): Chaos {
  if (!input.length) return {};
  const v = JSON.parse(dec.decode(input)) as { chaos?: Chaos };
  return v.chaos ?? {};
}

/** Busy-loops in a real thread; terminated when the hard limit aborts. */
async function spinUntilKilled(ctx: TaskContext): Promise<never> {
  const w = new Worker('for (;;) {}', { eval: true });
  await new Promise<void>((resolve) => {
    if (ctx.hardSignal.aborted) resolve();
    ctx.hardSignal.addEventListener('abort', () => resolve(), { once: true });
  });
  await w.terminate();
  throw new RetryableError('hang: terminated at the hard limit');
}

/** The chaos tasks; `pool` (the analyst's, real mode) serves `busy`. */
export function chaosTasks(deps: { pool?: Pick<AnalystPool, 'runDetailed'> } = {}): TaskHandler {
  return (task, ctx) => runChaos(task, ctx, deps.pool);
}

export const chaosHandler: TaskHandler = chaosTasks();

async function runChaos(task: Task, ctx: TaskContext, pool: Pick<AnalystPool, 'runDetailed'> | undefined): Promise<TaskOutput> {
  const name = task.subject.split('.').pop();
  const chaos = chaosOf(task.inputJson);
  switch (name) {
    case 'echo':
      return { output: { echo: task.task, deps: task.deps.map((d) => d.task), attempt: ctx.attempt } };
    case 'fail':
      throw new RetryableError(`chaos: ${task.task} always fails (attempt ${ctx.attempt})`);
    case 'hang':
      return spinUntilKilled(ctx);
    case 'slow': {
      const ms = chaos.slowMs ?? 7_000;
      await sleep(ms, undefined, { signal: ctx.hardSignal }).catch(() => undefined);
      if (ctx.hardSignal.aborted) throw new RetryableError('slow task reached its hard limit');
      return { output: { slept: ms, attempt: ctx.attempt } };
    }
    case 'flaky': {
      const failTimes = chaos.failTimes ?? 2;
      if (ctx.attempt <= failTimes) throw new RetryableError(`chaos: flaky attempt ${ctx.attempt} of ${failTimes} failing`);
      return { output: { succeededOnAttempt: ctx.attempt } };
    }
    case 'busy': {
      if (!pool) throw new TerminalError('chaos busy needs a worker-thread pool (JETFLOW_TASK_MODE=real)');
      const fields = { busyMs: chaos.busyMs ?? 1_000, ignoreSignal: chaos.ignoreSignal ? 1 : 0 };
      const { result } = await runUnderLimits(pool, { plugin: CHAOS_BUSY, records: [{ id: task.task, text: '', fields }] }, ctx);
      return { output: { ...result, attempt: ctx.attempt } };
    }
    default:
      throw new TerminalError(`no chaos plugin "${name}"`);
  }
}
