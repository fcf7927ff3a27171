/**
 * The embeddings dataset: one unit vector per record from the project's ONNX embedding model.
 */
import { loadEmbeddingModel } from '@jetflow/models';
import { CHUNK_SIZE, checkpoint, type DatasetGenerator, type DatasetRow, type InputRecord } from './types.js';

export interface EmbeddingRow extends DatasetRow {
  /** L2-normalised; all zeros for an empty text. */
  vector: number[];
  /** How much of the text the model knows, 0-1 (low: another language or domain; the vector means little). */
  coverage: number;
}

// Six decimals keep cosine similarities exact to ~1e-5 at a third of the JSON size of full doubles.
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** What a chunk's embeddings add to the batch's summary: the sum of its vectors, the empty ones, the coverage. */
export interface EmbeddingPartial {
  rows: number;
  empty: number;
  coverage: number;
  /** The sum of the chunk's vectors (the batch's centroid is the sum of these over its non-empty vectors). */
  sum: number[];
  dimension: number;
  model: { name: string; version: string };
}

/** The per-record half: one vector per record, and the chunk's partial sums. */
export async function embeddingRowsOf(records: readonly InputRecord[], signal: AbortSignal): Promise<{ rows: EmbeddingRow[]; partial: EmbeddingPartial }> {
  // Memoised per thread: the pool worker preloads it, so this is a lookup, not a load.
  const model = await loadEmbeddingModel();
  const rows: EmbeddingRow[] = [];
  const centroid = new Float64Array(model.dimension);
  let empty = 0;
  let coverage = 0;
  for (let start = 0; start < records.length; start += CHUNK_SIZE) {
    await checkpoint(signal);
    const chunk = records.slice(start, start + CHUNK_SIZE);
    const embedded = await model.embedWithCoverage(chunk.map((r) => r.text ?? ''));
    chunk.forEach((r, i) => {
      const e = embedded[i] ?? { vector: new Float32Array(model.dimension), coverage: 0 };
      if (e.vector.every((x) => x === 0)) empty++;
      e.vector.forEach((x, j) => (centroid[j]! += x));
      coverage += e.coverage;
      rows.push({ id: r.id, vector: Array.from(e.vector, round6), coverage: Math.round(e.coverage * 1000) / 1000 });
    });
  }
  return { rows, partial: { rows: rows.length, empty, coverage, sum: Array.from(centroid), dimension: model.dimension, model: { name: model.name, version: model.version } } };
}

/** The batch's summary from the partials of its chunks (one partial for a whole batch). */
export function embeddingSummary(partials: readonly EmbeddingPartial[]): Record<string, unknown> {
  const first = partials[0];
  const dimension = first?.dimension ?? 0;
  const centroid = new Float64Array(dimension);
  let rows = 0;
  let empty = 0;
  let coverage = 0;
  for (const p of partials) {
    rows += p.rows;
    empty += p.empty;
    coverage += p.coverage;
    p.sum.forEach((x, j) => (centroid[j]! += x));
  }
  // For unit vectors, |mean|^2 is the mean pairwise cosine (self-pairs included): a cheap
  // measure of how alike the batch's texts are.
  const n = rows - empty;
  let sq = 0;
  for (const c of centroid) sq += (c / Math.max(n, 1)) ** 2;
  return {
    rows,
    dimension,
    model: first?.model ?? null,
    emptyVectors: empty,
    meanCoverage: rows ? Math.round((coverage / rows) * 1000) / 1000 : null,
    meanPairwiseSimilarity: n > 0 ? Math.round(sq * 1000) / 1000 : null,
  };
}

export const generator: DatasetGenerator<EmbeddingRow> = {
  name: 'embeddings',
  description: 'One L2-normalised vector per record (the project ONNX embedding model); cosine = dot product.',
  async generate(records, ctx) {
    const { rows, partial } = await embeddingRowsOf(records, ctx.signal);
    return { rows, summary: embeddingSummary([partial]) };
  },
};
