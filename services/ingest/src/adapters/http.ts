import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import { fromBinary, toJson } from '@bufbuild/protobuf';
import type { NatsConnection } from 'nats';
import { FlowEventSchema } from '@jetflow/proto';
import { JetflowError, ErrorCodes, STATUS, codeOf } from '@jetflow/errors';
import { eventSubject } from '@jetflow/messaging';
import { reportError, type Logger } from '@jetflow/logging';
import type { FlowHandlers } from '../handlers/flows.js';
import type { ClientLimits } from '../config.js';
import { requireOperator, type Authenticator } from './auth.js';
import { openSse, sseBounds } from './sse.js';

declare module 'fastify' {
  interface FastifyRequest {
    tenant: string;
    /** The key is an operator key: it may read the system-wide views. */
    operator: boolean;
  }
}

export interface HttpDeps {
  flows: FlowHandlers;
  auth: Authenticator;
  nc: NatsConnection;
  log: Logger;
  maxBodyBytes: number;
  /** Timeouts, the connection limit and the stream bounds. */
  limits: ClientLimits;
  ready: () => boolean;
  /** Extra routes (metrics, dashboard, docs) registered by main. */
  extend?: (app: FastifyInstance) => Promise<void> | void;
  /** Plugins that must see every route as it is added (OpenAPI), registered before any route. */
  before?: (app: FastifyInstance) => Promise<void> | void;
}

