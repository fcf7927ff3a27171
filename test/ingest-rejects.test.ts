import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { request } from 'node:http';
import { headers as natsHeaders } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { jetflowPerSuite, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

/** Counts what would betray a created flow: flow states in KV and messages ever accepted by the ingest stream. */
async function flowFootprint(j: JetflowUnderTest) {
  const jsm = await j.nc.jetstreamManager();
  const ingest = await jsm.streams.info('JETFLOW_INGEST');
  const kv = await j.nc.jetstream().views.kv('jetflow_flows');
  const keys: string[] = [];
  for await (const k of await kv.keys()) if (!k.endsWith('.callback')) keys.push(k);
  return { accepted: ingest.state.last_seq, flows: keys.length };
}

/**
 * An oversized upload as a careful client sends it: the headers announce the full length, a first chunk
 * follows, and the client waits for the answer before sending the rest (the server answers 413 from the
 * Content-Length alone). Writing everything at once races the server closing the socket (EPIPE).
 */
function rawPost(j: JetflowUnderTest, body: string): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${j.http}/v1/flows`,
      { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${j.apiKey}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0 }));
          req.destroy();
        });
      },
    );
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    req.write(body.slice(0, 1024));
  });
}

type ErrBody = { error: { code: string; message: string; details: Array<{ path: string; message: string }> } };

describe('bad input is rejected with errors that name the field, and creates no flow', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s));

  const post = (body: string | object, headers: Record<string, string> = {}) =>
    j.api('/v1/flows', { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });

  test('HTTP rejects each kind of bad input with the documented status and no flow is created', async () => {
    const before = await flowFootprint(j);
    const cases: Array<{ name: string; res: () => Promise<Response>; status: number; code: string; path?: string }> = [
      { name: 'unknown flow', res: () => post({ ...sampleSubmission(cb.url), flow: 'nope' }), status: 400, code: 'invalid_argument', path: 'flow' },
      { name: 'bad JSON', res: () => post('{"flow": "insights", '), status: 400, code: 'invalid_argument' },
      {
        name: 'wrong type of text',
        res: () => post({ flow: 'insights', input: { records: [{ id: 'a', text: 42 }] } }),
        status: 400,
        code: 'invalid_argument',
        path: 'input.records[0].text',
      },
      { name: 'records not an array', res: () => post({ flow: 'insights', input: { records: 'x' } }), status: 400, code: 'invalid_argument', path: 'input.records' },
      { name: 'empty records', res: () => post({ flow: 'insights', input: { records: [] } }), status: 400, code: 'invalid_argument', path: 'input.records' },
      {
        name: 'duplicate record ids',
        res: () =>
          post({
            flow: 'insights',
            input: {
              records: [
                { id: 'a', text: 'x' },
                { id: 'a', text: 'y' },
              ],
            },
          }),
        status: 400,
        code: 'invalid_argument',
        path: 'input.records[1].id',
      },
      { name: 'deadline of wrong type', res: () => post({ ...sampleSubmission(cb.url), deadlineMs: 'soon' }), status: 400, code: 'invalid_argument', path: 'deadlineMs' },
      { name: 'unknown field', res: () => post({ ...sampleSubmission(cb.url), colour: 'red' }), status: 400, code: 'invalid_argument' },
      { name: 'callback to a private address', res: () => post(sampleSubmission('http://10.1.2.3/hook')), status: 400, code: 'invalid_argument', path: 'callbackUrl' },
      { name: 'callback not http', res: () => post(sampleSubmission('ftp://example.com/x')), status: 400, code: 'invalid_argument', path: 'callbackUrl' },
      { name: 'body not an object', res: () => post('[1,2]'), status: 400, code: 'invalid_argument' },
      { name: 'oversized body', res: () => rawPost(j, JSON.stringify({ ...sampleSubmission(cb.url), pad: 'y'.repeat(5 * 1024 * 1024) })), status: 413, code: 'payload_too_large' },
      {
        name: 'not JSON content type',
        res: () => j.api('/v1/flows', { method: 'POST', body: 'flow=insights', headers: { 'content-type': 'text/plain' } }),
        status: 415,
        code: 'unsupported_media_type',
      },
      {
        name: 'no credentials',
        res: () => fetch(`${j.http}/v1/flows`, { method: 'POST', body: JSON.stringify(sampleSubmission(cb.url)), headers: { 'content-type': 'application/json' } }),
        status: 401,
        code: 'unauthenticated',
      },
      { name: 'bad credentials', res: () => post(sampleSubmission(cb.url), { authorization: 'Bearer not-a-key' }), status: 401, code: 'unauthenticated' },
    ];
    for (const c of cases) {
      const r = await Promise.race([c.res(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${c.name}: no answer within 10 s`)), 10_000))]);
      assert.equal(r.status, c.status, `${c.name}: status`);
      const body = (await r.json()) as ErrBody;
      assert.equal(body.error.code, c.code, `${c.name}: code`);
      assert.ok(body.error.message.length > 0, `${c.name}: message`);
      if (c.path)
        assert.ok(
          body.error.details.some((d) => d.path === c.path),
          `${c.name}: details name ${c.path}: ${JSON.stringify(body.error.details)}`,
        );
    }
    // Every problem of one body is named in one answer.
    const multi = (await (await post({ flow: 'insights', input: { records: [{ id: 'a', text: 1 }] }, deadlineMs: -5 })).json()) as ErrBody;
    const paths = multi.error.details.map((d) => d.path).sort();
    assert.deepEqual(paths, ['deadlineMs', 'input.records[0].text']);
    assert.deepEqual(await flowFootprint(j), before, 'no flow created, nothing accepted');
  });

  test("GET of an unknown flow, or another tenant's flow, is 404", async () => {
    const r = await j.api('/v1/flows/fdoesnotexist000000000000000');
    assert.equal(r.status, 404);
    const ok = await post(sampleSubmission(cb.url, { idempotencyKey: 'tenant-check' }));
    const { flowId } = (await ok.json()) as { flowId: string };
    await cb.waitForFlows([flowId]);
    const other = await fetch(`${j.http}/v1/flows/${flowId}`, { headers: { authorization: 'Bearer other-key-0123456789abcdef' } });
    assert.equal(other.status, 404);
  });

  test('idempotency: same key and body → same flowId and one flow; same key, other body → 409', async () => {
    const body = sampleSubmission(cb.url, { idempotencyKey: 'order-123' });
    const ids = await Promise.all([1, 2, 3].map(async () => ((await (await post(body)).json()) as { flowId: string }).flowId));
    assert.equal(new Set(ids).size, 1);
    assert.equal(ids[0], deriveFlowId('default', 'order-123'));
    const conflict = await post({ ...body, metadata: { source: 'changed' } });
    assert.equal(conflict.status, 409);
    assert.equal(((await conflict.json()) as ErrBody).error.code, 'conflict');
    await cb.waitForFlows([ids[0]]);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(cb.byFlow(ids[0]).length, 1, 'one callback for the key');
  });

  test('gRPC maps errors to status codes with field details', async () => {
    const client = ingestClient(j.grpc, j.apiKey);
    const noAuth = ingestClient(j.grpc);
    try {
      const before = await flowFootprint(j);
      await assert.rejects(client.submit({ flow: 'nope', input: { records: [] } }), (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
        assert.match(e.details, /flow/);
        const details = JSON.parse(String(e.metadata.get('jetflow-error-details')[0])) as Array<{ path: string }>;
        assert.ok(details.some((d) => d.path === 'flow'));
        return true;
      });
      await assert.rejects(client.submit({ flow: 'insights', input: { records: [{ id: 'a', text: 7 }] } }), (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
        assert.match(e.details, /input\.records\[0\]\.text/);
        return true;
      });
      await assert.rejects(noAuth.submit(sampleSubmission(cb.url)), (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED);
      await assert.rejects(client.get('fnope00000000000000000000'), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
      const big = { flow: 'insights', input: { records: [{ id: 'a', text: 'x'.repeat(5 * 1024 * 1024) }] } };
      await assert.rejects(client.submit(big), (e: grpc.ServiceError) => e.code === grpc.status.RESOURCE_EXHAUSTED);
      assert.deepEqual(await flowFootprint(j), before);
    } finally {
      client.close();
      noAuth.close();
    }
  });

  test('NATS door: a message that cannot be accepted goes to the dead-letter subject with the reason, and no flow exists', async () => {
    const js = j.nc.jetstream();
    const sub = j.nc.subscribe('jetflow.event.default.>');
    const events: string[] = [];
    void (async () => {
      for await (const m of sub) events.push(m.subject);
    })();
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'bad-nats-1');
    await js.publish('jetflow.ingest.default.insights', '{"flow": "insights", "input": {"records": [{"id": 1}]}}', { headers: h });
    const h2 = natsHeaders();
    h2.set('Nats-Msg-Id', 'bad-nats-2');
    await js.publish('jetflow.ingest.default.insights', 'not json at all', { headers: h2 });
    const jsm = await j.nc.jetstreamManager();
    const until = Date.now() + 10_000;
    let dlq: Array<{ reason: string; subject: string; flowId: string }> = [];
    while (Date.now() < until) {
      dlq = [];
      const info = await jsm.streams.info('JETFLOW_DLQ');
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage('JETFLOW_DLQ', { seq }).catch(() => null);
        if (m) dlq.push({ reason: m.header.get('Jetflow-Dlq-Reason'), subject: m.subject, flowId: m.header.get('Jetflow-Flow-Id') });
      }
      if (dlq.filter((d) => d.subject.startsWith('jetflow.dlq.ingest.')).length >= 2) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const ingestDlq = dlq.filter((d) => d.subject === 'jetflow.dlq.ingest.jetflow.ingest.default.insights');
    assert.equal(ingestDlq.length, 2, JSON.stringify(dlq));
    assert.ok(
      ingestDlq.some((d) => /input\.records\[0\]\.id/.test(d.reason) && d.flowId === deriveFlowId('default', 'bad-nats-1')),
      JSON.stringify(ingestDlq),
    );
    assert.ok(ingestDlq.some((d) => /not valid JSON/.test(d.reason)));
    const kv = await js.views.kv('jetflow_flows');
    assert.equal(await kv.get(deriveFlowId('default', 'bad-nats-1')), null);
    await new Promise((r) => setTimeout(r, 200));
    sub.unsubscribe();
    assert.ok(events.includes(`jetflow.event.default.${deriveFlowId('default', 'bad-nats-1')}`), 'a flow.rejected event says so');
  });
});
