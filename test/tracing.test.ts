import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { headers as natsHeaders } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { SubmitFlowRequestSchema, type SubmitFlowResponse } from '@jetflow/proto';
import { ingestServiceDefinition } from '../services/ingest/src/adapters/grpc.js';
import {
  SPAN_KIND,
  sampleSubmission,
  startCallbackReceiver,
  startJetflow,
  startOtlpReceiver,
  type CallbackReceiver,
  type JetflowUnderTest,
  type OtlpReceiver,
  type ReceivedSpan,
} from '@jetflow/testing';

// insights v2: prepare and score (level 0, mapped: `<flow>:0:<task>:<chunk>`), then the datasets (level 1), then the analyses (level 2).
const TASKS = [
  { name: 'prepare', subject: 'jetflow.task.dataset.prepare', stage: 0, chunk: 0, service: 'dataset-generator' },
  { name: 'score', subject: 'jetflow.task.analyst.score', stage: 0, chunk: 0, service: 'analyst' },
  { name: 'text', subject: 'jetflow.task.dataset.text', stage: 1, service: 'dataset-generator' },
  { name: 'features', subject: 'jetflow.task.dataset.features', stage: 1, service: 'dataset-generator' },
  { name: 'embeddings', subject: 'jetflow.task.dataset.embeddings', stage: 1, service: 'dataset-generator' },
  { name: 'sentiment', subject: 'jetflow.task.analyst.sentiment', stage: 2, service: 'analyst' },
  { name: 'anomaly', subject: 'jetflow.task.analyst.anomaly', stage: 2, service: 'analyst' },
  { name: 'keywords', subject: 'jetflow.task.analyst.keywords', stage: 2, service: 'analyst' },
];
const taskMsgId = (flowId: string, t: (typeof TASKS)[number]) => `${flowId}:${t.stage}:${t.name}${'chunk' in t ? `:${t.chunk}` : ''}`;

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** The orchestrator's start span: jetflow.submit for HTTP and gRPC (the ingest service's subject), jetflow.ingest for the NATS door. */
const START = /^process jetflow\.(ingest|submit)$/;

/**
 * Waits for the whole trace of a flow: its callback delivery, the start span, every task attempt with its
 * result publish and the orchestrator's span of it, the door span, and a closed tree (every span's parent
 * has arrived, but the door's). Each service exports its spans in its own batches, so spans arrive in any
 * order across processes: a count alone lets the assertions read a trace whose last links are on their way.
 * A span whose parent never comes (context lost) fails here, naming it.
 */
