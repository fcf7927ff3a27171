import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { makeFeedbackBatch } from '@jetflow/testing';
import { generator as features } from './generators/features.js';
import { createPool, type TaskMeta } from './pool.js';

const { records, truth } = makeFeedbackBatch({ n: 300, seed: 5, outliers: 3, plantedTerm: 'quibbleflux' });

describe('dataset-generator pool', () => {
  const metas: Array<TaskMeta & { ok: boolean }> = [];
  const pool = createPool({ threads: 2, onTaskDone: (m) => metas.push(m) });
  after(() => pool.destroy());

  it('runs generators on worker threads, loading the model once per thread', async () => {
    const jobs = ['text', 'features', 'embeddings', 'text', 'features', 'embeddings', 'embeddings', 'embeddings'];
    const results = await Promise.all(jobs.map((plugin) => pool.run({ plugin, records })));
    assert.equal(results.length, jobs.length);
    for (const r of results) assert.equal(r.rows.length, records.length);
    const top = (results[0]!.summary.topTokens as Array<{ token: string }>)[0];
    assert.equal(top?.token, truth.plantedTerm);
    // A result that crossed the thread boundary equals one made here.
    assert.deepEqual(results[1], await features.generate(records, { signal: new AbortController().signal }));

    assert.equal(metas.length, jobs.length);
    const threads = new Set(metas.map((m) => m.threadId));
    assert.ok(threads.size >= 1 && threads.size <= 2);
    // 8 tasks, and every thread still has exactly one ONNX session.
    for (const m of metas) assert.equal(m.modelLoads, 1, JSON.stringify(m));
  });

  it('fails an unknown plugin with a terminal code', async () => {
    await assert.rejects(pool.run({ plugin: 'nope', records }), { code: 'terminal', message: /no dataset generator named "nope"/ });
  });

  it('passes the soft limit into the thread as ctx.signal', async () => {
    const soft = AbortSignal.timeout(1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await assert.rejects(pool.run({ plugin: 'text', records }, { softSignal: soft }), { code: 'timeout', name: 'AbortError' });
  });

  it('terminates the thread on the hard limit, and keeps serving', async () => {
    const hard = new AbortController();
    const running = pool.run({ plugin: 'embeddings', records }, { signal: hard.signal });
    hard.abort();
    await assert.rejects(running, { code: 'cancelled' });
    const again = await pool.run({ plugin: 'features', records });
    assert.equal(again.rows.length, records.length);
    // The fresh thread loads its ONNX model as it starts: the pool is destroyed only once every thread has
    // (an embeddings job per thread waits for it), as terminating a thread inside onnxruntime's session
    // creation aborts the whole process.
    const loaded = await Promise.all(Array.from({ length: pool.threads }, () => pool.run({ plugin: 'embeddings', records })));
    assert.ok(loaded.every((r) => r.rows.length === records.length));
  });
});
