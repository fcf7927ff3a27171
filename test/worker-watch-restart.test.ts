/**
 * The worker runtime's views of paused subjects and cancelled flows (KV jetflow_pauses, jetflow_cancel)
 * through a real nats-server restart (kill -9), in this process: a NATS restart loses the watches'
 * consumers, and the library would only notice after its missed heartbeats (seconds). A subject paused
 * right after the server is back takes none of its tasks until resumed, a pause set before a restart holds
 * after it and a resume right after another is followed, and a cancel written right after the restart
 * reaches the task that runs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, headers as natsHeaders, type NatsConnection } from 'nats';
import { TaskStatus } from '@jetflow/proto';
import { BUCKETS, decodeTaskResult, encodeTask, encodeTaskShared, provisionTopology, startTaskWorker, subjectPauseKey, type TaskWorker } from '@jetflow/messaging';
import { createLogger } from '@jetflow/logging';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';

const PAUSED = 'jetflow.task.test.watchpause';
const LONG = 'jetflow.task.test.watchcancel';
const log = createLogger('worker-watch-restart-test', 'error');
// As the services connect (libs/messaging connect.ts): reconnect forever, quickly.
const reconnecting = { maxReconnectAttempts: -1, reconnectTimeWait: 250, reconnectJitter: 100 };

describe('worker runtime: paused subjects and cancels right after a NATS restart', () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  let worker: TaskWorker;
  const starts: Array<{ flowId: string; at: number }> = [];
  const results: Array<ReturnType<typeof decodeTaskResult>> = [];
  /** When the long task of a flow ends on its own (unless its flow is cancelled first). */
  const endsAt = new Map<string, number>();
  let n = 0;

  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url, ...reconnecting });
    await provisionTopology(nc, { partitions: 1, taskSubjects: [PAUSED, LONG], taskAckWaitMs: 2_000 });
    void (async () => {
      for await (const m of nc.subscribe('jetflow.result.>')) results.push(decodeTaskResult(m.data));
    })();
    worker = await startTaskWorker({
      nc,
      subjects: [PAUSED, LONG],
      concurrency: 4,
      partitions: 1,
      log,
      workerId: 'ww1',
      heartbeatMs: 300,
      cancelGraceMs: 300,
      handler: async (task, ctx) => {
        starts.push({ flowId: task.flowId, at: Date.now() });
        if (task.task !== 'long') return { output: { ok: true } };
        // Runs until endsAt (set by the test), or until its flow is cancelled.
        for (;;) {
          const end = endsAt.get(task.flowId) ?? Date.now() + 60_000;
          if (ctx.signal.aborted || Date.now() >= end) break;
          await sleep(50);
        }
        return { output: { ok: true } };
      },
    });
  });
  after(async () => {
    await worker?.stop(1_000);
    await nc?.close();
    await nats?.stop();
  });

  const publishTask = async (flowId: string, task: string, subject: string) => {
    const body = encodeTask(encodeTaskShared({ flowId, tenant: 'default', flow: 'test', flowVersion: 1, stage: 0, deps: [], deadlineAtMs: Date.now() + 120_000 }), {
      task,
      subject,
      softLimitMs: 60_000,
      hardLimitMs: 90_000,
      maxAttempts: 3,
      backoffInitialMs: 100,
      backoffMaxMs: 200,
      dispatchedAtMs: Date.now(),
    });
    const h = natsHeaders();
    h.set('Nats-Msg-Id', `${flowId}:${task}`);
    // Right after a restart the stream may still be recovering: retry the publish.
    for (let i = 0; ; i++) {
      try {
        await nc.jetstream().publish(subject, body, { headers: h, timeout: 2_000 });
        return;
      } catch (err) {
        if (i > 20) throw err;
        await sleep(250);
      }
    }
  };
  const until = async <T>(what: string, fn: () => T | undefined, timeoutMs = 30_000): Promise<T> => {
    for (const end = Date.now() + timeoutMs; ; await sleep(50)) {
      const v = fn();
      if (v !== undefined) return v;
      if (Date.now() > end) assert.fail(`${what}: not within ${timeoutMs} ms`);
    }
  };
  /** A connection of its own to the server just restarted (the others may still be reconnecting). */
  const freshKv = async (bucket: string) => {
    const c = await connect({ servers: nats.url });
    return { kv: await c.jetstream().views.kv(bucket, { bindOnly: true }), close: () => c.close() };
  };

  it('a subject paused within 1 s of the server being back takes none of its tasks until resumed', async () => {
    const warm = `fwatch${++n}`;
    await publishTask(warm, 'work', PAUSED);
    await until('the warm-up task ran', () => results.find((r) => r.flowId === warm));

    await nats.kill();
    await nats.restart();
    const backAt = Date.now();
    const { kv, close } = await freshKv(BUCKETS.pauses);
    await kv.put(subjectPauseKey(PAUSED), new TextEncoder().encode('paused'));
    const pausedAfterMs = Date.now() - backAt;
    assert.ok(pausedAfterMs < 1_000, `paused ${pausedAfterMs} ms after the server was back`);

    const ids = Array.from({ length: 4 }, () => `fwatch${++n}`);
    for (const id of ids) await publishTask(id, 'work', PAUSED);
    // Room for the worker to reconnect, pull the tasks, and (wrongly) run them; longer than the
    // library's missed-heartbeat recovery of a lost watch.
    await sleep(9_000);
    assert.deepEqual(
      starts.filter((s) => ids.includes(s.flowId)).map((s) => s.flowId),
      [],
      'no task of the paused subject started',
    );

    await kv.delete(subjectPauseKey(PAUSED));
    await close();
    for (const id of ids) {
      const r = await until(`${id} ran after the resume`, () => results.find((x) => x.flowId === id));
      assert.equal(r.status, TaskStatus.SUCCEEDED);
    }
    for (const id of ids) assert.equal(starts.filter((s) => s.flowId === id).length, 1, `${id} started once`);
  });

  it('the view rebuilt after a restart keeps a pause set before it, and follows the resume right after', async () => {
    const { kv, close } = await freshKv(BUCKETS.pauses);
    await kv.put(subjectPauseKey(PAUSED), new TextEncoder().encode('paused'));
    await sleep(500); // the watch brings the flag
    await nats.kill();
    await nats.restart();
    await close();
    const ids = Array.from({ length: 2 }, () => `fwatch${++n}`);
    for (const id of ids) await publishTask(id, 'work', PAUSED);
    await sleep(3_000);
    assert.deepEqual(
      starts.filter((s) => ids.includes(s.flowId)),
      [],
      'still paused after the restart',
    );
    // Resumed through another restart: the new watch sees the flag deleted.
    await nats.kill();
    await nats.restart();
    const again = await freshKv(BUCKETS.pauses);
    await again.kv.delete(subjectPauseKey(PAUSED));
    await again.close();
    for (const id of ids) assert.equal((await until(`${id} ran after the resume`, () => results.find((x) => x.flowId === id))).status, TaskStatus.SUCCEEDED);
  });

  it('a cancel written right after a NATS restart reaches the running task', async () => {
    const id = `fwatch${++n}`;
    await publishTask(id, 'long', LONG);
    await until('the long task started', () => starts.find((s) => s.flowId === id));

    await nats.kill();
    await nats.restart();
    const { kv, close } = await freshKv(BUCKETS.cancel);
    await kv.put(id, new TextEncoder().encode('cancelled'));
    await close();
    // The task would end on its own (succeeded) 3 s after the cancel: its flow's cancel must reach it first.
    endsAt.set(id, Date.now() + 3_000);
    const r = await until(`${id}'s result`, () => results.find((x) => x.flowId === id));
    assert.equal(r.status, TaskStatus.CANCELLED, `result ${TaskStatus[r.status]}: the cancel did not reach the running task`);
    assert.match(r.errorMessage, /flow cancelled while the task ran/);
  });
});
