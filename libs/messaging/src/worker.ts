import { headers as natsHeaders, type JetStreamClient, type JsMsg, type NatsConnection, type KV } from 'nats';
import { TaskStatus, type Task } from '../../proto/src/index.js';
import { codeOf, isTerminal, ErrorCodes } from '../../errors/src/index.js';
import type { Logger } from '../../logging/src/index.js';
import { BUCKETS, CONSUMERS, STREAMS, resultSubject } from './topology.js';
import { JetStreamPublisher } from './publisher.js';
import { startPullLoop, type PullLoop } from './loop.js';
import { backoffDelay, deadLetter } from './dlq.js';
import { publishEvent } from './events.js';
import { decodeTask, encodeTaskResult } from './fast-codec.js';
import { encodeUtf8 } from './utf8.js';

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


interface LazyAbort {
  readonly signal: AbortSignal;
  readonly aborted: boolean;
  abort(reason: unknown): void;
}

/** An AbortController made on first use of its signal (creating one per task was ~4 % of a worker's CPU). */
function lazyAbort(): LazyAbort {
  let c: AbortController | undefined;
  let aborted = false;
  let reason: unknown;
  return {
    get signal() {
      if (!c) {
        c = new AbortController();
        if (aborted) c.abort(reason);
      }
      return c.signal;
    },
    get aborted() {
      return aborted;
    },
    abort(r: unknown) {
      if (aborted) return;
      aborted = true;
      reason = r;
      c?.abort(r);
    },
  };
}

interface InFlight {
  hard: LazyAbort;
  lastBeat: number;
}

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
  const inflight = new Map<JsMsg, InFlight>();
  let handingBack = false;
  // In-progress heartbeats for every task running longer than heartbeatMs: one timer for the whole worker.
  const beat = setInterval(() => {
    const now = Date.now();
    for (const [m, f] of inflight) {
      if (now - f.lastBeat >= heartbeatMs) {
        f.lastBeat = now;
        m.working();
      }
    }
  }, Math.max(50, Math.floor(heartbeatMs / 2)));
  beat.unref();

  const publishResult = async (task: Task, status: TaskStatus, extra: Partial<{ outputJson: Uint8Array; outputRef: string; errorCode: string; errorMessage: string; startedAt: number }>, attempts: number) => {
    const now = Date.now();
    const { startedAt, ...fields } = extra;
    const body = encodeTaskResult({
      flowId: task.flowId,
      task: task.task,
      stage: task.stage,
      status,
      ...fields,
      attempts,
      startedAtMs: startedAt ?? now,
      finishedAtMs: now,
      worker: o.workerId,
    });
    const h = natsHeaders();
    h.set('Jetflow-Flow-Id', task.flowId);
    h.set('Jetflow-Kind', 'result');
    await pub.publish(resultSubject(o.partitions, task.flowId), body, { msgId: `${task.flowId}:${task.task}:result`, headers: h });
  };

  const handle = async (m: JsMsg) => {
    const started = Date.now();
    let task: Task;
    try {
      task = decodeTask(m.data);
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
    // Signals and the hard-limit rejection are made only when used: a fast task never needs them.
    const soft = lazyAbort();
    const hard = lazyAbort();
    const entry: InFlight = { hard, lastBeat: started };
    inflight.set(m, entry);
    const softMs = task.softLimitMs || 5_000;
    const hardMs = task.hardLimitMs || 10_000;
    let rejectHard: ((e: Error) => void) | undefined;
    const onHard = () => {
      const e = new HardLimitError(`hard time limit of ${task.hardLimitMs} ms exceeded`);
      hard.abort(e);
      rejectHard?.(e);
    };
    // One timer per task: the soft limit first, which then arms the hard limit.
    let timer: NodeJS.Timeout = setTimeout(() => {
      soft.abort(new Error('soft time limit'));
      timer = setTimeout(onHard, Math.max(0, hardMs - softMs));
    }, Math.min(softMs, hardMs));
    const ctx: TaskContext = {
      get signal() {
        return soft.signal;
      },
      get hardSignal() {
        return hard.signal;
      },
      attempt,
      get log() {
        return logFor();
      },
      softDeadlineAt: started + softMs,
    };
    let ran = false;
    try {
      const out = await new Promise<TaskOutput>((resolve, reject) => {
        rejectHard = reject;
        o.handler(task, ctx).then(resolve, reject);
      });
      const outputJson = out.outputJson ?? (out.output !== undefined ? encodeUtf8(JSON.stringify(out.output)) : undefined);
      ran = true;
      await publishResult(task, TaskStatus.SUCCEEDED, { ...(outputJson ? { outputJson } : {}), ...(out.outputRef ? { outputRef: out.outputRef } : {}), startedAt: started }, attempt);
      m.ack();
      o.onOutcome?.(task, 'succeeded', Date.now() - started);
    } catch (err) {
      if (handingBack && hard.aborted) {
        m.nak();
        return;
      }
      if (ran) {
        // The task succeeded but the broker did not take its result (a NATS node died and the results
        // stream has no leader yet): not a failed attempt, so never a reason to dead-letter. Run it again.
        logFor().warn({ err: (err as Error)?.message }, 'result not published; the task will run again');
        m.nak(1_000);
        return;
      }
      const code = err instanceof HardLimitError ? ErrorCodes.TIMEOUT : codeOf(err);
      const message = (err as Error)?.message ?? String(err);
      const maxAttempts = task.maxAttempts || 3;
      if (!isTerminal(err) && attempt < maxAttempts) {
        const delay = backoffDelay(attempt, task.backoffInitialMs || 200, task.backoffMaxMs || 5_000, task.backoffMultiplier || 2);
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
      clearTimeout(timer);
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
        for (const [m, f] of inflight) {
          m.nak();
          f.hard.abort(new Error('shutting down'));
        }
        await Promise.race([all, new Promise((r) => setTimeout(r, 1_000))]);
      }
      clearInterval(beat);
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