async function flowTrace(otlp: OtlpReceiver, flowId: string, isDoor: (s: ReceivedSpan) => boolean): Promise<ReceivedSpan[]> {
  const cbSpan = await otlp.waitFor(
    (r) => r.spans.find((s) => s.name === 'process jetflow.callback' && s.attributes['jetflow.flow_id'] === flowId),
    30_000,
    `the callback span of ${flowId}`,
  );
  const missing = (t: ReceivedSpan[]): string[] => {
    const ids = new Set(t.map((s) => s.spanId));
    const gaps: string[] = [];
    if (!t.some(isDoor)) gaps.push('the door span');
    if (!t.some((s) => START.test(s.name))) gaps.push('the start span');
    for (const task of TASKS) {
      const w = t.find((s) => s.kind === SPAN_KIND.consumer && s.attributes['jetflow.task'] === task.name);
      const pub = w && t.find((s) => s.parentSpanId === w.spanId && s.name === 'publish jetflow.result');
      const proc = pub && t.find((s) => s.parentSpanId === pub.spanId && s.name === 'process jetflow.result');
      if (!proc) gaps.push(`${task.name}: ${!w ? 'its attempt span' : !pub ? 'its result publish' : "the orchestrator's span of its result"}`);
    }
    for (const s of t) if (!isDoor(s) && !ids.has(s.parentSpanId)) gaps.push(`the parent ${s.parentSpanId || '(none)'} of ${s.service} "${s.name}"`);
    return gaps;
  };
  try {
    return await otlp.waitFor(
      (r) => {
        const t = r.trace(cbSpan.traceId);
        return missing(t).length === 0 && t;
      },
      20_000,
      `every span of ${flowId}`,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; still missing: ${missing(otlp.trace(cbSpan.traceId)).join('; ')}`);
  }
}

/**
 * The shape every flow's trace must have, whichever door it came through. `door` is the span the
 * trace starts at in Jetflow; `doorParent` the caller's span id it continues ('' when it is the root).
 */
function assertFlowTrace(otlp: OtlpReceiver, trace: ReceivedSpan[], flowId: string, door: ReceivedSpan, doorParent: string) {
  const traceId = door.traceId;
  const byId = new Map(trace.map((s) => [s.spanId, s]));
  const parentOf = (s: ReceivedSpan) => byId.get(s.parentSpanId);

  // One trace per flow: every span about this flow, from any process, is in it.
  const aboutFlow = otlp.spans.filter((s) => s.attributes['jetflow.flow_id'] === flowId);
  assert.ok(aboutFlow.length >= 20, `${aboutFlow.length} spans name the flow`);
  for (const s of aboutFlow) assert.equal(s.traceId, traceId, `${s.service} ${s.name} is in the flow's trace`);

  // A single tree: the door span's parent is the caller's (or none), and everything descends from it.
  assert.equal(door.parentSpanId, doorParent, 'the door span continues the caller');
  for (const s of trace) {
    if (s === door) continue;
    let cur: ReceivedSpan | undefined = s;
    for (let i = 0; cur && cur !== door && i < 50; i++) cur = parentOf(cur);
    assert.equal(cur, door, `${s.service} "${s.name}" descends from the door span`);
  }

  const services = new Set(trace.map((s) => s.service));
  for (const svc of ['orchestrator', 'dataset-generator', 'analyst']) assert.ok(services.has(svc), `spans from ${svc} (got ${[...services].join(', ')})`);

  // The orchestrator starts the flow under the door.
  const start = trace.filter((s) => START.test(s.name));
  assert.equal(start.length, 1, 'one start span');
  assert.equal(start[0]!.service, 'orchestrator');
  assert.equal(start[0]!.kind, SPAN_KIND.consumer);
  assert.ok(start[0]!.events.includes('flow.started'), 'the start span records flow.started');

  // Each task attempt: a CONSUMER span in its worker, child of the orchestrator's PRODUCER span of that task message.
  for (const t of TASKS) {
    const spans = trace.filter((s) => s.kind === SPAN_KIND.consumer && s.attributes['jetflow.task'] === t.name);
    assert.equal(spans.length, 1, `one attempt span of ${t.name}`);
    const w = spans[0]!;
    assert.equal(w.service, t.service);
    assert.equal(w.name, `process ${t.subject}`);
    assert.equal(w.attributes['messaging.system'], 'nats');
    assert.equal(w.attributes['messaging.destination.name'], t.subject);
    assert.equal(w.attributes['messaging.operation.type'], 'process');
    assert.equal(w.attributes['messaging.message.id'], taskMsgId(flowId, t));
    assert.equal(w.attributes['jetflow.flow_id'], flowId);
    assert.equal(w.attributes['jetflow.tenant'], 'default');
    assert.equal(w.attributes['jetflow.attempt'], 1);
    assert.equal(w.attributes['jetflow.outcome'], 'succeeded');
    const p = parentOf(w)!;
    assert.equal(p.service, 'orchestrator');
    assert.equal(p.kind, SPAN_KIND.producer);
    assert.equal(p.attributes['messaging.operation.type'], 'send', 'the current convention (not the deprecated "publish")');
    assert.equal(p.attributes['messaging.operation.name'], 'publish');
    assert.equal(p.attributes['messaging.message.id'], taskMsgId(flowId, t));
    // Its result goes back to the orchestrator as a child of the attempt.
    const resultPub = trace.find((s) => s.parentSpanId === w.spanId && s.name === 'publish jetflow.result');
    assert.ok(resultPub, `${t.name} publishes its result inside its span`);
    const resultProc = trace.find((s) => s.parentSpanId === resultPub.spanId);
    assert.ok(resultProc && resultProc.service === 'orchestrator' && resultProc.name === 'process jetflow.result', `the orchestrator's span for the ${t.name} result`);
  }
  assert.ok(
    trace.some((s) => s.name === 'process jetflow.result' && s.events.includes('flow.completed')),
    'the transition that ended the flow records flow.completed',
  );

  // The callback: published by the orchestrator, delivered under it, the POST a CLIENT span of the delivery.
  const cb = trace.filter((s) => s.name === 'process jetflow.callback');
  assert.equal(cb.length, 1, 'one delivery span');
  assert.equal(cb[0]!.attributes['jetflow.outcome'], 'delivered');
  assert.equal(cb[0]!.attributes['http.response.status_code'], 200);
  assert.equal(parentOf(cb[0]!)?.name, 'publish jetflow.callback');
  // (The other CLIENT span under it is the write of the delivery record to KV.)
  const posts = trace.filter((s) => s.parentSpanId === cb[0]!.spanId && s.kind === SPAN_KIND.client && s.name === 'POST');
  assert.equal(posts.length, 1, 'one HTTP client span for the POST');
  const post = posts[0]!;
  assert.equal(post.name, 'POST');
  assert.equal(post.service, 'orchestrator');
  assert.equal(post.attributes['http.request.method'], 'POST');
  assert.equal(post.attributes['http.response.status_code'], 200);
  assert.equal(post.attributes['server.address'], '127.0.0.1');
  assert.equal(typeof post.attributes['server.port'], 'number');
  assert.equal(post.attributes['url.scheme'], 'http');
  assert.match(String(post.attributes['url.full']), /^http:\/\/127\.0\.0\.1:\d+\//);
  assert.notEqual(post.status.code, 2, 'a 200 is not an error');
  // The flow's first span in Jetflow (the root, or the caller's child) names the flow, whichever door it came through.
  assert.equal(door.attributes['jetflow.flow_id'], flowId, `the door span ${door.name} names the flow`);
  return { callbackSpan: post, start: start[0]! };
}

describe('one trace per flow, through each front door', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let otlp: OtlpReceiver;
  before(async () => {
    otlp = await startOtlpReceiver();
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    j = await startJetflow({
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_BSP_SCHEDULE_DELAY: '100',
        JETFLOW_FLOWS_FILE: resolve('test/fixtures/chaos-flows.json'),
        JETFLOW_TEST_PLUGINS: '1',
      },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
    await otlp?.close();
  });

  test('HTTP with a caller traceparent: the caller → POST /v1/flows → orchestrator → every task → every result → the callback, and the receiver continues it', async () => {
    const clientTrace = hex(16);
    const clientSpan = hex(8);
    const res = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url), headers: { traceparent: `00-${clientTrace}-${clientSpan}-01` } });
    assert.equal(res.status, 202);
    const { flowId } = (await res.json()) as { flowId: string };
    await cb.waitForFlows([flowId]);
    const trace = await flowTrace(otlp, flowId, (s) => s.name === 'POST /v1/flows');
    const door = trace.find((s) => s.name === 'POST /v1/flows')!;
    assert.ok(door, 'the HTTP request span');
    assert.equal(door.traceId, clientTrace, "the caller's trace");
    assert.equal(door.service, 'ingest');
    assert.equal(door.kind, SPAN_KIND.server);
    assert.equal(door.attributes['http.response.status_code'], 202);
    assert.equal(door.attributes['url.path'], '/v1/flows');
    assert.equal(door.attributes['url.scheme'], 'http');
    assert.equal(door.attributes['http.request.method'], 'POST');
    assert.equal(door.attributes['jetflow.flow_id'], flowId);
    assert.equal(door.attributes['jetflow.tenant'], 'default');
    const { callbackSpan, start } = assertFlowTrace(otlp, trace, flowId, door, clientSpan);
    const publish = trace.find((s) => s.spanId === start.parentSpanId)!;
    assert.equal(publish.name, 'publish jetflow.submit', 'ingest publishes the validated submission where no tenant may');
    assert.equal(publish.service, 'ingest');
    assert.equal(publish.parentSpanId, door.spanId);
    assert.equal(cb.byFlow(flowId)[0]!.headers.traceparent, `00-${clientTrace}-${callbackSpan.spanId}-01`, 'the receiver gets the POST span as parent');
    const timeline = (await (await j.api(`/v1/flows/${flowId}/timeline`)).json()) as { traceId: string | null };
    assert.equal(timeline.traceId, clientTrace);
  });

  test('gRPC SubmitFlow without a traceparent: its SERVER span is the root of the flow', async () => {
    const Ctor = grpc.makeGenericClientConstructor(ingestServiceDefinition(), 'IngestService');
    const client = new Ctor(j.grpc, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${j.apiKey}`);
    const s = sampleSubmission(cb.url);
    const req = create(SubmitFlowRequestSchema, { flow: 'insights', input: s.input, callbackUrl: cb.url, idempotencyKey: 'trace-grpc-1' });
    const r = await new Promise<SubmitFlowResponse>((resolve, reject) =>
      (client as unknown as { submitFlow: (q: unknown, m: grpc.Metadata, f: (e: Error | null, v: SubmitFlowResponse) => void) => void }).submitFlow(req, md, (e, v) =>
        e ? reject(e) : resolve(v),
      ),
    );
    client.close();
    assert.equal(r.flowId, deriveFlowId('default', 'trace-grpc-1'));
    await cb.waitForFlows([r.flowId]);
    const trace = await flowTrace(otlp, r.flowId, (x) => x.name === 'jetflow.v1.IngestService/SubmitFlow');
    const door = trace.find((x) => x.name === 'jetflow.v1.IngestService/SubmitFlow')!;
    assert.ok(door, 'the gRPC call span');
    assert.equal(door.service, 'ingest');
    assert.equal(door.kind, SPAN_KIND.server);
    assert.equal(door.attributes['rpc.system'], 'grpc');
    assert.equal(door.attributes['rpc.grpc.status_code'], 0);
    assert.equal(door.attributes['jetflow.flow_id'], r.flowId);
    assertFlowTrace(otlp, trace, r.flowId, door, '');
    assert.equal(trace.filter((x) => !x.parentSpanId).length, 1, 'exactly one root');
  });

  test('NATS with a traceparent header: the orchestrator start span continues the publisher', async () => {
    const clientTrace = hex(16);
    const clientSpan = hex(8);
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'trace-nats-1');
    h.set('traceparent', `00-${clientTrace}-${clientSpan}-01`);
    await j.nc.jetstream().publish('jetflow.ingest.default.insights', JSON.stringify(sampleSubmission(cb.url)), { headers: h });
    const flowId = deriveFlowId('default', 'trace-nats-1');
    await cb.waitForFlows([flowId]);
    const trace = await flowTrace(otlp, flowId, (s) => s.name === 'process jetflow.ingest');
    const door = trace.find((s) => s.name === 'process jetflow.ingest')!;
    assert.equal(door.traceId, clientTrace);
    assert.equal(door.attributes['jetflow.tenant'], 'default');
    assert.equal(door.attributes['messaging.message.id'], 'trace-nats-1');
    assertFlowTrace(otlp, trace, flowId, door, clientSpan);
    assert.ok(!trace.some((s) => s.service === 'ingest'), 'the ingest service never saw it');
    const timeline = (await (await j.api(`/v1/flows/${flowId}/timeline`)).json()) as { traceId: string | null };
    assert.equal(timeline.traceId, clientTrace);
  });

  test('NATS without a traceparent: the start span roots a new trace that the whole flow shares', async () => {
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'trace-nats-2');
    await j.nc.jetstream().publish('jetflow.ingest.default.insights', JSON.stringify(sampleSubmission(cb.url)), { headers: h });
    const flowId = deriveFlowId('default', 'trace-nats-2');
    await cb.waitForFlows([flowId]);
    const trace = await flowTrace(otlp, flowId, (s) => s.name === 'process jetflow.ingest');
    const door = trace.find((s) => s.name === 'process jetflow.ingest')!;
    assertFlowTrace(otlp, trace, flowId, door, '');
    const timeline = (await (await j.api(`/v1/flows/${flowId}/timeline`)).json()) as { traceId: string | null };
    assert.equal(timeline.traceId, door.traceId, 'the flow records the trace it started');
    assert.equal(otlp.rejected, 0, 'every export was OTLP/JSON');
  });

  test('a failed task attempt: its span has status ERROR with the exception recorded, retried or dead-lettered', async () => {
    const res = await j.api('/v1/flows', { method: 'POST', json: { flow: 'failfast', input: {}, callbackUrl: cb.url } });
    assert.equal(res.status, 202);
    const { flowId } = (await res.json()) as { flowId: string };
    await cb.waitForFlows([flowId], 30_000);
    assert.equal(cb.byFlow(flowId)[0]!.body.status, 'failed');
    const attempts = await otlp.waitFor(
      (r) => {
        const a = r.spans.filter((s) => s.kind === SPAN_KIND.consumer && s.attributes['jetflow.flow_id'] === flowId && s.attributes['jetflow.task'] === 'doomed');
        return a.length >= 2 && a;
      },
      15_000,
      'the two attempts of the failing task (maxAttempts 2)',
    );
    attempts.sort((a, b) => Number(a.attributes['jetflow.attempt']) - Number(b.attributes['jetflow.attempt']));
    assert.deepEqual(
      attempts.map((s) => [s.attributes['jetflow.attempt'], s.attributes['jetflow.outcome']]),
      [
        [1, 'retried'],
        [2, 'dead_lettered'],
      ],
    );
    for (const s of attempts) {
      assert.equal(s.status.code, 2, `attempt ${String(s.attributes['jetflow.attempt'])} has status ERROR`);
      assert.match(s.status.message ?? '', /chaos: doomed always fails/);
      assert.ok(s.events.includes('exception'), `attempt ${String(s.attributes['jetflow.attempt'])} records the exception`);
    }
    // A succeeded attempt of the same flow is not an error.
    const fine = otlp.spans.find((s) => s.kind === SPAN_KIND.consumer && s.attributes['jetflow.flow_id'] === flowId && s.attributes['jetflow.task'] === 'fine');
    assert.ok(fine && fine.status.code !== 2);
  });
});
