/**
 * The registry of analyzers, by name. Adding one is one file plus one line here (and one line in the
 * flow definition); a duplicate name fails at import, i.e. when the service (or its worker thread) starts.
 */
import { analyzer as anomaly } from './anomaly.js';
import { analyzer as keywords } from './keywords.js';
import { analyzer as sentiment } from './sentiment.js';
import type { Analyzer } from './types.js';

export type * from './types.js';
export { CHUNK_SIZE, abortError, checkpoint } from './types.js';

export function registry<T extends { readonly name: string }>(kind: string, plugins: readonly T[]): ReadonlyMap<string, T> {
  const m = new Map<string, T>();
  for (const p of plugins) {
    if (m.has(p.name)) throw new Error(`duplicate ${kind} name "${p.name}"`);
    m.set(p.name, p);
  }
  return m;
}

export const analyzers: ReadonlyMap<string, Analyzer> = registry<Analyzer>('analyzer', [sentiment, anomaly, keywords]);
