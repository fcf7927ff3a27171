import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeFeedbackBatch } from '@jetflow/testing';
import { embeddingSummary, generator as embeddings, type EmbeddingPartial } from './embeddings.js';
import { generator as features } from './features.js';
import { chunkGenerators, decodeParts, mergeFeatures, mergeText, prepare } from './insights-chunks.js';
import { generator as text } from './text.js';
import type { InputRecord, PluginContext } from './types.js';

/**
 * insights v2 cuts the batch into chunks, does the per-record work per chunk and merges: the merged
 * datasets must be the ones the whole-batch generators make (rows and every summary statistic).
 */
const ctx = (): PluginContext => ({ signal: new AbortController().signal });
// Mixed languages, planted outliers and a field that is numeric in most records and a string in one
// chunk only (the column must still come out categorical, as over the whole batch).
const { records: base } = makeFeedbackBatch({ n: 330, seed: 17, outliers: 4, plantedTerm: 'quibbleflux' });
const records: InputRecord[] = base.map((r, i) => (i === 301 ? { ...r, fields: { ...r.fields, amount: 'n/a' } } : r));
const CHUNK = 70;
const chunks = Array.from({ length: Math.ceil(records.length / CHUNK) }, (_, i) => records.slice(i * CHUNK, (i + 1) * CHUNK));
// Parts travel through S3 as JSON lines: what the merge reads is what JSON gives back.
const viaJson = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('insights v2: chunked and whole-batch datasets agree', async () => {
  const prepared = await Promise.all(chunks.map((c) => prepare.generate(c, ctx())));
  // What S3 holds: each chunk's part of each dataset, gzip JSON lines.
  const bodies = (name: string) => prepared.map((p) => p.encoded![name]!.body);
  const part = (name: string) => decodeParts<unknown>(bodies(name));
  const merged = async (m: typeof mergeText, name: string) => {
    const r = await m.generate(bodies(name) as unknown as InputRecord[], ctx());
    assert.equal(r.encoded!.dataset!.rows, records.length);
    return { rows: decodeParts<unknown>([r.encoded!.dataset!.body]), summary: r.summary };
  };

  it('registers the chunk steps under their own names', () => {
    assert.deepEqual([...chunkGenerators.keys()].sort(), ['merge-features', 'merge-text', 'prepare']);
  });

  it('text: the same rows (the batch language settles hesitant records across chunks) and the same summary', async () => {
    const whole = await text.generate(records, ctx());
    const m = await merged(mergeText, 'text');
    assert.equal(m.rows.length, records.length);
    assert.deepEqual(m.rows, viaJson(whole.rows));
    assert.deepEqual(m.summary, whole.summary);
  });

  it('features: the same profiles, z-scores and correlations, the categorical column found in one chunk', async () => {
    const whole = await features.generate(records, ctx());
    const m = await merged(mergeFeatures, 'features');
    assert.deepEqual(m.rows, viaJson(whole.rows));
    assert.deepEqual(m.summary, whole.summary);
    assert.ok('fields.amount' in (whole.summary.categorical as Record<string, unknown>));
  });

  it('embeddings: the parts concatenated are the whole rows, and the summary from the partial sums is the whole one', async () => {
    const whole = await embeddings.generate(records, ctx());
    assert.deepEqual(part('embeddings'), viaJson(whole.rows));
    const partials = prepared.map((p) => viaJson(p.partial!.embeddings as EmbeddingPartial));
    assert.deepEqual(embeddingSummary(partials), whole.summary);
  });
});
