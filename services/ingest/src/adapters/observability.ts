import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { NatsConnection } from 'nats';
import type { Logger } from '@jetflow/logging';
import { STREAMS } from '@jetflow/messaging';
import { LABEL_VALUES, initMetrics, metricsText, registerConsumerGauges, submissionsCounter, zeroSeries } from '@jetflow/metrics';
import { ATTR, ROOT_CONTEXT, SpanKind, SpanStatusCode, propagation, recordError, startTelemetry, trace, tracer, tracingEnabled, type Span, type TelemetryConfig } from '@jetflow/telemetry';

type Submissions = ReturnType<typeof submissionsCounter>;

/** Submission results as counted: bounded, the same for both doors. */
export type SubmissionResult = 'accepted' | 'rejected' | 'overloaded' | 'unavailable' | 'error';

export function httpSubmissionResult(status: number): SubmissionResult {
  if (status >= 200 && status < 300) return 'accepted';
  if (status === 429) return 'overloaded';
  if (status === 503) return 'unavailable';
  return status >= 500 ? 'error' : 'rejected';
}

/** From the jetflow-error-code trailer the gRPC adapter sets (RESOURCE_EXHAUSTED alone is ambiguous). */
export function grpcSubmissionResult(code: grpc.status, errorCode: string | undefined): SubmissionResult {
  if (code === grpc.status.OK) return 'accepted';
  if (errorCode === 'overloaded') return 'overloaded';
  if (errorCode === 'unavailable' || errorCode === 'retryable' || code === grpc.status.UNAVAILABLE) return 'unavailable';
  if (errorCode === 'internal' || errorCode === 'timeout' || code === grpc.status.INTERNAL || code === grpc.status.UNKNOWN) return 'error';
  return 'rejected';
}

const isSubmit = (req: FastifyRequest) => req.method === 'POST' && req.routeOptions.url === '/v1/flows';
const FLOW_ID = /"flowId":"([^"]+)"/;

/**
 * The HTTP door's SERVER span and submission count, as fastify hooks (register before the routes).
 * The span is the parent of the flow: the route hands req.headers.traceparent to the flow handlers,
 * so the hook replaces the caller's traceparent with this span's (the caller's stays its parent).
 */
export function observeHttpSubmissions(app: FastifyInstance, submissions: Submissions): void {
  // Callback-style hooks, and the tracing ones only when tracing is on: nothing async per request.
  app.addHook('onResponse', (req, reply, done) => {
    if (isSubmit(req)) submissions.inc({ door: 'http', result: httpSubmissionResult(reply.statusCode) });
    done();
  });
  if (!tracingEnabled()) return;
  const spans = new WeakMap<FastifyRequest, Span>();
  app.addHook('onRequest', (req, _reply, done) => {
    if (isSubmit(req)) {
      const parent = propagation.extract(ROOT_CONTEXT, req.headers);
      const path = req.url.split('?')[0] ?? req.url;
      const span = tracer.startSpan(
        'POST /v1/flows',
        { kind: SpanKind.SERVER, attributes: { [ATTR.httpMethod]: 'POST', [ATTR.httpRoute]: '/v1/flows', [ATTR.urlPath]: path, [ATTR.urlScheme]: req.protocol, [ATTR.door]: 'http' } },
        parent,
      );
      propagation.inject(trace.setSpan(parent, span), req.headers);
      spans.set(req, span);
    }
    done();
  });
  app.addHook('onSend', (req, _reply, payload, done) => {
    const span = spans.get(req);
    if (span && typeof payload === 'string') {
      const m = FLOW_ID.exec(payload);
      if (m) span.setAttribute(ATTR.flowId, m[1]!);
    }
    done(null, payload);
  });
  app.addHook('onResponse', (req, reply, done) => {
    const span = spans.get(req);
    if (span) {
      spans.delete(req);
      span.setAttribute(ATTR.httpStatus, reply.statusCode);
      if (req.tenant) span.setAttribute(ATTR.tenant, req.tenant);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `HTTP ${reply.statusCode}` });
      span.end();
    }
    done();
  });
  app.addHook('onRequestAbort', (req, done) => {
    const span = spans.get(req);
    if (span) {
      spans.delete(req);
      recordError(span, new Error('client aborted the request'));
      span.end();
    }
    done();
  });
}

