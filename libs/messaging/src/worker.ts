import { Events, headers as natsHeaders, type JetStreamClient, type JsMsg, type NatsConnection, type Status } from 'nats';
import { TaskStatus, type Task } from '@jetflow/proto';
import { codeOf, isTerminal, ErrorCodes } from '@jetflow/errors';
import { flowLogger, type Logger } from '@jetflow/logging';
import { BAND_WEIGHTS, BUCKETS, CONSUMERS, PRIORITY_BANDS, STREAMS, baseTaskSubject, resultSubject } from './topology.js';
import { JetStreamPublisher } from './publisher.js';
import type { PullLoop } from './loop.js';
import { startBandedPullLoop } from './bands.js';
import { backoffDelay, deadLetter } from './dlq.js';
import { publishEvent } from './events.js';
import { decodeTask, encodeTaskResult } from './fast-codec.js';
import { encodeUtf8 } from './utf8.js';
import { HardLimitError, TaskLimits } from './limits.js';
import { announceWorker, type Announcer } from './worker-registry.js';
import { TaskLimiter, type LimitLease, type WaitingForLimit } from './task-limiter.js';

export interface TaskContext {
  /** Aborted at the task's soft time limit, or at once when its flow is cancelled: the handler should wrap up. */
  signal: AbortSignal;
  /** Aborted at the hard limit, or a short grace after a cancel: work must stop now (a thread pool terminates the thread). */
  hardSignal: AbortSignal;
  attempt: number;
  log: Logger;
  /** Absolute time of the soft limit (ms since epoch), for work that runs in another thread; later by every pause. */
  softDeadlineAt: number;
  /**
   * Stops the limits' clocks while the task waits for a worker thread (the flow deadline bounds that
   * wait); call the returned function when a thread starts the work (a pool's `onStart`).
   */
  pauseLimits(): () => void;
  /** Sends an in-progress heartbeat now (the runtime also sends one every heartbeatMs while it holds the task). */
  heartbeat?: () => void;
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
  /**
   * Tasks this worker runs at once, across all its subjects (its slots; a CPU-bound worker has one per
   * pool thread). A pull never asks for more than the free slots.
   */
  concurrency: number;
  partitions: number;
  handler: TaskHandler;
  log: Logger;
  workerId: string;
  heartbeatMs?: number;
  /** How long a task of a cancelled flow may take to stop after its signal fired, before its hard signal fires (default 500 ms). */
  cancelGraceMs?: number;
  /** Observer hooks (metrics, the attempt's span); `error` is what made an attempt fail (retried, dead_lettered). */
  onOutcome?: (task: Task | undefined, outcome: 'succeeded' | 'failed' | 'retried' | 'dead_lettered' | 'cancelled', durationMs: number, error?: unknown) => void;
  /**
   * Announce this worker in the registry (KV jetflow_workers, worker-registry.ts) under `<name>.<workerId>`
   * every intervalMs while it runs, with its subjects, slots and busy slots; removed by stop().
   */
  announce?: { name: string; service: string; version: string; intervalMs?: number };
  /**
   * Tasks with a concurrency limit or rate limit (Task.concurrency_limit, rate_per_second): how long a
   * slot's lease in KV jetflow_limits lives without a renewal (a killed worker's slot frees after it;
   * default 10 s), and how many such tasks this worker holds while they wait for their limit (default
   * 4 × slots, at least 16; they hold no slot, so other tasks run meanwhile).
   */
  limits?: { leaseMs?: number; maxWaiting?: number };
  /** Told once per task that had to wait for its concurrency limit or rate limit (the metric of delayed tasks). */
  onLimitDelay?: (subject: string, limit: 'concurrency' | 'rate') => void;
}

export interface TaskWorker {
  /** Stop fetching; finish in-flight work within graceMs, hand back the rest. */
  stop(graceMs: number): Promise<void>;
  readonly inFlight: number;
  /** Slots in use (tasks running). */
  readonly busy: number;
}

/** The ids of a Task that end up in subjects or message ids, with the rule of each (libs/flows ids.ts). */
const TASK_IDS = (t: Task): Array<[string, string, RegExp]> => [
  ['flow_id', t.flowId, /^[a-z0-9]{2,64}$/],
  ['task', t.task, /^[a-z][a-z0-9_-]{0,40}$/],
  ['tenant', t.tenant, /^[a-z0-9][a-z0-9_-]{0,62}$/],
];

/** What admits a task that waits for a slot, or turns it away. */
type Admission = 'run' | 'cancelled' | 'deadline' | 'stop';

