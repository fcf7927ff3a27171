import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, JetStreamClient, JsMsg } from 'nats';
import { reportError, type Logger } from '@jetflow/logging';
import { traceMessages } from './tracing.js';
import { pauseAfterPullFailure, type PullLoop } from './loop.js';

/** How long a no-wait pull may go unanswered before it counts as lost (an answer takes milliseconds). */
const NO_WAIT_GUARD_MS = 5_000;

/**
 * Smooth weighted round robin over the priority bands that have a backlog (nginx's): with weights 6:3:1
 * and every band busy, ten turns go high ×6, normal ×3, low ×1, interleaved; a band without a backlog takes
 * no turn and keeps no credit, so low still gets one turn in (6 + 1) when normal is empty. Pure.
 */
export class WeightedTurns {
  private readonly credit: number[];
  constructor(private readonly weights: readonly number[]) {
    this.credit = weights.map(() => 0);
  }

  /** The bands in `among` (indices), whose turn first: the order to try them in. */
  order(among: readonly number[]): number[] {
    return [...among].sort((a, b) => this.credit[b]! + this.weights[b]! - (this.credit[a]! + this.weights[a]!) || a - b);
  }

  /** Band `took` got the turn among the bands `among` that had a backlog; the others lose their credit. */
  took(took: number, among: readonly number[]): void {
    let total = 0;
    for (let i = 0; i < this.credit.length; i++) {
      if (among.includes(i)) {
        this.credit[i]! += this.weights[i]!;
        total += this.weights[i]!;
      } else this.credit[i] = 0;
    }
    this.credit[took]! -= total;
  }
}

export interface BandedPullLoopOptions {
  js: JetStreamClient;
  stream: string;
  /** One consumer per band, highest first, and the weight of each. */
  consumers: readonly string[];
  weights: readonly number[];
  /** Most messages held (being handled) at once by this loop. */
  concurrency: number;
  /** Further limit on how many to fetch now (the worker's free slots). */
  capacity: () => number;
  /** Resolves when capacity() may have grown. */
  whenCapacity: () => Promise<void>;
  handle: (m: JsMsg) => Promise<void>;
  log: Logger;
  /** How long the open pull request of an empty band waits on the server (default 2 s)... */
  expiresMs?: number;
  /** ...and of the bands other than `normal` (index; default 6 s: an idle subject's high and low bands ask a third as often). */
  otherBandsExpiresMs?: number;
  /** The index of the normal band in `consumers` (default 1). */
  normal?: number;
}

/**
 * The pulls of one task subject's priority bands, sharing the worker's slots. While bands have a backlog,
 * each turn (weighted, WeightedTurns) fetches up to the free slots from one band with a no-wait pull
 * request, so a band's backlog never waits behind another's open request. A band found empty gets an
 * ordinary pull request that stays open until something arrives (renewed when it expires: 2 s for the
 * normal band, 6 s for the others), and takes no turns meanwhile: an idle subject keeps one open request
 * per band, and a busy one asks the empty bands nothing more. As with several subjects, open requests can deliver a few more than the free slots at once
 * (the worker holds those, heartbeated, until a slot frees).
 */