/** GET /metrics on the ingest HTTP server (no auth, like the probes: scrape it from inside the network). */
export function registerMetricsRoute(app: FastifyInstance): void {
  app.get('/metrics', async (_req, reply) => {
    const t = await metricsText();
    return reply.type(t.contentType).send(t.body);
  });
}

/** The gRPC door's SERVER span and submission count: a server interceptor on SubmitFlow. */
export function observeGrpcSubmissions(submissions: Submissions): grpc.ServerInterceptor {
  return (method, call) => {
    if (!method.path.endsWith('/SubmitFlow')) return new grpc.ServerInterceptingCall(call);
    let span: Span | undefined;
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(md, nextMd) {
            if (tracingEnabled()) {
              const carrier: Record<string, string> = {};
              for (const k of ['traceparent', 'tracestate']) {
                const v = md.get(k)[0];
                if (typeof v === 'string') carrier[k] = v;
              }
              const parent = propagation.extract(ROOT_CONTEXT, carrier);
              span = tracer.startSpan(
                'jetflow.v1.IngestService/SubmitFlow',
                { kind: SpanKind.SERVER, attributes: { [ATTR.rpcSystem]: 'grpc', [ATTR.rpcService]: 'jetflow.v1.IngestService', [ATTR.rpcMethod]: 'SubmitFlow', [ATTR.door]: 'grpc' } },
                parent,
              );
              // As over HTTP: the handler passes the metadata's traceparent on to the flow.
              const out: Record<string, string> = {};
              propagation.inject(trace.setSpan(parent, span), out);
              for (const [k, v] of Object.entries(out)) md.set(k, v);
            }
            nextMd(md);
          },
          onCancel() {
            if (!span) return;
            recordError(span, new Error('call cancelled by the client'));
            span.end();
            span = undefined;
          },
        });
      },
      sendMessage(message: { flowId?: unknown }, next) {
        if (span && typeof message?.flowId === 'string') span.setAttribute(ATTR.flowId, message.flowId);
        next(message);
      },
      sendStatus(status, next) {
        const errorCode = status.metadata?.get('jetflow-error-code')[0];
        submissions.inc({ door: 'grpc', result: grpcSubmissionResult(status.code, typeof errorCode === 'string' ? errorCode : undefined) });
        if (span) {
          span.setAttribute(ATTR.grpcStatus, status.code);
          if (status.code !== grpc.status.OK && grpcSubmissionResult(status.code, typeof errorCode === 'string' ? errorCode : undefined) !== 'rejected') {
            span.setStatus({ code: SpanStatusCode.ERROR, message: status.details ?? '' });
          }
          span.end();
          span = undefined;
        }
        next(status);
      },
    });
  };
}

/**
 * The ingest service's tracing and metrics: the SDK (when configured), process metrics, submissions
 * by door and result, GET /metrics, and the pending / ack-pending gauges of every Jetflow consumer
 * (the ingest service is where operators look at the whole system).
 */
export async function startIngestObservability(cfg: { telemetry: TelemetryConfig }, log: Logger) {
  const telemetry = await startTelemetry('ingest', cfg.telemetry);
  initMetrics('ingest', undefined, ['unhandledRejection', 'http request', 'grpc call', 'grpc WatchFlow']);
  const submissions = submissionsCounter();
  zeroSeries(submissions, { door: ['http', 'grpc'], result: LABEL_VALUES.submissionResult });
  log.info({ tracing: telemetry.tracing }, 'metrics at GET /metrics');
  type Hook = ((app: FastifyInstance) => Promise<void> | void) | undefined;
  return {
    /** buildHttpServer's `before`: the submission hooks, then whatever else runs before routes. */
    before: (next: Hook) => async (app: FastifyInstance) => {
      observeHttpSubmissions(app, submissions);
      await next?.(app);
    },
    /** buildHttpServer's `extend`: GET /metrics, then the other extra routes. */
    extend: (next: Hook) => async (app: FastifyInstance) => {
      registerMetricsRoute(app);
      await next?.(app);
    },
    interceptors: [observeGrpcSubmissions(submissions)],
    watchConsumers(nc: NatsConnection) {
      registerConsumerGauges({ nc, streams: Object.values(STREAMS) });
    },
    close: () => telemetry.shutdown(),
  };
}
