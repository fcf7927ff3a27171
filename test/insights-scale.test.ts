import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import * as grpc from '@grpc/grpc-js';
import { headers as natsHeaders } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { createS3Client, parseS3Ref } from '@jetflow/storage';
import { makeFeedbackBatch, startCallbackReceiver, startJetflow, type CallbackReceiver, type Delivery, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

/**
 * insights v2 at scale, in real mode (the models, S3, the pools): a batch goes through the mapped
 * steps in chunks and one callback covers every record; a batch beyond the HTTP body limit comes by
 * reference (`inputRef`, JSON lines in S3); a bad reference is refused at the door, a missing or
 * unparsable object fails the flow naming it. Deadlines are generous: this asserts outcomes, not speed.
 */

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const BUCKET = 'jetflow-data';

type Report = Record<string, unknown> & { ref?: string };
type Body = Delivery['body'] & {
  errors: Array<{ task: string; code: string; message: string }>;
  results: Record<string, Report>;
  datasets: Record<string, { ref: string; rows: number; summary: Record<string, unknown> }>;
};

describe('insights at scale: map over records, inputRef', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let s3: S3Client;

  before(async () => {
    cb = await startCallbackReceiver();
    j = await startJetflow({ env: { JETFLOW_WORKER_THREADS: '2' } });
    s3 = createS3Client({ s3Endpoint: j.aws!.s3Endpoint, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  });
  after(async () => {
    s3?.destroy();
    await j?.stop();
    await cb?.close();
  });

  const put = async (key: string, body: string | Uint8Array) => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    return `s3://${BUCKET}/${key}`;
  };
  const getJson = async (ref: string) => {
    const { bucket, key } = parseS3Ref(ref);
    const { GetObjectCommand } = await import('@aws-sdk/client-s3');
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return JSON.parse(await res.Body!.transformToString()) as Record<string, unknown>;
  };
  /** A report, inline or in S3 (`{ ref }` when over the inline limit). */
  const report = async (r: Report | undefined) => (r && typeof r.ref === 'string' ? getJson(r.ref) : (r ?? {}));
  const submit = async (json: unknown) => {
    const res = await j.api('/v1/flows', { method: 'POST', json });
    assert.equal(res.status, 202, await res.clone().text());
    return ((await res.json()) as { flowId: string }).flowId;
  };
  const callbackOf = async (flowId: string, timeoutMs: number) => {
    await cb.waitForFlows([flowId], timeoutMs);
    const got = cb.byFlow(flowId);
    assert.equal(got.length, 1, 'exactly one callback');
    return got[0]!.body as Body;
  };
  /** Every record is in every per-record array and dataset, once. */
  const assertCovers = async (body: Body, ids: string[]) => {
    assert.equal(body.status, 'succeeded', JSON.stringify(body.errors));
    assert.deepEqual(Object.keys(body.results).sort(), ['anomaly', 'keywords', 'sentiment']);
    assert.deepEqual(Object.keys(body.datasets).sort(), ['embeddings', 'features', 'text']);
    for (const ds of Object.values(body.datasets)) assert.equal(ds.rows, ids.length);
    const sentiment = await report(body.results.sentiment);
    assert.equal(sentiment.count, ids.length);
    assert.deepEqual(
      (sentiment.perRecord as Array<{ id: string }>).map((p) => p.id),
      ids,
    );
    const anomaly = await report(body.results.anomaly);
    assert.equal(anomaly.count, ids.length);
    const scores = anomaly.perRecord as Array<{ id: string; score: number; isolationScore: number }>;
    assert.equal(scores.length, ids.length);
    assert.ok(scores.every((p) => Number.isFinite(p.score) && Number.isFinite(p.isolationScore)));
    const keywords = await report(body.results.keywords);
    assert.equal(keywords.documents, ids.length);
    assert.equal((keywords.perRecord as unknown[]).length, ids.length);
  };

  test('5,000 records over HTTP: prepare and score in chunks, one succeeded callback whose reports cover every record', async () => {
    const { records, truth } = makeFeedbackBatch({ n: 5_000, seed: 41, outliers: 5, plantedTerm: 'quibbleflux' });
    const flowId = await submit({ flow: 'insights', input: { records }, callbackUrl: cb.url, deadlineMs: 240_000 });
    const body = await callbackOf(flowId, 240_000);
    await assertCovers(
      body,
      records.map((r) => r.id),
    );
    // Batch-wide statistics from the merged chunks: the planted outliers lead, the planted term is a keyword.
    const anomaly = await report(body.results.anomaly);
    const top = (anomaly.outliers as Array<{ id: string }>).slice(0, truth.outlierIds.length).map((o) => o.id);
    assert.deepEqual(new Set(top), new Set(truth.outlierIds));
    const keywords = await report(body.results.keywords);
    assert.ok((keywords.keywords as Array<{ term: string }>).some((k) => k.term === 'quibbleflux'));
    // The mapped steps ran in chunks of 250 (20 each), internal: not in the callback, but in GET.
    const view = (await (await j.api(`/v1/flows/${flowId}`)).json()) as { version: number; stages: Array<{ tasks: Array<{ name: string; chunks?: { count: number; succeeded: number } }> }> };
    assert.equal(view.version, 2);
    const tasks = view.stages.flatMap((s) => s.tasks);
    for (const name of ['prepare', 'score']) assert.deepEqual(tasks.find((t) => t.name === name)?.chunks, { count: 20, succeeded: 20, failed: 0, running: 0 });
  });

  test('20,000 records by inputRef (JSON lines in S3, beyond the HTTP body limit): one succeeded callback covering every record', async () => {
    const { records } = makeFeedbackBatch({ n: 20_000, seed: 43, outliers: 8 });
    const ref = await put('uploads/default/feedback-20k.jsonl', records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const flowId = await submit({ flow: 'insights', inputRef: ref, callbackUrl: cb.url, deadlineMs: 600_000 });
    const body = await callbackOf(flowId, 600_000);
    await assertCovers(
      body,
      records.map((r) => r.id),
    );
    // The state holds the reference, never the records.
    const kv = await j.nc.jetstream().views.kv('jetflow_flows');
    const state = JSON.parse(new TextDecoder().decode((await kv.get(flowId))!.value)) as { input?: string; inputRef?: string };
    assert.equal(state.input, undefined);
    assert.equal(state.inputRef, ref);
  });

  test('a bad inputRef is refused at every door with the field named; input and inputRef together are refused', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ flow: 'insights', inputRef: 'http://example.com/x.json' }, /inputRef.*not an s3:\/\/bucket\/key reference/],
      [{ flow: 'insights', inputRef: 's3://Bad_Bucket/x' }, /inputRef.*is not an S3 bucket name/],
      [{ flow: 'insights', inputRef: 's3://jetflow-data/inputs/other/abc' }, /inputRef.*must be under s3:\/\/jetflow-data\/uploads\/default\//],
      [{ flow: 'insights', inputRef: 's3://jetflow-data/uploads/default/../other/x' }, /inputRef.*segment/],
      [{ flow: 'insights', inputRef: 's3://jetflow-data/uploads/default/x', input: { records: [{ id: 'a', text: 'x' }] } }, /"path":"input".*not both/],
      [{ flow: 'insights' }, /"path":"input".*required: the input, or inputRef/],
    ];
    for (const [json, re] of cases) {
      const res = await j.api('/v1/flows', { method: 'POST', json });
      assert.equal(res.status, 400, JSON.stringify(json));
      assert.match(await res.text(), re);
    }
    // gRPC: INVALID_ARGUMENT naming inputRef.
    const client = ingestClient(j.grpc, j.apiKey);
    try {
      const err = (await client.submit({ flow: 'insights', inputRef: 's3://jetflow-data/inputs/other/abc' }).then(
        () => assert.fail('accepted'),
        (e: unknown) => e,
      )) as grpc.ServiceError;
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /inputRef/);
    } finally {
      client.close();
    }
  });

  test('a missing object, and one that is neither JSON nor JSON lines: the flow fails with one callback naming the reference', async () => {
    const missing = `s3://${BUCKET}/uploads/default/nope.jsonl`;
    const bad = await put('uploads/default/bad.jsonl', '{"id":"a","text":"fine"}\nnot json at all\n');
    const f1 = await submit({ flow: 'insights', inputRef: missing, callbackUrl: cb.url });
    const f2 = await submit({ flow: 'insights', inputRef: bad, callbackUrl: cb.url });
    const b1 = await callbackOf(f1, 60_000);
    const b2 = await callbackOf(f2, 60_000);
    assert.equal(b1.status, 'failed');
    assert.equal(b1.errors[0]?.code, 'input_unreadable');
    assert.match(b1.errors[0]?.message ?? '', /nope\.jsonl does not exist/);
    assert.equal(b2.status, 'failed');
    assert.equal(b2.errors[0]?.code, 'input_unreadable');
    assert.match(b2.errors[0]?.message ?? '', /bad\.jsonl line 2 is not JSON/);
  });

  test('the NATS door takes an inputRef too (a JSON object in S3)', async () => {
    const { records } = makeFeedbackBatch({ n: 300, seed: 44 });
    const ref = await put('uploads/default/feedback-300.json', JSON.stringify({ records }));
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'scale-nats-ref');
    await j.nc.jetstream().publish('jetflow.ingest.default.insights', JSON.stringify({ inputRef: ref, callbackUrl: cb.url, deadlineMs: 120_000 }), { headers: h });
    const body = await callbackOf(deriveFlowId('default', 'scale-nats-ref'), 120_000);
    await assertCovers(
      body,
      records.map((r) => r.id),
    );
  });
});
