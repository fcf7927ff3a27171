import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, headers as natsHeaders } from 'nats';
import { create, toBinary } from '@bufbuild/protobuf';
import { SubmitFlowRequestSchema } from '@jetflow/proto';
import { deriveFlowId } from '@jetflow/flows';
import { startCallbackReceiver, startJetflow, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

async function waitForStatus(j: JetflowUnderTest, flowId: string, statuses: string[], timeoutMs = 20_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await j.api(`/v1/flows/${flowId}`);
    if (r.status === 200) {
      const body = (await r.json()) as { status: string };
      if (statuses.includes(body.status))
        return body as Record<string, unknown> & { status: string; stages: Array<{ tasks: Array<{ name: string; status: string; attempts: number; durationMs: number | null }> }> };
    }
    if (Date.now() > until) throw new Error(`flow ${flowId} did not reach ${statuses.join('|')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function assertReport(body: Record<string, unknown>, flowId: string) {
  assert.equal(body.flowId, flowId);
  assert.equal(body.status, 'succeeded');
  assert.equal(body.flow, 'insights');
  assert.equal(body.tenant, 'default');
  const results = body.results as Record<string, unknown>;
  assert.deepEqual(Object.keys(results).sort(), ['anomaly', 'keywords', 'sentiment']);
  for (const [name, r] of Object.entries(results)) assert.ok(r && typeof r === 'object' && !('error' in r), `analyst ${name} has a result`);
  assert.deepEqual(Object.keys(body.datasets as object).sort(), ['embeddings', 'features', 'text']);
  assert.deepEqual(body.errors, []);
  assert.ok(typeof body.durationMs === 'number' && body.durationMs >= 0);
}

describe('a flow through each front door', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  before(async () => {
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    j = await startJetflow();
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  test('HTTP: POST /v1/flows → one signed callback with all analyst results; GET shows every task succeeded', async () => {
    const res = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'http-1' }) });
    assert.equal(res.status, 202);
    const { flowId, status } = (await res.json()) as { flowId: string; status: string };
    assert.equal(status, 'accepted');
    assert.equal(flowId, deriveFlowId('default', 'http-1'));
    await cb.waitForFlows([flowId]);
    const state = await waitForStatus(j, flowId, ['succeeded']);
    await new Promise((r) => setTimeout(r, 300));
    const got = cb.byFlow(flowId);
    assert.equal(got.length, 1, 'exactly one callback');
    assert.equal(got[0]!.signatureValid, true, 'signature verifies with the tenant secret');
    assert.equal(got[0]!.headers['jetflow-delivery-id'], `dlv_${flowId}`);
    assertReport(got[0]!.body, flowId);
    assert.deepEqual(got[0]!.body.metadata, { source: 'test' });
    assert.equal(got[0]!.body.idempotencyKey, 'http-1');
    const tasks = state.stages.flatMap((s) => s.tasks);
    // insights v2: the mapped prepare and score, the three datasets, the three analyses.
    assert.equal(tasks.length, 8);
    for (const t of tasks) {
      assert.equal(t.status, 'succeeded', `${t.name} succeeded`);
      assert.equal(t.attempts, 1);
      assert.ok(typeof t.durationMs === 'number');
    }
  });

  test('gRPC: SubmitFlow → one callback; GetFlow shows it succeeded', async () => {
    const client = ingestClient(j.grpc, j.apiKey);
    try {
      const s = sampleSubmission(cb.url);
      const r = await client.submit({ flow: 'insights', input: s.input, callbackUrl: cb.url, idempotencyKey: 'grpc-1', metadata: { source: 'grpc' } });
      assert.equal(r.status, 'accepted');
      assert.equal(r.flowId, deriveFlowId('default', 'grpc-1'));
      await cb.waitForFlows([r.flowId]);
      await waitForStatus(j, r.flowId, ['succeeded']);
      const got = await client.get(r.flowId);
      assert.equal((got.flow as { status: string }).status, 'succeeded');
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(cb.byFlow(r.flowId).length, 1);
      assertReport(cb.byFlow(r.flowId)[0]!.body, r.flowId);
      assert.deepEqual(cb.byFlow(r.flowId)[0]!.body.metadata, { source: 'grpc' });
    } finally {
      client.close();
    }
  });

  test('NATS: publish to jetflow.ingest.default.insights → flow id derived from Nats-Msg-Id, one callback', async () => {
    // The harness runs NATS with identities unless JETFLOW_TEST_NATS_AUTH=0: anonymous is refused, and the tenant publishes as itself.
    assert.equal(!!j.natsAuth, process.env.JETFLOW_TEST_NATS_AUTH !== '0', 'identities by default');
    if (j.natsAuth) await assert.rejects(connect({ servers: j.natsUrls, reconnect: false, timeout: 2_000 }), (e: Error & { code?: string }) => e.code === 'AUTHORIZATION_VIOLATION');
    const tenant = j.natsAuth ? await j.natsAuth.connect('tenant:default', j.natsUrls) : j.nc;
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'nats-1');
    const ack = await tenant.jetstream().publish('jetflow.ingest.default.insights', JSON.stringify(sampleSubmission(cb.url)), { headers: h });
    if (tenant !== j.nc) await tenant.close();
    assert.equal(ack.stream, 'JETFLOW_INGEST');
    const flowId = deriveFlowId('default', 'nats-1');
    await cb.waitForFlows([flowId]);
    await waitForStatus(j, flowId, ['succeeded']);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(cb.byFlow(flowId).length, 1);
    assertReport(cb.byFlow(flowId)[0]!.body, flowId);
  });

  test('NATS: a binary SubmitFlowRequest (Content-Type application/protobuf) starts the same flow', async () => {
    const s = sampleSubmission(cb.url);
    const req = create(SubmitFlowRequestSchema, { flow: 'insights', input: s.input, callbackUrl: cb.url, metadata: { source: 'protobuf' } });
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'nats-proto-1');
    h.set('Content-Type', 'application/protobuf');
    await j.nc.jetstream().publish('jetflow.ingest.default.insights', toBinary(SubmitFlowRequestSchema, req), { headers: h });
    const flowId = deriveFlowId('default', 'nats-proto-1');
    await cb.waitForFlows([flowId]);
    assertReport(cb.byFlow(flowId)[0]!.body, flowId);
    assert.deepEqual(cb.byFlow(flowId)[0]!.body.metadata, { source: 'protobuf' });
  });

  test('NATS: without Nats-Msg-Id the flow id is n<stream sequence> from the PubAck', async () => {
    const ack = await j.nc.jetstream().publish('jetflow.ingest.default.insights', JSON.stringify(sampleSubmission(cb.url)));
    const flowId = `n${ack.seq}`;
    await cb.waitForFlows([flowId]);
    assertReport(cb.byFlow(flowId)[0]!.body, flowId);
  });

  test('GET /v1/routes answers which consumer gets a task, for a subject or a wildcard', async () => {
    const one = (await (await j.api('/v1/routes?subject=jetflow.task.analyst.keywords')).json()) as { routes: Array<{ consumer: string; stream: string; servedBy: string }> };
    assert.deepEqual(
      one.routes.map((r) => [r.stream, r.consumer, r.servedBy]),
      [['JETFLOW_TASKS', 'task-analyst-keywords', 'analyst']],
    );
    const all = (await (await j.api('/v1/routes?subject=jetflow.task.dataset.*')).json()) as { routes: Array<{ consumer: string }> };
    // text, features, embeddings and insights v2's prepare.
    assert.equal(all.routes.length, 4);
    // The consumers it names are the ones that exist on the server.
    const jsm = await j.nc.jetstreamManager();
    for (const r of all.routes) assert.equal((await jsm.consumers.info('JETFLOW_TASKS', r.consumer)).name, r.consumer);
    assert.equal((await j.api('/v1/routes?subject=orders.new')).status, 400);
  });

  test('gRPC WatchFlow and SSE stream a flow to its end', async () => {
    const res = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url) });
    const { flowId } = (await res.json()) as { flowId: string };
    // SSE
    const sse = await j.api(`/v1/flows/${flowId}/events`);
    assert.equal(sse.headers.get('content-type'), 'text/event-stream');
    const text = await sse.text();
    assert.match(text, /event: snapshot/);
    assert.match(text, /"status":"succeeded"/);
    // gRPC watch of a finished flow returns its snapshot and ends.
    const client = ingestClient(j.grpc, j.apiKey);
    const types: string[] = [];
    for await (const ev of client.watch(flowId)) types.push(`${ev.type}:${ev.status}`);
    client.close();
    assert.ok(types.includes('snapshot:succeeded'), types.join(','));
  });

  test('a flow accepted while no orchestrator runs: GET says accepted, SSE and WatchFlow open and follow it to its end, cancel says retry', async () => {
    await j.stack.kill('orchestrator', 0, 'SIGTERM');
    const res = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url) });
    assert.equal(res.status, 202);
    const { flowId } = (await res.json()) as { flowId: string };
    const got = (await (await j.api(`/v1/flows/${flowId}`)).json()) as { status: string };
    assert.equal(got.status, 'accepted');
    const cancel = await j.api(`/v1/flows/${flowId}/cancel`, { method: 'POST', json: {} });
    assert.equal(cancel.status, 503);
    assert.match(((await cancel.json()) as { error: { message: string } }).error.message, /accepted but not started yet; retry/);
    const sse = await j.api(`/v1/flows/${flowId}/events`);
    assert.equal(sse.headers.get('content-type'), 'text/event-stream');
    const types: string[] = [];
    const watching = (async () => {
      for await (const ev of ingestClient(j.grpc, j.apiKey).watch(flowId)) types.push(`${ev.type}:${ev.status}`);
    })();
    await new Promise((r) => setTimeout(r, 300));
    j.stack.restart('orchestrator', 0);
    const text = await sse.text();
    assert.match(text, /^(?:: connected\n\n)?event: snapshot\ndata: .*"status":"accepted"/);
    assert.match(text, /"type":"flow.completed"/);
    assert.match(text, /"status":"succeeded"/);
    await watching;
    assert.equal(types[0], 'snapshot:accepted');
    assert.ok(types.includes('flow.completed:succeeded'), types.join(' '));
    await cb.waitForFlows([flowId]);
    assert.equal(cb.byFlow(flowId).length, 1);
  });
});
