import { z } from 'zod';
import { STATUS, type ErrorCode } from '@jetflow/errors';
import { FLOW_ID_RE, FlowDefSchema, INPUT_SCHEMAS, SubmissionSchema } from '@jetflow/flows';
import { ListQuerySchema } from '../handlers/flow-lister.js';
import { DeadLetterQuerySchema } from '../handlers/deadletters.js';
import { BulkCancelSchema, BulkRedriveSchema, MAX_BULK, MAX_DRY_RUN_COUNT, MAX_IDS } from '../handlers/bulk.js';

/**
 * The OpenAPI 3.1 description of every HTTP route, keyed by "METHOD /fastify/url". Routes validate with
 * zod in their handlers (one error format with field details); the request schemas here are generated
 * from those same zod schemas (the submission, the listings' query strings), so the document cannot
 * drift from what is accepted. Response schemas document and never serialize; test/openapi.test.ts
 * checks real responses against them. A route may instead carry its own `schema` with a `summary`.
 */
type Schema = Record<string, unknown>;
export interface RouteDoc {
  /** Unique, stable: what generated clients name the method. */
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  /** False for the public probes; everything else needs the API key. */
  auth?: boolean;
  params?: Schema;
  querystring?: Schema;
  body?: Schema;
  /** The body may be left out (no Content-Type, no body). */
  bodyOptional?: boolean;
  /** Success responses by status. */
  ok: Record<number, Schema>;
  /** Error codes the route can answer with (401, 500 and 503 are added for authenticated routes). */
  errors?: ErrorCode[];
}

const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const int = (description: string, extra: Schema = {}): Schema => ({ type: 'integer', description, ...extra });
const bool = (description: string): Schema => ({ type: 'boolean', description });
const nullable = (s: Schema): Schema => ({ ...s, type: [s.type, 'null'] });
const arr = (items: Schema, description?: string): Schema => ({ type: 'array', items, ...(description ? { description } : {}) });
/** An open map (any keys). */
const map = (description: string, values: Schema = {}): Schema => ({ type: 'object', additionalProperties: values, description });
/**
 * A record whose properties are all present in every answer, except those listed in `optional`.
 * Properties not listed are allowed (additions are not breaking); the test refuses undocumented ones.
 */
const rec = (properties: Record<string, Schema>, o: { optional?: string[]; description?: string; example?: unknown } = {}): Schema => {
  const required = Object.keys(properties).filter((k) => !o.optional?.includes(k));
  return {
    type: 'object',
    properties,
    ...(required.length ? { required } : {}),
    ...(o.description ? { description: o.description } : {}),
    // One example: @fastify/swagger moves it to the media type's `example`.
    ...(o.example !== undefined ? { examples: [o.example] } : {}),
  };
};
const iso = (d: string) => nullable(str(d, { format: 'date-time' }));
const epochMs = (d: string) => int(`${d} (epoch ms)`);

/** zod → JSON Schema 2020-12 (OpenAPI 3.1's dialect), as the request is seen before parsing. */
const fromZod = (schema: z.ZodType): Schema => {
  const js = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Schema;
  delete js.$schema;
  return js;
};

const FLOW_STATUS = ['accepted', 'scheduled', 'running', 'succeeded', 'partial', 'failed', 'cancelled'];
const TASK_STATUS = ['pending', 'dispatched', 'succeeded', 'failed', 'cancelled', 'skipped', 'timed_out'];
const ON_FAILURE = ['fail_flow', 'continue'];
const FLOW_ID = 'fk2q7v1c9m3n8p0r5s6t4u2w1x';
const T0 = '2026-01-05T10:00:00.000Z';
const T1 = '2026-01-05T10:00:00.412Z';

/** Schemas in components.schemas: the input each flow with its own validation accepts. */
export const FLOW_INPUT_COMPONENTS: Record<string, Schema> = Object.fromEntries(
  Object.entries(INPUT_SCHEMAS).map(([flow, s]) => [`FlowInput.${flow}`, { ...fromZod(s), description: `The \`input\` of flow "${flow}"` }]),
);

const submission: Schema = {
  ...fromZod(SubmissionSchema),
  description: `A flow submission: the same JSON on HTTP, gRPC (SubmitFlowRequest) and NATS (jetflow.ingest.<tenant>.<flow>). The input of ${Object.keys(INPUT_SCHEMAS)
    .map((f) => `"${f}" is FlowInput.${f}`)
    .join(', ')} (components.schemas).`,
  examples: [
    {
      flow: 'insights',
      input: { records: [{ id: 'r1', text: 'Delivery was late and the box was damaged', fields: { rating: 2, amount: 35.5 } }] },
      callbackUrl: 'https://hooks.example.com/jetflow',
      idempotencyKey: 'order-123',
      deadlineMs: 10000,
      metadata: { source: 'crm' },
      priority: 8,
    },
  ],
};

const taskError = rec({ task: str('Task name'), code: str('An error code (see ErrorCode), or a task-specific code'), message: str('What went wrong') });
const errorRef = nullable({ ...rec({ code: str('Error code'), message: str('Message') }), description: 'Why the task failed' });

const flowTask = rec(
  {
    name: str('Task name'),
    subject: nullable(str('Task subject (null when the definition the flow ran on is gone)')),
    status: str('Task status', { enum: TASK_STATUS }),
    attempts: int('Deliveries so far'),
    dispatchedAt: iso('Dispatched at'),
    startedAt: iso('Started by a worker at'),
    finishedAt: iso('Finished at'),
    durationMs: nullable(int('Run time')),
    error: errorRef,
    worker: nullable(str('Worker instance')),
    waitingForWorker: bool('Dispatched, and no live worker in the registry serves its subject (absent until ingest has read the registry)'),
    waitingForSignal: str('A `waitFor` task that is ready and waits: the signal it waits for (POST /v1/flows/{id}/signals/{name})'),
    waitingForLimit: rec(
      {
        kind: str('The limit it waits for', { enum: ['concurrency', 'rate'] }),
        key: str("The limit's key (`tenant`, `input.customer`): its name, never its value"),
        limit: { type: 'number', description: 'At most this many at once (concurrency), or starts per second (rate)' },
        since: str('Waiting since', { format: 'date-time' }),
      },
      { description: 'Dispatched, taken by a worker, and held back by its concurrency or rate limit (not running yet)' },
    ),
    chunks: rec(
      { count: int('Chunks of the mapped task'), succeeded: int('Succeeded'), failed: int('Failed or cancelled'), running: int('Dispatched, not settled') },
      { description: 'A mapped task (`map`): its chunks by state' },
    ),
  },
  { optional: ['waitingForWorker', 'waitingForSignal', 'waitingForLimit', 'chunks'] },
);

