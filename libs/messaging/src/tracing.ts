import type { JsMsg, MsgHdrs } from 'nats';
import {
  ATTR,
  MESSAGING_SYSTEM,
  SpanKind,
  context,
  contextFromHeaders,
  inSpan,
  injectHeaders,
  recordError,
  spanContextOf,
  subjectTemplate,
  trace,
  tracer,
  tracingEnabled,
  type Attributes,
  type Span,
} from '@jetflow/telemetry';

export interface ConsumeTraceOptions {
  stream: string;
  consumer: string;
  /**
   * Start a trace when the message carries none (the NATS front door: a flow submitted without a
   * traceparent gets its root here). Otherwise untraced messages are handled without a span.
   */
  root?: boolean;
  /** Messages not worth a span (durable timers that come back by delayed nak, say). */
  skip?: (m: JsMsg) => boolean;
}

/**
 * Tracing middleware for a JetStream consumer: one CONSUMER span per delivery ("process <subject>"),
 * child of the context in the message's traceparent/tracestate headers, active while the handler runs
 * (so its logs carry the trace and what it publishes continues it). Returns the handler unchanged
 * when tracing is off: nothing is added to the hot path.
 */
export function traceMessages(handle: (m: JsMsg) => Promise<void>, o: ConsumeTraceOptions): (m: JsMsg) => Promise<void> {
  if (!tracingEnabled()) return handle;
  return (m) => {
    if (o.skip?.(m)) return handle(m);
    const parent = contextFromHeaders(m.headers);
    if (!o.root && !spanContextOf(parent)) return handle(m);
    const attributes: Attributes = {
      [ATTR.messagingSystem]: MESSAGING_SYSTEM,
      [ATTR.destination]: m.subject,
      [ATTR.operationType]: 'process',
      [ATTR.operationName]: 'process',
      [ATTR.consumerGroup]: o.consumer,
      [ATTR.bodySize]: m.data.length,
      [ATTR.stream]: o.stream,
      [ATTR.streamSequence]: m.info.streamSequence,
      [ATTR.attempt]: m.info.deliveryCount,
    };
    const h = m.headers;
    if (h) {
      const id = h.get('Nats-Msg-Id');
      if (id) attributes[ATTR.messageId] = id;
      const flowId = h.get('Jetflow-Flow-Id');
      if (flowId) attributes[ATTR.flowId] = flowId;
    }
    subjectAttributes(m.subject, attributes);
    return inSpan(`process ${subjectTemplate(m.subject)}`, { kind: SpanKind.CONSUMER, attributes }, parent, () => handle(m));
  };
}

/** Tenant and task from the subject hierarchy, where it names them. */
function subjectAttributes(subject: string, a: Attributes) {
  const t = subject.split('.');
  if (t[1] === 'ingest' && t.length === 4) {
    a[ATTR.tenant] = t[2]!;
    a[ATTR.flow] = t[3]!;
  } else if (t[1] === 'submit' && t.length === 4) {
    a[ATTR.tenant] = t[2]!;
    a[ATTR.flowId] = t[3]!;
  } else if (t[1] === 'callback' && t.length === 3) a[ATTR.tenant] = t[2]!;
  else if (t[1] === 'task' && t.length >= 4) a[ATTR.task] = t.slice(3).join('.');
}

/**
 * Opens the PRODUCER span of a publish and writes its context into the message headers, so the
 * consumer's span continues the trace. The parent is the active span; a traceparent the caller put
 * in the headers (the flow's, stored in its saga state) is used instead when no span of that same
 * trace is active — so work done on behalf of one flow can never be filed under another's trace.
 * Returns undefined (and touches nothing) when there is no trace to continue.
 */
export function startPublishSpan(subject: string, hdrs: MsgHdrs, msgId: string | undefined, size: number): Span | undefined {
  const active = context.active();
  const activeSc = spanContextOf(active);
  let parent = active;
  if (hdrs.get('traceparent')) {
    const given = contextFromHeaders(hdrs);
    const sc = spanContextOf(given);
    if (sc && sc.traceId !== activeSc?.traceId) parent = given;
  } else if (!activeSc) return undefined;
  if (subject.startsWith('$KV.')) {
    // A state write through the publisher: worth a span (its latency is part of the flow's), but it is
    // not a message anyone consumes, so no trace context is stored with the value.
    const dot = subject.indexOf('.', 4);
    const bucket = dot < 0 ? subject.slice(4) : subject.slice(4, dot);
    const key = dot < 0 ? '' : subject.slice(dot + 1);
    return tracer.startSpan(`kv write ${bucket}`, { kind: SpanKind.CLIENT, attributes: { 'jetflow.kv.bucket': bucket, 'jetflow.kv.key': key } }, parent);
  }
  const attributes: Attributes = {
    [ATTR.messagingSystem]: MESSAGING_SYSTEM,
    [ATTR.destination]: subject,
    // Semantic conventions 1.26+: "send" (the older "publish" is deprecated); the name stays NATS's own.
    [ATTR.operationType]: 'send',
    [ATTR.operationName]: 'publish',
    [ATTR.bodySize]: size,
  };
  if (msgId) attributes[ATTR.messageId] = msgId;
  const flowId = hdrs.get('Jetflow-Flow-Id');
  if (flowId) attributes[ATTR.flowId] = flowId;
  const span = tracer.startSpan(`publish ${subjectTemplate(subject)}`, { kind: SpanKind.PRODUCER, attributes }, parent);
  injectHeaders(hdrs, trace.setSpan(parent, span));
  return span;
}

/** Ends a publish span when its PubAck (or final failure) arrives. */
export function endPublishSpan<T extends { stream: string; seq: number; duplicate: boolean }>(span: Span, ack: Promise<T>): Promise<T> {
  return ack.then(
    (a) => {
      span.setAttributes({ [ATTR.stream]: a.stream, [ATTR.streamSequence]: a.seq, [ATTR.duplicate]: a.duplicate });
      span.end();
      return a;
    },
    (err: unknown) => {
      recordError(span, err);
      span.end();
      throw err;
    },
  );
}
