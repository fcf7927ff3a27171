/**
 * The contract of an analyst plugin: a pure function of the records and the datasets the
 * generators made. No NATS, S3 or HTTP here: analyzers run inside a piscina worker thread
 * (see ../pool.ts). The report is JSON a person would act on.
 *
 * The dataset row types below are what the analyst reads, declared here rather than imported from
 * the dataset-generator service (services do not import each other): any extra fields are ignored.
 * Every dataset is optional, because a generator may have failed under a continue policy.
 */

export type FieldValue = number | string | null;

export interface InputRecord {
  id: string;
  text: string;
  fields?: Record<string, FieldValue>;
}

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

export interface Datasets {
  text?: TextRow[];
  features?: FeatureRow[];
  embeddings?: EmbeddingRow[];
}

export interface AnalyzerInput {
  records: readonly InputRecord[];
  datasets: Datasets;
}

export interface PluginContext {
  /** The soft time limit (or a cancel): plugins check it between chunks of work, see checkpoint(). */
  signal: AbortSignal;
}

export type Report = Record<string, unknown>;

export interface Analyzer<R extends Report = Report> {
  readonly name: string;
  readonly description: string;
  analyze(input: AnalyzerInput, ctx: PluginContext): Promise<R>;
}

/** Records handled between two checkpoints. */
export const CHUNK_SIZE = 100;

/**
 * Yields to the event loop, then throws if the task was aborted. Yielding matters: in a worker
 * thread busy with synchronous work, the abort message (or an AbortSignal.timeout) is only
 * delivered when the loop turns.
 */
export async function checkpoint(signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (signal.aborted) throw abortError(signal);
}

/** An error that says why: `timeout` for a soft time limit, `cancelled` otherwise (codes of libs/errors). */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
  return Object.assign(new Error(timedOut ? 'soft time limit reached' : 'task aborted', { cause: reason }), {
    name: 'AbortError',
    code: timedOut ? 'timeout' : 'cancelled',
  });
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