export function startBandedPullLoop(o: BandedPullLoopOptions): PullLoop {
  let stopped = false;
  let inFlight = 0;
  let wakeLoop: (() => void) | undefined;
  /** Something changed since the loop last looked (a delivery, a request's end, a slot): it looks again before waiting. */
  let dirty = false;
  let idle: (() => void) | undefined;
  const turns = new WeightedTurns(o.weights);
  const bands = o.consumers.map((_, i) => i);
  /** Bands with an open (waiting) pull request: stopped at stop(). */
  const open = new Map<number, () => void>();
  let openFailures = 0;
  const consumers = new Map<number, Consumer>();
  const expires = o.expiresMs ?? 2_000;
  const otherExpires = o.otherBandsExpiresMs ?? 6_000;
  const expiresOf = (i: number) => (i === (o.normal ?? 1) ? expires : otherExpires);
  const handles = o.consumers.map((consumer) => traceMessages(o.handle, { stream: o.stream, consumer }));

  const poke = () => {
    dirty = true;
    const w = wakeLoop;
    wakeLoop = undefined;
    w?.();
  };
  const run = (band: number, m: JsMsg) => {
    if (stopped) {
      m.nak();
      return;
    }
    inFlight++;
    handles[band]!(m)
      .catch((err: unknown) => reportError(o.log, err, { where: 'message handler', consumer: o.consumers[band], subject: m.subject }))
      .finally(() => {
        inFlight--;
        poke();
        if (inFlight === 0) idle?.();
      });
  };
  const free = () => Math.min(o.concurrency - inFlight, o.capacity());

  /** What band `i` has queued now, up to n (one no-wait pull request). */
  const fetchNow = async (i: number, n: number): Promise<number> => {
    // The consumer API's fetch waits at least a second; the no-wait request is only in the older one.
    const iter = o.js.fetch(o.stream, o.consumers[i]!, { batch: n, no_wait: true });
    // A no-wait request has no client-side timer: one lost with the connection (a broker restart while it
    // was on its way) would never end, and this subject's loop would pull no band again.
    const guard = setTimeout(() => iter.stop(new Error(`no answer to a no-wait pull on ${o.consumers[i]} in ${NO_WAIT_GUARD_MS} ms`)), NO_WAIT_GUARD_MS);
    let got = 0;
    try {
      for await (const m of iter) {
        got++;
        run(i, m);
      }
    } finally {
      clearTimeout(guard);
    }
    return got;
  };

  /**
   * An open pull request on band i (nothing was queued there): delivers what arrives, up to n. One that
   * expires empty is renewed at once (no no-wait probe first) while the worker has a free slot, so an idle
   * band costs one request per expiry.
   */
  const openRequest = (i: number, n: number) => {
    open.set(i, () => undefined);
    void (async () => {
      try {
        let c = consumers.get(i);
        if (!c) consumers.set(i, (c = await o.js.consumers.get(o.stream, o.consumers[i])));
        while (!stopped) {
          const iter = await c.fetch({ max_messages: n, expires: expiresOf(i) });
          open.set(i, () => iter.stop());
          let got = 0;
          for await (const m of iter) {
            got++;
            run(i, m);
            poke();
          }
          if (got > 0 || free() <= 0) break;
        }
        openFailures = 0;
      } catch (err) {
        // A broker restart fails every open request at once: the first failure and every 20th are logged.
        if (!stopped && (++openFailures === 1 || openFailures % 20 === 0))
          o.log.warn({ err: (err as Error).message, consumer: o.consumers[i], failures: openFailures }, 'pull failed; retrying');
        await sleep(Math.min(2_000, 250 * openFailures));
      } finally {
        open.delete(i);
        poke();
      }
    })();
  };

  const done = (async () => {
    let failures = 0;
    while (!stopped) {
      try {
        dirty = false;
        const n = free();
        if (n <= 0) {
          await Promise.race([o.whenCapacity(), new Promise<void>((r) => (wakeLoop = r))]);
          continue;
        }
        const among = bands.filter((i) => !open.has(i));
        let took = -1;
        for (const i of turns.order(among)) {
          if (stopped) break;
          if ((await fetchNow(i, n)) > 0) {
            took = i;
            break;
          }
          openRequest(i, n);
        }
        failures = 0;
        if (took >= 0) turns.took(took, among);
        // Every band has an open request: wait for a delivery, a request's end, or a slot.
        else if (!stopped && !dirty) await Promise.race([new Promise<void>((r) => (wakeLoop = r)), o.whenCapacity()]);
      } catch (err) {
        if (stopped) break;
        failures++;
        await pauseAfterPullFailure(o.log, err, o.consumers.join(','), failures);
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
      for (const s of open.values()) s();
      poke();
      if (inFlight > 0) await new Promise<void>((r) => (idle = r));
      await Promise.race([done, sleep(Math.min(expires, 2_000) + 500)]);
    },
  };
}
