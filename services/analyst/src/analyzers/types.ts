/**
 * The contract of an analyst plugin: a pure function of the records and the datasets the
 * generators made. No NATS, S3 or HTTP here: analyzers run inside a piscina worker thread
 * (see ../pool.ts). The report is JSON a person would act on.
 *
 * The dataset row types below are what the analyst reads, declared here rather than imported from
 * the dataset-generator service (services do not import each other): any extra fields are ignored.
 * Every dataset is optional, because a generator may have failed under a continue policy.
 */
import type { InputRecord, PluginContext } from '@jetflow/plugins';

// The record, the plugin context and the checkpoint helpers are shared with the dataset generators.
export type { FieldValue, InputRecord, PluginContext } from '@jetflow/plugins';
export { CHUNK_SIZE, abortError, checkpoint } from '@jetflow/plugins';

/** Row of the `text` dataset. */
export interface TextRow {
  id: string;
  tokens: string[];
  /** ISO 639-3, "und" when unknown. */
  language?: string;
}

/** Row of the `features` dataset: feature name (`fields.amount`, `text.length`...) -> value. */
export interface FeatureRow {
  id: string;
  values: Record<string, number | null>;
}

/** Row of the `embeddings` dataset: a unit vector (all zeros for an empty text). */
export interface EmbeddingRow {
  id: string;
  vector: number[];
  /** How much of the text the embedding model knows, 0-1. */
  coverage?: number;
}

/** Row of the `score` dataset (insights v2: the sentiment classifier's verdict per record, made in chunks); `known`: the model knows most of its words. */
export interface ScoreRow {
  id: string;
  label: 'negative' | 'neutral' | 'positive';
  score: number;
  confidence: number;
  known: boolean;
}

export interface Datasets {
  score?: ScoreRow[];
  text?: TextRow[];
  features?: FeatureRow[];
  embeddings?: EmbeddingRow[];
}

export interface AnalyzerInput {
  records: readonly InputRecord[];
  datasets: Datasets;
}

export type Report = Record<string, unknown>;

export interface Analyzer<R extends Report = Report> {
  readonly name: string;
  readonly description: string;
  analyze(input: AnalyzerInput, ctx: PluginContext): Promise<R>;
}

/** Rows of a dataset by record id (rows whose id is not a record are ignored by the callers). */
export function byId<T extends { id: string }>(rows: readonly T[] | undefined): Map<string, T> {
  return new Map((rows ?? []).map((r) => [r.id, r]));
}

/** The first `n` characters of a text, for a report a person reads. */
export function snippet(text: string, n = 120): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length <= n ? t : `${t.slice(0, n - 1)}…`;
}
