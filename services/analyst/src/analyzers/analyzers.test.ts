import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { makeFeedbackBatch } from '@jetflow/testing';
// The real generators make the datasets, so a drift between what they write and what the analyzers
// read fails here (a test may cross the service boundary that the code itself does not).
import { generators } from '../../../dataset-generator/src/generators/index.js';
import { mulberry32 } from '@jetflow/random';
import { analyzer as anomaly, neighbourDistances } from './anomaly.js';
import { analyzers, registry } from './index.js';
import { analyzer as keywords } from './keywords.js';
import { analyzer as sentiment } from './sentiment.js';
import type { Datasets, PluginContext } from './types.js';

const ctx = (): PluginContext => ({ signal: new AbortController().signal });
const { records, truth } = makeFeedbackBatch({ n: 300, seed: 21, outliers: 6, plantedTerm: 'zorbex' });
let datasets: Datasets = {};

before(async () => {
  const out: Record<string, unknown> = {};
  for (const [name, g] of generators) out[name] = (await g.generate(records, ctx())).rows;
  datasets = out;
});

describe('registry', () => {
  it('has the three insights analyzers and refuses duplicates', () => {
    assert.deepEqual([...analyzers.keys()].sort(), ['anomaly', 'keywords', 'sentiment']);
    assert.throws(() => registry('analyzer', [sentiment, { ...anomaly, name: 'sentiment' }]), /duplicate analyzer name "sentiment"/);
  });
});

describe('sentiment', () => {
  it('labels the positive records positive and the negative ones negative (>= 90 %)', async () => {
    const report = await sentiment.analyze({ records, datasets }, ctx());
    const perRecord = report.perRecord as Array<{ id: string; label: string; score: number }>;
    assert.equal(perRecord.length, records.length);
    const right = perRecord.filter((p) => p.label === truth.sentiment[p.id]).length;
    assert.ok(right / records.length >= 0.9, `${right} of ${records.length} right`);

    const dist = report.distribution as Record<string, number>;
    assert.equal(dist.negative! + dist.neutral! + dist.positive!, records.length);
    const negatives = Object.values(truth.sentiment).filter((s) => s === 'negative').length;
    assert.ok(Math.abs((report.negativeShare as number) - negatives / records.length) < 0.1);
    const worst = report.mostNegative as Array<{ id: string; text: string }>;
    assert.equal(worst.length, 5);
    for (const w of worst) assert.equal(truth.sentiment[w.id], 'negative');
    // Ratings were written to agree with the texts.
    assert.ok(((report.correlations as Record<string, number>)['fields.rating'] ?? 0) > 0.5, JSON.stringify(report.correlations));
  });

  it('marks the verdicts on text the English model does not know', async () => {
    const mixed = [
      ...records.slice(0, 30),
      { id: 'fr', text: 'Le colis est arrivé en retard et la boîte était abîmée, très déçu.', fields: {} },
      { id: 'jargon', text: 'Quarterly municipal zoning committee minutes regarding sewer bonds and asphalt tenders.', fields: {} },
    ];
    const text = (await generators.get('text')!.generate(mixed, ctx())).rows as Datasets['text'];
    const report = await sentiment.analyze({ records: mixed, datasets: { text } }, ctx());
    assert.deepEqual((report.unreliable as { ids: string[] }).ids, ['fr', 'jargon']);
  });
});

