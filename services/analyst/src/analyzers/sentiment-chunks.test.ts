import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { makeFeedbackBatch } from '@jetflow/testing';
import { analyzer as sentiment, score, scoreRecords } from './sentiment.js';
import type { PluginContext, ScoreRow, TextRow } from './types.js';

/** insights v2 scores records in chunks (`score`) and reports once (`sentiment` over the parts): the same report as over the whole batch. */
const ctx = (): PluginContext => ({ signal: new AbortController().signal });
const { records } = makeFeedbackBatch({ n: 260, seed: 23, outliers: 3 });
// A language per record as the text dataset has it: a few non-English verdicts are unreliable.
const text: TextRow[] = records.map((r, i) => ({ id: r.id, tokens: [], language: i % 37 === 0 ? 'fra' : 'eng' }));

describe('sentiment from chunked scores', () => {
  it('gives the report of the whole batch (distribution, extremes, correlations, reliability, perRecord)', async () => {
    const whole = await sentiment.analyze({ records, datasets: { text } }, ctx());
    const parts: ScoreRow[] = [];
    for (let i = 0; i < records.length; i += 64) {
      const r = (await score.analyze({ records: records.slice(i, i + 64), datasets: {} }, ctx())) as { part: { body: Uint8Array; rows: number } };
      const lines = gunzipSync(r.part.body).toString('utf8').split('\n').filter(Boolean);
      assert.equal(lines.length, r.part.rows);
      parts.push(...lines.map((l) => JSON.parse(l) as ScoreRow));
    }
    const merged = await sentiment.analyze({ records, datasets: { text, score: parts } }, ctx());
    assert.equal((merged.perRecord as unknown[]).length, records.length);
    assert.deepEqual(merged, whole);
    assert.ok((merged.unreliable as { count: number }).count >= 8);
  });

  it('scores every record of a chunk in order', async () => {
    const rows = await scoreRecords(records.slice(0, 10), ctx().signal);
    assert.deepEqual(
      rows.map((r) => r.id),
      records.slice(0, 10).map((r) => r.id),
    );
  });
});
