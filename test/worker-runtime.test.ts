/**
 * The worker runtime (libs/messaging worker.ts) against a real nats-server, in this process: slots
 * shared by all subjects, heartbeats and no running limits while a task waits, limits that count from
 * when a pool thread starts the job, and cancellation of running and waiting tasks.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, headers as natsHeaders, type NatsConnection } from 'nats';
import { FlowEventSchema, TaskStatus, type Task } from '@jetflow/proto';
import { fromBinary } from '@bufbuild/protobuf';
import { BUCKETS, CONSUMERS, STREAMS, decodeTaskResult, encodeTask, encodeTaskShared, provisionTopology, startTaskWorker, type TaskContext, type TaskHandler } from '@jetflow/messaging';
import { createLogger } from '@jetflow/logging';
import { CHAOS_BUSY, createWorkerPool, runUnderLimits, workerFileNextTo, type BusyReport, type BusyJob } from '@jetflow/pool';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';

const SUBJECTS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((s) => `jetflow.task.test.rt${s}`);
const log = createLogger('worker-runtime-test', 'error');

interface Seen {
  results: Array<ReturnType<typeof decodeTaskResult> & { at: number }>;
  events: Array<{ type: string; task: string; flowId: string; at: number }>;
}

describe('worker runtime: slots, limits that count running time, cancellation', () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  const seen: Seen = { results: [], events: [] };
  let n = 0;

  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    // A 1 s ack wait: a task held longer than that without heartbeats would be redelivered.
    await provisionTopology(nc, { partitions: 1, taskSubjects: SUBJECTS, taskAckWaitMs: 1_000 });
    const results = nc.subscribe('jetflow.result.>');
    void (async () => {
      for await (const m of results) seen.results.push({ ...decodeTaskResult(m.data), at: Date.now() });
    })();
    const events = nc.subscribe('jetflow.event.>');
    void (async () => {
      for await (const m of events) {
        const e = fromBinary(FlowEventSchema, m.data);
        seen.events.push({ type: e.type, task: e.task, flowId: e.flowId, at: Date.now() });
      }
    })();
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  const flowId = () => `fworker${++n}`;
  const publishTask = async (flow: string, task: string, subject: string, limits: { softMs: number; hardMs: number; deadlineAt?: number }) => {
    const body = encodeTask(encodeTaskShared({ flowId: flow, tenant: 'default', flow: 'test', flowVersion: 1, stage: 0, deps: [], deadlineAtMs: limits.deadlineAt ?? Date.now() + 60_000 }), {
      task,
      subject,
      softLimitMs: limits.softMs,
      hardLimitMs: limits.hardMs,
      maxAttempts: 3,
      backoffInitialMs: 100,
      backoffMaxMs: 200,
      dispatchedAtMs: Date.now(),
    });
    const h = natsHeaders();
    h.set('Nats-Msg-Id', `${flow}:${task}`);
    await nc.jetstream().publish(subject, body, { headers: h });
  };
  const resultsOf = async (flow: string, count: number, timeoutMs = 20_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const rs = seen.results.filter((r) => r.flowId === flow);
      if (rs.length >= count || Date.now() > until) return rs;
      await sleep(25);
    }
  };

  it('the subjects of a worker share its slots: a task delivered beyond them waits heartbeated, its limits not running, and is never redelivered', async () => {
    const calls: Array<{ task: string; attempt: number; start: number; end: number }> = [];
    let running = 0;
    let maxRunning = 0;
    const handler: TaskHandler = async (task, ctx) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      const start = Date.now();
      try {
        // 1.2 s of work against a 1.7 s soft limit: it fails if the limit counted the wait for a slot.
        await sleep(1_200, undefined, { signal: ctx.signal });
        return { output: { ok: true } };
      } finally {
        running--;
        calls.push({ task: task.task, attempt: ctx.attempt, start, end: Date.now() });
      }
    };
    const subjects = SUBJECTS.slice(0, 3);
    const worker = await startTaskWorker({ nc, subjects, concurrency: 1, partitions: 1, handler, log, workerId: 'w1', heartbeatMs: 300 });
    try {
      await sleep(300); // every subject's pull is open: the three tasks arrive at once
      const flow = flowId();
      await Promise.all(subjects.map((s, i) => publishTask(flow, `t${i}`, s, { softMs: 1_700, hardMs: 3_000 })));
      const rs = await resultsOf(flow, 3);
      assert.equal(rs.length, 3, rs.map((r) => `${r.task}:${r.status}`).join());
      for (const r of rs) {
        assert.equal(r.status, TaskStatus.SUCCEEDED, `${r.task}: ${r.errorCode} ${r.errorMessage}`);
        assert.equal(r.attempts, 1, `${r.task} was delivered once`);
      }
      assert.equal(maxRunning, 1, 'one slot: one task ran at a time');
      assert.equal(calls.length, 3, 'no task ran twice');
      const byStart = [...calls].sort((x, y) => x.start - y.start);
      assert.ok(byStart[2]!.start - byStart[0]!.start >= 2_200, 'the last one waited for two others (past the 1 s ack wait)');
      await sleep(1_500);
      assert.equal(seen.results.filter((r) => r.flowId === flow).length, 3, 'no redelivery after the end');
    } finally {
      await worker.stop(2_000);
    }
  });

  it('with a real pool of 2 threads and 4 tasks at ~70 % of their soft limit, the limits count from thread start: none times out, none is retried', async () => {
    const pool = createWorkerPool<{ busyMs: number }, BusyJob, BusyReport>({
      threads: 2,
      filename: workerFileNextTo(new URL('../libs/pool/src/index.ts', import.meta.url), 'busy-worker'),
      toJob: (j) => ({ plugin: CHAOS_BUSY, records: [{ id: 'j', text: '', fields: { busyMs: j.busyMs } }] }),
    });
    await Promise.all([pool.run({ busyMs: 0 }), pool.run({ busyMs: 0 })]); // both threads up
    const attempts: number[] = [];
    const handler: TaskHandler = async (_task, ctx) => {
      attempts.push(ctx.attempt);
      const { result } = await runUnderLimits(pool, { busyMs: 700 }, ctx);
      return { output: result };
    };
    // Four slots, two threads: two tasks wait in the pool's queue, which must not count.
    const worker = await startTaskWorker({ nc, subjects: [SUBJECTS[3]!], concurrency: 4, partitions: 1, handler, log, workerId: 'w2', heartbeatMs: 300 });
    try {
      const flow = flowId();
      await Promise.all([0, 1, 2, 3].map((i) => publishTask(flow, `busy${i}`, SUBJECTS[3]!, { softMs: 1_000, hardMs: 2_000 })));
      const rs = await resultsOf(flow, 4);
      assert.equal(rs.length, 4);
      for (const r of rs) {
        assert.equal(r.status, TaskStatus.SUCCEEDED, `${r.task}: ${r.errorCode} ${r.errorMessage}`);
        assert.equal(r.attempts, 1);
      }
      assert.deepEqual(attempts, [1, 1, 1, 1], 'no retry');
      assert.ok(Math.max(...rs.map((r) => Number(r.finishedAtMs))) - Math.min(...rs.map((r) => Number(r.startedAtMs))) >= 1_300, 'two rounds on two threads');
    } finally {
      await worker.stop(2_000);
      await pool.destroy();
    }
  });

  it('cancel: a running task sees its signal at once and its hard signal after the grace; waiting ones are skipped; nothing is published as a success', async () => {
    // Condition-based: each step waits for the state it needs (both slots running, the third task delivered
    // and held), and the signals prove where they came from by their reason, not by how soon they fired.
    const fired: Record<string, { soft?: number; hard?: number; softReason?: unknown; hardReason?: unknown }> = {};
    const started = new Set<string>();
    const returned = new Set<string>();
    let releaseStubborn!: () => void;
    const stubbornReleased = new Promise<void>((r) => (releaseStubborn = r));
    const watch = (name: string, ctx: TaskContext) => {
      const f: (typeof fired)[string] = (fired[name] = {});
      ctx.signal.addEventListener(
        'abort',
        () => {
          f.soft = Date.now();
          f.softReason = ctx.signal.reason;
        },
        { once: true },
      );
      ctx.hardSignal.addEventListener(
        'abort',
        () => {
          f.hard = Date.now();
          f.hardReason = ctx.hardSignal.reason;
        },
        { once: true },
      );
    };
    const handler: TaskHandler = async (task, ctx) => {
      watch(task.task, ctx);
      started.add(task.task);
      try {
        if (task.task === 'stubborn') {
          // Ignores both signals until the test lets it go: the runtime gives up on it at the hard signal.
          await stubbornReleased;
          return { output: { finished: true } };
        }
        // Wraps up shortly after its soft signal, and still returns an output.
        await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
        await sleep(50);
        return { output: { finished: true } };
      } finally {
        returned.add(task.task);
      }
    };
    const until = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000) => {
      const end = Date.now() + timeoutMs;
      while (!(await cond())) {
        if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
        await sleep(25);
      }
    };
    const subjects = SUBJECTS.slice(4, 7);
    // The limits are far away (a minute): a signal for any other reason than the cancel would show in its reason.
    const limits = { softMs: 60_000, hardMs: 65_000 };
    const graceMs = 1_000;
    const worker = await startTaskWorker({ nc, subjects, concurrency: 2, partitions: 1, handler, log, workerId: 'w3', heartbeatMs: 300, cancelGraceMs: graceMs });
    try {
      const flow = flowId();
      const other = flowId();
      await publishTask(flow, 'stubborn', subjects[0]!, limits);
      await publishTask(flow, 'polite', subjects[1]!, limits);
      await until('both slots running', () => started.has('stubborn') && started.has('polite'));
      await publishTask(flow, 'queued', subjects[2]!, limits); // both slots taken: it waits
      const jsm = await nc.jetstreamManager();
      await until('the queued task delivered and held by the worker', async () => (await jsm.consumers.info(STREAMS.tasks, CONSUMERS.task(subjects[2]!))).num_ack_pending === 1);
      assert.ok(!started.has('queued'), 'the third task waits for a slot');
      const kv = await nc.jetstream().views.kv(BUCKETS.cancel);
      await kv.put(flow, new TextEncoder().encode('test'));
      // Results and events travel separately (an event follows its result's PubAck): wait for both.
      const events = () => seen.events.filter((e) => e.flowId === flow);
      await until('three results and three events', () => seen.results.filter((r) => r.flowId === flow).length >= 3 && events().length >= 3);
      const rs = seen.results.filter((r) => r.flowId === flow);
      assert.deepEqual(rs.map((r) => [r.task, r.status]).sort(), [
        ['polite', TaskStatus.CANCELLED],
        ['queued', TaskStatus.CANCELLED],
        ['stubborn', TaskStatus.CANCELLED],
      ]);
      // Both signals of the stubborn task came from the cancel (a limit's reason is a TimeoutError).
      for (const [which, reason] of [
        ['soft', fired.stubborn!.softReason],
        ['hard', fired.stubborn!.hardReason],
      ] as const) {
        assert.ok(reason instanceof Error, `the ${which} signal has a reason`);
        assert.equal(reason.name, 'AbortError', `the ${which} signal fired for the cancel: ${reason.name} ${reason.message}`);
        assert.match(reason.message, /flow was cancelled/);
      }
      assert.ok(fired.stubborn!.hard! - fired.stubborn!.soft! >= graceMs - 50, `the hard signal waited for the grace (${fired.stubborn!.hard! - fired.stubborn!.soft!} ms)`);
      assert.equal(fired.polite!.softReason instanceof Error && fired.polite!.softReason.name, 'AbortError', 'the polite task was signalled for the cancel');
      assert.equal(fired.polite!.hard, undefined, 'a task that stopped within the grace is not hard-aborted');
      assert.equal(fired.queued, undefined, 'the waiting task never started');
      assert.match(rs.find((r) => r.task === 'polite')!.errorMessage, /output was dropped/);
      // Given up at the hard signal: its result came while its handler still held on.
      assert.ok(!returned.has('stubborn'), 'the stubborn handler is still running');
      assert.match(rs.find((r) => r.task === 'stubborn')!.errorMessage, /^flow cancelled while the task ran \(stopped after \d+ ms: the flow was cancelled\)$/);
      assert.deepEqual(
        events()
          .map((e) => `${e.task}:${e.type}`)
          .sort(),
        ['polite:task.cancelled', 'queued:task.skipped', 'stubborn:task.cancelled'],
      );
      // The worker keeps serving other flows (the stubborn handler still holds on: its slot was freed).
      await publishTask(other, 'next', subjects[1]!, { softMs: 200, hardMs: 5_000 });
      const [next] = await resultsOf(other, 1);
      assert.equal(next?.status, TaskStatus.SUCCEEDED);
      // The stubborn handler returns an output after all: it is dropped, never published as a success.
      releaseStubborn();
      await until('the stubborn handler returned', () => returned.has('stubborn'));
      await sleep(500);
      assert.equal(seen.results.filter((r) => r.flowId === flow && r.status === TaskStatus.SUCCEEDED).length, 0, 'no late success');
      assert.equal(seen.results.filter((r) => r.flowId === flow).length, 3, 'one result per task');
    } finally {
      releaseStubborn();
      await worker.stop(2_000);
    }
  });

  it('a task waiting for a slot is bounded by the flow deadline', async () => {
    const handler: TaskHandler = async (task: Task) => {
      if (task.task === 'hog') await sleep(2_500);
      return { output: {} };
    };
    const subjects = [SUBJECTS[7]!, SUBJECTS[0]!];
    const worker = await startTaskWorker({ nc, subjects, concurrency: 1, partitions: 1, handler, log, workerId: 'w4', heartbeatMs: 200 });
    try {
      await sleep(300);
      const flow = flowId();
      const t0 = Date.now();
      await publishTask(flow, 'hog', subjects[0]!, { softMs: 5_000, hardMs: 6_000 });
      await sleep(200); // the hog has the one slot
      await publishTask(flow, 'late', subjects[1]!, { softMs: 5_000, hardMs: 6_000, deadlineAt: t0 + 1_000 });
      const rs = await resultsOf(flow, 2);
      const late = rs.find((r) => r.task === 'late');
      assert.ok(late, 'a result for the waiting task');
      assert.equal(late.status, TaskStatus.FAILED);
      assert.equal(late.errorCode, 'timeout');
      assert.match(late.errorMessage, /deadline passed before the task started/);
      assert.ok(late.at - t0 < 2_000, `turned away ${late.at - t0} ms after publishing`);
      assert.equal(rs.find((r) => r.task === 'hog')?.status, TaskStatus.SUCCEEDED);
    } finally {
      await worker.stop(2_000);
    }
  });
});