/** Maps any error to the documented body {"error":{code,message,details}} and status. */
export function toHttpError(err: unknown): { status: number; body: { error: { code: string; message: string; details: Array<{ path: string; message: string }> } }; retryAfterMs?: number } {
  const fe = err as FastifyError;
  let je: JetflowError;
  if (err instanceof JetflowError) je = err;
  else if (fe?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') je = new JetflowError(ErrorCodes.PAYLOAD_TOO_LARGE, fe.message);
  else if (fe?.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') je = new JetflowError(ErrorCodes.UNSUPPORTED_MEDIA_TYPE, 'Content-Type must be application/json');
  else if (fe?.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') je = new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'body is empty', { details: [{ path: '', message: 'a JSON object is required' }] });
  else if (fe?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (fe?.statusCode === 400 && fe instanceof SyntaxError))
    je = new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'body is not valid JSON', { details: [{ path: '', message: fe.message }] });
  else if (fe?.statusCode && fe.statusCode < 500 && fe.statusCode >= 400) je = new JetflowError(fe.statusCode === 404 ? ErrorCodes.NOT_FOUND : ErrorCodes.INVALID_ARGUMENT, fe.message);
  else je = new JetflowError(codeOf(err), (err as Error)?.message ?? 'internal error');
  const out: ReturnType<typeof toHttpError> = { status: STATUS[je.code].http, body: { error: { code: je.code, message: je.message, details: je.details } } };
  if (je.retryAfterMs !== undefined) out.retryAfterMs = je.retryAfterMs;
  return out;
}

export async function buildHttpServer(d: HttpDeps): Promise<FastifyInstance> {
  const l = d.limits;
  const app = Fastify({
    loggerInstance: d.log.child({ adapter: 'http' }) as unknown as FastifyBaseLogger,
    bodyLimit: d.maxBodyBytes,
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: true,
    // A client that sends its body a byte at a time, or nothing at all, may not hold a connection: Node
    // answers 408 and closes. Node checks these every connectionsCheckingInterval (30 s by default).
    requestTimeout: l.requestTimeoutMs,
    connectionTimeout: l.idleTimeoutMs,
    http: { headersTimeout: l.headersTimeoutMs, requestTimeout: l.requestTimeoutMs, connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(l.headersTimeoutMs / 4))) },
    // What the router refuses before any route (a path parameter over its length, a malformed URL)
    // answers the typed error shape too, not fastify's own (found by test/fuzz.test.ts).
    frameworkErrors: (err, _req, reply) => {
      const e =
        (err as { code?: string }).code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? toHttpError(new JetflowError(ErrorCodes.NOT_FOUND, 'no such resource: a path parameter longer than any id'))
          : toHttpError(new JetflowError(ErrorCodes.INVALID_ARGUMENT, err.message));
      void (reply as unknown as FastifyReply).code(e.status).send(e.body);
    },
  });
  // Beyond the limit Node closes new connections at once ('drop'); one warning per burst.
  app.server.maxConnections = l.maxConnections;
  let lastDropWarn = 0;
  app.server.on('drop', () => {
    if (Date.now() - lastDropWarn < 10_000) return;
    lastDropWarn = Date.now();
    d.log.warn({ maxConnections: l.maxConnections }, 'HTTP connection limit reached: new connections are closed (JETFLOW_HTTP_MAX_CONNECTIONS)');
  });
  app.decorateRequest('tenant', '');
  app.decorateRequest('operator', false);
  // The API speaks JSON only: anything else is 415, not a string body.
  app.removeContentTypeParser('text/plain');
  await d.before?.(app);

  app.setErrorHandler((err, req, reply) => {
    const e = toHttpError(err);
    if (e.status >= 500 && e.status !== 503) reportError(req.log as unknown as Logger, err, { where: 'http request', route: req.routeOptions.url ?? '' });
    if (e.retryAfterMs !== undefined) void reply.header('retry-after', String(Math.max(1, Math.ceil(e.retryAfterMs / 1000))));
    void reply.code(e.status).send(e.body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url}`, details: [] } });
  });

  const authenticate = async (req: FastifyRequest) => {
    const p = d.auth.principalOf(req.headers.authorization);
    req.tenant = p.tenant;
    req.operator = p.operator;
  };

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    if (!d.ready()) return reply.code(503).send({ status: 'unavailable' });
    return { status: 'ready' };
  });

  app.post('/v1/flows', { preHandler: authenticate }, async (req, reply) => {
    const traceparent = typeof req.headers.traceparent === 'string' ? req.headers.traceparent : undefined;
    const r = await d.flows.submit(req.tenant, req.body, traceparent);
    return reply.code(202).send({ flowId: r.flowId, status: r.status });
  });

  app.get<{ Querystring: { subject?: string } }>('/v1/routes', { preHandler: authenticate }, async (req) => {
    // The deployment's streams and consumers: not a tenant's business.
    requireOperator(req, 'GET /v1/routes');
    return d.flows.routes(req.query.subject ?? 'jetflow.task.>');
  });

  app.get<{ Params: { id: string } }>('/v1/flows/:id', { preHandler: authenticate }, async (req) => d.flows.get(req.tenant, req.params.id));

  app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>('/v1/flows/:id/cancel', { preHandler: authenticate }, async (req, reply) => {
    const reason = typeof req.body?.reason === 'string' ? req.body.reason : '';
    return reply.code(202).send(await d.flows.cancel(req.tenant, req.params.id, reason));
  });

  for (const verb of ['pause', 'resume'] as const)
    app.post<{ Params: { subject: string }; Body: { reason?: string } | undefined }>(`/v1/subjects/:subject/${verb}`, { preHandler: authenticate }, async (req) => {
      // A subject's workers serve every tenant: pausing it is the operator's.
      requireOperator(req, `POST /v1/subjects/{subject}/${verb}`);
      const reason = typeof req.body?.reason === 'string' ? req.body.reason : '';
      return d.flows.pauseSubject(req.params.subject, verb === 'pause', reason);
    });

  for (const verb of ['pause', 'resume'] as const)
    app.post<{ Params: { name: string }; Body: { reason?: string } | undefined }>(`/v1/flow-definitions/:name/${verb}`, { preHandler: authenticate }, async (req) => {
      // A definition serves every tenant: pausing it is the operator's.
      requireOperator(req, `POST /v1/flow-definitions/{name}/${verb}`);
      const reason = typeof req.body?.reason === 'string' ? req.body.reason : '';
      return d.flows.pauseDefinition(req.params.name, verb === 'pause', reason);
    });

  for (const verb of ['pause', 'resume'] as const)
    app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(`/v1/flows/:id/${verb}`, { preHandler: authenticate }, async (req, reply) => {
      const reason = typeof req.body?.reason === 'string' ? req.body.reason : '';
      return reply.code(202).send(await d.flows.pause(req.tenant, req.params.id, verb === 'pause', reason));
    });

  app.post<{ Params: { id: string; name: string } }>('/v1/flows/:id/signals/:name', { preHandler: authenticate }, async (req, reply) => {
    const key = req.headers['idempotency-key'];
    return reply.code(202).send(await d.flows.signal(req.tenant, req.params.id, req.params.name, req.body ?? null, typeof key === 'string' ? key : undefined));
  });

  app.get<{ Params: { id: string } }>('/v1/flows/:id/events', { preHandler: authenticate }, async (req, reply) => {
    // A flow accepted a moment ago may not have state yet: get() answers "accepted" for it, 404 for unknown ids.
    await d.flows.get(req.tenant, req.params.id);
    // Subscribe before the snapshot so no event falls between the two.
    const sub = d.nc.subscribe(eventSubject(req.tenant, req.params.id));
    const sse = openSse(req, reply, sseBounds(l, d.log, '/v1/flows/{id}/events', { watch: true }));
    void sse.closed.then(() => sub.unsubscribe());
    const snap = await d.flows.get(req.tenant, req.params.id);
    sse.send('snapshot', snap);
    if (['succeeded', 'partial', 'failed', 'cancelled'].includes(String(snap.status))) return sse.close();
    for await (const m of sub) {
      let ev: unknown;
      try {
        ev = toJson(FlowEventSchema, fromBinary(FlowEventSchema, m.data));
      } catch {
        continue; // not a FlowEvent: anyone who can publish on the subject could have sent it
      }
      sse.send('event', ev);
      if ((ev as { type?: string }).type === 'flow.completed') {
        sse.send('snapshot', await d.flows.get(req.tenant, req.params.id));
        break;
      }
    }
    sse.close();
  });

  await d.extend?.(app);
  return app;
}

export type { FastifyReply };
