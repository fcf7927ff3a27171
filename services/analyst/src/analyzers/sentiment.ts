/**
 * Sentiment per record from the project's ONNX classifier (negative / neutral / positive), the
 * batch's distribution, the records to read first, and how the text agrees with numeric fields.
 */
import { gzipSync } from 'node:zlib';
import { sampleCorrelation } from 'simple-statistics';
import { SENTIMENT_LABELS, knownWordShare, loadSentimentModel, loadVocab, type SentimentLabel } from '@jetflow/models';
import { CHUNK_SIZE, byId, checkpoint, snippet, type Analyzer, type InputRecord, type ScoreRow } from './types.js';

// The model was trained on English feedback only: a verdict on another language, or on a text
// whose words it mostly never saw, is closer to a guess, and is marked so.
const MODEL_LANGUAGES = new Set(['eng', 'und']);
const MIN_KNOWN_WORDS = 0.5;
const TOP = 5;

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** Ranks with ties averaged, for Spearman's correlation (robust to the odd absurd value). */
function ranks(xs: readonly number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const out = new Array<number>(xs.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let k = i; k <= j; k++) out[order[k]![1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

/** The per-record half of sentiment: the classifier on each record (the cost), chunk by chunk. */
export async function scoreRecords(records: readonly InputRecord[], signal: AbortSignal): Promise<ScoreRow[]> {
  const model = await loadSentimentModel();
  const vocab = loadVocab();
  const out: ScoreRow[] = [];
  for (let start = 0; start < records.length; start += CHUNK_SIZE) {
    await checkpoint(signal);
    const chunk = records.slice(start, start + CHUNK_SIZE);
    const preds = await model.predict(chunk.map((r) => r.text ?? ''));
    chunk.forEach((r, i) => {
      const p = preds[i];
      if (!p) return;
      out.push({
        id: r.id,
        label: p.label,
        score: r3(p.score),
        confidence: r3(Math.max(p.probabilities.negative, p.probabilities.neutral, p.probabilities.positive)),
        known: knownWordShare(r.text ?? '', vocab) >= MIN_KNOWN_WORDS,
      });
    });
  }
  return out;
}

/**
 * Per chunk of records (insights v2): the verdicts, which the `sentiment` task reads as its `score`
 * dataset. Encoded here, in the pool thread, as gzip JSON lines (level 1: a temporary part), so the
 * service's main thread only stores the bytes.
 */
export const score: Analyzer = {
  name: 'score',
  description: 'insights v2, per chunk of records: the sentiment classifier on each record.',
  async analyze({ records }, ctx) {
    const rows = await scoreRecords(records, ctx.signal);
    const raw = Buffer.from(rows.length ? `${rows.map((r) => JSON.stringify(r)).join('\n')}\n` : '');
    const gz = gzipSync(raw, { level: 1 });
    return { part: { body: new Uint8Array(gz.buffer, gz.byteOffset, gz.byteLength), rows: rows.length, rawBytes: raw.byteLength } };
  },
};

export const analyzer: Analyzer = {
  name: 'sentiment',
  description: 'Sentiment per record (ONNX classifier), distribution, most negative and most positive records, correlation with numeric fields.',
  async analyze({ records, datasets }, ctx) {
    const model = await loadSentimentModel();
    const text = byId(datasets.text);
    // The verdicts of the `score` chunks (insights v2), else the classifier on the whole batch here.
    const scored = byId(datasets.score ?? (await scoreRecords(records, ctx.signal)));
    const perRecord: Array<{ id: string; label: SentimentLabel; score: number; confidence: number; reliable: boolean }> = [];
    for (const r of records) {
      const p = scored.get(r.id);
      if (!p) continue;
      const lang = text.get(r.id)?.language ?? 'und';
      perRecord.push({ id: r.id, label: p.label, score: p.score, confidence: p.confidence, reliable: MODEL_LANGUAGES.has(lang) && p.known });
    }

    const n = perRecord.length;
    const distribution = Object.fromEntries(SENTIMENT_LABELS.map((l) => [l, 0])) as Record<SentimentLabel, number>;
    for (const p of perRecord) distribution[p.label]++;
    const share = (k: number) => (n ? r3(k / n) : 0);
    const textOf = new Map(records.map((r) => [r.id, r.text ?? '']));
    const ranked = [...perRecord].sort((a, b) => a.score - b.score || a.id.localeCompare(b.id));
    const brief = (p: (typeof perRecord)[number]) => ({ id: p.id, score: p.score, text: snippet(textOf.get(p.id) ?? '') });

    // Does the text agree with the numbers? For a rating a strong positive (Spearman) correlation is
    // expected; a weak one means ratings and words tell different stories.
    const scoreOf = new Map(perRecord.map((p) => [p.id, p.score]));
    const fieldNames = new Set(records.flatMap((r) => Object.keys(r.fields ?? {})));
    const correlations: Record<string, number> = {};
    for (const f of fieldNames) {
      const xs: number[] = [];
      const ys: number[] = [];
      for (const r of records) {
        const v = r.fields?.[f];
        const s = scoreOf.get(r.id);
        if (typeof v === 'number' && Number.isFinite(v) && s !== undefined) {
          xs.push(s);
          ys.push(v);
        }
      }
      if (xs.length >= 5) {
        const c = sampleCorrelation(ranks(xs), ranks(ys));
        if (Number.isFinite(c)) correlations[`fields.${f}`] = r3(c);
      }
    }

    const unreliable = perRecord.filter((p) => !p.reliable).map((p) => p.id);
    return {
      model: { name: model.name, version: model.version, languages: ['eng'] },
      headline: n ? `${Math.round((distribution.negative / n) * 100)} % negative, ${Math.round((distribution.positive / n) * 100)} % positive of ${n} records` : 'no records',
      count: n,
      distribution,
      shares: { negative: share(distribution.negative), neutral: share(distribution.neutral), positive: share(distribution.positive) },
      negativeShare: share(distribution.negative),
      averageScore: n ? r3(perRecord.reduce((s, p) => s + p.score, 0) / n) : null,
      mostNegative: ranked
        .filter((p) => p.label === 'negative')
        .slice(0, TOP)
        .map(brief),
      mostPositive: ranked
        .filter((p) => p.label === 'positive')
        .reverse()
        .slice(0, TOP)
        .map(brief),
      // Spearman correlation of the sentiment score with each numeric field.
      correlations,
      // Verdicts to take with care: not English, or mostly words the model never saw.
      unreliable: { count: unreliable.length, ids: unreliable.slice(0, 20) },
      perRecord,
    };
  },
};
