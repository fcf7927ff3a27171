/**
 * insights' CPU per step, in this process on one thread (no services, no broker, no S3): the per-record
 * halves that `prepare` and `score` run per chunk (text rows, text features, embeddings, the classifier),
 * the merges, and the three analyses on the merged datasets, each timed alone. What a pool thread
 * spends on each task of the flow, without the transport around it (bench/insights-scale.ts measures
 * the whole flow).
 *
 *   node --import tsx bench/insights-cpu.ts --n 10000
 *   node --cpu-prof --cpu-prof-dir /tmp/prof-cpu --import tsx bench/insights-cpu.ts --n 10000   # then bench/profile.ts
 *   node --import tsx bench/insights-cpu.ts --n 50000 --only anomaly,keywords
 */
import { performance } from 'node:perf_hooks';
import { loadEmbeddingModel, loadSentimentModel } from '@jetflow/models';
import { makeFeedbackBatch } from '@jetflow/testing';
import { embeddingRowsOf, embeddingSummary } from '../services/dataset-generator/src/generators/embeddings.js';
import { featurePartsOf, finishFeatures } from '../services/dataset-generator/src/generators/features.js';
import { finishText, textRowsOf } from '../services/dataset-generator/src/generators/text.js';
import { analyzer as anomaly } from '../services/analyst/src/analyzers/anomaly.js';
import { analyzer as keywords } from '../services/analyst/src/analyzers/keywords.js';
import { analyzer as sentiment, scoreRecords } from '../services/analyst/src/analyzers/sentiment.js';
import type { Datasets } from '../services/analyst/src/analyzers/types.js';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
if (args.includes('--help')) {
  process.stdout.write('usage: bench/insights-cpu.ts [--n 10000] [--chunk 250] [--only sentiment,anomaly,keywords]  (the per-record steps and merges always run)\n');
  process.exit(0);
}
const n = Number(opt('--n') ?? 10_000);
const chunk = Number(opt('--chunk') ?? 250);
if (!Number.isInteger(n) || n < 1 || !Number.isInteger(chunk) || chunk < 1) throw new Error('--n and --chunk take positive integers');
const only = new Set((opt('--only') ?? 'sentiment,anomaly,keywords').split(','));

const signal = new AbortController().signal;
const { records } = makeFeedbackBatch({ n, seed: 1000 + n, outliers: Math.max(1, Math.round(n / 1000)) });
await Promise.all([loadEmbeddingModel(), loadSentimentModel()]);
// Warm the JIT (and the models' first runs) on a small batch, so the figures are the steady state.
const warm = records.slice(0, Math.min(500, n));
await textRowsOf(warm, signal);
await featurePartsOf(warm, signal);
await embeddingRowsOf(warm, signal);
await scoreRecords(warm, signal);

// Wall time, and the process's CPU time (user + system, every thread: onnxruntime may use more than one),
// which a machine shared with other work inflates less.
const times: Array<{ step: string; ms: number; cpuMs: number }> = [];
async function timed<T>(step: string, f: () => Promise<T>): Promise<T> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const out = await f();
  const c = process.cpuUsage(c0);
  times.push({ step, ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 });
  return out;
}
const chunks: Array<typeof records> = [];
for (let i = 0; i < n; i += chunk) chunks.push(records.slice(i, i + chunk));
async function perChunk<T>(step: string, f: (c: typeof records) => Promise<T>): Promise<T[]> {
  return timed(step, async () => {
    const out: T[] = [];
    for (const c of chunks) out.push(await f(c));
    return out;
  });
}

const textParts = (await perChunk('prepare: text rows', (c) => textRowsOf(c, signal))).flat();
const featureParts = (await perChunk('prepare: text features', (c) => featurePartsOf(c, signal))).flat();
const embedded = await perChunk('prepare: embeddings', (c) => embeddingRowsOf(c, signal));
const scores = (await perChunk('score: classifier', (c) => scoreRecords(c, signal))).flat();
const text = await timed('merge: text', () => finishText(textParts, signal));
const features = await timed('merge: features', () => finishFeatures(featureParts, signal));
const embeddings = embedded.flatMap((e) => e.rows);
embeddingSummary(embedded.map((e) => e.partial));
const datasets = { text: text.rows, features: features.rows, embeddings, score: scores } as unknown as Datasets;
const ctx = { signal };
if (only.has('sentiment')) await timed('analysis: sentiment', () => sentiment.analyze({ records, datasets }, ctx));
if (only.has('anomaly')) await timed('analysis: anomaly', () => anomaly.analyze({ records, datasets }, ctx));
if (only.has('keywords')) await timed('analysis: keywords', () => keywords.analyze({ records, datasets }, ctx));

process.stdout.write(`${n.toLocaleString('en')} records, chunks of ${chunk}, one thread\n  step                        wall ms      CPU ms   CPU µs/record\n`);
for (const t of times) process.stdout.write(`  ${t.step.padEnd(24)} ${t.ms.toFixed(0).padStart(9)} ${t.cpuMs.toFixed(0).padStart(11)} ${((t.cpuMs * 1000) / n).toFixed(1).padStart(15)}\n`);
process.stdout.write(
  `  ${'total'.padEnd(24)} ${times
    .reduce((s, t) => s + t.ms, 0)
    .toFixed(0)
    .padStart(9)} ${times
    .reduce((s, t) => s + t.cpuMs, 0)
    .toFixed(0)
    .padStart(11)} ${((times.reduce((s, t) => s + t.cpuMs, 0) * 1000) / n).toFixed(1).padStart(15)}\n`,
);
