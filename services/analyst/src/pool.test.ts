import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeFeedbackBatch } from '@jetflow/testing';
import { generators } from '../../dataset-generator/src/generators/index.js';
import { analyzer as anomaly } from './analyzers/anomaly.js';
import type { Datasets } from './analyzers/types.js';
import { createPool, type TaskMeta } from './pool.js';

const { records, truth } = makeFeedbackBatch({ n: 300, seed: 8, outliers: 4, plantedTerm: 'quibbleflux' });
let datasets: Datasets = {};

before(async () => {
  const out: Record<string, unknown> = {};
  for (const [name, g] of generators) out[name] = (await g.generate(records, { signal: new AbortController().signal })).rows;
  datasets = out;
});

describe('analyst pool', () => {
  const metas: Array<TaskMeta & { ok: boolean }> = [];
  const pool = createPool({ threads: 2, onTaskDone: (m) => metas.push(m) });
  after(() => pool.destroy());

  it('runs the analyzers on worker threads, loading the model once per thread', async () => {
    const plugins = ['sentiment', 'anomaly', 'keywords', 'sentiment', 'anomaly', 'keywords', 'sentiment', 'sentiment'];
    const reports = await Promise.all(plugins.map((plugin) => pool.run({ plugin, records, datasets })));

    const perRecord = reports[0]!.perRecord as Array<{ id: string; label: string }>;
    const right = perRecord.filter((p) => p.label === truth.sentiment[p.id]).length;
    assert.ok(right / records.length >= 0.9, `${right} of ${records.length}`);
    const top = (reports[1]!.outliers as Array<{ id: string }>).slice(0, truth.outlierIds.length).map((o) => o.id);
    assert.deepEqual(new Set(top), new Set(truth.outlierIds));
    assert.ok((reports[2]!.keywords as Array<{ term: string }>).slice(0, 3).some((k) => k.term === truth.plantedTerm));
    // A report that crossed the thread boundary equals one made here (and the forest is seeded).
    assert.deepEqual(reports[1], await anomaly.analyze({ records, datasets }, { signal: new AbortController().signal }));

    assert.equal(metas.length, plugins.length);
    assert.ok(new Set(metas.map((m) => m.threadId)).size <= 2);
    for (const m of metas) assert.equal(m.modelLoads, 1, JSON.stringify(m));
  });

  it('fails an unknown plugin with a terminal code', async () => {
    await assert.rejects(pool.run({ plugin: 'astrology', records }), { code: 'terminal', message: /no analyzer named "astrology"/ });
  });

  it('passes the soft limit into the thread as ctx.signal', async () => {
    const soft = new AbortController();
    soft.abort();
    await assert.rejects(pool.run({ plugin: 'keywords', records, datasets }, { softSignal: soft.signal }), { code: 'cancelled' });
  });

  it('maps a hard timeout to the timeout code and keeps serving', async () => {
    const hard = AbortSignal.timeout(1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await assert.rejects(pool.run({ plugin: 'anomaly', records, datasets }, { signal: hard }), { code: 'timeout' });
    const report = await pool.run({ plugin: 'sentiment', records: records.slice(0, 10) });
    assert.equal(report.count, 10);
    // The fresh thread loads its ONNX model as it starts: destroy the pool only once every thread has (a
    // sentiment job per thread waits for it); terminating a thread inside session creation aborts the process.
    const loaded = await Promise.all(Array.from({ length: pool.threads }, () => pool.run({ plugin: 'sentiment', records: records.slice(0, 10) })));
    assert.ok(loaded.every((r) => r.count === 10));
  });
});
