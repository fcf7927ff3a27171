import type { ConsumerInfo, JetStreamManager, NatsConnection } from 'nats';
import { register as globalRegistry, type Gauge, type Registry } from 'prom-client';
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
}

/**
 * Per-consumer pending and ack-pending gauges, read from JetStream consumer info when scraped —
 * the autoscaling signal (KEDA's nats-jetstream scaler reads the same numbers). Cached for a second
 * so the four gauges and repeated scrapes cost one round of info requests.
 */
export function registerConsumerGauges(o: ConsumerGaugeOptions): void {
  const registry = o.registry ?? globalRegistry;
  const cacheMs = o.cacheMs ?? 1_000;
  const timeoutMs = o.timeoutMs ?? 2_000;
  let jsm: Promise<JetStreamManager> | undefined;
  let last: Row[] = [];
  let at = 0;
  let inflight: Promise<Row[]> | undefined;

  const read = async (): Promise<Row[]> => {
    jsm ??= o.nc.jetstreamManager();
    const m = await jsm;
    let infos: Array<ConsumerInfo | null>;
    if (o.streams) {
      infos = [];
      for (const s of o.streams) {
        try {
          for await (const ci of m.consumers.list(s)) if (ci.config.durable_name) infos.push(ci);
        } catch {
          // stream not there (yet)
        }
      }
    } else {
      infos = await Promise.all((o.consumers?.() ?? []).map((r) => m.consumers.info(r.stream, r.consumer).catch(() => null)));
    }
    return infos.flatMap((ci) => (ci ? [{ stream: ci.stream_name, consumer: ci.name, pending: ci.num_pending, ackPending: ci.num_ack_pending, redelivered: ci.num_redelivered, waiting: ci.num_waiting }] : []));
  };

  const snapshot = (): Promise<Row[]> => {
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
    const rows = await snapshot();
    g.reset();
    for (const r of rows) g.set({ stream: r.stream, consumer: r.consumer }, pick(r));
  };
  consumerGauge(registry, METRICS.consumerPending, 'Messages in the stream not yet delivered to this consumer (the backlog; scale workers on it).', fill((r) => r.pending));
  consumerGauge(registry, METRICS.consumerAckPending, 'Messages delivered to this consumer and not yet acknowledged (in flight).', fill((r) => r.ackPending));
  consumerGauge(registry, METRICS.consumerRedelivered, 'Messages of this consumer delivered more than once and still unacknowledged.', fill((r) => r.redelivered));
  consumerGauge(registry, METRICS.consumerWaiting, 'Pull requests waiting on this consumer (idle capacity).', fill((r) => r.waiting));
}
