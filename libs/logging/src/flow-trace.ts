import { createHash } from 'node:crypto';

/**
 * The trace id of a flow that has no trace of its own (tracing off, and the submitter sent no
 * traceparent): derived from the flow id, so every service and replica names the same one without
 * asking anyone. 32 lowercase hex digits, never all zeros (a valid W3C trace id).
 */
export function flowTraceId(flowId: string): string {
  const h = createHash('sha256').update(`jetflow-trace\n${flowId}`).digest('hex');
  return h.slice(0, 32) === '0'.repeat(32) ? `${h.slice(0, 31)}1` : h.slice(0, 32);
}

/** A W3C traceparent for such a flow: its derived trace id, flags 00 (not sampled: nothing is recorded). */
export function flowTraceparent(flowId: string): string {
  const h = createHash('sha256').update(`jetflow-span\n${flowId}`).digest('hex');
  return `00-${flowTraceId(flowId)}-${h.slice(0, 16) === '0'.repeat(16) ? `${h.slice(0, 15)}1` : h.slice(0, 16)}-00`;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The trace id in a traceparent, if it is a valid one. */
export function traceIdOfTraceparent(traceparent: string | undefined | null): string | undefined {
  const m = TRACEPARENT.exec(traceparent ?? '');
  return m && m[1] !== '0'.repeat(32) ? m[1] : undefined;
}

/**
 * Trace ids of flows this process has seen with a traceparent (bounded, oldest out first): a line
 * logged about a flow outside any span still names the flow's real trace.
 */
const known = new Map<string, string>();
const MAX_KNOWN = 20_000;

export function noteFlowTrace(flowId: string, traceparent: string | undefined | null): void {
  const id = traceIdOfTraceparent(traceparent);
  if (!id || known.get(flowId) === id) return;
  known.delete(flowId);
  known.set(flowId, id);
  if (known.size > MAX_KNOWN) known.delete(known.keys().next().value!);
}

/** The flow's trace id: the one noted for it, else the derived one. */
export function traceIdOfFlow(flowId: string): string {
  return known.get(flowId) ?? flowTraceId(flowId);
}
