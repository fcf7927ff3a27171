import type { ConsumerInfo, NatsConnection } from 'nats';
import { JetflowError, ErrorCodes } from '@jetflow/errors';
import { JetStreamApiCodes, STREAMS, isJsError } from '@jetflow/messaging';
import type { ConsumerCounters, ConsumerSource, StreamCounters } from '../handlers/consumers.js';

/**
 * Every durable consumer of the Jetflow streams, read from the JetStream API. Ephemeral consumers
 * (short-lived readers such as the listings' own) are left out.
 */
export class JetStreamConsumerSource implements ConsumerSource {
  constructor(private readonly nc: NatsConnection) {}

  async snapshot(): Promise<{ streams: StreamCounters[]; consumers: ConsumerCounters[] }> {
    try {
      const jsm = await this.nc.jetstreamManager();
      const per = await Promise.all(
        Object.values(STREAMS).map(async (name) => {
          const si = await jsm.streams.info(name).catch((err: Error) => {
            if (isJsError(err, JetStreamApiCodes.StreamNotFound)) return null;
            throw err;
          });
          if (!si) return { stream: null, consumers: [] as ConsumerCounters[] };
          const infos: ConsumerInfo[] = [];
          for await (const ci of jsm.consumers.list(name)) if (ci.config.durable_name) infos.push(ci);
          const stream: StreamCounters = { name, messages: si.state.messages, bytes: si.state.bytes, consumers: infos.length };
          return { stream, consumers: infos.map(counters).sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true })) };
        }),
      );
      return { streams: per.flatMap((p) => (p.stream ? [p.stream] : [])), consumers: per.flatMap((p) => p.consumers) };
    } catch (err) {
      throw new JetflowError(ErrorCodes.UNAVAILABLE, `cannot read consumer state: ${(err as Error).message}`, { retryAfterMs: 1_000, cause: err });
    }
  }
}

function counters(ci: ConsumerInfo): ConsumerCounters {
  const c = ci as ConsumerInfo & { delivered: { consumer_seq: number; last_active?: string } };
  return {
    stream: ci.stream_name,
    name: ci.name,
    filterSubject: ci.config.filter_subject || null,
    numPending: ci.num_pending,
    numAckPending: ci.num_ack_pending,
    numRedelivered: ci.num_redelivered,
    numWaiting: ci.num_waiting,
    delivered: c.delivered.consumer_seq,
    maxAckPending: ci.config.max_ack_pending ?? null,
    lastActive: c.delivered.last_active ?? null,
  };
}
