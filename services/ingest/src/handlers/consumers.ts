/** A consumer's counters as JetStream reports them (adapters/consumer-source.ts). */
export interface ConsumerCounters {
  stream: string;
  name: string;
  filterSubject: string | null;
  numPending: number;
  numAckPending: number;
  numRedelivered: number;
  numWaiting: number;
  /** Deliveries so far (the consumer sequence): its delta over time is the throughput. */
  delivered: number;
  maxAckPending: number | null;
  /** When it last delivered (reported by newer servers; null otherwise). */
  lastActive: string | null;
}

export interface StreamCounters {
  name: string;
  messages: number;
  bytes: number;
  consumers: number;
}

export interface ConsumerSource {
  snapshot(): Promise<{ streams: StreamCounters[]; consumers: ConsumerCounters[] }>;
}

interface Sample {
  at: number;
  delivered: number;
}

/**
 * Consumers with a throughput estimate: deliveries per second between this call and the newest
 * earlier sample at least `minIntervalMs` old (callers such as the dashboard poll every few seconds).
 * Samples live in this process only; each ingest replica estimates on its own.
 */
export class ConsumerStats {
  private readonly samples = new Map<string, Sample[]>();

  constructor(
    private readonly source: ConsumerSource,
    private readonly minIntervalMs = 1_000,
    private readonly keepMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  async list() {
    const snap = await this.source.snapshot();
    const now = this.now();
    const seen = new Set<string>();
    const consumers = snap.consumers.map((c) => {
      const key = `${c.stream}/${c.name}`;
      seen.add(key);
      return { ...c, deliveredPerSec: this.rate(key, now, c.delivered) };
    });
    for (const k of this.samples.keys()) if (!seen.has(k)) this.samples.delete(k);
    return { sampledAt: new Date(now).toISOString(), streams: snap.streams, consumers };
  }

  /** Records a sample and returns the rate against the newest sample old enough, or null. */
  rate(key: string, now: number, delivered: number): number | null {
    const list = (this.samples.get(key) ?? []).filter((s) => now - s.at <= this.keepMs && s.delivered <= delivered);
    let base: Sample | undefined;
    for (const s of list) if (now - s.at >= this.minIntervalMs) base = s;
    // Keep at most one sample per interval, so a burst of calls does not push the base out.
    const last = list[list.length - 1];
    if (!last || now - last.at >= this.minIntervalMs / 2) list.push({ at: now, delivered });
    this.samples.set(key, list);
    if (!base) return null;
    return Math.round(((delivered - base.delivered) / ((now - base.at) / 1000)) * 10) / 10;
  }
}