/** The callback's own state, apart from the flow's. */
const callbackDelivery = nullable({
  ...rec(
    {
      deliveryId: str('Jetflow-Delivery-Id'),
      status: str('Delivery state (pending: not tried yet)', { enum: ['pending', 'delivered', 'retrying', 'dead_lettered'] }),
      attempts: int('Attempts so far'),
      lastStatusCode: int('HTTP status of the last attempt, when it got one'),
      lastError: str('Why the last attempt failed'),
      deliveredAt: str('When the receiver accepted it', { format: 'date-time' }),
    },
    { optional: ['deliveryId', 'attempts', 'lastStatusCode', 'lastError', 'deliveredAt'] },
  ),
  description: 'The callback delivery of a flow with a callbackUrl (null without one)',
});

const flowView = rec(
  {
    flowId: str('Flow id'),
    flow: str('Flow definition name'),
    version: int('Definition version'),
    tenant: str('Owning tenant'),
    status: str('Flow status', { enum: FLOW_STATUS }),
    submittedAt: iso('Accepted at'),
    startedAt: iso('Started by the orchestrator at'),
    deadlineAt: iso('Ends as partial if not finished by then'),
    startAt: iso('A delayed start: the flow is `scheduled` until then, and its deadline counts from it'),
    paused: bool('Paused (POST /v1/flows/{id}/pause): no task is dispatched until it is resumed; absent when not'),
    finishedAt: iso('Ended at'),
    durationMs: nullable(int('From submission to end')),
    endReason: nullable(str('Why it ended')),
    idempotencyKey: nullable(str('As submitted')),
    priority: int('1..10 as submitted (5 when none was given): under a backlog, higher first (README, "Priorities")'),
    metadata: map('As submitted', { type: 'string' }),
    stages: arr(
      rec({
        name: str('Stage name'),
        onFailure: nullable(str('What a failed task does', { enum: [...ON_FAILURE, null] })),
        status: str('Stage progress', { enum: ['pending', 'running', 'settled'] }),
        tasks: arr(flowTask),
      }),
    ),
    errors: arr(taskError),
    results: map('When finished: one entry per analyst (as in the callback)'),
    datasets: map('When finished: dataset references'),
    callback: callbackDelivery,
    source: str('"history" when read from the DynamoDB history after the KV state expired (then `stages` is empty); absent for live state', { enum: ['history'] }),
    waitingFor: arr(
      rec({ task: str('Task name'), subject: str('Its task subject') }),
      'Dispatched tasks no live worker serves (the worker registry, GET /v1/workers): the flow waits for a worker of that subject until its deadline',
    ),
    signals: arr(
      rec({
        id: str('Signal id (the Idempotency-Key it was sent with, or one drawn)'),
        name: str('Signal name'),
        receivedAt: iso('Applied to the flow at'),
        task: nullable(str('The waitFor task that took it (null: none yet)')),
      }),
      'Signals the flow received, in arrival order (a name no task waits for is kept too)',
    ),
  },
  {
    // An accepted flow whose saga has not started yet has only the first fields; results and datasets come with the end.
    optional: [
      'version',
      'startedAt',
      'deadlineAt',
      'startAt',
      'finishedAt',
      'durationMs',
      'endReason',
      'idempotencyKey',
      'priority',
      'metadata',
      'errors',
      'results',
      'datasets',
      'callback',
      'source',
      'waitingFor',
      'signals',
      'paused',
    ],
    description: 'A flow as GET /v1/flows/{flowId} shows it. Right after acceptance (status `accepted`) only flowId, flow, tenant, status, submittedAt and an empty stages are there.',
  },
);
const flowViewExample = {
  flowId: FLOW_ID,
  flow: 'insights',
  version: 1,
  tenant: 'default',
  status: 'running',
  submittedAt: T0,
  startedAt: T0,
  deadlineAt: '2026-01-05T10:00:30.000Z',
  finishedAt: null,
  durationMs: null,
  endReason: null,
  idempotencyKey: 'order-123',
  metadata: { source: 'crm' },
  stages: [
    {
      name: 'datasets',
      onFailure: 'fail_flow',
      status: 'running',
      tasks: [
        {
          name: 'text',
          subject: 'jetflow.task.dataset.text',
          status: 'succeeded',
          attempts: 1,
          dispatchedAt: T0,
          startedAt: T0,
          finishedAt: T1,
          durationMs: 380,
          error: null,
          worker: 'dataset-generator-1',
        },
      ],
    },
  ],
  errors: [],
  callback: null,
};

const flowSummary = rec(
  {
    flowId: str('Flow id'),
    flow: str('Flow definition name'),
    tenant: str('Tenant'),
    status: str('Flow status', { enum: FLOW_STATUS.slice(1) }),
    stage: int('Index of the stage in progress, or the last reached'),
    submittedAt: str('Accepted at', { format: 'date-time' }),
    finishedAt: iso('Ended at'),
    durationMs: nullable(int('From submission to end')),
    updatedAt: iso('Last state change (the listing order)'),
    tasks: rec({ total: int('Tasks'), succeeded: int('Succeeded'), failed: int('Failed or timed out'), running: int('Dispatched, not settled') }),
    errors: int('Number of task errors'),
    endReason: nullable(str('Why it ended')),
    idempotencyKey: nullable(str('As submitted')),
    priority: int('1..10 (5: the default); absent from the history'),
    metadata: map('As submitted', { type: 'string' }),
    callback: callbackDelivery,
  },
  { optional: ['callback', 'tenant', 'priority'] },
);

const flowEvent = rec(
  {
    flowId: str('Flow id'),
    tenant: str('Tenant'),
    flow: str('Flow name'),
    type: str(
      'accepted, flow.scheduled, flow.started, task.dispatched, task.succeeded, task.failed, task.retrying, task.waiting, task.skipped, task.cancelled, stage.completed, flow.completed, flow.rejected, callback.delivered, callback.retrying, callback.failed',
    ),
    status: str('Flow status after the event'),
    task: str('Task, for task events (comma-separated when one transition touched several)'),
    stage: str('Stage, for stage events'),
    atMs: str('Epoch milliseconds (int64 as a string, protobuf JSON)'),
    message: str('Detail'),
    attempt: int('Attempt, for retries and callbacks'),
  },
  { optional: ['tenant', 'flow', 'status', 'task', 'stage', 'message', 'attempt'], description: 'A FlowEvent (proto/jetflow/v1/ingest.proto) in protobuf JSON; empty fields are omitted.' },
);

