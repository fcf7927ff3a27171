import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { headers as natsHeaders } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { createDynamoClient, createS3Client, parseS3Ref } from '@jetflow/storage';
import { makeFeedbackBatch, type FeedbackRecord, startCallbackReceiver, startJetflow, type CallbackReceiver, type Delivery, type JetflowUnderTest } from '@jetflow/testing';

/**
 * The insights flow on real data, end to end: the plugins through the worker-thread pools, datasets in
 * S3, reports inline or claim-checked, the history in DynamoDB (local s3rver and dynalite, driven by
 * the same AWS SDK code as production), inputs over the claim-check threshold travelling as references.
 */

const CLAIM_CHECK_BYTES = 100 * 1024;
// The SDK warns once per process that Node 20 support ends in 2027: noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

interface WorkerInfo {
  instance: string;
  threadId: number;
  modelLoads: number;
  cache?: { hits: number; misses: number; coalesced: number };
}
interface DatasetOut {
  ref: string;
  rows: number;
  bytes: number;
  summary: Record<string, unknown>;
  _worker: WorkerInfo;
}
type Report = Record<string, unknown> & { _worker: WorkerInfo };
/** What the insights flow's callback carries beyond every callback's fields. */
type InsightsBody = Delivery['body'] & { results: Record<string, unknown>; datasets: { text: DatasetOut; features: DatasetOut; embeddings: DatasetOut } };

