import { z } from 'zod';
import { STATUS, type ErrorCode } from '../../../../libs/errors/src/index.js';
import { SubmissionSchema } from '../../../../libs/flows/src/index.js';

/**
 * The OpenAPI description of every HTTP route, keyed by "METHOD /fastify/url". Routes validate with
 * zod in their handlers (one error format with field details), so these schemas document and never
 * validate or serialize. A route may instead carry its own `schema` with a `summary`.
 */
type Schema = Record<string, unknown>;
export interface RouteDoc {
  summary: string;
  description?: string;
  tags: string[];
  /** False for the public probes; everything else needs the API key. */
  auth?: boolean;
  params?: Schema;
  querystring?: Schema;
  body?: Schema;
  /** Success responses by status. */
  ok: Record<number, Schema>;
  /** Error codes the route can answer with (401, 500 and 503 are added for authenticated routes). */
  errors?: ErrorCode[];
}

const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const int = (description: string, extra: Schema = {}): Schema => ({ type: 'integer', description, ...extra });
const nullable = (s: Schema): Schema => ({ ...s, nullable: true });
const obj = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', properties, additionalProperties: true, ...extra });
const iso = (d: string) => nullable(str(d, { format: 'date-time' }));

const FLOW_STATUS = ['accepted', 'running', 'succeeded', 'partial', 'failed', 'cancelled'];
const TASK_STATUS = ['pending', 'dispatched', 'succeeded', 'failed', 'cancelled', 'skipped', 'timed_out'];

const submission = (() => {
  const js = z.toJSONSchema(SubmissionSchema, { io: 'input', unrepresentable: 'any' }) as Schema;
  delete js.$schema;
  return {
    ...js,
    description: 'A flow submission: the same JSON on HTTP, gRPC (SubmitFlowRequest) and NATS (jetflow.ingest.<tenant>.<flow>).',
    example: {
      flow: 'insights',
      input: { records: [{ id: 'r1', text: 'Delivery was late and the box was damaged', fields: { rating: 2, amount: 35.5 } }] },
      callbackUrl: 'https://hooks.example.com/jetflow',
      idempotencyKey: 'order-123',
      deadlineMs: 10000,
      metadata: { source: 'crm' },
    },
  };
})();

const taskError = obj({ task: str('Task name'), code: str('An error code (see ErrorCode), or a task-specific code'), message: str('What went wrong') });

const flowView = obj(
  {
    flowId: str('Flow id'),
    flow: str('Flow definition name'),
    version: int('Definition version'),
    tenant: str('Owning tenant'),
    status: str('Flow status', { enum: FLOW_STATUS }),
    submittedAt: iso('Accepted at'),
    startedAt: iso('Started by the orchestrator at'),
    deadlineAt: iso('Ends as partial if not finished by then'),
    finishedAt: iso('Ended at'),
    durationMs: nullable(int('From submission to end')),
    endReason: nullable(str('Why it ended')),
    idempotencyKey: nullable(str('As submitted')),
    metadata: { type: 'object', additionalProperties: { type: 'string' } },
    stages: {
      type: 'array',
      items: obj({
        name: str('Stage name'),
        onFailure: str('What a failed task does', { enum: ['fail_flow', 'continue'] }),
        status: str('Stage progress', { enum: ['pending', 'running', 'settled'] }),
        tasks: {
          type: 'array',
          items: obj({
            name: str('Task name'),
            subject: str('Task subject'),
            status: str('Task status', { enum: TASK_STATUS }),
            attempts: int('Deliveries so far'),
            dispatchedAt: iso('Dispatched at'),
            startedAt: iso('Started by a worker at'),
            finishedAt: iso('Finished at'),
            durationMs: nullable(int('Run time')),
            error: nullable(obj({ code: str('Error code'), message: str('Message') })),
            worker: nullable(str('Worker instance')),
          }),
        },
      }),
    },
    errors: { type: 'array', items: taskError },
    results: obj({}, { description: 'When finished: one entry per analyst (as in the callback)' }),
    datasets: obj({}, { description: 'When finished: dataset references' }),
    callback: nullable(obj({ deliveryId: str('Jetflow-Delivery-Id'), status: str('delivered, retrying, dead_lettered or pending'), attempts: int('Attempts') })),
    source: str('"history" when read from the DynamoDB history after the KV state expired (then `stages` is empty); absent for live state', { enum: ['history'] }),
  },
  { description: 'A flow as GET /v1/flows/{flowId} shows it.' },
);

