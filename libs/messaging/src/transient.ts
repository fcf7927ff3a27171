import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Whether a NATS / JetStream error is worth another try with the same request: nobody answered in time,
 * no responders, or JetStream said it is temporarily unavailable. That is what clients see for the few
 * seconds a replicated stream (or the cluster's meta leader) is being re-elected after a node died, and
 * while a busy cluster creates replicated streams and consumers.
 */
export function isTransientNatsError(err: unknown): boolean {
  const e = err as { code?: string; message?: string; api_error?: { code?: number } } | undefined;
  if (!e) return false;
  if (e.code === 'TIMEOUT' || e.code === '503' || e.api_error?.code === 503) return true;
  return /timeout|timed out|no responders|temporarily unavailable/i.test(e.message ?? '');
}

export interface RetryTransientOptions {
  /** Give up (rethrow the last error) once this time (ms since epoch) has passed. */
  until: number;
  /** What is being tried, for the log line of each retry; no log when absent. */
  what?: string;
  log?: { warn(obj: object, msg: string): void };
  /** Errors worth another try besides isTransientNatsError (by message). */
  also?: RegExp;
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
      const worth = isTransientNatsError(err) || (o.also?.test((err as Error)?.message ?? '') ?? false);
      if (!worth || Date.now() > o.until) throw err;
      if (o.log && o.what) o.log.warn({ what: o.what, attempt, err: (err as Error).message }, `${o.what} failed; retrying`);
      await sleep(Math.min(o.maxMs ?? 2_000, (o.baseMs ?? 100) * 2 ** attempt));
    }
  }
}
