/**
 * The insights flow on map (version 2): `prepare` does the per-record work of the three datasets on
 * one chunk of records (text rows, the text features, the embeddings), and the reducers finish each
 * dataset from the parts of every chunk in record order. The halves are the same functions the
 * whole-batch generators are made of, so a chunked batch gets the same rows and summaries.
 */
import { createRegistry } from '../../../../libs/plugins/src/index.js';
import { embeddingRowsOf } from './embeddings.js';
import { featurePartsOf, finishFeatures, type FeaturePartRow } from './features.js';
import { finishText, textRowsOf, type TextPartRow } from './text.js';
import type { DatasetGenerator } from './types.js';

/** Per chunk: the parts of the text, features and embeddings datasets, and the embeddings' partial sums. */
export const prepare: DatasetGenerator = {
  name: 'prepare',
  description: 'insights v2, per chunk of records: text rows, text features and embeddings (the per-record work of the three datasets).',
  async generate(records, ctx) {
    const text = await textRowsOf(records, ctx.signal);
    const features = await featurePartsOf(records, ctx.signal);
    const { rows: embeddings, partial } = await embeddingRowsOf(records, ctx.signal);
    return { rows: [], summary: { rows: records.length }, parts: { text, features, embeddings }, partial: { embeddings: partial } };
  },
};

/** The text dataset from every chunk's text part (its "records" are those rows). */
export const mergeText: DatasetGenerator = {
  name: 'merge-text',
  description: 'insights v2: the text dataset from the parts of every chunk (batch language, vocabulary, top tokens).',
  generate: (rows, ctx) => finishText(rows as unknown as TextPartRow[], ctx.signal),
};

/** The features dataset from every chunk's features part. */
export const mergeFeatures: DatasetGenerator = {
  name: 'merge-features',
  description: 'insights v2: the features dataset from the parts of every chunk (profiles, z-scores, correlations).',
  generate: (rows, ctx) => finishFeatures(rows as unknown as FeaturePartRow[], ctx.signal),
};

export const chunkGenerators: ReadonlyMap<string, DatasetGenerator> = createRegistry<DatasetGenerator>('dataset generator', [prepare, mergeText, mergeFeatures]);
