import type { FastifyInstance, FastifyRequest } from 'fastify';
import { fromBinary, toJson } from '@bufbuild/protobuf';
import type { NatsConnection } from 'nats';
import { FlowEventSchema } from '@jetflow/proto';
import { JetflowError, ErrorCodes } from '@jetflow/errors';
import { FLOW_ID_RE, isTerminal, type FlowRegistry } from '@jetflow/flows';
import { eventSubject } from '@jetflow/messaging';
import type { Logger } from '@jetflow/logging';
import type { FlowHandlers } from '../handlers/flows.js';
import { parseListQuery, type FlowLister } from '../handlers/flow-lister.js';
import type { DeadLetterHandlers } from '../handlers/deadletters.js';
import type { BulkHandlers } from '../handlers/bulk.js';
import type { ConsumerStats } from '../handlers/consumers.js';
import type { WorkerHandlers } from '../handlers/workers.js';
import { timelineOf } from '../handlers/timeline.js';
import { attemptHistory } from '../handlers/attempts.js';
import { readFlowEvents } from './flow-events.js';
import { requireOperator, type Authenticator } from './auth.js';
import { SSE_PATHS, openSse, sseBounds, type SseStream } from './sse.js';
import type { ClientLimits } from '../config.js';

export interface OpsDeps {
  auth: Authenticator;
  flows: FlowHandlers;
  registry: FlowRegistry;
  lister: FlowLister;
  deadLetters: DeadLetterHandlers;
  /** Cancel and redrive by filter. */
  bulk: BulkHandlers;
  consumers: ConsumerStats;
  /** The worker registry (GET /v1/workers). */
  workers?: WorkerHandlers;
  nc: NatsConnection;
  log: Logger;
  jaegerUrl: string | undefined;
  /** Bounds of the live event stream (a client that stops reading is dropped). */
  limits: ClientLimits;
}

const FINAL = new Set(['succeeded', 'partial', 'failed', 'cancelled']);

/** The operations API: listings, dead letters and redrive, consumers, the tenant's live events. */
export function registerOpsRoutes(app: FastifyInstance, d: OpsDeps): void {
  const authenticate = async (req: FastifyRequest) => {
    const p = d.auth.principalOf(req.headers.authorization);
    req.tenant = p.tenant;
    req.operator = p.operator;
  };

  // EventSource cannot set headers: on the SSE routes only, ?access_token=<key> stands for the header.
  app.addHook('onRequest', async (req) => {
    if (req.method !== 'GET' || req.headers.authorization) return;
    const path = req.url.split('?')[0] ?? '';
    const token = (req.query as { access_token?: unknown } | undefined)?.access_token;
    if (typeof token === 'string' && token && SSE_PATHS.some((re) => re.test(path))) req.headers.authorization = `Bearer ${token}`;
  });

  app.get('/v1/flows', { preHandler: authenticate }, async (req) => {
    const page = await d.lister.list(parseListQuery(req.tenant, req.query, req.operator));
    // A finished flow's callback has a state of its own (delivered, retrying, dead-lettered): one KV read each.
    await Promise.all(
      page.flows.map(async (f) => {
        if (f.callback && FINAL.has(f.status)) f.callback = (await d.flows.callbackStatus(f.flowId).catch(() => f.callback)) as typeof f.callback;
      }),
    );
    return page;
  });

  app.get<{ Params: { id: string } }>('/v1/flows/:id/timeline', { preHandler: authenticate }, async (req) => {
    const s = await d.flows.state(req.tenant, req.params.id);
    const callback = s.callbackUrl ? (isTerminal(s) ? await d.flows.callbackStatus(s.flowId) : { status: 'pending' }) : null;
    return { ...timelineOf(s, d.registry.get(s.flow), d.jaegerUrl), callback };
  });

  // Every failed attempt of each task and each callback attempt, from the flow's events (kept an hour).
  app.get<{ Params: { id: string } }>('/v1/flows/:id/attempts', { preHandler: authenticate }, async (req) => {
    const s = await d.flows.state(req.tenant, req.params.id);
    const { events, truncated } = await readFlowEvents(d.nc, req.tenant, s.flowId);
    const finals = Object.entries(s.tasks).flatMap(([task, t]) =>
      (t.status === 'failed' || t.status === 'timed_out') && t.error ? [{ task, attempts: t.attempts, finishedAt: t.finishedAt, error: t.error }] : [],
    );
    return { flowId: s.flowId, ...attemptHistory(events, finals), truncated };
  });

  // Cancel every flow a filter selects (`::` is a literal colon in a fastify route): README, "Bulk actions".
  app.post('/v1/flows::cancel', { preHandler: authenticate }, async (req) => d.bulk.cancelFlows(req.tenant, req.operator, req.body));

  app.get('/v1/deadletters', { preHandler: authenticate }, async (req) => d.deadLetters.list(req.tenant, req.query, req.operator));
  app.post('/v1/deadletters::redrive', { preHandler: authenticate }, async (req) => d.bulk.redriveDeadLetters(req.tenant, req.operator, req.body));
  app.get<{ Params: { seq: string } }>('/v1/deadletters/:seq', { preHandler: authenticate }, async (req) => d.deadLetters.get(req.tenant, req.params.seq));
  app.post<{ Params: { seq: string } }>('/v1/deadletters/:seq/redrive', { preHandler: authenticate }, async (req) => d.deadLetters.redrive(req.tenant, req.params.seq));

  // Every stream and consumer: the whole system's load, all tenants together.
  app.get('/v1/consumers', { preHandler: authenticate }, async (req) => {
    requireOperator(req, 'GET /v1/consumers');
    return d.consumers.list();
  });

  // The worker registry: every worker instance (live or stale) and who serves each task subject.
  const workers = d.workers;
  if (workers)
    app.get('/v1/workers', { preHandler: authenticate }, async (req) => {
      requireOperator(req, 'GET /v1/workers');
      return workers.list();
    });

  // Live streams never end on their own: end them when the server closes, or close() waits for them.
  const streams = new Set<SseStream>();
  app.addHook('preClose', async () => {
    for (const s of streams) s.close();
  });

  app.get<{ Querystring: { flowId?: string } }>('/v1/stream/events', { preHandler: authenticate }, async (req, reply) => {
    const flowId = req.query.flowId;
    if (flowId !== undefined && !FLOW_ID_RE.test(flowId))
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `flowId "${flowId}" is not a flow id`, { details: [{ path: 'flowId', message: 'lowercase letters and digits' }] });
    const sub = d.nc.subscribe(eventSubject(req.tenant, flowId ?? '>'));
    const sse = openSse(req, reply, sseBounds(d.limits, d.log, '/v1/stream/events', { watch: false }));
    streams.add(sse);
    void sse.closed.then(() => {
      streams.delete(sse);
      sub.unsubscribe();
    });
    for await (const m of sub) {
      try {
        sse.send('event', toJson(FlowEventSchema, fromBinary(FlowEventSchema, m.data)));
      } catch (err) {
        req.log.warn({ err: (err as Error).message, subject: m.subject }, 'undecodable flow event skipped');
      }
    }
    sse.close();
  });
}
