import { fromBinary } from '@bufbuild/protobuf';
import { AckPolicy, DeliverPolicy, type NatsConnection } from 'nats';
import { FlowEventSchema } from '@jetflow/proto';
import { STREAMS, eventSubject } from '@jetflow/messaging';
import type { FlowEventRecord } from '../handlers/attempts.js';

/**
 * A flow's recorded events, oldest first, from the events stream (kept an hour): one short-lived
 * ephemeral consumer filtered on the flow's subject, at most `max` events. Anyone who may publish
 * on the subject could have put anything there: what does not decode is skipped.
 */
export async function readFlowEvents(nc: NatsConnection, tenant: string, flowId: string, max = 1_000): Promise<{ events: FlowEventRecord[]; truncated: boolean }> {
  const jsm = await nc.jetstreamManager();
  const ci = await jsm.consumers.add(STREAMS.events, {
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    filter_subject: eventSubject(tenant, flowId),
    mem_storage: true,
    inactive_threshold: 30_000_000_000,
  });
  try {
    const want = Math.min(ci.num_pending, max);
    const events: FlowEventRecord[] = [];
    const c = await nc.jetstream().consumers.get(STREAMS.events, ci.name);
    let seen = 0;
    while (seen < want) {
      const it = await c.fetch({ max_messages: want - seen, expires: 1_000 });
      let got = 0;
      for await (const m of it) {
        got++;
        seen++;
        try {
          const e = fromBinary(FlowEventSchema, m.data);
          if (e.flowId !== flowId) continue;
          events.push({ type: e.type, task: e.task, status: e.status, message: e.message, attempt: e.attempt, atMs: Number(e.atMs) });
        } catch {
          // not a FlowEvent
        }
        if (seen >= want) break;
      }
      if (got === 0) break;
    }
    return { events, truncated: ci.num_pending > max };
  } finally {
    await jsm.consumers.delete(STREAMS.events, ci.name).catch(() => undefined);
  }
}
