import { AckPolicy, DeliverPolicy, type JsMsg, type NatsConnection } from 'nats';

export interface ScanOptions {
  stream: string;
  filterSubject?: string;
  /** Only messages with a sequence below this one (a cursor); from the newest when absent. */
  below?: number;
  /** Most messages to examine in one scan: what keeps a listing bounded. */
  budget: number;
  /** Size of the first sequence window; it grows when the stream has gaps. */
  window?: number;
}

export interface ScanResult {
  /** True when the scan reached the start of the stream. */
  exhausted: boolean;
  /** Where a next scan should continue (exclusive upper bound), when not exhausted. */
  below: number;
}

/**
 * Visits a stream's messages newest first, without a durable consumer: each window of sequences
 * [lo, hi] is read by a short-lived ephemeral consumer starting at lo (the server skips deleted
 * sequences, which matter for KV streams where every update deletes the previous revision).
 * The visitor returns false to stop; the result says where to continue.
 */
export async function scanNewestFirst(nc: NatsConnection, o: ScanOptions, visit: (m: JsMsg) => boolean | Promise<boolean>): Promise<ScanResult> {
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const info = await jsm.streams.info(o.stream);
  const first = info.state.first_seq;
  let hi = Math.min(info.state.last_seq, (o.below ?? Number.MAX_SAFE_INTEGER) - 1);
  let window = Math.max(1, o.window ?? 64);
  let examined = 0;
  while (hi >= first && info.state.messages > 0) {
    if (examined >= o.budget) return { exhausted: false, below: hi + 1 };
    const lo = Math.max(first, hi - window + 1);
    const batch = await readWindow(jsm, js, o, lo, hi, o.budget - examined);
    // Newest first; when the batch was cut by the budget, resume above its oldest message's window.
    for (let i = batch.msgs.length - 1; i >= 0; i--) {
      const m = batch.msgs[i]!;
      examined++;
      if (!(await visit(m))) return { exhausted: m.seq <= first, below: m.seq };
    }
    if (batch.truncated) return { exhausted: false, below: batch.msgs[0]?.seq ?? hi + 1 };
    hi = lo - 1;
    // Sparse window (gaps from deletes, or a filter): look further back next time.
    if (batch.msgs.length < window / 4) window = Math.min(window * 4, 65_536);
  }
  return { exhausted: true, below: first };
}

async function readWindow(
  jsm: Awaited<ReturnType<NatsConnection['jetstreamManager']>>,
  js: ReturnType<NatsConnection['jetstream']>,
  o: ScanOptions,
  lo: number,
  hi: number,
  max: number,
): Promise<{ msgs: JsMsg[]; truncated: boolean }> {
  const ci = await jsm.consumers.add(o.stream, {
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: lo,
    mem_storage: true,
    inactive_threshold: 30_000_000_000,
    ...(o.filterSubject ? { filter_subject: o.filterSubject } : {}),
  });
  try {
    // num_pending counts from lo to the end of the stream: never ask for more than exist,
    // so a fetch does not sit out its expiry waiting for messages that are not there.
    const want = Math.min(ci.num_pending, hi - lo + 1);
    const msgs: JsMsg[] = [];
    let truncated = false;
    const c = await js.consumers.get(o.stream, ci.name);
    outer: while (msgs.length < want) {
      const it = await c.fetch({ max_messages: want - msgs.length, expires: 1_000 });
      let got = 0;
      for await (const m of it) {
        got++;
        if (m.seq > hi) {
          it.stop();
          break outer;
        }
        msgs.push(m);
        if (msgs.length >= want) break;
      }
      if (got === 0) break;
    }
    // Keep only the newest `max` of the window (the scan goes newest first).
    if (msgs.length > max) {
      msgs.splice(0, msgs.length - max);
      truncated = true;
    }
    return { msgs, truncated };
  } finally {
    await jsm.consumers.delete(o.stream, ci.name).catch(() => undefined);
  }
}
