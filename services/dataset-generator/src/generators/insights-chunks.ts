/**
 * The insights flow on map (version 2): `prepare` does the per-record work of the three datasets on
 * one chunk of records (text rows, the text features, the embeddings), and the reducers finish each
 * dataset from the parts of every chunk in record order. The halves are the same functions the
 * whole-batch generators are made of, so a chunked batch gets the same rows and summaries.
 *
 * Parts travel as gzip JSON lines made and read here, in the pool thread: the service's main thread
 * only moves bytes between S3 and the thread (serialising tens of thousands of rows there made it the
 * bottleneck of a 50,000-record flow). Parts are temporary, so they take gzip level 1.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { createRegistry } from '@jetflow/plugins';
import { embeddingRowsOf } from './embeddings.js';
import { featurePartsOf, finishFeatures, type FeaturePartRow } from './features.js';
import { finishText, textRowsOf, type TextPartRow } from './text.js';
import type { DatasetGenerator, EncodedRows, InputRecord } from './types.js';

/** Rows as gzip JSON lines (one row per line), with their count and size before gzip. */
export function encodeRows(rows: readonly unknown[], level = 1): EncodedRows {
  const text = rows.length ? `${rows.map((r) => JSON.stringify(r)).join('\n')}\n` : '';
  const raw = Buffer.from(text);
  const gz = gzipSync(raw, { level });
  return { body: new Uint8Array(gz.buffer, gz.byteOffset, gz.byteLength), rows: rows.length, rawBytes: raw.byteLength };
}

/** The rows of gzip JSON-lines parts, in order. */
export function decodeParts<T>(bodies: readonly Uint8Array[]): T[] {
  const out: T[] = [];
  bodies.forEach((b, i) => {
    const text = gunzipSync(b).toString('utf8');
    let line = 0;
    for (const l of text.split('\n')) {
      line++;
      if (!l) continue;
      try {
        out.push(JSON.parse(l) as T);
      } catch (cause) {
        throw Object.assign(new Error(`part ${i}, line ${line}: not JSON`, { cause }), { code: 'terminal' });
      }
    }
  });
  return out;
}

/** Per chunk: the parts of the text, features and embeddings datasets, encoded, and the embeddings' partial sums. */
export const prepare: DatasetGenerator = {
  name: 'prepare',
  description: 'insights v2, per chunk of records: text rows, text features and embeddings (the per-record work of the three datasets).',
  async generate(records, ctx) {
    const text = await textRowsOf(records, ctx.signal);
    const features = await featurePartsOf(records, ctx.signal);
    const { rows: embeddings, partial } = await embeddingRowsOf(records, ctx.signal);
    return {
      rows: [],
      summary: { rows: records.length },
      encoded: { text: encodeRows(text), features: encodeRows(features), embeddings: encodeRows(embeddings) },
      partial: { embeddings: partial },
    };
  },
};

/** The bodies of a merge's parts travel in the job's `records` (this runner's one array field). */
const bodiesOf = (records: readonly InputRecord[]) => records as unknown as Uint8Array[];

/** The text dataset from every chunk's text part: finished and encoded in the thread. */
export const mergeText: DatasetGenerator = {
  name: 'merge-text',
  description: 'insights v2: the text dataset from the parts of every chunk (batch language, vocabulary, top tokens).',
  async generate(records, ctx) {
    const { rows, summary } = await finishText(decodeParts<TextPartRow>(bodiesOf(records)), ctx.signal);
    return { rows: [], summary, encoded: { dataset: encodeRows(rows) } };
  },
};

/** The features dataset from every chunk's features part. */
export const mergeFeatures: DatasetGenerator = {
  name: 'merge-features',
  description: 'insights v2: the features dataset from the parts of every chunk (profiles, z-scores, correlations).',
  async generate(records, ctx) {
    const { rows, summary } = await finishFeatures(decodeParts<FeaturePartRow>(bodiesOf(records)), ctx.signal);
    return { rows: [], summary, encoded: { dataset: encodeRows(rows) } };
  },
};

export const chunkGenerators: ReadonlyMap<string, DatasetGenerator> = createRegistry<DatasetGenerator>('dataset generator', [prepare, mergeText, mergeFeatures]);
