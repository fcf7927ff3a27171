import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamClient, JsMsg } from 'nats';
import { reportError, type Logger } from '@jetflow/logging';
import { traceMessages, type ConsumeTraceOptions } from './tracing.js';

/**
 * After a pull loop's `failures`-th failure in a row: logs the first and every 20th (a broker restart fails
 * every pull for a while), then waits 100 ms doubling up to 2 s.
 */
export async function pauseAfterPullFailure(log: Logger, err: unknown, consumer: string, failures: number): Promise<void> {
  if (failures === 1 || failures % 20 === 0) log.warn({ err: (err as Error).message, consumer }, 'pull failed; retrying');
  await sleep(Math.min(2_000, 50 * 2 ** Math.min(failures, 6)));
}

export interface PullLoopOptions {
  js: JetStreamClient;
  stream: string;
  consumer: string;
  /** Most messages held (being handled) at once by this loop. */
  concurrency: number;
  /** 'fetch' pulls only as many as there are free slots (workers); 'consume' keeps a buffer full (orchestrator). */
  mode: 'fetch' | 'consume';
  /** How long one pull request waits on the server: fetch mode (default 2 s) and consume mode (default 30 s). */
  expiresMs?: number;
  /** Further limit on how many to fetch now (admission control); fetch mode only. */
  capacity?: () => number;
  /** Resolves when capacity() may have grown; without it a loop at zero capacity polls every 5 ms. */
  whenCapacity?: () => Promise<void>;
  handle: (m: JsMsg) => Promise<void>;
  log: Logger;
  /** Tracing of each delivery (see traceMessages); default: a span when the message carries a trace. */
  trace?: Pick<ConsumeTraceOptions, 'root' | 'skip'>;
}

export interface PullLoop {
  /** Stop pulling; resolves when every message being handled is done. */
  stop(): Promise<void>;
  readonly inFlight: number;
  readonly done: Promise<void>;
}

/**
 * A durable pull consumer loop with bounded concurrency. The handler decides ack/nak/term; the loop
 * only pulls, bounds, and survives broker restarts (it keeps re-pulling with backoff).
 */
export function startPullLoop(o: PullLoopOptions): PullLoop {
  let stopped = false;
  let inFlight = 0;
  let wake: (() => void) | undefined;
  let wakeCapacity: (() => void) | undefined;
  let idle: (() => void) | undefined;
  let stopIter: (() => void) | undefined;
  // consume() keeps a pull request open and renews it; with a short expiry, a quiet consumer's request
  // expired every couple of seconds, and now and then a renewal was lost until the client's missed-heartbeat
  // check re-pulled: a message then waited ~3 s (seen as 2-3 s stalls of real-mode flows at 19 flows/s,
  // bench/phases.ts). 30 s is the client's own default; idle heartbeats still detect a dead server.
  const expires = o.expiresMs ?? (o.mode === 'consume' ? 30_000 : 2_000);
  const handle = traceMessages(o.handle, { stream: o.stream, consumer: o.consumer, ...o.trace });

  const slotFree = () => (inFlight < o.concurrency || stopped ? Promise.resolve() : new Promise<void>((r) => (wake = r)));
  const run = (m: JsMsg) => {
    // A message that arrives after stop() is handed back at once for another replica.
    if (stopped) {
      m.nak();
      return;
    }
    inFlight++;
    handle(m)
      .catch((err: unknown) => reportError(o.log, err, { where: 'message handler', consumer: o.consumer, subject: m.subject }))
      .finally(() => {
        inFlight--;
        const w = wake;
        wake = undefined;
        w?.();
        if (inFlight === 0) idle?.();
      });
  };

  const done = (async () => {
    let failures = 0;
    while (!stopped) {
      try {
        const c = await o.js.consumers.get(o.stream, o.consumer);
        if (o.mode === 'fetch') {
          while (!stopped) {
            await slotFree();
            if (stopped) break;
            const n = Math.min(o.concurrency - inFlight, o.capacity ? o.capacity() : Number.POSITIVE_INFINITY);
            if (n <= 0) {
              await (o.whenCapacity ? Promise.race([o.whenCapacity(), new Promise<void>((r) => (wakeCapacity = r))]) : sleep(5));
              continue;
            }
            const iter = await c.fetch({ max_messages: n, expires });
            stopIter = () => iter.stop();
            for await (const m of iter) run(m);
            failures = 0;
          }
        } else {
          const iter = await c.consume({ max_messages: Math.max(16, o.concurrency), expires });
          stopIter = () => iter.stop();
          for await (const m of iter) {
            run(m);
            failures = 0;
            await slotFree();
          }
        }
      } catch (err) {
        if (stopped) break;
        failures++;
        await pauseAfterPullFailure(o.log, err, o.consumer, failures);
      }
    }
  })();

  return {
    get inFlight() {
      return inFlight;
    },
    done,
    async stop() {
      stopped = true;
      stopIter?.();
      wake?.();
      wakeCapacity?.();
      if (inFlight > 0) await new Promise<void>((r) => (idle = r));
      // stopIter() ends the current pull at once; this only bounds a broken connection.
      await Promise.race([done, sleep(Math.min(expires, 2_000) + 500)]);
    },
  };
}
