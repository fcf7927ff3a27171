/**
 * The registry of dataset generators, by name. Adding one is one file plus one line here; a
 * duplicate name fails at import, i.e. when the service (or its worker thread) starts.
 */
import { generator as embeddings } from './embeddings.js';
import { generator as features } from './features.js';
import { generator as text } from './text.js';
import type { DatasetGenerator } from './types.js';

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

export const generators: ReadonlyMap<string, DatasetGenerator> = registry<DatasetGenerator>('dataset generator', [text, features, embeddings]);