interface InFlight {
  task: Task;
  /** The flow deadline (ms since epoch; 0 = none). */
  deadlineAt: number;
  lastBeat: number;
  /** Set once the task runs. */
  limits?: TaskLimits;
  /** Set while the task waits for a slot. */
  admit?: (a: Admission) => void;
  /** Set while the task waits for its concurrency or rate limit (holding no slot). */
  park?: (a: Admission) => void;
  /** Its concurrency slot, held from the moment it is granted until the task's end. */
  lease?: LimitLease;
  /** The gate its concurrency slot came from (woken when the slot is released). */
  gateKey?: string;
  /** Its mark in KV jetflow_limits while it waits for a limit (the flow view's `waitingForLimit`). */
  waitMark?: { info: WaitingForLimit; subject: string; renewedAt: number; put: Promise<string | undefined> };
}

/** Tasks of one subject and key value waiting for a concurrency slot in this worker, served oldest first. */
interface LimitGate {
  queue: Array<{ entry: InFlight; subject: string; grant: (lease: LimitLease) => void; delayed?: boolean }>;
  pumping: boolean;
  /** Ends the pause between two tries at once (a slot of this key was released here). */
  poke?: () => void;
}

/**
 * The worker runtime shared by dataset-generator and analyst. The runtime, never the handler, decides
 * ack, delayed nak (retry with backoff and jitter), and dead letter; it acks only after the result is
 * durably published; it sends in-progress heartbeats while a task waits or runs; it checks cancellation
 * before starting a task and aborts a running one whose flow is cancelled.
 *
 * Slots: the pull loops of all subjects share `concurrency` slots and fetch only what is free. Pulls of
 * several subjects are open at once, so a burst can still deliver a few more than the free slots: those
 * wait here for a slot, heartbeated, with their time limits not yet running, until the flow deadline.
 */
