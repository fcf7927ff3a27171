import { context, trace } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';
import { traceIdOfFlow, traceIdOfTraceparent } from './flow-trace.js';

export type { Logger };
export * from './flow-trace.js';

const NONE: Readonly<Record<string, string>> = Object.freeze({});
/** The trace id a flow logger was made with (a property, not a binding: the mixin reads it). */
const FLOW_TRACE = Symbol('jetflow.flowTrace');

/**
 * trace_id (and span_id) of every line: the active span's when there is one; else, for a line about
 * a flow (made by flowLogger, or with a `flowId` field), the flow's trace id — so logs of a flow name
 * its trace with tracing on or off.
 */
function traceFields(mergeObject: object, _level: number, logger: Logger): Readonly<Record<string, string>> {
  // Without an SDK the context manager is a no-op and this is two cheap calls.
  const sc = trace.getSpanContext(context.active());
  if (sc && sc.traceId !== '00000000000000000000000000000000') return { trace_id: sc.traceId, span_id: sc.spanId };
  const bound = (logger as unknown as { [FLOW_TRACE]?: string })[FLOW_TRACE];
  if (bound) return { trace_id: bound };
  const flowId = (mergeObject as { flowId?: unknown }).flowId;
  return typeof flowId === 'string' && flowId ? { trace_id: traceIdOfFlow(flowId) } : NONE;
}

/**
 * A child logger about one flow: binds `bindings` (with the flowId) and names the flow's trace on every
 * line — from `traceparent` (the message's) when given, else the one this process knows, else derived.
 */
export function flowLogger(log: Logger, bindings: { flowId: string } & Record<string, unknown>, traceparent?: string | null): Logger {
  const child = log.child(bindings);
  (child as unknown as { [FLOW_TRACE]?: string })[FLOW_TRACE] = traceIdOfTraceparent(traceparent) ?? traceIdOfFlow(bindings.flowId);
  return child;
}

/**
 * Paths censored in every line. Payload bodies and credentials never belong in logs: the code logs
 * ids, codes and reasons only, and these catch a slip.
 */
export const REDACT_PATHS = [
  'authorization',
  'apiKey',
  'apiKeys',
  'secret',
  'secrets',
  'callbackSecrets',
  'signature',
  'input',
  'inputJson',
  'body',
  'bodyJson',
  'output',
  'outputJson',
  'records',
  'headers.authorization',
  'headers["jetflow-signature"]',
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'metadata.authorization',
  '*.authorization',
  '*.apiKey',
  '*.apiKeys',
  '*.secret',
  '*.secrets',
  '*.callbackSecrets',
  '*.input',
  '*.inputJson',
  '*.body',
  '*.bodyJson',
  '*.output',
  '*.outputJson',
  '*.records',
];

/**
 * One root logger per service, JSON to stdout. Children bind flowId, task, subject and attempt; the
 * mixin adds trace_id and span_id of the active span to every line.
 */
export function createLogger(service: string, level = 'info', destination?: pino.DestinationStream): Logger {
  const opts: pino.LoggerOptions = {
    name: service,
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: traceFields,
    // pino's default merge assigns into the mixin's object; NONE is shared, so leave it alone.
    mixinMergeStrategy: (mergeObject, mixinObject) => (mixinObject === NONE ? mergeObject : Object.assign(mixinObject, mergeObject)),
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  return destination ? pino(opts, destination) : pino(opts);
}

export interface ErrorReport {
  /** The logger's bindings (service, flowId, task… when a child logger reported it). */
  bindings: Record<string, unknown>;
  /** What the caller said about where and why. */
  context: Record<string, unknown>;
  traceId?: string;
  spanId?: string;
}

/** Receives every unexpected error (Sentry's captureException, a counter…). Must not throw. */
export type ErrorSink = (err: unknown, report: ErrorReport) => void;

const sinks = new Set<ErrorSink>();

/** Adds a sink for unexpected errors; returns its removal. */
export function addErrorSink(sink: ErrorSink): () => void {
  sinks.add(sink);
  return () => sinks.delete(sink);
}

/**
 * The one place unexpected errors go: logged with context, recorded on the active span, and handed
 * to every registered sink. Expected failures (a task that failed, a rejected request) are not
 * unexpected errors: they are outcomes, logged and counted where they happen.
 */
export function reportError(log: Logger, err: unknown, ctx: Record<string, unknown> = {}): void {
  log.error({ err, ...ctx }, 'unexpected error');
  const span = trace.getSpan(context.active());
  if (span) span.recordException(err instanceof Error ? err : String(err));
  if (!sinks.size) return;
  const sc = span?.spanContext();
  const report: ErrorReport = { bindings: log.bindings(), context: ctx };
  if (sc && sc.traceId !== '00000000000000000000000000000000') {
    report.traceId = sc.traceId;
    report.spanId = sc.spanId;
  }
  for (const sink of sinks) {
    try {
      sink(err, report);
    } catch {
      // A broken sink must not take the reporter down with it.
    }
  }
}
