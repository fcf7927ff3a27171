/**
 * The contract of a dataset generator plugin: a pure function of the submitted records. No NATS,
 * S3 or HTTP here: generators run inside a piscina worker thread (see ../pool.ts), and the runtime
 * stores `rows` (gzip JSON lines) and passes `summary` on.
 */

import type { FieldValue, InputRecord, PluginContext } from '@jetflow/plugins';

// The record, the plugin context and the checkpoint helpers are shared with the analyzers.
export type { FieldValue, InputRecord, PluginContext } from '@jetflow/plugins';
export { CHUNK_SIZE, abortError, checkpoint } from '@jetflow/plugins';

/** Rows as gzip JSON lines, one row per line. */
export interface EncodedRows {
  body: Uint8Array;
  rows: number;
  /** Bytes before gzip. */
  rawBytes: number;
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
  /** insights v2 (a chunk of `prepare`, a merge): rows already encoded in the thread, by dataset, stored as they are. */
  encoded?: Record<string, EncodedRows>;
  /** A chunk's partial statistics, for the reducers (embeddings: its vector sums). */
  partial?: Record<string, unknown>;
}

export interface DatasetGenerator<Row extends DatasetRow = DatasetRow> {
  readonly name: string;
  readonly description: string;
  generate(records: readonly InputRecord[], ctx: PluginContext): Promise<DatasetResult<Row>>;
}

/** Numeric value of a field, or null for missing, non-numeric or non-finite values. */
export function numericValue(v: FieldValue | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