export async function startTaskWorker(o: TaskWorkerOptions): Promise<TaskWorker> {
  const js: JetStreamClient = o.nc.jetstream();
  const pub = new JetStreamPublisher(o.nc);
  const heartbeatMs = o.heartbeatMs ?? 1_000;
  const cancelGraceMs = o.cancelGraceMs ?? 500;
  const slots = Math.max(1, o.concurrency);
  const inflight = new Map<JsMsg, InFlight>();
  /** Tasks waiting for a slot, oldest first. */
  const waiting: InFlight[] = [];
  let running = 0;
  /** Messages being handled (running, waiting, or being skipped): what the pulls subtract. */
  let held = 0;
  let capacityWaiters: Array<() => void> = [];
  let handingBack = false;
  const wakeCapacity = () => {
    const w = capacityWaiters;
    capacityWaiters = [];
    for (const f of w) f();
  };
  // Limits by key (task-limiter.ts): tasks waiting for theirs are `parked`, counted apart from `held`.
  const limiter = new TaskLimiter({ nc: o.nc, workerId: o.workerId, ...(o.limits?.leaseMs ? { leaseMs: o.limits.leaseMs } : {}) });
  const maxParked = Math.max(16, o.limits?.maxWaiting ?? 4 * slots);
  let parked = 0;
  const gates = new Map<string, LimitGate>();

  const turnAway = (e: InFlight, why: Admission) => {
    const i = waiting.indexOf(e);
    if (i < 0) return;
    waiting.splice(i, 1);
    const admit = e.admit!;
    e.admit = undefined;
    admit(why);
  };
  const release = () => {
    const next = waiting.shift();
    if (!next) {
      running--;
      return;
    }
    // The slot passes straight to the oldest waiting task.
    const admit = next.admit!;
    next.admit = undefined;
    admit('run');
  };
  const onCancel = (flowId: string) => {
    for (const e of [...inflight.values()]) {
      if (e.task.flowId !== flowId) continue;
      if (e.park) e.park('cancelled');
      else if (e.admit) turnAway(e, 'cancelled');
      else e.limits?.cancel(cancelGraceMs);
    }
  };
  const cancelled = await watchCancellations(js, o.log, onCancel, o.nc);
  // Paused subjects (POST /v1/subjects/{subject}/pause): their pulls ask for nothing until resumed.
  const paused = await watchPausedSubjects(js, o.log, wakeCapacity, o.nc);

  // In-progress heartbeats for every task held longer than heartbeatMs (waiting or running), and the
  // deadline of waiting ones: one timer for the whole worker.
  const beat = setInterval(
    () => {
      const now = Date.now();
      for (const [m, f] of inflight) {
        if (now - f.lastBeat >= heartbeatMs) {
          f.lastBeat = now;
          m.working();
        }
      }
      for (let i = waiting.length - 1; i >= 0; i--) {
        const e = waiting[i]!;
        if (e.deadlineAt > 0 && now > e.deadlineAt) turnAway(e, 'deadline');
      }
      for (const f of inflight.values()) {
        if (f.park && f.deadlineAt > 0 && now > f.deadlineAt) f.park('deadline');
        // So is the mark of a task waiting for its limit.
        const mark = f.waitMark;
        if (mark && now - mark.renewedAt >= limiter.leaseMs / 3) putWaitMark(f, mark);
        // A concurrency slot is renewed while its task waits or runs (a third of its TTL at most apart).
        const lease = f.lease;
        if (lease && now - lease.renewedAt >= limiter.leaseMs / 3)
          lease.renew().then(
            (ok) => ok || o.log.warn({ flowId: f.task.flowId, task: f.task.task, key: lease.key }, 'concurrency slot lost (not renewed within its TTL): another task may hold it'),
            (err: unknown) => o.log.warn({ err: (err as Error).message, key: lease.key }, 'concurrency slot not renewed; retrying'),
          );
      }
    },
    Math.max(50, Math.floor(heartbeatMs / 2)),
  );
  beat.unref();

  const publishResult = async (
    task: Task,
    status: TaskStatus,
    extra: Partial<{ outputJson: Uint8Array; outputRef: string; errorCode: string; errorMessage: string; startedAt: number }>,
    attempts: number,
  ) => {
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
      // Proves the result answers this dispatch: the orchestrator applies no result without it.
      resultToken: task.resultToken,
      // A mapped task's chunk: which one this answers (each chunk's result has its own message id).
      chunkIndex: task.chunkIndex,
    });
    const h = natsHeaders();
    h.set('Jetflow-Flow-Id', task.flowId);
    h.set('Jetflow-Kind', 'result');
    const msgId = task.chunkCount > 0 ? `${task.flowId}:${task.task}:${task.chunkIndex}:result` : `${task.flowId}:${task.task}:result`;
    await pub.publish(resultSubject(o.partitions, task.flowId), body, { msgId, headers: h });
  };

  /** A task of a cancelled flow that never ran: a cancelled result (the orchestrator expects one per task). */
  const skipCancelled = async (m: JsMsg, task: Task, attempt: number) => {
    await publishResult(task, TaskStatus.CANCELLED, { errorCode: 'cancelled', errorMessage: 'flow cancelled before the task started' }, attempt);
    publishEvent(o.nc, task.tenant, { flowId: task.flowId, flow: task.flow, type: 'task.skipped', task: task.task, attempt, message: 'flow cancelled before the task started' });
    m.ack();
    o.onOutcome?.(task, 'cancelled', 0);
  };
  const failPastDeadline = async (m: JsMsg, task: Task, attempt: number) => {
    await publishResult(task, TaskStatus.FAILED, { errorCode: 'timeout', errorMessage: 'flow deadline passed before the task started' }, attempt);
    m.ack();
    o.onOutcome?.(task, 'failed', 0);
  };

  /**
   * After a reconnect the views may be behind their buckets (a pause or a cancel set meanwhile): the
   * task waits for them to catch up (heartbeated), up to a few seconds; then, while the paused subjects'
   * view is still behind, it reads its subject's flag itself (held while that read fails).
   */
  const pausedWhileStale = async (m: JsMsg, subject: string): Promise<boolean> => {
    for (let i = 0; i < 5 && (paused.stale || cancelled.stale) && !handingBack; i++) {
      m.working();
      if ((await paused.fresh(1_000)) && (await cancelled.fresh(1_000))) break;
    }
    if (!paused.stale) return paused.has(subject);
    try {
      return await paused.inStore(subject);
    } catch (err) {
      o.log.warn({ err: (err as Error).message, subject }, 'paused-subjects view behind and the flag not read; the task waits');
      return true;
    }
  };

  const handle = async (m: JsMsg) => {
    const subject = baseTaskSubject(m.subject);
    // Pulled by a fetch that was open when its subject was paused: it waits here, heartbeated, using no attempt.
    // The steady state costs one flag: the store is read only while the views are behind (after a reconnect).
    while (!handingBack && (paused.has(subject) || ((paused.stale || cancelled.stale) && (await pausedWhileStale(m, subject))))) {
      m.working();
      await new Promise((r) => setTimeout(r, 1_000));
    }
    held++;
    try {
      await handleHeld(m);
    } finally {
      held--;
      wakeCapacity();
    }
  };

  const putWaitMark = (entry: InFlight, mark: NonNullable<InFlight['waitMark']>) => {
    const t = entry.task;
    mark.renewedAt = Date.now();
    const prev = mark.put;
    mark.put = prev.then(() =>
      limiter.markWaiting(mark.subject, { flowId: t.flowId, task: t.task, ...(t.chunkCount > 0 ? { chunk: t.chunkIndex } : {}) }, mark.info).catch((err: unknown) => {
        o.log.warn({ err: (err as Error).message, flowId: t.flowId, task: t.task }, 'waiting-for-limit mark not written (KV); the flow view may not show it');
        return undefined;
      }),
    );
  };
  /** The task may start (or was turned away): its waiting mark goes. */
  const clearWaitMark = (entry: InFlight) => {
    const mark = entry.waitMark;
    if (!mark) return;
    entry.waitMark = undefined;
    void mark.put
      .then((key) => (key ? limiter.clearWaiting(key) : undefined))
      .catch((err: unknown) => o.log.warn({ err: (err as Error).message, flowId: entry.task.flowId, task: entry.task.task }, 'waiting-for-limit mark not deleted; it expires at its TTL'));
  };

  /**
   * A task that has to wait for its limit: the metric, a `task.waiting` event on its flow (once per limit),
   * and its waiting mark in KV (the flow view's `waitingForLimit`).
   */
  const limitDelayed = (entry: InFlight, subject: string, limit: 'concurrency' | 'rate', waitMs?: number) => {
    const task = entry.task;
    o.onLimitDelay?.(subject, limit);
    if (entry.waitMark?.info.kind !== limit) {
      const info: WaitingForLimit = {
        kind: limit,
        key: (limit === 'concurrency' ? task.concurrencyKey : task.rateKey).split('=')[0] ?? '',
        limit: limit === 'concurrency' ? task.concurrencyLimit : task.ratePerSecond,
        since: Date.now(),
      };
      const mark = entry.waitMark ?? { info, subject, renewedAt: 0, put: Promise.resolve(undefined) };
      mark.info = info;
      entry.waitMark = mark;
      putWaitMark(entry, mark);
    }
    const message =
      limit === 'concurrency'
        ? `waiting for its concurrency limit (${task.concurrencyLimit} at once per ${task.concurrencyKey.split('=')[0]})`
        : `waiting ${Math.round(waitMs ?? 0)} ms for its rate limit (${task.ratePerSecond}/s per ${task.rateKey.split('=')[0]})`;
    publishEvent(o.nc, task.tenant, { flowId: task.flowId, flow: task.flow, type: 'task.waiting', task: task.task, message });
  };

  /** Tries the slots of a gate's key for its oldest waiter until none waits; pauses 150-400 ms between tries. */
  const pump = async (gateKey: string, gate: LimitGate) => {
    if (gate.pumping) return;
    gate.pumping = true;
    try {
      while (gate.queue.length) {
        const head = gate.queue[0]!;
        const t = head.entry.task;
        let lease: LimitLease | undefined;
        try {
          lease = await limiter.tryAcquire(head.subject, t.concurrencyKey, t.concurrencyLimit, { flowId: t.flowId, task: t.task, ...(t.chunkCount > 0 ? { chunk: t.chunkIndex } : {}) });
        } catch (err) {
          o.log.warn({ err: (err as Error).message, subject: head.subject }, 'concurrency slot not acquired (KV); retrying');
        }
        if (lease) {
          // The head may have been turned away meanwhile: the slot goes to the oldest one still waiting.
          const w = gate.queue.shift();
          if (w) w.grant(lease);
          else await lease.release().catch(() => undefined);
          continue;
        }
        for (const w of gate.queue) {
          if (w.delayed) continue;
          w.delayed = true;
          limitDelayed(w.entry, w.subject, 'concurrency');
        }
        await new Promise<void>((r) => {
          const timer = setTimeout(r, 150 + Math.random() * 250);
          gate.poke = () => (clearTimeout(timer), r());
        });
        gate.poke = undefined;
      }
    } finally {
      gate.pumping = false;
      if (!gate.queue.length && gates.get(gateKey) === gate) gates.delete(gateKey);
    }
  };

  /**
   * Waits for a task's limits, holding no slot: a concurrency slot of its subject and key value (the
   * lease stays with the entry until the task ends), then its start time under the rate limit. The
   * message is heartbeated meanwhile, so the wait is no delivery and no attempt.
   */
  const waitForLimits = async (m: JsMsg, task: Task, entry: InFlight): Promise<Admission> => {
    // Limits are per task subject, whatever priority band the task came on.
    const subject = baseTaskSubject(m.subject);
    let turnedAway!: (a: Admission) => void;
    const away = new Promise<Admission>((r) => (turnedAway = r));
    entry.park = (a) => {
      entry.park = undefined;
      turnedAway(a);
    };
    try {
      if (task.concurrencyLimit > 0) {
        const gateKey = `${subject} ${task.concurrencyLimit} ${task.concurrencyKey}`;
        entry.gateKey = gateKey;
        let gate = gates.get(gateKey);
        if (!gate) gates.set(gateKey, (gate = { queue: [], pumping: false }));
        const g = gate;
        let waiter!: LimitGate['queue'][number];
        const granted = new Promise<LimitLease>((grant) => g.queue.push((waiter = { entry, subject, grant })));
        void pump(gateKey, g);
        const got = await Promise.race([granted, away]);
        if (typeof got === 'string') {
          const i = g.queue.indexOf(waiter);
          if (i >= 0) g.queue.splice(i, 1);
          // Granted in the same turn it was turned away: give the slot back.
          else void granted.then((l) => l.release().catch(() => undefined));
          return got;
        }
        entry.lease = got;
      }
      if (task.ratePerSecond > 0) {
        for (;;) {
          let waitMs: number | undefined;
          try {
            waitMs = await limiter.reserveStart(subject, task.rateKey, task.ratePerSecond);
          } catch (err) {
            o.log.warn({ err: (err as Error).message, subject }, 'rate limit start not reserved (KV); retrying');
          }
          if (waitMs === 0) break;
          if (waitMs) limitDelayed(entry, subject, 'rate', waitMs);
          const slept = await Promise.race([new Promise<'run'>((r) => setTimeout(() => r('run'), waitMs ?? 500)), away]);
          if (slept !== 'run') return slept;
          if (waitMs !== undefined) break;
        }
      }
      return 'run';
    } finally {
      entry.park = undefined;
      clearWaitMark(entry);
    }
  };

  const handleHeld = async (m: JsMsg) => {
    let task: Task;
    try {
      task = decodeTask(m.data);
      if (!task.flowId || !task.task) throw new Error('task without flow_id or task name');
      // These become subject tokens (the result and event subjects): a space or wildcard there makes the
      // server drop this worker's connection, and the publish never completes (the task held forever).
      for (const [field, v, re] of TASK_IDS(task)) if (!re.test(v)) throw new Error(`${field} ${JSON.stringify(v.slice(0, 80))} is not a valid id`);
    } catch (err) {
      // A message that cannot be decoded can never succeed: dead-letter it at once.
      await deadLetter(pub, m, 'task', { code: 'decode_error', message: `cannot decode task: ${(err as Error).message}` });
      m.term();
      o.onOutcome?.(undefined, 'dead_lettered', 0);
      return;
    }
    const attempt = m.info.deliveryCount;
    if (cancelled.has(task.flowId)) return skipCancelled(m, task, attempt);
    const deadlineAt = Number(task.deadlineAtMs);
    if (deadlineAt > 0 && Date.now() > deadlineAt) return failPastDeadline(m, task, attempt);
    const entry: InFlight = { task, deadlineAt, lastBeat: Date.now() };
    inflight.set(m, entry);
    try {
      if (task.concurrencyLimit > 0 || task.ratePerSecond > 0) {
        // Waiting for its limit holds no slot: the pulls may fetch other work meanwhile (up to maxParked).
        held--;
        parked++;
        wakeCapacity();
        let a: Admission;
        try {
          a = await waitForLimits(m, task, entry);
        } finally {
          parked--;
          held++;
          wakeCapacity();
        }
        if (a === 'cancelled') return await skipCancelled(m, task, attempt);
        if (a === 'deadline') return await failPastDeadline(m, task, attempt);
        if (a === 'stop') return;
      }
      let admission: Admission = 'run';
      if (running < slots) running++;
      else admission = await new Promise<Admission>((r) => ((entry.admit = r), waiting.push(entry)));
      if (admission === 'cancelled') return await skipCancelled(m, task, attempt);
      if (admission === 'deadline') return await failPastDeadline(m, task, attempt);
      if (admission === 'stop') return; // handed back by stop()
      try {
        if (cancelled.has(task.flowId)) return await skipCancelled(m, task, attempt);
        await run(m, task, entry, attempt);
      } finally {
        release();
      }
    } finally {
      inflight.delete(m);
      const lease = entry.lease;
      if (lease) {
        entry.lease = undefined;
        lease
          .release()
          .catch((err: unknown) => o.log.warn({ err: (err as Error).message, key: lease.key }, 'concurrency slot not released; it frees at its TTL'))
          .finally(() => gates.get(entry.gateKey!)?.poke?.());
      }
    }
  };

  const run = async (m: JsMsg, task: Task, entry: InFlight, attempt: number) => {
    // A child logger costs more than a noop task: make it only when something is logged.
    let child: Logger | undefined;
    const logFor = () => (child ??= flowLogger(o.log, { flowId: task.flowId, task: task.task, subject: m.subject, attempt }, m.headers?.get('traceparent')));
    let rejectHard: ((e: Error) => void) | undefined;
    const limits = new TaskLimits({ softMs: task.softLimitMs || 5_000, hardMs: task.hardLimitMs || 10_000, deadlineAt: entry.deadlineAt, onHard: (e) => rejectHard?.(e) });
    entry.limits = limits;
    limits.start();
    const started = limits.startedAt;
    const ctx: TaskContext = {
      get signal() {
        return limits.signal;
      },
      get hardSignal() {
        return limits.hardSignal;
      },
      attempt,
      get log() {
        return logFor();
      },
      get softDeadlineAt() {
        return limits.softDeadlineAt;
      },
      pauseLimits: () => limits.pause(),
      heartbeat: () => {
        entry.lastBeat = Date.now();
        m.working();
      },
    };
    /** The flow was cancelled while the task ran: whatever it returned, its result is a cancelled one. */
    const publishCancelled = async (detail: string) => {
      try {
        await publishResult(task, TaskStatus.CANCELLED, { errorCode: 'cancelled', errorMessage: `flow cancelled while the task ran (${detail})`, startedAt: started }, attempt);
      } catch (e) {
        logFor().warn({ err: (e as Error).message }, 'cancelled result not published; will be redelivered');
        m.nak(1_000);
        return;
      }
      publishEvent(o.nc, task.tenant, { flowId: task.flowId, flow: task.flow, type: 'task.cancelled', task: task.task, attempt, message: detail });
      m.ack();
      o.onOutcome?.(task, 'cancelled', Date.now() - started);
    };
    let ran = false;
    try {
      const out = await new Promise<TaskOutput>((resolve, reject) => {
        rejectHard = reject;
        o.handler(task, ctx).then(resolve, reject);
      });
      if (limits.cancelled || cancelled.has(task.flowId)) return await publishCancelled('its output was dropped');
      const outputJson = out.outputJson ?? (out.output !== undefined ? encodeUtf8(JSON.stringify(out.output)) : undefined);
      ran = true;
      await publishResult(task, TaskStatus.SUCCEEDED, { ...(outputJson ? { outputJson } : {}), ...(out.outputRef ? { outputRef: out.outputRef } : {}), startedAt: started }, attempt);
      m.ack();
      o.onOutcome?.(task, 'succeeded', Date.now() - started);
    } catch (err) {
      if (handingBack && limits.hardAborted) {
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
      const message = (err as Error)?.message ?? String(err);
      // Stopped because its flow was cancelled: no retry, no dead letter.
      if (limits.cancelled) return await publishCancelled(limits.hardAborted ? `stopped after ${Date.now() - started} ms: ${message}` : message);
      const code = err instanceof HardLimitError ? ErrorCodes.TIMEOUT : codeOf(err);
      const maxAttempts = task.maxAttempts || 3;
      if (!isTerminal(err) && attempt < maxAttempts) {
        const delay = backoffDelay(attempt, task.backoffInitialMs || 200, task.backoffMaxMs || 5_000, task.backoffMultiplier || 2);
        logFor().warn({ code, err: message, retryInMs: delay }, 'task failed; retrying');
        publishEvent(o.nc, task.tenant, { flowId: task.flowId, flow: task.flow, type: 'task.retrying', task: task.task, attempt, message: `${code}: ${message}` });
        m.nak(delay);
        o.onOutcome?.(task, 'retried', Date.now() - started, err);
        return;
      }
      logFor().error({ code, err: message }, 'task failed for good; dead-lettering');
      try {
        await deadLetter(pub, m, 'task', { code, message, flowId: task.flowId, attempts: attempt });
        await publishResult(task, TaskStatus.FAILED, { errorCode: code, errorMessage: message, startedAt: started }, attempt);
        m.term();
        o.onOutcome?.(task, 'dead_lettered', Date.now() - started, err);
      } catch (e) {
        // Could not record the failure durably: let it come back.
        logFor().warn({ err: (e as Error).message }, 'could not dead-letter; will be redelivered');
        m.nak(1_000);
      }
    } finally {
      limits.dispose();
    }
  };

  // Each subject's priority bands (high, normal, low consumers) are pulled in weighted turns (bands.ts).
  const loops: PullLoop[] = o.subjects.map((s) =>
    startBandedPullLoop({
      js,
      stream: STREAMS.tasks,
      consumers: CONSUMERS.taskAll(s),
      weights: PRIORITY_BANDS.map((b) => BAND_WEIGHTS[b]),
      concurrency: slots,
      // Every subject's pull asks for at most the worker's free slots (and holds at most maxParked waiting for a limit).
      capacity: () => (paused.has(s) ? 0 : Math.min(slots - held, maxParked - parked)),
      whenCapacity: () => new Promise<void>((r) => capacityWaiters.push(r)),
      handle,
      log: o.log,
    }),
  );

  const announcer: Announcer | undefined = o.announce
    ? announceWorker({ nc: o.nc, ...o.announce, id: o.workerId, subjects: o.subjects, concurrency: slots, busy: () => running, log: o.log })
    : undefined;

  return {
    get inFlight() {
      return inflight.size;
    },
    get busy() {
      return running;
    },
    async stop(graceMs: number) {
      // It fetches no more from now on: readers stop counting it as serving its subjects.
      const unannounced = announcer?.stop();
      const all = Promise.all(loops.map((l) => l.stop()));
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
      if ((await Promise.race([all, timeout])) === 'timeout') {
        // Hand the rest back now so another replica picks it up without waiting for ack_wait.
        handingBack = true;
        for (const [m, f] of inflight) {
          m.nak();
          if (f.park) f.park('stop');
          else if (f.admit) turnAway(f, 'stop');
          else f.limits?.abortHard(new Error('shutting down'));
        }
        await Promise.race([all, new Promise((r) => setTimeout(r, 1_000))]);
      }
      clearInterval(beat);
      cancelled.stop();
      paused.stop();
      await unannounced;
      pub.close();
    },
  };
}

