import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode } from 'nats';
import { JetStreamApiCodes } from './js-errors.js';

/**
 * Whether a NATS / JetStream error is worth another try with the same request: nobody answered in time,
 * no responders, or JetStream said it is temporarily unavailable. That is what clients see for the few
 * seconds a replicated stream (or the cluster's meta leader) is being re-elected after a node died, and
 * while a busy cluster creates replicated streams and consumers.
 *
 * Matched by code only: nats.js gives every timeout (ErrorCode.Timeout, 'TIMEOUT') and "no responders"
 * (ErrorCode.NoResponders, '503') a code, JetStream's answers carry `api_error`, and our publisher marks
 * its give-up after retrying such failures (`transient`), so no message text is needed.
 */
export function isTransientNatsError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; transient?: unknown; api_error?: { code?: unknown; err_code?: unknown } };
  if (e.transient === true) return true;
  // JetStream answered: only its 503 class ("JetStream system temporarily unavailable", 10008, and kin
  // while leaders are elected) means "not now". A full stream also says 503 but is no broker failure.
  if (e.api_error) return e.api_error.code === 503 && e.api_error.err_code !== JetStreamApiCodes.StreamStoreFailed;
  return e.code === ErrorCode.Timeout || e.code === ErrorCode.NoResponders;
}

/** Marks an error as "the broker did not answer" for isTransientNatsError (e.g. a publish that ran out of retries). */
export function markTransient<E extends Error>(err: E): E {
  return Object.assign(err, { transient: true as const });
}

export interface RetryTransientOptions {
  /** Give up (rethrow the last error) once this time (ms since epoch) has passed. */
  until: number;
  /** What is being tried, for the log line of each retry; no log when absent. */
  what?: string;
  log?: { warn(obj: object, msg: string): void };
  /** Errors worth another try besides isTransientNatsError. */
  also?: (err: unknown) => boolean;
  /** Backoff: baseMs × 2^attempt, at most maxMs. */
  baseMs?: number;
  maxMs?: number;
}

/**
 * Runs an idempotent step until it succeeds, retrying while the error is transient (a stream leader
 * being elected, a busy cluster) and the deadline has not passed; any other error is rethrown at once.
 */
export async function retryTransient<T>(fn: () => Promise<T>, o: RetryTransientOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const worth = isTransientNatsError(err) || (o.also?.(err) ?? false);
      if (!worth || Date.now() > o.until) throw err;
      if (o.log && o.what) o.log.warn({ what: o.what, attempt, err: (err as Error).message }, `${o.what} failed; retrying`);
      await sleep(Math.min(o.maxMs ?? 2_000, (o.baseMs ?? 100) * 2 ** attempt));
    }
  }
}
