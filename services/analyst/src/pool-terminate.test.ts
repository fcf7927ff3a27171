import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeFeedbackBatch } from '@jetflow/testing';
import { createPool } from './pool.js';

// Terminating a worker thread while onnxruntime creates its InferenceSession aborts the whole process
// (not just the thread). The pool must hold a hard limit, a cancel and destroy() back until the thread's
// model load has settled. Each case below hits a thread during its load; before the guard in libs/pool
// the test process died with SIGABRT instead of reporting.
const { records } = makeFeedbackBatch({ n: 20, seed: 3 });
const many = makeFeedbackBatch({ n: 1_000, seed: 4 }).records;

describe('analyst pool: no thread is terminated while it loads its ONNX model', () => {
  it('cancelling a running job and destroying the pool, over and over, never aborts the process', async () => {
    // The job's thread is inside session.run when the cancel lands, and the replacement thread is
    // creating its session when destroy() is called: both used to end in SIGABRT within a few rounds.
    for (let i = 0; i < 12; i++) {
      const pool = createPool({ threads: 2 });
      assert.equal((await pool.run({ plugin: 'sentiment', records })).count, records.length);
      const hard = new AbortController();
      const running = pool.run({ plugin: 'sentiment', records: many }, { signal: hard.signal });
      setTimeout(() => hard.abort(new DOMException('cancelled', 'AbortError')), 1 + ((i * 5) % 20));
      await assert.rejects(running, { code: 'cancelled' }, `round ${i}`);
      await new Promise((resolve) => setTimeout(resolve, (i % 4) * 7));
      await pool.destroy();
    }
  });

  it('a hard limit that fires while the job waits for its fresh thread to load ends it with the timeout code', async () => {
    const pool = createPool({ threads: 1 });
    const t0 = Date.now();
    // The only thread is still loading its model: the job arrives on it and the hard limit fires at once.
    await assert.rejects(pool.run({ plugin: 'sentiment', records }, { signal: AbortSignal.timeout(1) }), { code: 'timeout' });
    // The replacement thread loads too; a cancel lands on it mid-load, twice in a row.
    for (let i = 0; i < 2; i++) {
      const hard = new AbortController();
      const running = pool.run({ plugin: 'sentiment', records }, { signal: hard.signal });
      setTimeout(() => hard.abort(new DOMException('cancelled', 'AbortError')), 2);
      await assert.rejects(running, { code: 'cancelled' });
    }
    const report = await pool.run({ plugin: 'sentiment', records });
    assert.equal(report.count, records.length, 'the pool still serves after the terminations');
    await pool.destroy();
    assert.ok(Date.now() - t0 < 60_000);
  });

  it('destroy() while a replacement thread loads (right after a hard limit) does not abort the process', async () => {
    const pool = createPool({ threads: 1 });
    await pool.run({ plugin: 'sentiment', records });
    await assert.rejects(pool.run({ plugin: 'sentiment', records }, { signal: AbortSignal.abort(new DOMException('cancelled', 'AbortError')) }), { code: 'cancelled' });
    await pool.destroy();
  });
});