const flowSummary = obj({
  flowId: str('Flow id'),
  flow: str('Flow definition name'),
  status: str('Flow status', { enum: FLOW_STATUS.slice(1) }),
  stage: int('Index of the stage in progress, or the last reached'),
  submittedAt: str('Accepted at', { format: 'date-time' }),
  finishedAt: iso('Ended at'),
  durationMs: nullable(int('From submission to end')),
  updatedAt: iso('Last state change (the listing order)'),
  tasks: obj({ total: int('Tasks'), succeeded: int('Succeeded'), failed: int('Failed or timed out'), running: int('Dispatched, not settled') }),
  errors: int('Number of task errors'),
  endReason: nullable(str('Why it ended')),
  idempotencyKey: nullable(str('As submitted')),
  metadata: { type: 'object', additionalProperties: { type: 'string' } },
});

const flowEvent = obj(
  {
    flowId: str('Flow id'),
    tenant: str('Tenant'),
    flow: str('Flow name'),
    type: str('accepted, flow.started, task.dispatched, task.succeeded, task.failed, task.retrying, stage.completed, flow.completed, flow.rejected, callback.delivered, callback.retrying, callback.failed'),
    status: str('Flow status after the event'),
    task: str('Task, for task events'),
    stage: str('Stage, for stage events'),
    atMs: str('Epoch milliseconds (int64 as a string, protobuf JSON)'),
    message: str('Detail'),
    attempt: int('Attempt, for retries and callbacks'),
  },
  { description: 'A FlowEvent (proto/jetflow/v1/ingest.proto) in protobuf JSON; empty fields are omitted.' },
);

const sse = (what: string, events: string) => ({
  description: `${what}. Server-sent events: ${events}; comment lines keep the connection alive. EventSource clients may pass ?access_token=<api key> instead of the Authorization header.`,
  content: { 'text/event-stream': { schema: { type: 'string' } } },
});

const deadLetter = obj({
  seq: int('Sequence in the JETFLOW_DLQ stream (the id to redrive)'),
  subject: str('jetflow.dlq.<source>.<original subject>'),
  source: str('Who dead-lettered it: task, ingest, callback, result'),
  originalSubject: str('Where it was published, and where a redrive republishes it'),
  code: str('Jetflow-Dlq-Code'),
  reason: str('Jetflow-Dlq-Reason'),
  attempts: nullable(int('Deliveries before it was dead-lettered')),
  flowId: nullable(str('The flow it belongs to, when known')),
  time: str('When it was dead-lettered', { format: 'date-time' }),
  size: int('Body size in bytes'),
});

const flowIdParam = obj({ id: str('Flow id', { pattern: '^[a-z0-9]{2,64}$' }) }, { required: ['id'], additionalProperties: false });
const seqParam = obj({ seq: int('Dead-letter sequence', { minimum: 1 }) }, { required: ['seq'], additionalProperties: false });
const limit = (def: number) => int('Most items on a page', { minimum: 1, maximum: 200, default: def });
const cursor = str('nextCursor of the previous page');