describe('insights on real data, with S3 and DynamoDB', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let s3: S3Client;
  let dynamo: DynamoDBClient;

  before(async () => {
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    j = await startJetflow({ env: { JETFLOW_WORKER_THREADS: '2', JETFLOW_CLAIM_CHECK_BYTES: String(CLAIM_CHECK_BYTES) } });
    const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    s3 = createS3Client({ s3Endpoint: j.aws!.s3Endpoint, region: 'us-east-1', credentials });
    dynamo = createDynamoClient({ dynamoEndpoint: j.aws!.dynamoEndpoint, region: 'us-east-1', credentials });
  });
  after(async () => {
    s3?.destroy();
    dynamo?.destroy();
    await j?.stop();
    await cb?.close();
  });

  const getObject = async (ref: string): Promise<Buffer> => {
    const { bucket, key } = parseS3Ref(ref);
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  };
  /** A dataset file read back through the AWS SDK: gzip JSON lines. */
  const datasetRows = async (ref: string) =>
    gunzipSync(await getObject(ref))
      .toString('utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { id: string });
  /** An analyst report: inline, or `{ ref }` to a JSON object in S3. */
  const report = async (r: unknown): Promise<Record<string, unknown>> => {
    const o = r as Record<string, unknown>;
    return typeof o.ref === 'string' ? (JSON.parse((await getObject(o.ref)).toString('utf8')) as Record<string, unknown>) : o;
  };
  const flowRecord = async (flowId: string) => {
    const res = await dynamo.send(new GetItemCommand({ TableName: 'jetflow-flows', Key: { pk: { S: `FLOW#${flowId}` } }, ConsistentRead: true }));
    return res.Item ? (unmarshall(res.Item) as Record<string, unknown>) : undefined;
  };
  const submit = async (records: FeedbackRecord[], key: string) => {
    const res = await j.api('/v1/flows', { method: 'POST', json: { flow: 'insights', input: { records }, callbackUrl: cb.url, idempotencyKey: key, metadata: { suite: 'insights-real' } } });
    assert.equal(res.status, 202, await res.clone().text());
    return ((await res.json()) as { flowId: string }).flowId;
  };
  const deliveryOf = async (flowId: string, timeoutMs = 60_000): Promise<Delivery> => {
    await cb.waitForFlows([flowId], timeoutMs);
    return cb.byFlow(flowId)[0]!;
  };
  const flowState = async (flowId: string) => {
    const kv = await j.nc.jetstream().views.kv('jetflow_flows');
    const e = await kv.get(flowId);
    return e ? (JSON.parse(new TextDecoder().decode(e.value)) as { input?: string; inputRef?: string; status: string }) : undefined;
  };

  test('a realistic batch: sentiment matches the known polarity, planted outliers lead the anomalies, the planted term is a keyword; datasets in S3, record in DynamoDB', async () => {
    const { records, truth } = makeFeedbackBatch({ n: 320, seed: 11, outliers: 4, plantedTerm: 'quibbleflux' });
    const flowId = await submit(records, 'real-batch-1');
    const d = await deliveryOf(flowId);
    assert.equal(d.signatureValid, true);
    const body = d.body as InsightsBody;
    assert.equal(body.status, 'succeeded', JSON.stringify(body.errors));
    assert.deepEqual(body.errors, []);

    const sentiment = await report(body.results.sentiment);
    const perRecord = sentiment.perRecord as Array<{ id: string; label: string }>;
    assert.equal(perRecord.length, records.length);
    const right = perRecord.filter((p) => p.label === truth.sentiment[p.id]).length;
    assert.ok(right / records.length >= 0.9, `sentiment right for ${right} of ${records.length}`);
    const distribution = sentiment.distribution as { negative: number; positive: number };
    assert.ok(distribution.negative > 0 && distribution.positive > 0);

    const anomaly = await report(body.results.anomaly);
    const top = (anomaly.outliers as Array<{ id: string; explanation: string }>).slice(0, truth.outlierIds.length);
    assert.deepEqual(new Set(top.map((o) => o.id)), new Set(truth.outlierIds), JSON.stringify(top));
    for (const o of top) assert.ok(o.explanation.length > 0, 'each anomaly says why');

    const keywords = await report(body.results.keywords);
    const terms = (keywords.keywords as Array<{ term: string }>).map((k) => k.term);
    assert.ok(terms.includes(truth.plantedTerm!), `planted term among ${terms.join(', ')}`);

    // The three datasets exist in S3 with one row per record, under datasets/<tenant>/<flowId>/.
    assert.deepEqual(Object.keys(body.datasets).sort(), ['embeddings', 'features', 'text']);
    for (const [name, ds] of Object.entries(body.datasets)) {
      assert.equal(parseS3Ref(ds.ref).key, `datasets/default/${flowId}/${name}.jsonl.gz`);
      assert.equal(ds.rows, records.length);
      const rows = await datasetRows(ds.ref);
      assert.equal(rows.length, records.length, `${name} rows in S3`);
      assert.deepEqual(
        rows.map((r) => r.id),
        records.map((r) => r.id),
      );
      assert.ok(ds.bytes > 0 && typeof ds.summary === 'object');
    }
    assert.equal((body.datasets.text.summary.topTokens as Array<{ token: string }>)[0]?.token, truth.plantedTerm);

    // History: the flow record is in DynamoDB, finished, with the callback's outcome.
    const rec = await flowRecord(flowId);
    assert.ok(rec, 'flow record in DynamoDB');
    assert.equal(rec.status, 'succeeded');
    assert.equal(rec.tenant, 'default');
    assert.equal(rec.flow, 'insights');
    assert.equal(rec.idempotencyKey, 'real-batch-1');
    assert.equal(typeof rec.finishedAt, 'string');
    assert.deepEqual(rec.metadata, { suite: 'insights-real' });
  });

  test('history outlives the KV state: GET /v1/flows/{id} and GET /v1/flows?status=succeeded read DynamoDB', async () => {
    const { records } = makeFeedbackBatch({ n: 40, seed: 3, outliers: 1 });
    const flowId = await submit(records, 'real-history-1');
    await deliveryOf(flowId);
    const listed = (await (await j.api('/v1/flows?status=succeeded&limit=200')).json()) as { flows: Array<{ flowId: string; status: string; tasks: { total: number; succeeded: number } }> };
    const mine = listed.flows.find((f) => f.flowId === flowId);
    assert.ok(mine, 'listed from the history');
    // insights v2: prepare and score (mapped, internal), the three datasets, the three analyses.
    assert.deepEqual(mine.tasks, { total: 8, succeeded: 8, failed: 0, running: 0 });

    // The KV state expires (here: deleted, as its TTL would); the history answers.
    const kv = await j.nc.jetstream().views.kv('jetflow_flows');
    await kv.delete(flowId);
    const res = await j.api(`/v1/flows/${flowId}`);
    assert.equal(res.status, 200);
    const view = (await res.json()) as { status: string; source?: string; results: Record<string, unknown>; datasets: Record<string, { rows: number }> };
    assert.equal(view.source, 'history');
    assert.equal(view.status, 'succeeded');
    assert.deepEqual(Object.keys(view.results).sort(), ['anomaly', 'keywords', 'sentiment']);
    assert.equal(view.datasets.text?.rows, records.length);
    // Another tenant still gets 404.
    const other = await fetch(`${j.http}/v1/flows/${flowId}`, { headers: { authorization: 'Bearer other-key-0123456789abcdef' } });
    assert.equal(other.status, 404);
  });

  test('each worker thread loads its model once, however many tasks it runs; analysts read each dataset from S3 once per flow', async () => {
    const infos: Array<{ service: string; w: WorkerInfo }> = [];
    const missesAfter: number[] = [];
    // Sequential flows, so each flow's cache misses can be told apart.
    for (let i = 0; i < 4; i++) {
      const { records } = makeFeedbackBatch({ n: 60, seed: 100 + i, outliers: 1 });
      const d = await deliveryOf(await submit(records, `real-models-${i}`));
      assert.equal(d.body.status, 'succeeded');
      const body = d.body as unknown as { results: Record<string, Report>; datasets: Record<string, DatasetOut> };
      for (const ds of Object.values(body.datasets)) infos.push({ service: 'dataset-generator', w: ds._worker });
      for (const r of Object.values(body.results)) infos.push({ service: 'analyst', w: r._worker });
      missesAfter.push(Math.max(...Object.values(body.results).map((r) => r._worker.cache?.misses ?? 0)));
    }
    const byThread = new Map<string, WorkerInfo[]>();
    for (const { service, w } of infos) {
      const k = `${service}/${w.instance}/${w.threadId}`;
      byThread.set(k, [...(byThread.get(k) ?? []), w]);
    }
    // 24 tasks on at most 2 threads per service: threads are reused, and each has created one session.
    assert.equal(infos.length, 24);
    assert.ok(byThread.size <= 4, [...byThread.keys()].join(', '));
    assert.ok(
      [...byThread.values()].some((ws) => ws.length >= 3),
      'some thread ran several tasks',
    );
    for (const [k, ws] of byThread) for (const w of ws) assert.equal(w.modelLoads, 1, `${k}: ${JSON.stringify(w)}`);
    // Three datasets per flow come from S3 once (a miss each); the other two analysts get them from
    // the cache (a KV hit, or joining the load in flight).
    for (let i = 1; i < missesAfter.length; i++) assert.equal(missesAfter[i]! - missesAfter[i - 1]!, 3, `cache misses per flow: ${missesAfter.join(', ')}`);
  });

  test('claim check over HTTP: an input over the threshold travels as a reference and the flow succeeds', async () => {
    const { records, truth } = makeFeedbackBatch({ n: 900, seed: 21, outliers: 3, plantedTerm: 'zorblax' });
    const inputBytes = Buffer.byteLength(JSON.stringify({ records }));
    assert.ok(inputBytes > CLAIM_CHECK_BYTES, `${inputBytes} bytes`);
    const flowId = await submit(records, 'real-claim-http');
    const d = await deliveryOf(flowId);
    assert.equal(d.body.status, 'succeeded', JSON.stringify(d.body.errors));
    const state = await flowState(flowId);
    assert.ok(state?.inputRef?.startsWith('s3://jetflow-data/inputs/default/'), `state holds a ref: ${state?.inputRef}`);
    assert.equal(state?.input, undefined, 'the KV state does not hold the input');
    assert.deepEqual(JSON.parse((await getObject(state!.inputRef!)).toString('utf8')), { records });
    const datasets = d.body.datasets as Record<string, DatasetOut>;
    for (const ds of Object.values(datasets)) assert.equal(ds.rows, records.length);
    const keywords = await report((d.body.results as Record<string, unknown>).keywords);
    assert.ok((keywords.keywords as Array<{ term: string }>).some((k) => k.term === truth.plantedTerm));
    // A report of 900 records is over the inline limit: it went to S3 and the callback has its ref.
    const sentiment = (d.body.results as Record<string, { ref?: string }>).sentiment!;
    assert.match(sentiment.ref ?? '', new RegExp(`^s3://jetflow-data/results/default/${flowId}/sentiment\\.json$`));
    assert.equal(((await report(sentiment)).perRecord as unknown[]).length, records.length);
  });

  test('claim check at the NATS door: a JSON body over the threshold is stored by the orchestrator, and the flow succeeds', async () => {
    const { records } = makeFeedbackBatch({ n: 800, seed: 22, outliers: 2 });
    const body = JSON.stringify({ flow: 'insights', input: { records }, callbackUrl: cb.url });
    assert.ok(Buffer.byteLength(body) > CLAIM_CHECK_BYTES);
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'real-claim-nats');
    await j.nc.jetstream().publish('jetflow.ingest.default.insights', body, { headers: h });
    const flowId = deriveFlowId('default', 'real-claim-nats');
    const d = await deliveryOf(flowId);
    assert.equal(d.body.status, 'succeeded', JSON.stringify(d.body.errors));
    const state = await flowState(flowId);
    assert.ok(state?.inputRef?.startsWith('s3://jetflow-data/inputs/default/'), `state holds a ref: ${state?.inputRef}`);
    assert.equal(state?.input, undefined);
    for (const ds of Object.values(d.body.datasets as Record<string, DatasetOut>)) assert.equal(ds.rows, records.length);
    assert.equal((await flowRecord(flowId))?.status, 'succeeded');
  });
});
