import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { CHAOS_BUSY, createWorkerPool, workerFileNextTo, type BusyJob, type BusyReport } from './index.js';

type Job = { busyMs: number; ignoreSignal?: boolean };

describe('worker pool: when a job starts, and stopping one that ignores its signal', () => {
  const pool = createWorkerPool<Job, BusyJob, BusyReport>({
    threads: 1,
    filename: workerFileNextTo(import.meta.url, 'busy-worker'),
    toJob: (j) => ({ plugin: CHAOS_BUSY, records: [{ id: 'j', text: '', fields: { busyMs: j.busyMs, ignoreSignal: j.ignoreSignal ? 1 : 0 } }] }),
  });
  after(() => pool.destroy());

  it('onStart fires when a thread starts the job, not while it waits in the queue', async () => {
    await pool.run({ busyMs: 0 }); // the thread is up
    const t0 = Date.now();
    const starts: Record<string, number> = {};
    const ends: Record<string, number> = {};
    const go = (name: string, busyMs: number) => pool.runDetailed({ busyMs }, { onStart: () => (starts[name] = Date.now() - t0) }).then(() => (ends[name] = Date.now() - t0));
    await Promise.all([go('first', 400), go('second', 50)]);
    assert.ok(starts.first! < 200, `first started at ${starts.first} ms`);
    // One thread: the second job waited for the first; its start is when the first ended, not t0.
    assert.ok(starts.second! >= 390 && starts.second! >= ends.first! - 50, JSON.stringify({ starts, ends }));
  });

  it('the hard signal terminates a thread whose job never looks at its signal, and the pool keeps serving', async () => {
    const soft = new AbortController();
    const hard = new AbortController();
    const t0 = Date.now();
    const running = pool.runDetailed(
      { busyMs: 30_000, ignoreSignal: true },
      {
        signal: hard.signal,
        softSignal: soft.signal,
        onStart: () => {
          soft.abort();
          setTimeout(() => hard.abort(), 200);
        },
      },
    );
    await assert.rejects(running, { code: 'cancelled', message: /worker thread terminated/ });
    assert.ok(Date.now() - t0 < 5_000, `stopped after ${Date.now() - t0} ms`);
    const next = await pool.runDetailed({ busyMs: 10 });
    assert.equal(next.result.busyMs, 10, 'a fresh thread took over');
  });
});
