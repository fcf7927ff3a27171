/**
 * What the dataset generators and the analyzers share: the record they are given, the context they
 * run in (a soft time limit they check between chunks of work), and a registry by name.
 * No NATS, S3 or HTTP here: plugins run inside a piscina worker thread (see libs/pool).
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

/**
 * Plugins by name. A duplicate name throws, so a registry built at module level fails at import,
 * i.e. when the service (or its worker thread) starts. `kind` names the plugins in the error.
 */
export function createRegistry<T extends { readonly name: string }>(kind: string, plugins: readonly T[]): ReadonlyMap<string, T> {
  const m = new Map<string, T>();
  for (const p of plugins) {
    if (m.has(p.name)) throw new Error(`duplicate ${kind} name "${p.name}"`);
    m.set(p.name, p);
  }
  return m;
}
