import type { NatsConnection } from 'nats';
import { encodeFlowEvent } from './fast-codec.js';
import { addActiveSpanEvent, tracingEnabled } from '@jetflow/telemetry';
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
  if (tracingEnabled())
    addActiveSpanEvent(e.type, { ...(e.task ? { 'jetflow.task': e.task } : {}), ...(e.status ? { 'jetflow.status': e.status } : {}), ...(e.stage ? { 'jetflow.stage': e.stage } : {}) });
  try {
    nc.publish(eventSubject(tenant, e.flowId), encodeFlowEvent({ ...e, tenant, atMs: Date.now() }));
  } catch {
    // Connection closing: events are best effort.
  }
}
