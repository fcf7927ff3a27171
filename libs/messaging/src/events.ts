import { create, toBinary } from '@bufbuild/protobuf';
import type { NatsConnection } from 'nats';
import { FlowEventSchema } from '../../proto/src/index.js';
import { addActiveSpanEvent, tracingEnabled } from '../../telemetry/src/index.js';
import { eventSubject } from './topology.js';

export interface EventIn {
  flowId: string;
  flow?: string;
  type: string;
  status?: string;
  task?: string;
  stage?: string;
  message?: string;
  attempt?: number;
}

/**
 * Lifecycle events go to jetflow.event.<tenant>.<flowId>, captured by the events stream (limits
 * retention) for live views and audit. A plain publish: events are informative, and the flow
 * state in KV is the source of truth, so they need no PubAck round trip on the hot path.
 */
export function publishEvent(nc: NatsConnection, tenant: string, e: EventIn): void {
  // The transition's span shows what it did (task.succeeded, stage.completed, flow.completed…).
  if (tracingEnabled()) addActiveSpanEvent(e.type, { ...(e.task ? { 'jetflow.task': e.task } : {}), ...(e.status ? { 'jetflow.status': e.status } : {}), ...(e.stage ? { 'jetflow.stage': e.stage } : {}) });
  const ev = create(FlowEventSchema, {
    flowId: e.flowId,
    tenant,
    flow: e.flow ?? '',
    type: e.type,
    status: e.status ?? '',
    task: e.task ?? '',
    stage: e.stage ?? '',
    atMs: BigInt(Date.now()),
    message: e.message ?? '',
    attempt: e.attempt ?? 0,
  });
  try {
    nc.publish(eventSubject(tenant, e.flowId), toBinary(FlowEventSchema, ev));
  } catch {
    // Connection closing: events are best effort.
  }
}
