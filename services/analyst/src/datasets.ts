/**
 * Datasets as they are stored (gzip JSON lines, one row per line), carried to a pool thread as bytes and
 * parsed there. The analyst's main thread then only moves bytes between S3 and the threads: parsing a
 * 50,000-row dataset on it, then copying the rows into a thread (a structured clone, and the same again
 * to rebuild them on the other side), took seconds per task, one task after the other, while the two
 * threads waited (docs/PERFORMANCE.md, "insights at scale").
 */
import { gunzipSync } from 'node:zlib';
import type { Datasets } from './analyzers/types.js';

/** Per dataset name, its stored bodies in order (one for a dataset, one per chunk for a mapped step's parts). */
export type EncodedDatasets = Record<string, Uint8Array[]>;

/** The rows of gzip (or plain) JSON-lines bodies, in order; blank lines are skipped. `what` names the source in errors. */
export function decodeJsonLines(bodies: readonly Uint8Array[], what: string): unknown[] {
  const rows: unknown[] = [];
  bodies.forEach((b, part) => {
    if (!(b instanceof Uint8Array)) throw Object.assign(new Error(`${what}: part ${part} is not bytes`), { code: 'terminal' });
    let text: string;
    try {
      text = (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b) : Buffer.from(b.buffer, b.byteOffset, b.byteLength)).toString('utf8');
    } catch (cause) {
      throw Object.assign(new Error(`${what}: part ${part} is not valid gzip`, { cause }), { code: 'terminal' });
    }
    let line = 0;
    for (let at = 0; at < text.length;) {
      let end = text.indexOf('\n', at);
      if (end < 0) end = text.length;
      line++;
      if (end > at) {
        try {
          rows.push(JSON.parse(text.slice(at, end)));
        } catch (cause) {
          throw Object.assign(new Error(`${what}${bodies.length > 1 ? `, part ${part}` : ''}, line ${line}: not JSON`, { cause }), { code: 'terminal' });
        }
      }
      at = end + 1;
    }
  });
  return rows;
}

/** The datasets with the encoded ones parsed in (an encoded dataset replaces a parsed one of the same name). */
export function withDecoded(datasets: Datasets, encoded: EncodedDatasets | undefined): Datasets {
  if (!encoded) return datasets;
  const out: Record<string, unknown[]> = { ...(datasets as Record<string, unknown[]>) };
  for (const [name, bodies] of Object.entries(encoded)) {
    if (!Array.isArray(bodies)) throw Object.assign(new Error(`dataset ${name}: its bodies are not an array`), { code: 'terminal' });
    // Defined, not assigned: a dependency named "__proto__" stays a plain key.
    Object.defineProperty(out, name, { value: decodeJsonLines(bodies, `dataset ${name}`), enumerable: true, writable: true, configurable: true });
  }
  return out;
}
