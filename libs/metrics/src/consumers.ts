import type { ConsumerInfo, JetStreamManager, NatsConnection } from 'nats';
import { Counter, Gauge, register as globalRegistry, type Registry } from 'prom-client';
import { METRICS, consumerGauge } from './instruments.js';

export interface ConsumerRef {
  stream: string;
  consumer: string;
}

export interface ConsumerGaugeOptions {
  nc: NatsConnection;
  /** The consumers this service works from (read each scrape: partitions may change hands). */
  consumers?: () => ConsumerRef[];
  /** Or every durable consumer of these streams (the ingest service's overview). */
  streams?: readonly string[];
  registry?: Registry;
  /** Consumer info is read at most once per this many ms, however many scrapes ask. */
  cacheMs?: number;
  /** A scrape never waits longer than this for the broker; the last values stay. */
  timeoutMs?: number;
}

interface Row {
  stream: string;
  consumer: string;
  pending: number;
  ackPending: number;
  redelivered: number;
  waiting: number;
  /** Deliveries so far, redeliveries included (the consumer sequence). */
  delivered: number;
}

interface StreamRow {
  stream: string;
  messages: number;
  bytes: number;
  lastSeq: number;
}

/**
 * Per-consumer gauges (pending = the lag, ack pending, redelivered, waiting pulls) and deliveries,
 * read from JetStream consumer info when scraped — the autoscaling signal (KEDA's nats-jetstream
 * scaler reads the same numbers); with `streams`, also each stream's messages, bytes and last
 * sequence. Cached for a second so all of them and repeated scrapes cost one round of info requests.
 */
export function registerConsumerGauges(o: ConsumerGaugeOptions): void {
  const registry = o.registry ?? globalRegistry;
  const cacheMs = o.cacheMs ?? 1_000;
  const timeoutMs = o.timeoutMs ?? 2_000;
  let jsm: Promise<JetStreamManager> | undefined;
  interface Snapshot {
    consumers: Row[];
    streams: StreamRow[];
  }
  let last: Snapshot = { consumers: [], streams: [] };
  let at = 0;
  let inflight: Promise<Snapshot> | undefined;

  const read = async (): Promise<Snapshot> => {
    jsm ??= o.nc.jetstreamManager();
    const m = await jsm;
    let infos: Array<ConsumerInfo | null>;
    const streams: StreamRow[] = [];
    if (o.streams) {
      infos = [];
      for (const s of o.streams) {
        try {
          const si = await m.streams.info(s);
          streams.push({ stream: s, messages: si.state.messages, bytes: si.state.bytes, lastSeq: si.state.last_seq });
          for await (const ci of m.consumers.list(s)) if (ci.config.durable_name) infos.push(ci);
        } catch {
          // stream not there (yet)
        }
      }
    } else {
      infos = await Promise.all((o.consumers?.() ?? []).map((r) => m.consumers.info(r.stream, r.consumer).catch(() => null)));
    }
    const consumers = infos.flatMap((ci) =>
      ci
        ? [
            {
              stream: ci.stream_name,
              consumer: ci.name,
              pending: ci.num_pending,
              ackPending: ci.num_ack_pending,
              redelivered: ci.num_redelivered,
              waiting: ci.num_waiting,
              delivered: ci.delivered.consumer_seq,
            },
          ]
        : [],
    );
    return { consumers, streams };
  };

  const snapshot = (): Promise<Snapshot> => {
    if (Date.now() - at < cacheMs) return Promise.resolve(last);
    inflight ??= Promise.race([read(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('consumer info timed out')), timeoutMs).unref())])
      .then(
        (rows) => {
          last = rows;
          at = Date.now();
          return rows;
        },
        () => last,
      )
      .finally(() => (inflight = undefined));
    return inflight;
  };

  const fill = (pick: (r: Row) => number) => async (g: Gauge<'stream' | 'consumer'>) => {
    const rows = (await snapshot()).consumers;
    g.reset();
    for (const r of rows) g.set({ stream: r.stream, consumer: r.consumer }, pick(r));
  };
  consumerGauge(
    registry,
    METRICS.consumerPending,
    'Messages in the stream not yet delivered to this consumer (the backlog; scale workers on it).',
    fill((r) => r.pending),
  );
  consumerGauge(
    registry,
    METRICS.consumerAckPending,
    'Messages delivered to this consumer and not yet acknowledged (in flight).',
    fill((r) => r.ackPending),
  );
  consumerGauge(
    registry,
    METRICS.consumerRedelivered,
    'Messages of this consumer delivered more than once and still unacknowledged.',
    fill((r) => r.redelivered),
  );
  consumerGauge(
    registry,
    METRICS.consumerWaiting,
    'Pull requests waiting on this consumer (idle capacity).',
    fill((r) => r.waiting),
  );
  if (!registry.getSingleMetric(METRICS.consumerDelivered)) {
    // A counter read from the server: set to the consumer's own count at each scrape (it restarts at 0 only with the consumer).
    new Counter({
      name: METRICS.consumerDelivered,
      help: 'Messages delivered by this consumer, redeliveries included (the consumer sequence); its rate is the consumer throughput.',
      labelNames: ['stream', 'consumer'],
      registers: [registry],
      async collect() {
        const rows = (await snapshot()).consumers;
        this.reset();
        for (const r of rows) this.inc({ stream: r.stream, consumer: r.consumer }, r.delivered);
      },
    });
  }
  if (!o.streams) return;
  const stream = (kind: 'gauge' | 'counter', name: string, help: string, pick: (r: StreamRow) => number) => {
    if (registry.getSingleMetric(name)) return;
    const collect = async function (this: Gauge<'stream'> | Counter<'stream'>) {
      const rows = (await snapshot()).streams;
      this.reset();
      for (const r of rows) {
        if (this instanceof Gauge) this.set({ stream: r.stream }, pick(r));
        else this.inc({ stream: r.stream }, pick(r));
      }
    };
    if (kind === 'gauge') new Gauge({ name, help, labelNames: ['stream'], registers: [registry], collect });
    else new Counter({ name, help, labelNames: ['stream'], registers: [registry], collect });
  };
  stream('gauge', METRICS.streamMessages, 'Messages stored in the stream.', (r) => r.messages);
  stream('gauge', METRICS.streamBytes, 'Bytes stored in the stream.', (r) => r.bytes);
  // The last sequence counts every message ever published to the stream (deletes and purges keep it).
  stream('counter', METRICS.streamPublished, 'Messages published to the stream (its last sequence); its rate is the publish rate.', (r) => r.lastSeq);
}
