import { setTimeout as sleep } from 'node:timers/promises';
import type { JetflowUnderTest } from './harness.js';

export interface LoadResult {
  /** Flows whose submission got 202 (possibly after retries with the same idempotency key). */
  accepted: string[];
  /** Submissions that were never accepted within the retry budget. */
  gaveUp: number;
  retries: number;
}

/**
 * A steady load of flows over HTTP at `rate` per second for `durationMs`. Each submission carries its
 * own idempotency key and is retried with that key on errors (service restarts, broker restarts), so
 * "accepted" is exactly the set of flows the system owes a callback for.
 */
export function steadyLoad(j: JetflowUnderTest, body: (i: number) => Record<string, unknown>, o: { rate: number; durationMs: number; prefix: string; retryForMs?: number }) {
  const res: LoadResult = { accepted: [], gaveUp: 0, retries: 0 };
  let stop = false;
  const one = async (i: number) => {
    const until = Date.now() + (o.retryForMs ?? 30_000);
    for (;;) {
      try {
        const r = await j.api('/v1/flows', { method: 'POST', json: { ...body(i), idempotencyKey: `${o.prefix}-${i}` }, signal: AbortSignal.timeout(5_000) });
        if (r.status === 202) {
          res.accepted.push(((await r.json()) as { flowId: string }).flowId);
          return;
        }
        await r.body?.cancel();
        if (r.status < 500 && r.status !== 429) throw new Error(`submission ${i} refused with ${r.status}`);
      } catch (err) {
        if ((err as Error).message.includes('refused with')) throw err;
      }
      if (Date.now() > until) {
        res.gaveUp++;
        return;
      }
      res.retries++;
      await sleep(200);
    }
  };
  const done = (async () => {
    const started = Date.now();
    const pending: Array<Promise<void>> = [];
    for (let i = 0; !stop && Date.now() - started < o.durationMs; i++) {
      const due = started + (i * 1000) / o.rate;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      pending.push(one(i));
    }
    await Promise.all(pending);
    return res;
  })();
  return {
    done,
    stop() {
      stop = true;
    },
    get result() {
      return res;
    },
  };
}
