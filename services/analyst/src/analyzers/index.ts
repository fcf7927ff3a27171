/**
 * The registry of analyzers, by name. Adding one is one file plus one line here (and one line in the
 * flow definition); a duplicate name fails at import, i.e. when the service (or its worker thread) starts.
 */
import { analyzer as anomaly } from './anomaly.js';
import { analyzer as keywords } from './keywords.js';
import { analyzer as sentiment } from './sentiment.js';
import { createRegistry } from '@jetflow/plugins';
import type { Analyzer } from './types.js';

export type * from './types.js';
export { CHUNK_SIZE, abortError, checkpoint } from './types.js';
/** The registry helper (libs/plugins), under the name this module has always exported it by. */
export { createRegistry as registry };

export const analyzers: ReadonlyMap<string, Analyzer> = createRegistry<Analyzer>('analyzer', [sentiment, anomaly, keywords]);