/** The KV key (jetflow_pauses) of a paused task subject: `subject.<kind>.<name>` for jetflow.task.<kind>.<name>. */
export const subjectPauseKey = (subject: string) => `subject.${subject.split('.').slice(2).join('.')}`;

/** A KV view of the worker (paused subjects, cancelled flows) and whether it may be behind its bucket. */
export interface KeyView {
  /**
   * True from a disconnect from NATS (or the end of its watch) until a new watch has caught up with the
   * bucket again: a NATS restart loses the watch's ordered consumer, so the view would be blind until the
   * library noticed the missing heartbeats. False while the view has never been current (no permission,
   * the bucket missing: it works without it, as at start).
   */
  readonly stale: boolean;
  /** Resolves once the view is not stale, or after timeoutMs; whether it is current. */
  fresh(timeoutMs: number): Promise<boolean>;
  stop(): void;
}

/**
 * The task subjects paused by the API, kept current by a watch of their flags in jetflow_pauses (no round
 * trip per pull); `onChange` is told when one is paused or resumed. Without the watch (no permission, the
 * bucket missing) nothing counts as paused, and the start does not wait for it. While the view is stale
 * (after a reconnect), `inStore` reads a subject's flag itself.
 */
export async function watchPausedSubjects(
  js: JetStreamClient,
  log: Logger,
  onChange: () => void,
  nc?: NatsConnection,
): Promise<KeyView & { has(subject: string): boolean; inStore(subject: string): Promise<boolean> }> {
  const keys = new Set<string>();
  const watch = await watchKeys(js, log, {
    bucket: BUCKETS.pauses,
    key: 'subject.>',
    what: 'paused-subjects',
    retryMs: 1_000,
    readyOnError: true,
    ...(nc ? { nc } : {}),
    onPut(key) {
      keys.add(key);
      onChange();
    },
    onDelete(key) {
      keys.delete(key);
      onChange();
    },
    has: (key) => keys.has(key),
    keys: () => keys,
  });
  return {
    has: (subject) => keys.has(subjectPauseKey(subject)),
    async inStore(subject) {
      const e = await (await js.views.kv(BUCKETS.pauses, { bindOnly: true })).get(subjectPauseKey(subject));
      return e?.operation === 'PUT';
    },
    get stale() {
      return watch.stale;
    },
    fresh: (ms) => watch.fresh(ms),
    stop: () => watch.stop(),
  };
}