export const ROUTE_DOCS: Record<string, RouteDoc> = {
  'GET /healthz': { summary: 'Liveness', tags: ['probes'], auth: false, ok: { 200: obj({ status: str('ok') }) } },
  'GET /readyz': {
    summary: 'Readiness: the broker connection is up',
    tags: ['probes'],
    auth: false,
    ok: { 200: obj({ status: str('ready') }), 503: obj({ status: str('unavailable') }, { description: 'Not connected to NATS' }) },
  },
  'GET /metrics': {
    summary: 'Prometheus metrics',
    tags: ['probes'],
    auth: false,
    ok: { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } },
  },
  'POST /v1/flows': {
    summary: 'Submit a flow',
    description: 'Durably accepted when this answers 202. The same idempotency key and body give the same flowId.',
    tags: ['flows'],
    body: submission,
    ok: { 202: obj({ flowId: str('Flow id'), status: str('accepted', { enum: ['accepted'] }) }, { description: 'Accepted' }) },
    errors: ['invalid_argument', 'conflict', 'payload_too_large', 'unsupported_media_type', 'overloaded'],
  },
  'GET /v1/flows': {
    summary: 'List recent flows of the tenant',
    description: 'Without `status`, or with `running` in it: flows changed in the last 24 h (the KV state), most recently changed first. With final statuses only (succeeded, partial, failed, cancelled) and the DynamoDB history on: every finished flow, however old, newest start first. A page may hold fewer than `limit` flows while older ones exist: follow `nextCursor` until it is null.',
    tags: ['flows'],
    querystring: obj({ status: str('Only these statuses, comma-separated (running, succeeded, partial, failed, cancelled)'), limit: limit(50), cursor }),
    ok: { 200: obj({ flows: { type: 'array', items: flowSummary }, nextCursor: nullable(str('Cursor of the next page')) }) },
    errors: ['invalid_argument'],
  },
  'GET /v1/flows/:id': { summary: 'Get a flow', description: 'From the live KV state; after it expires, from the DynamoDB history (`source: "history"`, no per-task stages).', tags: ['flows'], params: flowIdParam, ok: { 200: flowView }, errors: ['not_found'] },
  'GET /v1/flows/:id/timeline': {
    summary: 'A flow as a waterfall of stages and tasks',
    description: 'Times are epoch milliseconds. traceUrl links to Jaeger when the flow was traced and JETFLOW_JAEGER_UI_URL is set.',
    tags: ['flows'],
    params: flowIdParam,
    ok: {
      200: obj({
        flowId: str('Flow id'),
        status: str('Flow status', { enum: FLOW_STATUS.slice(1) }),
        submittedAt: int('Epoch ms'),
        finishedAt: nullable(int('Epoch ms')),
        traceId: nullable(str('W3C trace id')),
        traceUrl: nullable(str('Jaeger trace link')),
        stages: { type: 'array', items: obj({ name: str('Stage'), tasks: { type: 'array', items: obj({ name: str('Task'), status: str('Status', { enum: TASK_STATUS }), attempts: int('Attempts'), dispatchedAt: nullable(int('Epoch ms')), startedAt: nullable(int('Epoch ms')), finishedAt: nullable(int('Epoch ms')) }) } }) },
      }),
    },
    errors: ['not_found'],
  },
  'POST /v1/flows/:id/cancel': {
    summary: 'Cancel a running flow',
    tags: ['flows'],
    params: flowIdParam,
    body: obj({ reason: str('Recorded in the flow', { maxLength: 500 }) }),
    ok: { 202: obj({ flowId: str('Flow id'), status: str('cancelling', { enum: ['cancelling'] }) }) },
    errors: ['not_found', 'conflict', 'unavailable'],
  },
  'GET /v1/flows/:id/events': {
    summary: 'Follow one flow until it ends',
    tags: ['flows', 'events'],
    params: flowIdParam,
    ok: { 200: sse('The flow\'s lifecycle', '`snapshot` (the flow as GET returns it) first and last, `event` (a FlowEvent) in between') },
    errors: ['not_found'],
  },
  'GET /v1/stream/events': {
    summary: 'Follow every flow of the tenant',
    description: 'Live only (a core NATS subscription): events from before the connection are not replayed.',
    tags: ['events'],
    querystring: obj({ flowId: str('Only this flow'), access_token: str('The API key, for EventSource clients') }),
    ok: { 200: { ...sse('Live flow events', '`event` with a FlowEvent'), 'x-event-schema': flowEvent } },
    errors: ['invalid_argument'],
  },
  'GET /v1/deadletters': {
    summary: 'List the tenant\'s dead letters',
    description: 'Newest first. Visible to a tenant: those whose original subject, flow or body names it (plus, for JETFLOW_OPERATOR_TENANTS, those no tenant can be found for).',
    tags: ['dead letters'],
    querystring: obj({ limit: limit(50), source: str('Only from this source: task, ingest, callback or result'), cursor }),
    ok: { 200: obj({ deadLetters: { type: 'array', items: deadLetter }, nextCursor: nullable(str('Cursor of the next page')) }) },
    errors: ['invalid_argument'],
  },
  'GET /v1/deadletters/:seq': {
    summary: 'A dead letter with its headers and body',
    tags: ['dead letters'],
    params: seqParam,
    ok: { 200: { ...deadLetter, properties: { ...(deadLetter.properties as Schema), headers: obj({}, { description: 'All headers' }), body: obj({ encoding: str('json, text or base64'), value: {} }) } } },
    errors: ['invalid_argument', 'not_found'],
  },
  'POST /v1/deadletters/:seq/redrive': {
    summary: 'Redrive a dead letter',
    description: 'Republishes the original body and headers (without the dead-letter ones) to the original subject with Nats-Msg-Id `redrive:<seq>`, then deletes the dead letter. Retrying is safe.',
    tags: ['dead letters'],
    params: seqParam,
    ok: { 200: obj({ seq: int('The dead letter'), subject: str('Republished to'), msgId: str('redrive:<seq>'), stream: str('Stream that stored it'), streamSeq: int('Its sequence there'), duplicate: { type: 'boolean', description: 'Already redriven (deduplicated)' } }) },
    errors: ['invalid_argument', 'not_found'],
  },
  'GET /v1/routes': {
    summary: 'Which consumer gets a task subject',
    description: 'Routing is by subject hierarchy: one durable consumer per task subject on stream JETFLOW_TASKS. The subject may be a pattern with * and > wildcards.',
    tags: ['operations'],
    querystring: obj({ subject: str('A task subject or pattern under jetflow.task (default jetflow.task.>)') }),
    ok: {
      200: obj({
        query: str('The subject or pattern asked about'),
        routes: {
          type: 'array',
          items: obj({
            subject: str('Task subject'),
            stream: str('Stream holding the task messages'),
            consumer: str('Durable pull consumer (the KEDA scaling unit)'),
            servedBy: str('Service whose default subscription serves it'),
            usedBy: { type: 'array', items: obj({ flow: str('Flow'), version: int('Version'), stage: str('Stage'), task: str('Task') }) },
          }),
        },
      }),
    },
    errors: ['invalid_argument'],
  },
  'GET /v1/consumers': {
    summary: 'JetStream consumers of the Jetflow streams',
    description: 'Lag and load per consumer. deliveredPerSec is estimated from the previous call at least a second earlier (null on the first).',
    tags: ['operations'],
    ok: {
      200: obj({
        sampledAt: str('When read', { format: 'date-time' }),
        streams: { type: 'array', items: obj({ name: str('Stream'), messages: int('Messages stored'), bytes: int('Bytes stored'), consumers: int('Durable consumers') }) },
        consumers: {
          type: 'array',
          items: obj({
            stream: str('Stream'),
            name: str('Durable name'),
            filterSubject: nullable(str('Filter subject')),
            numPending: int('Not yet delivered (the lag)'),
            numAckPending: int('Delivered, not yet acknowledged'),
            numRedelivered: int('Redelivered, not yet acknowledged'),
            numWaiting: int('Pull requests waiting (idle workers)'),
            delivered: int('Deliveries so far'),
            maxAckPending: nullable(int('Limit on ack-pending')),
            deliveredPerSec: nullable({ type: 'number', description: 'Throughput estimate' }),
          }),
        },
      }),
    },
  },
};

