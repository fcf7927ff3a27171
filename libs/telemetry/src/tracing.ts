import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  isSpanContextValid,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type SpanOptions,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import type { MsgHdrs } from 'nats';

export { SpanKind, SpanStatusCode, ROOT_CONTEXT, context, propagation, trace, type Attributes, type Context, type Span };

let enabled = false;

/**
 * True once startTelemetry() started the SDK in this process. Hot paths check this before doing any
 * tracing work, so a process without an exporter allocates no span objects and parses no headers.
 */
export function tracingEnabled(): boolean {
  return enabled;
}

/** Set by startTelemetry(); tests may flip it around an SDK they registered themselves. */
export function setTracingEnabled(on: boolean): void {
  enabled = on;
}

/** The project's tracer (a proxy that delegates to the SDK's provider once one is registered). */
export const tracer = trace.getTracer('jetflow');

/** W3C trace context from NATS message headers (nats.js headers are case-sensitive: try exact, then any case). */
export const natsHeaderGetter: TextMapGetter<MsgHdrs> = {
  keys: (h) => h.keys(),
  get(h, key) {
    const v = h.get(key);
    if (v) return v;
    for (const k of h.keys()) if (k.length === key.length && k.toLowerCase() === key) return h.get(k) || undefined;
    return undefined;
  },
};

export const natsHeaderSetter: TextMapSetter<MsgHdrs> = {
  set: (h, key, value) => h.set(key, value),
};

/** The context a message's traceparent/tracestate headers carry (the root context when none). */
export function contextFromHeaders(h: MsgHdrs | undefined): Context {
  return h ? propagation.extract(ROOT_CONTEXT, h, natsHeaderGetter) : ROOT_CONTEXT;
}

/** The context of a bare W3C traceparent string. */
export function contextFromTraceparent(traceparent: string | undefined): Context {
  return traceparent ? propagation.extract(ROOT_CONTEXT, { traceparent }) : ROOT_CONTEXT;
}

/** Writes ctx's span context into NATS headers (traceparent, and tracestate when there is one). */
export function injectHeaders(h: MsgHdrs, ctx: Context = context.active()): void {
  propagation.inject(ctx, h, natsHeaderSetter);
}

/** Writes ctx's span context into a plain header record (outgoing HTTP requests, gRPC metadata). */
export function injectRecord(carrier: Record<string, string>, ctx: Context = context.active()): void {
  if (enabled) propagation.inject(ctx, carrier);
}

export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The traceparent of the active span, when tracing is on and a span is active. */
export function activeTraceparent(): string | undefined {
  if (!enabled) return undefined;
  const sc = trace.getActiveSpan()?.spanContext();
  return sc && isSpanContextValid(sc) ? formatTraceparent(sc) : undefined;
}

/** The span context of ctx, if it carries a valid one. */
export function spanContextOf(ctx: Context): SpanContext | undefined {
  const sc = trace.getSpanContext(ctx);
  return sc && isSpanContextValid(sc) ? sc : undefined;
}

/** Marks a span failed with the error recorded as an exception event. */
export function recordError(span: Span, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  span.recordException(err instanceof Error ? err : message);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/**
 * Runs fn in a new active span under parent; the span ends when fn settles and records a throw.
 * Call only when tracingEnabled() (callers branch first so the disabled path stays allocation-free).
 */
export function inSpan<T>(name: string, options: SpanOptions, parent: Context, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, options, parent, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      recordError(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Sets attributes on the active span (no-op when tracing is off or no span is active). */
export function annotateActiveSpan(attrs: Attributes): void {
  if (!enabled) return;
  trace.getActiveSpan()?.setAttributes(attrs);
}

/** Adds an event to the active span (flow lifecycle events, for instance). */
export function addActiveSpanEvent(name: string, attrs?: Attributes): void {
  if (!enabled) return;
  trace.getActiveSpan()?.addEvent(name, attrs);
}

/** Marks the active span failed with the error recorded as an exception event. */
export function recordActiveSpanError(err: unknown): void {
  if (!enabled) return;
  const span = trace.getActiveSpan();
  if (span) recordError(span, err);
}

/** Marks the active span failed without an exception object (a task that failed for good, say). */
export function failActiveSpan(message: string): void {
  if (!enabled) return;
  trace.getActiveSpan()?.setStatus({ code: SpanStatusCode.ERROR, message });
}
