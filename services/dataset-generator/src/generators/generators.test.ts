import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { francAll } from 'franc';
import { TEXT_LANGUAGES, normalizeText } from '@jetflow/models';
import { makeFeedbackBatch } from '@jetflow/testing';
import { generator as embeddings } from './embeddings.js';
import { generator as features, quantileSorted } from './features.js';
import { generators, registry } from './index.js';
import { createLanguageDetector } from './language.js';
import { generator as text } from './text.js';
import type { PluginContext } from './types.js';

const ctx = (): PluginContext => ({ signal: new AbortController().signal });
const { records, truth } = makeFeedbackBatch({ n: 300, seed: 11, outliers: 5, plantedTerm: 'zorbex' });

describe('registry', () => {
  it('has the three insights generators', () => {
    assert.deepEqual([...generators.keys()].sort(), ['embeddings', 'features', 'text']);
  });
  it('refuses duplicate names', () => {
    assert.throws(() => registry('dataset generator', [text, { ...text }]), /duplicate dataset generator name "text"/);
  });
});

describe('text', () => {
  it('tokenizes every record and finds the language', async () => {
    const { rows, summary } = await text.generate(records, ctx());
    assert.deepEqual(
      rows.map((r) => r.id),
      records.map((r) => r.id),
    );
    const first = rows[0]!;
    assert.deepEqual(
      first.tokens.slice(0, 3),
      first.normalized
        .split(/[^\p{L}\p{N}']+/u)
        .filter(Boolean)
        .slice(0, 3),
    );
    assert.equal(first.bigrams.length, first.tokens.length - 1);
    assert.equal(summary.primaryLanguage, 'eng');
    assert.ok(((summary.languages as Record<string, number>).eng ?? 0) >= 295, JSON.stringify(summary.languages));
  });

  it('puts the planted term at the top of the content tokens, without stopwords', async () => {
    const { summary } = await text.generate(records, ctx());
    const top = summary.topTokens as Array<{ token: string; documents: number }>;
    assert.equal(top[0]?.token, 'zorbex');
    assert.equal(top[0]?.documents, truth.plantedIds.length);
    assert.ok(!top.some((t) => ['the', 'and', 'was', 'it'].includes(t.token)));
  });

  it('tells other languages apart, and lets the batch decide hesitant short texts', async () => {
    const mixed = [
      ...records.slice(0, 20),
      { id: 'es', text: 'El envío llegó tarde y la caja estaba rota, muy mala experiencia.', fields: {} },
      { id: 'de', text: 'Die Lieferung kam viel zu spät und der Karton war beschädigt.', fields: {} },
      { id: 'short', text: 'Absolutely love it, works perfectly', fields: {} },
      { id: 'tiny', text: 'ok', fields: {} },
    ];
    const { rows } = await text.generate(mixed, ctx());
    const lang = Object.fromEntries(rows.map((r) => [r.id, r.language]));
    assert.equal(lang.es, 'spa');
    assert.equal(lang.de, 'deu');
    assert.equal(lang.short, 'eng');
    assert.equal(lang.tiny, 'und');
  });

  it("detects languages exactly as franc's francAll with the same options", () => {
    const samples = [
      ...makeFeedbackBatch({ n: 2000, seed: 4 }).records.map((r) => r.text ?? ''),
      'El envío llegó tarde y la caja estaba rota, muy mala experiencia.',
      'Die Lieferung kam viel zu spät und der Karton war beschädigt.',
      'le produit est arrivé cassé et le service client ne répond pas',
      'Il prodotto è arrivato rotto e il servizio clienti non risponde mai',
      'O produto chegou quebrado e o atendimento não responde',
      'Het product kwam kapot aan en de klantenservice reageert niet',
      'Produkt przyszedł uszkodzony, a obsługa klienta nie odpowiada',
      'Это очень плохой товар, не покупайте его никогда',
      'Доставка беше бавна, но продуктът е добър',
      'Το προϊόν έφτασε σπασμένο και κανείς δεν απαντά',
      'המוצר הגיע שבור ואף אחד לא עונה',
      'المنتج وصل مكسورا ولم يرد أحد على رسائلي',
      'यह उत्पाद बहुत अच्छा है और डिलीवरी तेज़ थी',
      'この製品はとても良いです。配達も早かったです。',
      '这个产品非常好，送货也很快，我很满意',
      '이 제품은 정말 좋고 배송도 빨랐습니다',
      'สินค้าดีมาก จัดส่งรวดเร็ว ประทับใจมาก',
      'Ürün kırık geldi ve müşteri hizmetleri cevap vermiyor',
      'Tuote saapui rikki eikä asiakaspalvelu vastaa',
      'Absolutely love it, works perfectly',
      '1234567890 12345 !!!',
      'ok',
      '',
      'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      'x'.repeat(3000) + ' the end of a very long text',
    ];
    for (const minLength of [10, 3]) {
      const detect = createLanguageDetector(TEXT_LANGUAGES, minLength);
      for (const raw of samples) {
        for (const t of [raw, normalizeText(raw)]) assert.deepEqual(detect(t), francAll(t, { only: [...TEXT_LANGUAGES], minLength }), JSON.stringify(t.slice(0, 80)));
      }
    }
    // Without a list, every language franc knows.
    const all = createLanguageDetector([]);
    for (const t of samples.slice(-25)) assert.deepEqual(all(t), francAll(t), JSON.stringify(t.slice(0, 80)));
  });
});

describe('features', () => {
  it('profiles numeric columns like pandas describe()', async () => {
    const { summary } = await features.generate(records, ctx());
    const numeric = summary.numeric as Record<string, { count: number; nulls: number; mean: number; p50: number; max: number; min: number }>;
    const amounts = records.map((r) => r.fields.amount).filter((v): v is number => typeof v === 'number');
    const sorted = [...amounts].sort((a, b) => a - b);
    const amount = numeric['fields.amount']!;
    assert.equal(amount.count, amounts.length);
    assert.equal(amount.nulls, 300 - amounts.length);
    assert.equal(amount.max, sorted[sorted.length - 1]);
    assert.equal(amount.min, sorted[0]);
    assert.ok(Math.abs(amount.mean - amounts.reduce((s, v) => s + v, 0) / amounts.length) < 1e-3);
    assert.ok(Math.abs(amount.p50 - (quantileSorted(sorted, 0.5) ?? NaN)) < 1e-3);
    assert.ok(numeric['text.length'] && numeric['text.tokens'] && numeric['fields.rating']);
    const channel = (summary.categorical as Record<string, { unique: number; count: number }>)['fields.channel'];
    assert.deepEqual(channel && { unique: channel.unique, count: channel.count }, { unique: 4, count: 300 });
  });

  it('matches numpy quantiles (linear interpolation)', () => {
    assert.equal(quantileSorted([1, 2, 3, 4], 0.25), 1.75);
    assert.equal(quantileSorted([1, 2, 3, 4], 0.5), 2.5);
    assert.equal(quantileSorted([7], 0.75), 7);
    assert.equal(quantileSorted([], 0.5), null);
  });

  it('gives each record its values and z-scores, nulls where a value is missing', async () => {
    const { rows } = await features.generate(records, ctx());
    const planted = truth.outliers.find((o) => o.kind === 'amount-high')!;
    const row = rows.find((r) => r.id === planted.id)!;
    assert.ok((row.z['fields.amount'] ?? 0) > 5, JSON.stringify(row));
    const missing = records.find((r) => r.fields.amount === null);
    if (missing) {
      const m = rows.find((r) => r.id === missing.id)!;
      assert.equal(m.values['fields.amount'], null);
      assert.equal(m.z['fields.amount'], null);
    }
  });

  it('treats a column with any string as categorical', async () => {
    const { summary } = await features.generate(
      [
        { id: 'a', text: 'x', fields: { size: 1 } },
        { id: 'b', text: 'y', fields: { size: 'XL' } },
      ],
      ctx(),
    );
    assert.ok(!('fields.size' in (summary.numeric as object)));
    assert.ok('fields.size' in (summary.categorical as object));
  });
});

describe('embeddings', () => {
  it('gives one unit vector per record', async () => {
    const { rows, summary } = await embeddings.generate(records.slice(0, 150), ctx());
    assert.equal(rows.length, 150);
    assert.equal(summary.dimension, 64);
    for (const r of rows) assert.ok(Math.abs(Math.hypot(...r.vector) - 1) < 1e-4);
    assert.ok(typeof summary.meanPairwiseSimilarity === 'number');
  });
});

describe('abort', () => {
  it('stops at the next checkpoint with a code that says why', async () => {
    for (const g of generators.values()) {
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(g.generate(records, { signal: ac.signal }), { code: 'cancelled' });
      const soft = AbortSignal.timeout(1);
      await new Promise((resolve) => setTimeout(resolve, 5));
      await assert.rejects(g.generate(records, { signal: soft }), { code: 'timeout' });
    }
  });
});
