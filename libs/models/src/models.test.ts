import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  FEATURIZER_VERSION,
  assetsDir,
  cosineSimilarity,
  loadEmbeddingModel,
  loadSentimentModel,
  loadVocab,
  modelLoadCount,
  sentimentFeatureKeys,
  sentimentFeatures,
  sentimentTokens,
  stopwordsFor,
  tokenize,
} from './index.js';

// Written for this test; none of them is in the training corpus (which is generated from templates).
const POSITIVE = [
  'I absolutely love this coffee grinder, it makes my mornings better.',
  'Fantastic customer service, they replaced the item without any fuss.',
  'The hotel staff were wonderful and our room was spotless.',
  'Great quality shoes, comfortable from the very first day.',
  'Delivery was quick and the courier was really friendly.',
  'Best pizza in town, fresh ingredients and a lovely crust.',
  'Everything worked perfectly, I am very pleased with my purchase.',
  'Super helpful support team, they solved my problem in minutes.',
  'Beautiful design and excellent battery life. Highly recommended!',
  'Not bad at all, actually one of the nicest kettles I have owned.',
];
const NEGATIVE = [
  'Terrible product, it broke the second time I used it.',
  'The waiter was rude and the soup was cold.',
  'Worst airline experience ever, they lost my luggage.',
  'I am very disappointed, the colour is nothing like the pictures.',
  'The app is slow, buggy and crashes constantly.',
  'Awful smell in the room and the sheets were dirty.',
  'They charged me twice and still refuse to give me a refund.',
  'This is not good at all. The fabric tore after one wash.',
  'Horrible noise from the fridge, completely useless.',
  'My parcel never arrived and nobody answers the phone.',
];

describe('featurizer', () => {
  it('tokenizes with Unicode letters and keeps contractions whole', () => {
    assert.deepEqual(tokenize('Café CRÈME – don’t  stop!'), ['café', 'crème', "don't", 'stop']);
  });

  it('marks the scope of a negation, which ends at punctuation or a contrast word', () => {
    assert.deepEqual(sentimentTokens("It wasn't good, but cheap"), ['it', 'was', 'not', 'not_good', 'but', 'cheap']);
    assert.deepEqual(sentimentTokens('never again but great'), ['never', 'not_again', 'but', 'great']);
    assert.ok(sentimentFeatureKeys('not good').includes('not not_good'));
  });

  it('maps text onto the vocabulary the model was trained with', () => {
    const vocab = loadVocab();
    assert.equal(vocab.featurizerVersion, FEATURIZER_VERSION);
    const x = sentimentFeatures('great service', vocab);
    assert.equal(x.length, vocab.sentiment.features.length);
    assert.equal(x[vocab.sentiment.features.indexOf('great')], 1);
    assert.equal(x.reduce((s, v) => s + v, 0) >= 2, true);
  });

  it('finds stopwords by ISO 639-3 or 639-1 code', () => {
    assert.ok(stopwordsFor('eng').has('the'));
    assert.ok(stopwordsFor('es').has('el'));
    assert.equal(stopwordsFor('xxx').size, 0);
  });

  it('finds the committed assets from the source tree', () => {
    assert.ok(existsSync(join(assetsDir(), 'sentiment.onnx')));
    assert.ok(existsSync(join(assetsDir(), 'embedding.onnx')));
  });
});

describe('sentiment model', () => {
  it('classifies hand-written positive and negative sentences (>= 90 %)', async () => {
    const model = await loadSentimentModel();
    const preds = await model.predict([...POSITIVE, ...NEGATIVE]);
    const expected = [...POSITIVE.map(() => 'positive'), ...NEGATIVE.map(() => 'negative')];
    const wrong = preds.map((p, i) => (p.label === expected[i] ? null : `${expected[i]} -> ${p.label}: ${[...POSITIVE, ...NEGATIVE][i]}`)).filter(Boolean);
    assert.ok(wrong.length <= 2, `misclassified:\n${wrong.join('\n')}`);
  });

  it('calls plain statements neutral and keeps the score in [-1, 1]', async () => {
    const model = await loadSentimentModel();
    const [fact, empty] = await model.predict(['I ordered the blue one on Monday.', '']);
    assert.equal(fact?.label, 'neutral');
    assert.equal(empty?.label, 'neutral');
    for (const p of await model.predict(POSITIVE)) {
      assert.ok(p.score > 0 && p.score <= 1);
      const sum = p.probabilities.negative + p.probabilities.neutral + p.probabilities.positive;
      assert.ok(Math.abs(sum - 1) < 1e-5);
    }
  });

  it('handles more texts than one inference chunk, in order', async () => {
    const model = await loadSentimentModel();
    const texts = Array.from({ length: 300 }, (_, i) => (i % 2 ? NEGATIVE[i % 10] : POSITIVE[i % 10]) as string);
    const preds = await model.predict(texts);
    assert.equal(preds.length, 300);
    const single = await model.predict([texts[299] as string]);
    assert.equal(preds[299]?.score, single[0]?.score);
  });
});

describe('embedding model', () => {
  // [text, paraphrase, unrelated]
  const TRIPLES: Array<[string, string, string]> = [
    ['The delivery was three days late.', 'My package arrived late, days after the promised date.', 'The soup tasted amazing.'],
    ['The app crashes when I open it.', 'Application keeps crashing every time it starts.', 'The hotel bed was comfortable.'],
    ['I was charged twice for my order.', 'They billed my card two times for one order.', 'The courier was friendly.'],
    ['The customer service agent was rude.', 'Support staff were rude and unhelpful on the phone.', 'The battery lasts a long time.'],
    ['The pizza arrived cold.', 'My food was cold when it arrived.', 'The login page rejects my password.'],
    ['The room was dirty and smelled of smoke.', 'Our hotel room was filthy and smoky.', 'The refund was processed quickly.'],
  ];

  it('puts paraphrases closer than unrelated texts', async () => {
    const model = await loadEmbeddingModel();
    for (const [a, b, c] of TRIPLES) {
      const [va, vb, vc] = await model.embed([a, b, c]);
      const para = cosineSimilarity(va!, vb!);
      const other = cosineSimilarity(va!, vc!);
      assert.ok(para > other, `"${a}": paraphrase ${para.toFixed(3)} <= unrelated ${other.toFixed(3)}`);
    }
  });

  it('returns unit vectors, and zeros for an empty text', async () => {
    const model = await loadEmbeddingModel();
    const [v, empty] = await model.embed(['Great value for the price.', '']);
    assert.equal(v?.length, model.dimension);
    assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5);
    assert.ok(empty?.every((x) => x === 0));
  });
});

describe('loading', () => {
  it('creates one session per model per thread, however often it is asked for', async () => {
    const [s1, e1] = await Promise.all([loadSentimentModel(), loadEmbeddingModel()]);
    const before = modelLoadCount();
    const [s2, e2] = await Promise.all([loadSentimentModel(), loadEmbeddingModel(), loadSentimentModel()]);
    assert.equal(s1, s2);
    assert.equal(e1, e2);
    assert.equal(modelLoadCount(), before);
    assert.equal(before, 2);
    assert.match(s1.version, /^[0-9a-f]{12}$/);
  });
});