/** components.schemas: the flow inputs, and what the event streams carry in their `data` lines. */
export const COMPONENT_SCHEMAS = (): Record<string, Schema> => ({ ...FLOW_INPUT_COMPONENTS, Flow: flowView, FlowEvent: flowEvent });

/** An SSE route; `events` maps each event name to the component schema of its data. */
const sse = (what: string, events: Record<string, string>) => ({
  description: `${what}. Server-sent events: ${Object.entries(events)
    .map(([e, c]) => `\`${e}\` (data: a ${c})`)
    .join(', ')}; comment lines keep the connection alive. EventSource clients may pass ?access_token=<api key> instead of the Authorization header.`,
  'x-sse-events': Object.fromEntries(Object.entries(events).map(([e, c]) => [e, { $ref: `#/components/schemas/${c}` }])),
  content: {
    'text/event-stream': {
      schema: { type: 'string' },
      example: 'event: event\ndata: {"flowId":"fk2q7v1c9m3n8p0r5s6t4u2w1x","type":"task.succeeded","task":"text","atMs":"1767607200412"}\n\n',
    },
  },
});

const deadLetterFields = {
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
};
const deadLetterExample = {
  seq: 42,
  subject: 'jetflow.dlq.callback.jetflow.callback.default',
  source: 'callback',
  originalSubject: 'jetflow.callback.default',
  code: 'callback_failed',
  reason: 'HTTP 503 after 8 attempts',
  attempts: 8,
  flowId: FLOW_ID,
  time: T1,
  size: 812,
};
const deadLetter = rec(deadLetterFields);

const flowIdParam = rec({ id: str('Flow id', { pattern: FLOW_ID_RE.source }) });
const seqParam = rec({ seq: int('Dead-letter sequence', { minimum: 1 }) });

const definitionVersionProps = {
  version: int('Version'),
  hash: str('First 16 hex digits of the sha256 of its canonical JSON', { pattern: '^[0-9a-f]{16}$' }),
  storedAt: str('When it was stored', { format: 'date-time' }),
  source: str('Where it came from', { enum: ['builtin', 'file', 'api'] }),
};
const definitionVersion = rec(definitionVersionProps);
const DEF_VERSION_EXAMPLE = { version: 1, hash: '3f9a0c1d2e4b5a69', storedAt: T0, source: 'builtin' };
const definitionRegistered = (outcome: 'created' | 'unchanged') =>
  rec(
    { name: str('Flow name'), ...definitionVersionProps, outcome: str('What the request did', { enum: [outcome] }) },
    { example: { name: 'wordcount', version: 2, hash: '8c1e0f2a9b3d4c57', storedAt: T1, source: 'api', outcome } },
  );

const scheduleView = rec(
  {
    id: str('Schedule id (unique per tenant)'),
    cron: str('Cron expression: 5 fields (minute hour day month weekday) or 6 (seconds first)'),
    timezone: str('IANA time zone the expression is read in'),
    overlap: str("skip: no firing while the previous firing's flow still runs; allow: fire regardless", { enum: ['skip', 'allow'] }),
    submission: map('The submission each firing makes (as POST /v1/flows takes it, without idempotencyKey, startAt, delayMs)'),
    paused: bool('Paused schedules do not fire'),
    createdAt: str('Created at', { format: 'date-time' }),
    updatedAt: str('Last change at', { format: 'date-time' }),
    nextFireAt: iso('Next fire time (null when paused)'),
    lastFireAt: iso('Last fire time that submitted a flow'),
    lastFlowId: nullable(str('Flow of the last firing')),
    fired: int('Flows submitted'),
    skipped: int('Fire times not fired because the previous flow still ran (overlap skip)'),
    missed: int('Fire times given up by the catch-up policy (docs/OPERATIONS.md, "Schedules")'),
  },
  {
    example: {
      id: 'nightly',
      cron: '0 2 * * *',
      timezone: 'Europe/Berlin',
      overlap: 'skip',
      submission: { flow: 'insights', input: { records: [{ id: 'r1', text: 'hello' }] } },
      paused: false,
      createdAt: T0,
      updatedAt: T0,
      nextFireAt: '2026-01-06T01:00:00.000Z',
      lastFireAt: null,
      lastFlowId: null,
      fired: 0,
      skipped: 0,
      missed: 0,
    },
  },
);
const scheduleIdParam = rec({ id: str('Schedule id', { pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }) });

/** The schedules API (handlers/schedules.ts). */
const SCHEDULE_DOCS: Record<string, RouteDoc> = {
  'POST /v1/schedules': {
    operationId: 'createSchedule',
    summary: 'Create a cron schedule',
    description:
      'Each fire time submits `submission` with the idempotency key `<id>:<fire time ISO>` (so replicas and restarts never fire twice). 201 when created; the same body again answers 200 with the schedule; another body under the same id is 409.',
    tags: ['schedules'],
    body: {
      type: 'object',
      properties: {
        id: str('Schedule id', { pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }),
        cron: str('5 or 6 fields (seconds first), e.g. */5 * * * * *'),
        timezone: str('IANA time zone, default UTC'),
        submission: map('A submission as POST /v1/flows takes it, without idempotencyKey, startAt, delayMs'),
        overlap: str('Default allow', { enum: ['skip', 'allow'] }),
      },
      required: ['id', 'cron', 'submission'],
      additionalProperties: false,
      examples: [{ id: 'every-5s', cron: '*/5 * * * * *', timezone: 'UTC', overlap: 'skip', submission: { flow: 'insights', input: { records: [{ id: 'r1', text: 'hello' }] } } }],
    },
    ok: { 201: { ...scheduleView, description: 'Created' }, 200: { ...scheduleView, description: 'Existed with this body' } },
    errors: ['invalid_argument', 'conflict', 'payload_too_large', 'unsupported_media_type'],
  },
  'GET /v1/schedules': {
    operationId: 'listSchedules',
    summary: "The tenant's schedules",
    tags: ['schedules'],
    ok: { 200: rec({ schedules: arr(scheduleView) }, { example: { schedules: [] } }) },
  },
  'GET /v1/schedules/:id': {
    operationId: 'getSchedule',
    summary: 'One schedule, with its counts',
    tags: ['schedules'],
    params: scheduleIdParam,
    ok: { 200: scheduleView },
    errors: ['not_found'],
  },
  'DELETE /v1/schedules/:id': {
    operationId: 'deleteSchedule',
    summary: 'Delete a schedule (flows already fired run on)',
    tags: ['schedules'],
    params: scheduleIdParam,
    ok: { 200: rec({ id: str('Schedule id'), deleted: bool('Always true') }, { example: { id: 'nightly', deleted: true } }) },
    errors: ['not_found'],
  },
  'POST /v1/schedules/:id/pause': {
    operationId: 'pauseSchedule',
    summary: 'Pause a schedule: no firing until resumed',
    tags: ['schedules'],
    params: scheduleIdParam,
    bodyOptional: true,
    ok: { 200: scheduleView },
    errors: ['not_found'],
  },
  'POST /v1/schedules/:id/resume': {
    operationId: 'resumeSchedule',
    summary: 'Resume a schedule from the next fire time after now (the time paused is not caught up)',
    tags: ['schedules'],
    params: scheduleIdParam,
    bodyOptional: true,
    ok: { 200: scheduleView },
    errors: ['not_found'],
  },
};

