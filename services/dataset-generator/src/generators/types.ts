/**
 * The contract of a dataset generator plugin: a pure function of the submitted records. No NATS,
 * S3 or HTTP here: generators run inside a piscina worker thread (see ../pool.ts), and the runtime
 * stores `rows` (gzip JSON lines) and passes `summary` on.
 */

export type FieldValue = number | string | null;

/** One submitted record, as in the API: `{ id, text, fields: { rating: 2, amount: 35.5 } }`. */
export interface InputRecord {
  id: string;
  text: string;
  fields?: Record<string, FieldValue>;
}

export interface PluginContext {
  /** The soft time limit (or a cancel): plugins check it between chunks of work, see checkpoint(). */
  signal: AbortSignal;
}

/** A dataset row; `id` is the record's id. */
export interface DatasetRow {
  id: string;
}

export interface DatasetResult<Row extends DatasetRow = DatasetRow> {
  /** The dataset: one row per record, in record order. */
  rows: Row[];
  /** Small JSON a person (or the callback) can read without fetching the rows. */
  summary: Record<string, unknown>;
}

export interface DatasetGenerator<Row extends DatasetRow = DatasetRow> {
  readonly name: string;
  readonly description: string;
  generate(records: readonly InputRecord[], ctx: PluginContext): Promise<DatasetResult<Row>>;
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

/** Numeric value of a field, or null for missing, non-numeric or non-finite values. */
export function numericValue(v: FieldValue | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