/** Keeps the set of cancelled flows current by watching the cancel bucket (no round trip per task); tells onCancel of each. */
export async function watchCancellations(
  js: JetStreamClient,
  log: Logger,
  /** Told of every flow cancelled from now on (and of the flags already set, at start, and those set while the view was stale). */
  onCancel?: (flowId: string) => void,
  nc?: NatsConnection,
): Promise<KeyView & { has(flowId: string): boolean }> {
  const set = new Set<string>();
  // Start serving only once the flags already set are known, so a queued task of a cancelled flow is skipped.
  const watch = await watchKeys(js, log, {
    bucket: BUCKETS.cancel,
    key: '>',
    what: 'cancel',
    retryMs: 500,
    ...(nc ? { nc } : {}),
    onPut(key) {
      set.add(key);
      onCancel?.(key);
    },
    onDelete: (key) => set.delete(key),
    has: (key) => set.has(key),
    keys: () => set,
  });
  return {
    has: (id) => set.has(id),
    get stale() {
      return watch.stale;
    },
    fresh: (ms) => watch.fresh(ms),
    stop: () => watch.stop(),
  };
}

/**
 * The one watch loop of the worker's KV views (paused subjects, cancelled flows): the keys of `key` in
 * `bucket` that are set, kept by the caller through onPut (a key newly set) and onDelete (a key deleted),
 * the current values first; a failed watch is retried after retryMs until stop().
 *
 * A NATS restart loses the watch's consumer; the library only notices after its missed heartbeats
 * (seconds), so on a disconnect (`nc`'s status) the view turns stale, and on the reconnect the watch is
 * started again at once: its current values rebuild the view (keys it no longer lists are deleted) and
 * the view is current again. The same when the watch ends or fails.
 *
 * Resolves once the values already set have been seen, or after 5 s at most (at once on a failure when
 * readyOnError: a view that may be missing does not hold up the start).
 */