describe('anomaly', () => {
  it('ranks the planted outliers first, naming the field', async () => {
    const report = await anomaly.analyze({ records, datasets }, ctx());
    const outliers = report.outliers as Array<{ id: string; reasons: Array<{ feature: string }> }>;
    const k = truth.outlierIds.length;
    assert.deepEqual(new Set(outliers.slice(0, k).map((o) => o.id)), new Set(truth.outlierIds));
    for (const planted of truth.outliers) {
      const o = outliers.find((x) => x.id === planted.id);
      assert.equal(o?.reasons[0]?.feature, `fields.${planted.field}`);
    }
    // Few false alarms on an otherwise ordinary batch.
    assert.ok((report.outlierCount as number) <= k + 6, `flagged ${report.outlierCount as number}`);
    assert.deepEqual(report.inputs, { features: 'dataset', embeddings: true });
  });

  it('works from the records alone when the datasets are missing', async () => {
    const report = await anomaly.analyze({ records, datasets: {} }, ctx());
    const top = (report.outliers as Array<{ id: string }>).slice(0, truth.outlierIds.length).map((o) => o.id);
    assert.deepEqual(new Set(top), new Set(truth.outlierIds));
    assert.deepEqual(report.inputs, { features: 'records', embeddings: false });
  });

  it('finds texts the models do not know through the embeddings', async () => {
    const odd = { id: 'odd', text: 'Quarterly municipal zoning committee minutes regarding sewer bonds and asphalt tenders.', fields: { rating: 4, amount: 40 } };
    const german = { id: 'de', text: 'Der Vertrag wurde gestern vom Vorstand in Frankfurt unterschrieben.', fields: { rating: 3, amount: 41 } };
    const batch = [...records.slice(0, 120), odd, german];
    const ds: Record<string, unknown> = {};
    for (const [name, g] of generators) ds[name] = (await g.generate(batch, ctx())).rows;
    const report = await anomaly.analyze({ records: batch, datasets: ds }, ctx());
    const outliers = report.outliers as Array<{ id: string; reasons: Array<{ feature: string }> }>;
    for (const id of ['odd', 'de']) {
      const o = outliers.find((x) => x.id === id);
      assert.ok(
        o?.reasons.some((r) => r.feature.startsWith('embedding.')),
        `${id}: ${JSON.stringify(outliers).slice(0, 800)}`,
      );
    }
  });

  it('gives the same report for the same batch', async () => {
    assert.deepEqual(await anomaly.analyze({ records, datasets }, ctx()), await anomaly.analyze({ records, datasets }, ctx()));
  });

  it('computes the same neighbour distances as a pairwise loop, to the last bit', () => {
    // The plain algorithm: per record, the cosine similarity to each reference, the k largest kept.
    const pairwise = (vectors: Array<number[] | undefined>, k: number, maxRef: number) => {
      const norms = vectors.map((v) => (v ? Math.hypot(...v) : 0));
      const candidates = vectors.map((_, j) => j).filter((j) => norms[j]! > 0);
      const stride = Math.max(1, candidates.length / maxRef);
      const refs = Array.from({ length: Math.min(candidates.length, maxRef) }, (_, r) => candidates[Math.floor(r * stride)]!);
      return vectors.map((v, i) => {
        if (!v) return null;
        if (norms[i] === 0) return 1;
        const sims: number[] = [];
        for (const j of refs) {
          if (j === i) continue;
          const w = vectors[j]!;
          let dot = 0;
          for (let d = 0; d < v.length; d++) dot += v[d]! * w[d]!;
          sims.push(dot / (norms[i]! * norms[j]!));
        }
        const top = sims.sort((a, b) => b - a).slice(0, k);
        return top.length ? 1 - top.reduce((s, x) => s + x, 0) / top.length : null;
      });
    };
    const rng = mulberry32(5);
    for (const [n, dim, maxRef] of [
      [1, 8, 10],
      [7, 3, 10],
      [250, 64, 1000],
      [1003, 16, 97],
    ] as const) {
      // Random vectors (unit and not), with some missing and some all zero, as a dataset can have them.
      const vectors = Array.from({ length: n }, (_, i) => (i % 17 === 3 ? undefined : i % 13 === 5 ? new Array<number>(dim).fill(0) : Array.from({ length: dim }, () => rng() * 2 - 1)));
      for (const k of [1, 5]) assert.deepEqual(neighbourDistances(vectors, k, maxRef), pairwise(vectors, k, maxRef), `n ${n}, dim ${dim}, k ${k}`);
    }
  });
});

describe('keywords', () => {
  it('finds the planted term among the top keywords, without stopwords', async () => {
    const report = await keywords.analyze({ records, datasets }, ctx());
    const top = (report.keywords as Array<{ term: string; documents: number }>).map((k) => k.term);
    assert.ok(top.slice(0, 3).includes(truth.plantedTerm!), top.join(', '));
    assert.ok(!top.some((t) => ['the', 'and', 'was', 'with', 'this'].includes(t)));
    const planted = (report.keywords as Array<{ term: string; documents: number }>).find((k) => k.term === truth.plantedTerm);
    assert.equal(planted?.documents, truth.plantedIds.length);
  });

  it('groups records into topics named by their terms', async () => {
    const report = await keywords.analyze({ records, datasets }, ctx());
    const topics = report.topics as { k: number; items: Array<{ size: number; terms: string[]; representative: string[] }> };
    assert.ok(topics.k >= 2);
    assert.equal(
      topics.items.reduce((s, t) => s + t.size, 0),
      records.length,
    );
    for (const t of topics.items) {
      assert.ok(t.terms.length > 0);
      assert.ok(t.representative.length > 0);
    }
    const perRecord = report.perRecord as Array<{ id: string; keywords: string[]; topic: number | null }>;
    assert.ok(perRecord.every((p) => p.topic !== null && p.keywords.length > 0));
  });

  it('leaves the datasets it reads as they were (k-means moves copies of the vectors)', async () => {
    const copy = structuredClone(datasets);
    await keywords.analyze({ records, datasets: copy }, ctx());
    assert.deepEqual(copy, datasets);
  });

  it('still gives keywords without any dataset (and no topics)', async () => {
    const report = await keywords.analyze({ records, datasets: {} }, ctx());
    assert.ok((report.keywords as Array<{ term: string }>).some((k) => k.term === truth.plantedTerm));
    assert.equal((report.topics as { k: number }).k, 0);
  });
});

describe('abort', () => {
  it('stops at the next checkpoint with a code that says why', async () => {
    for (const a of analyzers.values()) {
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(a.analyze({ records, datasets }, { signal: ac.signal }), { code: 'cancelled' });
    }
  });
});
