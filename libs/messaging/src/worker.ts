import { fromBinary, toBinary, create } from '@bufbuild/protobuf';
import { headers as natsHeaders, type JetStreamClient, type JsMsg, type NatsConnection, type KV } from 'nats';
import { TaskSchema, TaskResultSchema, TaskStatus, type Task } from '../../proto/src/index.js';
import { codeOf, isTerminal, ErrorCodes } from '../../errors/src/index.js';
import type { Logger } from '../../logging/src/index.js';
import { BUCKETS, CONSUMERS, STREAMS, resultSubject } from './topology.js';
import { JetStreamPublisher } from './publisher.js';
import { startPullLoop, type PullLoop } from './loop.js';
import { backoffDelay, deadLetter } from './dlq.js';
import { publishEvent } from './events.js';

export interface TaskContext {
  /** Aborted at the task's soft time limit: the handler should wrap up. */
  signal: AbortSignal;
  /** Aborted at the hard limit: work must stop now (a thread pool terminates the thread). */
  hardSignal: AbortSignal;
  attempt: number;
  log: Logger;
  /** Absolute time of the soft limit (ms since epoch), for work that runs in another thread. */
  softDeadlineAt: number;
}

export interface TaskOutput {
  /** JSON-serialisable output, or already-encoded JSON bytes (forwarded without re-encoding). */
  output?: unknown;
  outputJson?: Uint8Array;
  outputRef?: string;
}

export type TaskHandler = (task: Task, ctx: TaskContext) => Promise<TaskOutput>;

export interface TaskWorkerOptions {
  nc: NatsConnection;
  subjects: string[];
  /** Messages in flight per task consumer. */
  concurrency: number;
  partitions: number;
  handler: TaskHandler;
  log: Logger;
  workerId: string;
  heartbeatMs?: number;
  /** Observer hooks (metrics). */
  onOutcome?: (task: Task | undefined, outcome: 'succeeded' | 'failed' | 'retried' | 'dead_lettered' | 'cancelled', durationMs: number) => void;
}

export interface TaskWorker {
  /** Stop fetching; finish in-flight work within graceMs, hand back the rest. */
  stop(graceMs: number): Promise<void>;
  readonly inFlight: number;
}

const enc = new TextEncoder();

class HardLimitError extends Error {
  readonly code = ErrorCodes.TIMEOUT;
}

/**
 * The worker runtime shared by dataset-generator and analyst. The runtime, never the handler, decides
 * ack, delayed nak (retry with backoff and jitter), and dead letter; it acks only after the result is
 * durably published; it sends in-progress heartbeats while a task runs; it checks cancellation before
 * starting a task.
 */