async function watchKeys(
  js: JetStreamClient,
  log: Logger,
  o: {
    bucket: string;
    key: string;
    what: string;
    retryMs: number;
    readyOnError?: boolean;
    nc?: NatsConnection;
    onPut: (key: string) => void;
    onDelete: (key: string) => void;
    has: (key: string) => boolean;
    keys: () => Iterable<string>;
  },
): Promise<KeyView> {
  let stopped = false;
  let w: { stop(): void } | undefined;
  /** The view has been current once (so a stale one is worth waiting for). */
  let everCurrent = false;
  let stale = true;
  let freshWaiters: Array<() => void> = [];
  const markFresh = () => {
    stale = false;
    const f = freshWaiters;
    freshWaiters = [];
    for (const r of f) r();
  };
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (markReady = r));
  /** A reconnect asked for a new watch now (no pause before it); `wake` ends a pause between tries. */
  let restartNow = false;
  let wake: (() => void) | undefined;

  const run = async () => {
    while (!stopped) {
      // Keys seen by this watch; once it has caught up, the others are no longer set.
      const seen = new Set<string>();
      let caughtUp = false;
      let target = -1;
      let processed = 0;
      const catchUp = () => {
        if (caughtUp) return;
        caughtUp = true;
        for (const k of [...o.keys()]) if (!seen.has(k)) o.onDelete(k);
        everCurrent = true;
        markFresh();
        markReady();
      };
      try {
        const kv = await js.views.kv(o.bucket);
        let returned = false;
        let early = false;
        const iter = await kv.watch({
          key: o.key,
          // Called in order after the current values, or (before watch() returns) while some are still queued.
          initializedFn: () => (returned ? catchUp() : (early = true)),
        });
        returned = true;
        w = iter;
        // Stopped, or a reconnect came while it was being set up: start again.
        if (stopped || restartNow) iter.stop();
        if (early) {
          target = iter.getReceived();
          if (target === 0) catchUp();
        }
        for await (const e of iter) {
          if (!caughtUp) seen.add(e.key);
          if (e.operation === 'PUT') {
            if (!o.has(e.key)) o.onPut(e.key);
          } else if (o.has(e.key)) o.onDelete(e.key);
          if (++processed === target) catchUp();
        }
      } catch (err) {
        if (o.readyOnError) {
          if (!everCurrent) markFresh();
          markReady();
        }
        if (!stopped) log.warn({ err: (err as Error).message }, `${o.what} watch failed; retrying`);
      }
      w = undefined;
      if (stopped) break;
      if (everCurrent) stale = true;
      // A reconnect restarts the watch at once; a failure after retryMs.
      if (!restartNow)
        await new Promise<void>((r) => {
          const t = setTimeout(r, o.retryMs);
          wake = () => (clearTimeout(t), r());
        });
      wake = undefined;
      restartNow = false;
    }
  };
  const status = o.nc?.status() as (AsyncIterable<Status> & { stop?: () => void }) | undefined;
  if (status)
    void (async () => {
      for await (const s of status) {
        if (stopped) break;
        if (s.type === Events.Disconnect && everCurrent) stale = true;
        else if (s.type === Events.Reconnect) {
          if (everCurrent) stale = true;
          // The watch's consumer may be gone with the server: start a new one now.
          restartNow = true;
          w?.stop();
          wake?.();
        }
      }
    })();
  void run();
  await Promise.race([ready, new Promise((r) => setTimeout(r, 5_000).unref())]);
  return {
    get stale() {
      return stale && everCurrent;
    },
    fresh(timeoutMs) {
      if (!stale || !everCurrent) return Promise.resolve(true);
      return new Promise<boolean>((res) => {
        const t = setTimeout(() => {
          freshWaiters = freshWaiters.filter((f) => f !== done);
          res(false);
        }, timeoutMs);
        const done = () => (clearTimeout(t), res(true));
        freshWaiters.push(done);
      });
    },
    stop() {
      stopped = true;
      w?.stop();
      wake?.();
      status?.stop?.();
    },
  };
}
