/**
 * The embeddings dataset: one unit vector per record from the project's ONNX embedding model.
 */
import { loadEmbeddingModel } from '../../../../libs/models/src/index.js';
import { CHUNK_SIZE, checkpoint, type DatasetGenerator, type DatasetRow } from './types.js';

export interface EmbeddingRow extends DatasetRow {
  /** L2-normalised; all zeros for an empty text. */
  vector: number[];
  /** How much of the text the model knows, 0-1 (low: another language or domain; the vector means little). */
  coverage: number;
}

// Six decimals keep cosine similarities exact to ~1e-5 at a third of the JSON size of full doubles.
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

export const generator: DatasetGenerator<EmbeddingRow> = {
  name: 'embeddings',
  description: 'One L2-normalised vector per record (the project ONNX embedding model); cosine = dot product.',
  async generate(records, ctx) {
    // Memoised per thread: the pool worker preloads it, so this is a lookup, not a load.
    const model = await loadEmbeddingModel();
    const rows: EmbeddingRow[] = [];
    const centroid = new Float64Array(model.dimension);
    let empty = 0;
    let coverage = 0;
    for (let start = 0; start < records.length; start += CHUNK_SIZE) {
      await checkpoint(ctx.signal);
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
    // For unit vectors, |mean|^2 is the mean pairwise cosine (self-pairs included): a cheap
    // measure of how alike the batch's texts are.
    const n = rows.length - empty;
    let sq = 0;
    for (const c of centroid) sq += (c / Math.max(n, 1)) ** 2;
    return {
      rows,
      summary: {
        rows: rows.length,
        dimension: model.dimension,
        model: { name: model.name, version: model.version },
        emptyVectors: empty,
        meanCoverage: rows.length ? Math.round((coverage / rows.length) * 1000) / 1000 : null,
        meanPairwiseSimilarity: n > 0 ? Math.round(sq * 1000) / 1000 : null,
      },
    };
  },
};