export async function startTaskWorker(o: TaskWorkerOptions): Promise<TaskWorker> {
  const js: JetStreamClient = o.nc.jetstream();
  const pub = new JetStreamPublisher(o.nc);
  const heartbeatMs = o.heartbeatMs ?? 1_000;
  const cancelled = await watchCancellations(js, o.log);
  const inflight = new Map<JsMsg, AbortController>();
  let handingBack = false;

  const publishResult = async (task: Task, status: TaskStatus, extra: Partial<{ outputJson: Uint8Array; outputRef: string; errorCode: string; errorMessage: string; startedAt: number }>, attempts: number) => {
    const r = create(TaskResultSchema, {
      flowId: task.flowId,
      task: task.task,
      stage: task.stage,
      status,
      outputJson: extra.outputJson ?? new Uint8Array(),
      outputRef: extra.outputRef ?? '',
      errorCode: extra.errorCode ?? '',
      errorMessage: extra.errorMessage ?? '',
      attempts,
      startedAtMs: BigInt(extra.startedAt ?? Date.now()),
      finishedAtMs: BigInt(Date.now()),
      worker: o.workerId,
    });
    const h = natsHeaders();
    h.set('Jetflow-Flow-Id', task.flowId);
    h.set('Jetflow-Kind', 'result');
    await pub.publish(resultSubject(o.partitions, task.flowId), toBinary(TaskResultSchema, r), { msgId: `${task.flowId}:${task.task}:result`, headers: h });
  };

  const handle = async (m: JsMsg) => {
    const started = Date.now();
    let task: Task;
    try {
      task = fromBinary(TaskSchema, m.data);
      if (!task.flowId || !task.task) throw new Error('task without flow_id or task name');
    } catch (err) {
      // A message that cannot be decoded can never succeed: dead-letter it at once.
      await deadLetter(pub, m, 'task', { code: 'decode_error', message: `cannot decode task: ${(err as Error).message}` });
      m.term();
      o.onOutcome?.(undefined, 'dead_lettered', 0);
      return;
    }
    const attempt = m.info.deliveryCount;
    // A child logger costs more than a noop task: make it only when something is logged.
    let child: Logger | undefined;
    const logFor = () => (child ??= o.log.child({ flowId: task.flowId, task: task.task, subject: m.subject, attempt }));
    if (cancelled.has(task.flowId)) {
      await publishResult(task, TaskStatus.CANCELLED, { errorCode: 'cancelled', errorMessage: 'flow cancelled before the task started' }, attempt);
      publishEvent(o.nc, task.tenant, { flowId: task.flowId, flow: task.flow, type: 'task.skipped', task: task.task, attempt, message: 'flow cancelled before the task started' });
      m.ack();
      o.onOutcome?.(task, 'cancelled', 0);
      return;
    }
    if (task.deadlineAtMs > 0n && Date.now() > Number(task.deadlineAtMs)) {
      await publishResult(task, TaskStatus.FAILED, { errorCode: 'timeout', errorMessage: 'flow deadline passed before the task started' }, attempt);
      m.ack();
      o.onOutcome?.(task, 'failed', 0);
      return;
    }
    const soft = new AbortController();
    const hard = new AbortController();
    inflight.set(m, hard);
    const hb = setInterval(() => m.working(), heartbeatMs);
    const softTimer = setTimeout(() => soft.abort(new Error('soft time limit')), task.softLimitMs || 5_000);
    let hardTimer: NodeJS.Timeout | undefined;
    const hardLimit = new Promise<never>((_, reject) => {
      hardTimer = setTimeout(() => {
        const e = new HardLimitError(`hard time limit of ${task.hardLimitMs} ms exceeded`);
        hard.abort(e);
        reject(e);
      }, task.hardLimitMs || 10_000);
    });
    try {
      const out = await Promise.race([o.handler(task, { signal: soft.signal, hardSignal: hard.signal, attempt, get log() { return logFor(); }, softDeadlineAt: started + (task.softLimitMs || 5_000) }), hardLimit]);
      clearInterval(hb);
      const outputJson = out.outputJson ?? (out.output !== undefined ? enc.encode(JSON.stringify(out.output)) : new Uint8Array());
      await publishResult(task, TaskStatus.SUCCEEDED, { outputJson, outputRef: out.outputRef ?? '', startedAt: started }, attempt);
      m.ack();
      o.onOutcome?.(task, 'succeeded', Date.now() - started);
    } catch (err) {
      clearInterval(hb);
      if (handingBack && hard.signal.aborted) {
        m.nak();
        return;
      }
      const code = err instanceof HardLimitError ? ErrorCodes.TIMEOUT : codeOf(err);
      const message = (err as Error)?.message ?? String(err);
      const maxAttempts = task.maxAttempts || 3;
      if (!isTerminal(err) && attempt < maxAttempts) {
        const delay = backoffDelay(attempt, task.backoffInitialMs || 200, task.backoffMaxMs || 5_000);
        logFor().warn({ code, err: message, retryInMs: delay }, 'task failed; retrying');
        publishEvent(o.nc, task.tenant, { flowId: task.flowId, flow: task.flow, type: 'task.retrying', task: task.task, attempt, message: `${code}: ${message}` });
        m.nak(delay);
        o.onOutcome?.(task, 'retried', Date.now() - started);
        return;
      }
      logFor().error({ code, err: message }, 'task failed for good; dead-lettering');
      try {
        await deadLetter(pub, m, 'task', { code, message, flowId: task.flowId, attempts: attempt });
        await publishResult(task, TaskStatus.FAILED, { errorCode: code, errorMessage: message, startedAt: started }, attempt);
        m.term();
        o.onOutcome?.(task, 'dead_lettered', Date.now() - started);
      } catch (e) {
        // Could not record the failure durably: let it come back.
        logFor().warn({ err: (e as Error).message }, 'could not dead-letter; will be redelivered');
        m.nak(1_000);
      }
    } finally {
      clearTimeout(softTimer);
      clearTimeout(hardTimer);
      inflight.delete(m);
    }
  };

  const loops: PullLoop[] = o.subjects.map((s) =>
    startPullLoop({ js, stream: STREAMS.tasks, consumer: CONSUMERS.task(s), concurrency: o.concurrency, mode: 'fetch', handle, log: o.log }),
  );

  return {
    get inFlight() {
      return inflight.size;
    },
    async stop(graceMs: number) {
      const all = Promise.all(loops.map((l) => l.stop()));
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
      if ((await Promise.race([all, timeout])) === 'timeout') {
        // Hand the rest back now so another replica picks it up without waiting for ack_wait.
        handingBack = true;
        for (const [m, hard] of inflight) {
          m.nak();
          hard.abort(new Error('shutting down'));
        }
        await Promise.race([all, new Promise((r) => setTimeout(r, 1_000))]);
      }
      cancelled.stop();
      pub.close();
    },
  };
}

/** Keeps the set of cancelled flows current by watching the cancel bucket (no round trip per task). */
export async function watchCancellations(js: JetStreamClient, log: Logger): Promise<{ has(flowId: string): boolean; stop(): void }> {
  const set = new Set<string>();
  let kv: KV | undefined;
  let stopped = false;
  let w: { stop(): void } | undefined;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (markReady = r));
  const run = async () => {
    while (!stopped) {
      try {
        kv ??= await js.views.kv(BUCKETS.cancel);
        const iter = await kv.watch({ key: '>', initializedFn: () => markReady() });
        w = iter;
        for await (const e of iter) {
          if (e.operation === 'PUT') set.add(e.key);
          else set.delete(e.key);
        }
      } catch (err) {
        if (!stopped) log.warn({ err: (err as Error).message }, 'cancel watch failed; retrying');
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 500));
    }
  };
  void run();
  // Start serving only once the flags already set are known, so a queued task of a cancelled flow is skipped.
  await Promise.race([ready, new Promise((r) => setTimeout(r, 5_000).unref())]);
  return {
    has: (id) => set.has(id),
    stop() {
      stopped = true;
      w?.stop();
    },
  };
}