export const ROUTE_DOCS: Record<string, RouteDoc> = {
  ...SCHEDULE_DOCS,
  'GET /healthz': { operationId: 'healthz', summary: 'Liveness', tags: ['probes'], auth: false, ok: { 200: rec({ status: str('ok', { enum: ['ok'] }) }, { example: { status: 'ok' } }) } },
  'GET /readyz': {
    operationId: 'readyz',
    summary: 'Readiness: the broker connection is up',
    tags: ['probes'],
    auth: false,
    ok: {
      200: rec({ status: str('ready', { enum: ['ready'] }) }, { example: { status: 'ready' } }),
      503: rec({ status: str('unavailable', { enum: ['unavailable'] }) }, { description: 'Not connected to NATS', example: { status: 'unavailable' } }),
    },
  },
  'GET /metrics': {
    operationId: 'metrics',
    summary: 'Prometheus metrics',
    tags: ['probes'],
    auth: false,
    ok: {
      200: {
        description: 'Prometheus text exposition format',
        content: {
          'text/plain': { schema: { type: 'string' }, example: '# TYPE jetflow_flows_completed_total counter\njetflow_flows_completed_total{flow="insights",status="succeeded"} 12\n' },
        },
      },
    },
  },
  'POST /v1/flows': {
    operationId: 'submitFlow',
    summary: 'Submit a flow',
    description: 'Durably accepted when this answers 202. The same idempotency key and body give the same flowId.',
    tags: ['flows'],
    body: submission,
    ok: {
      202: rec(
        { flowId: str('Flow id'), status: str('accepted, or scheduled for a delayed start (startAt or delayMs) that lies ahead', { enum: ['accepted', 'scheduled'] }) },
        { description: 'Accepted', example: { flowId: FLOW_ID, status: 'accepted' } },
      ),
    },
    errors: ['invalid_argument', 'conflict', 'payload_too_large', 'unsupported_media_type', 'overloaded', 'quota_exceeded'],
  },
  'GET /v1/flows': {
    operationId: 'listFlows',
    summary: 'List recent flows of the tenant',
    description:
      'Without `status`, or with `running` in it: flows changed in the last 24 h (the KV state), most recently changed first. With final statuses only (succeeded, partial, failed, cancelled) and the DynamoDB history on: every finished flow, however old, newest start first. A page may hold fewer than `limit` flows, even none, while older ones exist: follow `nextCursor` until it is null.',
    tags: ['flows'],
    querystring: fromZod(ListQuerySchema),
    ok: {
      200: rec(
        { flows: arr(flowSummary), nextCursor: nullable(str('Cursor of the next page')) },
        {
          example: {
            flows: [
              {
                flowId: FLOW_ID,
                flow: 'insights',
                status: 'succeeded',
                stage: 1,
                submittedAt: T0,
                finishedAt: T1,
                durationMs: 412,
                updatedAt: T1,
                tasks: { total: 6, succeeded: 6, failed: 0, running: 0 },
                errors: 0,
                endReason: null,
                idempotencyKey: 'order-123',
                metadata: { source: 'crm' },
              },
            ],
            nextCursor: 'a3Y6MTIzNA',
          },
        },
      ),
    },
    errors: ['invalid_argument'],
  },
  'GET /v1/flows/:id': {
    operationId: 'getFlow',
    summary: 'Get a flow',
    description: 'From the live KV state; after it expires, from the DynamoDB history (`source: "history"`, no per-task stages).',
    tags: ['flows'],
    params: flowIdParam,
    ok: { 200: { ...flowView, examples: [flowViewExample] } },
    errors: ['not_found'],
  },
  'GET /v1/flows/:id/timeline': {
    operationId: 'getFlowTimeline',
    summary: 'A flow as a waterfall of stages and tasks',
    description: 'Times are epoch milliseconds. traceUrl links to Jaeger when the flow was traced and JETFLOW_JAEGER_UI_URL is set.',
    tags: ['flows'],
    params: flowIdParam,
    ok: {
      200: rec(
        {
          flowId: str('Flow id'),
          flow: str('Flow definition name'),
          version: int('Definition version'),
          status: str('Flow status', { enum: FLOW_STATUS.slice(1) }),
          stage: int('Index of the stage in progress, or the last reached'),
          submittedAt: epochMs('Accepted at'),
          startedAt: epochMs('Started at'),
          deadlineAt: epochMs('Deadline'),
          finishedAt: nullable(epochMs('Ended at')),
          now: epochMs('Server time of the answer (where a running bar ends)'),
          endReason: nullable(str('Why it ended')),
          errors: arr(taskError),
          metadata: map('As submitted', { type: 'string' }),
          idempotencyKey: nullable(str('As submitted')),
          priority: int('1..10 (5: the default)'),
          traceId: nullable(str('W3C trace id')),
          traceUrl: nullable(str('Jaeger trace link')),
          callback: callbackDelivery,
          stages: arr(
            rec({
              name: str('Stage'),
              onFailure: str('What a failed task does', { enum: ON_FAILURE }),
              tasks: arr(
                rec({
                  name: str('Task'),
                  subject: str('Task subject'),
                  status: str('Status', { enum: TASK_STATUS }),
                  attempts: int('Attempts'),
                  dispatchedAt: nullable(epochMs('Dispatched at')),
                  startedAt: nullable(epochMs('Started at')),
                  finishedAt: nullable(epochMs('Finished at')),
                  durationMs: nullable(int('Run time')),
                  error: errorRef,
                  worker: nullable(str('Worker instance')),
                  stage: int('Index of its stage'),
                }),
              ),
            }),
          ),
        },
        {
          example: {
            flowId: FLOW_ID,
            flow: 'insights',
            version: 1,
            status: 'succeeded',
            stage: 1,
            submittedAt: 1767607200000,
            startedAt: 1767607200002,
            deadlineAt: 1767607230000,
            finishedAt: 1767607200412,
            now: 1767607201000,
            endReason: null,
            errors: [],
            metadata: { source: 'crm' },
            idempotencyKey: 'order-123',
            priority: 5,
            traceId: null,
            traceUrl: null,
            callback: { deliveryId: `dlv_${FLOW_ID}`, status: 'delivered', attempts: 1, lastStatusCode: 200, deliveredAt: T1 },
            stages: [
              {
                name: 'datasets',
                onFailure: 'fail_flow',
                tasks: [
                  {
                    name: 'text',
                    subject: 'jetflow.task.dataset.text',
                    status: 'succeeded',
                    attempts: 1,
                    dispatchedAt: 1767607200003,
                    startedAt: 1767607200005,
                    finishedAt: 1767607200190,
                    durationMs: 185,
                    error: null,
                    worker: 'dataset-generator-1',
                    stage: 0,
                  },
                ],
              },
            ],
          },
        },
      ),
    },
    errors: ['not_found'],
  },
  'GET /v1/flows/:id/attempts': {
    operationId: 'getFlowAttempts',
    summary: "Each task's failed attempts and the callback's delivery attempts",
    description:
      "Retried attempts from the flow's task.retrying events and the callback's from callback.* events (the events stream keeps them an hour), then each failed task's final error from the flow state, which keeps only that last one.",
    tags: ['flows'],
    params: flowIdParam,
    ok: {
      200: rec(
        {
          flowId: str('Flow id'),
          tasks: map(
            'Failed attempts by task name, oldest first',
            arr(
              rec({
                attempt: int('Attempt number (0 when the event did not say)'),
                at: str('When it was reported', { format: 'date-time' }),
                outcome: str('retrying: retried after this attempt; failed: the final failure', { enum: ['retrying', 'failed'] }),
                code: str('Error code'),
                message: str('What went wrong'),
              }),
            ),
          ),
          callback: arr(
            rec({
              attempt: int('Attempt number'),
              at: str('When it was made', { format: 'date-time' }),
              outcome: str('Outcome', { enum: ['delivered', 'retrying', 'dead_lettered'] }),
              message: str('HTTP status or why it failed'),
            }),
            'Callback delivery attempts, oldest first',
          ),
          truncated: bool('More events exist than were read'),
        },
        {
          example: {
            flowId: FLOW_ID,
            tasks: {
              sentiment: [
                { attempt: 1, at: T0, outcome: 'retrying', code: 'retryable', message: 'model busy' },
                { attempt: 2, at: T1, outcome: 'failed', code: 'terminal', message: 'bad text' },
              ],
            },
            callback: [{ attempt: 1, at: T1, outcome: 'delivered', message: 'HTTP 200' }],
            truncated: false,
          },
        },
      ),
    },
    errors: ['not_found'],
  },
  'POST /v1/flows/:id/cancel': {
    operationId: 'cancelFlow',
    summary: 'Cancel a running flow',
    tags: ['flows'],
    params: flowIdParam,
    body: rec({ reason: str('Recorded in the flow (its first 500 characters)') }, { optional: ['reason'] }),
    bodyOptional: true,
    ok: { 202: rec({ flowId: str('Flow id'), status: str('cancelling', { enum: ['cancelling'] }) }, { example: { flowId: FLOW_ID, status: 'cancelling' } }) },
    errors: ['not_found', 'conflict', 'unavailable'],
  },
  'POST /v1/flows::cancel': {
    operationId: 'cancelFlows',
    summary: 'Cancel every flow a filter selects (or count them: dryRun)',
    description: `The filter is the query of GET /v1/flows as a JSON object (status only \`scheduled\` and/or \`running\`, default both). A dry run counts the matching flows (up to ${MAX_DRY_RUN_COUNT}; \`complete\` false past it) and lists the first ${MAX_IDS} ids. A real run cancels up to \`limit\` (at most ${MAX_BULK}) through the one-flow cancel, and answers counts; \`next\` non-null: send the same body with \`cursor: next\` for the rest. Running the same body again is safe: it finds only flows still running. A filter that names no field needs \`"all": true\` for a real run. A tenant key acts on its own tenant; an operator key may name \`filter.tenant\` (or \`*\`).`,
    tags: ['flows'],
    body: fromZod(BulkCancelSchema),
    ok: {
      200: rec(
        {
          dryRun: bool('Whether this was a dry run (nothing changed)'),
          matched: int('Dry run: flows that match. Real run: flows this call acted on'),
          complete: bool('Dry run: the count covers every matching flow'),
          flowIds: arr(str('Flow id'), `Dry run: the first ${MAX_IDS} matching flows`),
          flowIdsTruncated: bool(`Dry run: more flows match than flowIds lists`),
          cancelled: int('Real run: cancel requested (202 of the one-flow cancel)'),
          alreadyFinished: int('Real run: ended between the listing and the cancel'),
          failed: int('Real run: not cancelled (see failures); run again'),
          failures: arr(rec({ flowId: str('Flow id'), code: str('Error code'), message: str('Why') }), `Real run: the first ${MAX_IDS} failures`),
          next: nullable(str('Cursor: send the same body with cursor set to it for the rest; null when done')),
        },
        {
          optional: ['complete', 'flowIds', 'flowIdsTruncated', 'cancelled', 'alreadyFinished', 'failed', 'failures'],
          example: { dryRun: false, matched: 42, cancelled: 41, alreadyFinished: 1, failed: 0, failures: [], next: null },
        },
      ),
    },
    errors: ['invalid_argument', 'permission_denied'],
  },
  'POST /v1/subjects/:subject/pause': {
    operationId: 'pauseSubject',
    summary: 'Pause a task subject: its workers stop pulling it (operator key)',
    description:
      "Durable (a flag in KV jetflow_pauses that every worker of the subject watches). Its tasks wait in the stream, the flows' deadlines running; tasks already pulled finish. A pull open at the moment may still deliver one batch.",
    tags: ['operations'],
    params: rec({ subject: str('Task subject', { pattern: '^jetflow\\.task\\.[a-z0-9_-]+\\.[a-z0-9_-]+$' }) }),
    body: rec({ reason: str('Recorded with the flag') }, { optional: ['reason'] }),
    bodyOptional: true,
    ok: { 200: rec({ subject: str('Task subject'), paused: bool('true') }, { example: { subject: 'jetflow.task.analyst.sentiment', paused: true } }) },
    errors: ['invalid_argument', 'permission_denied', 'unavailable'],
  },
  'POST /v1/subjects/:subject/resume': {
    operationId: 'resumeSubject',
    summary: 'Resume a paused task subject (operator key)',
    tags: ['operations'],
    params: rec({ subject: str('Task subject', { pattern: '^jetflow\\.task\\.[a-z0-9_-]+\\.[a-z0-9_-]+$' }) }),
    body: rec({ reason: str('Ignored') }, { optional: ['reason'] }),
    bodyOptional: true,
    ok: { 200: rec({ subject: str('Task subject'), paused: bool('false') }, { example: { subject: 'jetflow.task.analyst.sentiment', paused: false } }) },
    errors: ['invalid_argument', 'permission_denied', 'unavailable'],
  },
  'POST /v1/flow-definitions/:name/pause': {
    operationId: 'pauseDefinition',
    summary: 'Pause a flow definition: its new flows are accepted and start paused (operator key)',
    description:
      'Durable (a flag in KV jetflow_pauses). Submissions are still accepted (202); each new flow of the definition starts paused (GET shows `paused: true`, nothing dispatched) until the definition is resumed. Flows already running go on.',
    tags: ['operations'],
    params: rec({ name: str('Flow definition name') }),
    body: rec({ reason: str('Recorded with the flag (its first 500 characters)') }, { optional: ['reason'] }),
    bodyOptional: true,
    ok: { 200: rec({ flow: str('Definition name'), paused: bool('true') }, { example: { flow: 'insights', paused: true } }) },
    errors: ['not_found', 'permission_denied', 'unavailable'],
  },
  'POST /v1/flow-definitions/:name/resume': {
    operationId: 'resumeDefinition',
    summary: 'Resume a flow definition and every flow it paused (operator key)',
    tags: ['operations'],
    params: rec({ name: str('Flow definition name') }),
    body: rec({ reason: str('Ignored') }, { optional: ['reason'] }),
    bodyOptional: true,
    ok: {
      200: rec(
        { flow: str('Definition name'), paused: bool('false'), resumedFlows: int('Flows that had started paused because of it, now resumed') },
        { example: { flow: 'insights', paused: false, resumedFlows: 3 } },
      ),
    },
    errors: ['not_found', 'permission_denied', 'unavailable'],
  },
  'POST /v1/flows/:id/pause': {
    operationId: 'pauseFlow',
    summary: 'Pause a flow: no new task is dispatched',
    description:
      'Durable (a flag in KV jetflow_pauses, then a control to the flow): tasks already running finish and their results are applied, but nothing more is dispatched until resume. The deadline and the signal timeouts run on. GET shows `paused: true` once applied.',
    tags: ['flows'],
    params: flowIdParam,
    body: rec({ reason: str('Recorded with the flag (its first 500 characters)') }, { optional: ['reason'] }),
    bodyOptional: true,
    ok: { 202: rec({ flowId: str('Flow id'), status: str('pausing', { enum: ['pausing'] }) }, { example: { flowId: FLOW_ID, status: 'pausing' } }) },
    errors: ['not_found', 'conflict', 'unavailable'],
  },
  'POST /v1/flows/:id/resume': {
    operationId: 'resumeFlow',
    summary: 'Resume a paused flow: the tasks that became ready meanwhile are dispatched',
    tags: ['flows'],
    params: flowIdParam,
    body: rec({ reason: str('Ignored') }, { optional: ['reason'] }),
    bodyOptional: true,
    ok: { 202: rec({ flowId: str('Flow id'), status: str('resuming', { enum: ['resuming'] }) }, { example: { flowId: FLOW_ID, status: 'resuming' } }) },
    errors: ['not_found', 'conflict', 'unavailable'],
  },
  'POST /v1/flows/:id/signals/:name': {
    operationId: 'signalFlow',
    summary: 'Send a signal to a flow',
    description:
      'The JSON body (any JSON value; none: null) becomes the output of the `waitFor` task of that signal name: the one waiting now, or the first to become ready (a signal sent early is kept; one for a name no task waits for is kept and listed). Recorded durably before the 202. `Idempotency-Key`: the same key twice is one signal (another payload under it: 409). At most 64 KiB of JSON, 100 signals per flow.',
    tags: ['flows'],
    params: rec({ id: str('Flow id', { pattern: FLOW_ID_RE.source }), name: str('Signal name', { pattern: '^[A-Za-z][A-Za-z0-9_-]{0,63}$' }) }),
    body: { description: 'The payload: any JSON value' },
    bodyOptional: true,
    ok: {
      202: rec(
        { flowId: str('Flow id'), signalId: str('The signal id (the Idempotency-Key, or one drawn)'), status: str('accepted', { enum: ['accepted'] }) },
        { example: { flowId: FLOW_ID, signalId: 'approval-42', status: 'accepted' } },
      ),
    },
    errors: ['invalid_argument', 'not_found', 'conflict', 'unavailable'],
  },
  'GET /v1/flows/:id/events': {
    operationId: 'watchFlow',
    summary: 'Follow one flow until it ends',
    tags: ['flows', 'events'],
    params: flowIdParam,
    ok: { 200: sse("The flow's lifecycle: `snapshot` (the flow as GET returns it) first and last, `event` in between", { snapshot: 'Flow', event: 'FlowEvent' }) },
    errors: ['not_found'],
  },
  'GET /v1/stream/events': {
    operationId: 'streamEvents',
    summary: 'Follow every flow of the tenant',
    description: 'Live only (a core NATS subscription): events from before the connection are not replayed.',
    tags: ['events'],
    querystring: rec({ flowId: str('Only this flow', { pattern: FLOW_ID_RE.source }), access_token: str('The API key, for EventSource clients') }, { optional: ['flowId', 'access_token'] }),
    ok: { 200: sse('Live flow events', { event: 'FlowEvent' }) },
    errors: ['invalid_argument'],
  },
  'GET /v1/deadletters': {
    operationId: 'listDeadLetters',
    summary: "List the tenant's dead letters",
    description:
      'Newest first. Visible to a tenant: those whose original subject, flow or body names it (plus, for JETFLOW_OPERATOR_TENANTS, those no tenant can be found for). A page may hold fewer than `limit`, even none, while older ones exist: follow `nextCursor` until it is null.',
    tags: ['dead letters'],
    querystring: fromZod(DeadLetterQuerySchema),
    ok: { 200: rec({ deadLetters: arr(deadLetter), nextCursor: nullable(str('Cursor of the next page')) }, { example: { deadLetters: [deadLetterExample], nextCursor: null } }) },
    errors: ['invalid_argument'],
  },
  'GET /v1/deadletters/:seq': {
    operationId: 'getDeadLetter',
    summary: 'A dead letter with its headers and body',
    tags: ['dead letters'],
    params: seqParam,
    ok: {
      200: rec(
        {
          ...deadLetterFields,
          originalStream: nullable(str('Stream the original message was in')),
          originalSeq: nullable(int('Its sequence there')),
          headers: map('All headers, each with its values', arr({ type: 'string' })),
          body: rec({ encoding: str('How `value` holds the body', { enum: ['json', 'text', 'base64'] }), value: { description: 'The body: parsed JSON, text, or base64' } }),
        },
        {
          example: {
            ...deadLetterExample,
            originalStream: 'JETFLOW_CALLBACKS',
            originalSeq: 17,
            headers: { 'Jetflow-Dlq-Code': ['callback_failed'], 'Nats-Msg-Id': [`${FLOW_ID}:callback`] },
            body: { encoding: 'base64', value: 'CgR0ZXN0' },
          },
        },
      ),
    },
    errors: ['invalid_argument', 'not_found'],
  },
  'POST /v1/deadletters/:seq/redrive': {
    operationId: 'redriveDeadLetter',
    summary: 'Redrive a dead letter',
    description:
      'Republishes the original body and headers (without the dead-letter ones) to the original subject with Nats-Msg-Id `redrive:<seq>`, then deletes the dead letter. Retrying is safe.',
    tags: ['dead letters'],
    params: seqParam,
    ok: {
      200: rec(
        {
          seq: int('The dead letter'),
          subject: str('Republished to'),
          msgId: str('redrive:<seq>'),
          stream: str('Stream that stored it'),
          streamSeq: int('Its sequence there'),
          duplicate: bool('Already redriven (deduplicated)'),
        },
        { example: { seq: 42, subject: 'jetflow.callback.default', msgId: 'redrive:42', stream: 'JETFLOW_CALLBACKS', streamSeq: 18, duplicate: false } },
      ),
    },
    errors: ['invalid_argument', 'not_found'],
  },
  'POST /v1/deadletters::redrive': {
    operationId: 'redriveDeadLetters',
    summary: 'Redrive every dead letter a filter selects (or count them: dryRun)',
    description: `The filter is the query of GET /v1/deadletters as a JSON object. A dry run counts the matching dead letters (up to ${MAX_DRY_RUN_COUNT}) and lists the first ${MAX_IDS} seqs. A real run redrives up to \`limit\` (at most ${MAX_BULK}), each as POST /v1/deadletters/{seq}/redrive does (Nats-Msg-Id \`redrive:<seq>\`, then the dead letter is deleted), so running it again redrives nothing twice; \`next\` non-null: send the same body with \`cursor: next\`. A filter that names no field needs \`"all": true\` for a real run.`,
    tags: ['dead letters'],
    body: fromZod(BulkRedriveSchema),
    ok: {
      200: rec(
        {
          dryRun: bool('Whether this was a dry run (nothing changed)'),
          matched: int('Dry run: dead letters that match. Real run: dead letters this call acted on'),
          complete: bool('Dry run: the count covers every matching dead letter'),
          seqs: arr(int('Dead-letter sequence'), `Dry run: the first ${MAX_IDS} matching`),
          seqsTruncated: bool('Dry run: more match than seqs lists'),
          redriven: int('Real run: republished to their original subject'),
          alreadyRedriven: int('Real run: redriven before (deduplicated by redrive:<seq>, or gone meanwhile)'),
          failed: int('Real run: not redriven (see failures)'),
          failures: arr(rec({ seq: int('Dead-letter sequence'), code: str('Error code'), message: str('Why') }), `Real run: the first ${MAX_IDS} failures`),
          next: nullable(str('Cursor: send the same body with cursor set to it for the rest; null when done')),
        },
        {
          optional: ['complete', 'seqs', 'seqsTruncated', 'redriven', 'alreadyRedriven', 'failed', 'failures'],
          example: { dryRun: true, matched: 3, complete: true, seqs: [44, 43, 42], seqsTruncated: false, next: null },
        },
      ),
    },
    errors: ['invalid_argument', 'permission_denied'],
  },
  'PUT /v1/flow-definitions/:name': {
    operationId: 'putFlowDefinition',
    summary: 'Register a flow definition version',
    description:
      'Stores a new version of a flow definition (the same JSON as an entry of JETFLOW_FLOWS_FILE; `name` absent or equal to the path) in KV jetflow_definitions. New submissions use the newest version of a name within a second on every replica; flows in flight finish on the version they started with. A version newer than every stored one: 201 `created`. The same version with the same content: 200 `unchanged` (nothing stored). The same version with other content, or an older version not stored: 409 `conflict` naming the versions. Operator keys only (a tenant key gets 403 `permission_denied`).',
    tags: ['operations'],
    params: rec({ name: str('Flow name', { pattern: '^[a-z][a-z0-9_-]{0,40}$' }) }),
    body: { ...fromZod(FlowDefSchema), description: 'One flow definition' },
    ok: {
      201: definitionRegistered('created'),
      200: definitionRegistered('unchanged'),
    },
    errors: ['invalid_argument', 'permission_denied', 'conflict'],
  },
  'GET /v1/flow-definitions': {
    operationId: 'listFlowDefinitions',
    summary: 'Flow definitions and their versions',
    description: 'Every stored flow definition (built-in, from JETFLOW_FLOWS_FILE, or registered through the API) with its versions, newest first. Operator keys only.',
    tags: ['operations'],
    ok: {
      200: rec(
        { flows: arr(rec({ name: str('Flow name'), newest: int('The version new submissions use'), versions: arr(definitionVersion) })) },
        { example: { flows: [{ name: 'insights', newest: 1, versions: [DEF_VERSION_EXAMPLE] }] } },
      ),
    },
    errors: ['permission_denied'],
  },
  'GET /v1/flow-definitions/:name': {
    operationId: 'getFlowDefinition',
    summary: 'The newest version of a flow definition',
    description: 'The version new submissions use, with the definition, and every stored version. Operator keys only.',
    tags: ['operations'],
    params: rec({ name: str('Flow name') }),
    ok: {
      200: rec(
        { name: str('Flow name'), ...definitionVersionProps, definition: map('The flow definition'), versions: arr(definitionVersion) },
        { example: { name: 'insights', ...DEF_VERSION_EXAMPLE, definition: { name: 'insights', version: 1, deadlineMs: 10000, stages: [] }, versions: [DEF_VERSION_EXAMPLE] } },
      ),
    },
    errors: ['invalid_argument', 'permission_denied', 'not_found'],
  },
  'GET /v1/flow-definitions/:name/versions/:version': {
    operationId: 'getFlowDefinitionVersion',
    summary: 'One stored version of a flow definition',
    description: 'Operator keys only.',
    tags: ['operations'],
    params: rec({ name: str('Flow name'), version: int('Version', { minimum: 1 }) }),
    ok: {
      200: rec(
        { name: str('Flow name'), ...definitionVersionProps, definition: map('The flow definition') },
        { example: { name: 'insights', ...DEF_VERSION_EXAMPLE, definition: { name: 'insights', version: 1, deadlineMs: 10000, stages: [] } } },
      ),
    },
    errors: ['invalid_argument', 'permission_denied', 'not_found'],
  },
  'GET /v1/routes': {
    operationId: 'routes',
    summary: 'Which consumer gets a task subject',
    description:
      'Routing is by subject hierarchy: one durable consumer per task subject on stream JETFLOW_TASKS. The subject may be a pattern with * and > wildcards. Operator keys only (a tenant key gets 403 `permission_denied`).',
    tags: ['operations'],
    querystring: rec({ subject: str('A task subject or pattern under jetflow.task (default jetflow.task.>)') }, { optional: ['subject'] }),
    ok: {
      200: rec(
        {
          query: str('The subject or pattern asked about'),
          routes: arr(
            rec({
              subject: str('Task subject'),
              stream: str('Stream holding the task messages'),
              consumer: str('Durable pull consumer (the KEDA scaling unit)'),
              servedBy: str('Service whose default subscription serves it'),
              usedBy: arr(rec({ flow: str('Flow'), version: int('Version'), stage: str('Stage'), task: str('Task') })),
            }),
          ),
        },
        {
          example: {
            query: 'jetflow.task.analyst.>',
            routes: [
              {
                subject: 'jetflow.task.analyst.sentiment',
                stream: 'JETFLOW_TASKS',
                consumer: 'task-analyst-sentiment',
                servedBy: 'analyst',
                usedBy: [{ flow: 'insights', version: 1, stage: 'analysis', task: 'sentiment' }],
              },
            ],
          },
        },
      ),
    },
    errors: ['invalid_argument', 'permission_denied'],
  },
  'GET /v1/consumers': {
    operationId: 'consumers',
    summary: 'JetStream consumers of the Jetflow streams',
    description:
      "Lag and load per consumer. deliveredPerSec is estimated from the previous call at least a second earlier (null on the first). Operator keys only: it shows every tenant's load (a tenant key gets 403 `permission_denied`).",
    tags: ['operations'],
    ok: {
      200: rec(
        {
          sampledAt: str('When read', { format: 'date-time' }),
          streams: arr(rec({ name: str('Stream'), messages: int('Messages stored'), bytes: int('Bytes stored'), consumers: int('Durable consumers') })),
          consumers: arr(
            rec({
              stream: str('Stream'),
              name: str('Durable name'),
              filterSubject: nullable(str('Filter subject')),
              numPending: int('Not yet delivered (the lag)'),
              numAckPending: int('Delivered, not yet acknowledged'),
              numRedelivered: int('Redelivered, not yet acknowledged'),
              numWaiting: int('Pull requests waiting (idle workers)'),
              delivered: int('Deliveries so far'),
              maxAckPending: nullable(int('Limit on ack-pending')),
              lastActive: iso('When it last delivered (null on servers that do not report it)'),
              deliveredPerSec: nullable({ type: 'number', description: 'Throughput estimate' }),
            }),
          ),
        },
        {
          example: {
            sampledAt: T1,
            streams: [{ name: 'JETFLOW_TASKS', messages: 0, bytes: 0, consumers: 6 }],
            consumers: [
              {
                stream: 'JETFLOW_TASKS',
                name: 'task-analyst-sentiment',
                filterSubject: 'jetflow.task.analyst.sentiment',
                numPending: 0,
                numAckPending: 1,
                numRedelivered: 0,
                numWaiting: 2,
                delivered: 1200,
                maxAckPending: 1000,
                lastActive: T1,
                deliveredPerSec: 31.5,
              },
            ],
          },
        },
      ),
    },
    errors: ['permission_denied'],
  },
  'GET /v1/workers': {
    operationId: 'workers',
    summary: 'The worker registry: who serves which task subject, live',
    description:
      'Every worker instance announced in KV jetflow_workers (built-in services, @jetflow/worker, other doors), `live` while it renews its entry and `stale` after 3 of its intervals without a renewal (a killed worker; its entry expires 30 s after the last renewal). Per task subject: live instances, their slots and busy slots, and the tasks waiting in its consumer. Operator keys only (a tenant key gets 403 `permission_denied`).',
    tags: ['operations'],
    ok: {
      200: rec(
        {
          sampledAt: str('When read', { format: 'date-time' }),
          staleAfterIntervals: int('Intervals without a renewal after which an instance is stale'),
          workers: arr(
            rec({
              id: str('Instance id'),
              name: str('Worker name (its registry key prefix: dataset-generator, analyst, or the <name> of a worker:<name> identity)'),
              service: str('What runs it: a built-in service, sdk (@jetflow/worker), or a door'),
              version: str('Its version'),
              host: str('Host name'),
              pid: int('Process id'),
              subjects: arr(str('Task subject')),
              concurrency: int('Slots: tasks it runs at once across its subjects'),
              busy: int('Slots in use at its last announcement'),
              startedAt: str('Started at', { format: 'date-time' }),
              heartbeatAt: str('Last announcement', { format: 'date-time' }),
              intervalMs: int('Its re-announce interval'),
              status: str('live, or stale (not renewed within staleAfterIntervals of its interval)', { enum: ['live', 'stale'] }),
            }),
          ),
          subjects: arr(
            rec({
              subject: str('Task subject (announced, or named by a flow definition)'),
              instances: int('Live instances serving it'),
              slots: int('Their slots (shared with their other subjects)'),
              busy: int('Their busy slots'),
              pending: nullable(int('Tasks waiting in its consumer (num_pending); null when unknown')),
            }),
          ),
        },
        {
          example: {
            sampledAt: T1,
            staleAfterIntervals: 3,
            workers: [
              {
                id: 'analyst-host-41',
                name: 'analyst',
                service: 'analyst',
                version: '0.1.0',
                host: 'host',
                pid: 41,
                subjects: ['jetflow.task.analyst.sentiment'],
                concurrency: 2,
                busy: 1,
                startedAt: T0,
                heartbeatAt: T1,
                intervalMs: 3000,
                status: 'live',
              },
            ],
            subjects: [{ subject: 'jetflow.task.analyst.sentiment', instances: 1, slots: 2, busy: 1, pending: 0 }],
          },
        },
      ),
    },
    errors: ['permission_denied'],
  },
};

const errorBody = (codes: ErrorCode[]): Schema =>
  rec({
    error: rec({
      code: str('Stable error code', { enum: codes }),
      message: str('What is wrong, naming the field or resource'),
      details: arr(rec({ path: str('Field path'), message: str('What is wrong with it') })),
    }),
  });

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
