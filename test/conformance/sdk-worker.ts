/**
 * The conformance behaviours (docs/WORKERS.md, "Conformance behaviours") served with @jetflow/worker
 * only, as a process: `node --import tsx test/conformance/sdk-worker.ts`. NATS_URL, and NATS_USER +
 * NATS_PASSWORD (a `worker:<name>` identity) or NATS_TOKEN; JETFLOW_PARTITIONS (default 8). Prints one
 * JSON line `{"event":"ready"}` once it serves, and drains on SIGTERM.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createWorker, defineTask, RetryableError, TerminalError } from '../../packages/worker/src/index.js';

const num = (v: unknown, what: string): number => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TerminalError(`input.${what} must be a non-negative number, got ${JSON.stringify(v)}`);
  return v;
};

const tasks = [
  defineTask({
    subject: 'jetflow.task.conformance.echo',
    run: (input, ctx) => ({ input: input.flowInput, task: ctx.task, attempt: ctx.attempt, ...(input.chunk ? { chunk: input.chunk, items: input.items } : {}) }),
  }),
  defineTask<{ failTimes?: number }>({
    subject: 'jetflow.task.conformance.fail-retryable',
    run: (input, ctx) => {
      if (ctx.attempt <= num(input.flowInput.failTimes, 'failTimes')) throw new RetryableError(`conformance: attempt ${ctx.attempt} fails`);
      return { attempt: ctx.attempt };
    },
  }),
  defineTask({
    subject: 'jetflow.task.conformance.fail-terminal',
    run: () => {
      throw new TerminalError('conformance: this task always fails terminally');
    },
  }),
  // Ignores its soft limit on purpose: the runtime's hard limit is what stops it (the runtime heartbeats it meanwhile).
  defineTask<{ ms?: number }>({
    subject: 'jetflow.task.conformance.slow',
    run: async (input, ctx) => {
      const ms = num(input.flowInput.ms, 'ms');
      await sleep(ms);
      return { sleptMs: ms, attempt: ctx.attempt };
    },
  }),
  defineTask<{ ms?: number }>({
    subject: 'jetflow.task.conformance.wait-for-cancel',
    run: async (input, ctx) => {
      const ms = num(input.flowInput.ms, 'ms');
      try {
        await sleep(ms, undefined, { signal: ctx.signal });
      } catch {
        // Cancelled (or the soft limit): stop. The runtime reports a cancelled flow's task as CANCELLED whatever it returns.
        return { stopped: true };
      }
      return { waitedMs: ms };
    },
  }),
];

const env = process.env;
const worker = await createWorker({
  servers: env.NATS_URL ?? 'nats://127.0.0.1:4222',
  ...(env.NATS_USER ? { user: env.NATS_USER, password: env.NATS_PASSWORD ?? '' } : {}),
  ...(env.NATS_TOKEN ? { token: env.NATS_TOKEN } : {}),
  ...(env.NATS_INBOX_PREFIX ? { inboxPrefix: env.NATS_INBOX_PREFIX } : {}),
  tasks,
  concurrency: 8,
  partitions: Number(env.JETFLOW_PARTITIONS ?? 8),
  name: env.WORKER_NAME ?? `conformance-${process.pid}`,
  consumerWaitMs: 30_000,
});
process.stdout.write(`${JSON.stringify({ event: 'ready', subjects: worker.subjects })}\n`);
process.once('SIGTERM', () => {
  void worker.stop(5_000).then(() => process.exit(0));
});
