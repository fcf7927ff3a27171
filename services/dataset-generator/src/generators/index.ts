/**
 * The registry of dataset generators, by name. Adding one is one file plus one line here; a
 * duplicate name fails at import, i.e. when the service (or its worker thread) starts.
 */
import { generator as embeddings } from './embeddings.js';
import { generator as features } from './features.js';
import { generator as text } from './text.js';
import { createRegistry } from '@jetflow/plugins';
import type { DatasetGenerator } from './types.js';

export type * from './types.js';
export { CHUNK_SIZE, abortError, checkpoint } from './types.js';
/** The registry helper (libs/plugins), under the name this module has always exported it by. */
export { createRegistry as registry };

export const generators: ReadonlyMap<string, DatasetGenerator> = createRegistry<DatasetGenerator>('dataset generator', [text, features, embeddings]);