const errorBody = (codes: ErrorCode[]): Schema =>
  obj(
    {
      error: obj(
        {
          code: str('Stable error code', { enum: codes }),
          message: str('What is wrong, naming the field or resource'),
          details: { type: 'array', items: obj({ path: str('Field path'), message: str('What is wrong with it') }) },
        },
        { required: ['code', 'message', 'details'] },
      ),
    },
    { required: ['error'] },
  );

/** Success and error responses of a route in fastify's schema shape, errors grouped by HTTP status. */
export function responsesOf(doc: RouteDoc): Record<string, Schema> {
  const out: Record<string, Schema> = {};
  for (const [status, s] of Object.entries(doc.ok)) out[status] = { description: 'OK', ...s };
  const codes = new Set<ErrorCode>(doc.errors ?? []);
  if (doc.auth !== false) for (const c of ['unauthenticated', 'internal', 'unavailable'] as const) codes.add(c);
  const byStatus = new Map<number, ErrorCode[]>();
  for (const c of codes) byStatus.set(STATUS[c].http, [...(byStatus.get(STATUS[c].http) ?? []), c]);
  for (const [status, cs] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = { ...errorBody(cs), description: cs.map((c) => `\`${c}\`: ${STATUS[c].doc}`).join(' ') };
  }
  return out;
}

/** The error code table for the document's description. */
export function errorTable(): string {
  const rows = Object.entries(STATUS).map(([code, s]) => `| \`${code}\` | ${s.http} | ${s.grpc} | ${s.doc} |`);
  return ['| code | HTTP | gRPC | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
