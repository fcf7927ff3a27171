/**
 * Flows as DAGs with map over data, end to end: the real services on a real nats-server with NATS
 * identities, and an @jetflow/worker (createWorker) serving two custom subjects as a `worker:wc`
 * identity. A wordcount DAG maps its tokenizer over 1,000 records in chunks of 10 and two reducers need
 * it; a bad map path is refused at the HTTP door (400 naming it) and at the NATS door (dead letter).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { headers as natsHeaders } from 'nats';
import { TEST_API_KEY, startCallbackReceiver, startJetflow, testNatsAuth, type CallbackReceiver, type JetflowUnderTest, type TestNatsAuth } from '@jetflow/testing';
import { createWorker, defineTask, type Worker } from '../packages/worker/src/index.js';
import { ingestClient } from './grpc-client.js';
import { childFlowKey, deriveFlowId } from '@jetflow/flows';

const TOKENIZE = 'jetflow.task.custom.tokenize';
const COUNT = 'jetflow.task.custom.count';
const FLOWS = [
  {
    name: 'wordcount',
    version: 1,
    deadlineMs: 60_000,
    tasks: [
      { name: 'tokenize', subject: TOKENIZE, map: { over: 'records', chunkSize: 10, maxParallel: 16 } },
      { name: 'count', subject: COUNT, needs: ['tokenize'] },
      // A second reducer on the same subject: two leaves, one entry each in the callback's results.
      { name: 'check', subject: COUNT, needs: ['tokenize'] },
    ],
  },
  {
    // A child flow: `sub` runs wordcount (same tenant, this flow's input) and waits for it; `sum` reads its results.
    name: 'report',
    version: 1,
    deadlineMs: 60_000,
    tasks: [
      { name: 'sub', flow: 'wordcount' },
      { name: 'sum', subject: COUNT, needs: ['sub'] },
    ],
  },
];
const words = (i: number) => (i % 7) + 1;
const records = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `r${i}`, text: Array.from({ length: words(i) }, (_, k) => `w${k}`).join(' ') }));

type Chunk = { words: number; index: number; count: number; items: number; first: string; sawRecords: boolean; lang: unknown };

describe('DAG flows with map over data', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let auth: TestNatsAuth;
  let worker: Worker;
  let dir: string;
  // What the worker saw, per flow: the chunks it ran (index per attempt) and the deps of each reducer.
  const seen = new Map<string, { chunks: number[]; deps: Record<string, unknown> }>();
  const seenOf = (id: string) => {
    let s = seen.get(id);
    if (!s) seen.set(id, (s = { chunks: [], deps: {} }));
    return s;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jetflow-dag-'));
    const flowsFile = join(dir, 'flows.json');
    writeFileSync(flowsFile, JSON.stringify(FLOWS));
    // Inputs over 4 KB go to S3 (the harness's local S3): the 1,000 records do, and their chunks are cut from the stored input.
    const env = { JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY}`, JETFLOW_CLAIM_CHECK_BYTES: '4096' };
    auth = testNatsAuth(env, {}, { workers: { wc: [TOKENIZE, COUNT] } });
    cb = await startCallbackReceiver();
    j = await startJetflow({ env, auth });
    const id = auth.options('worker:wc');
    worker = await createWorker({
      servers: j.natsUrls,
      user: id.user!,
      password: String(id.pass),
      concurrency: 8,
      consumerWaitMs: 30_000,
      log: { child: () => silent, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
      tasks: [
        defineTask({
          subject: TOKENIZE,
          run: async ({ items, chunk, flowInput }, ctx) => {
            seenOf(ctx.flowId).chunks.push(chunk!.index);
            const slow = (flowInput as { slowMs?: number }).slowMs;
            if (slow) await new Promise((res) => setTimeout(res, slow));
            const recs = items as Array<{ id: string; text: string }>;
            return {
              words: recs.reduce((n, r) => n + r.text.split(' ').length, 0),
              index: chunk!.index,
              count: chunk!.count,
              items: recs.length,
              first: recs[0]!.id,
              sawRecords: Object.prototype.hasOwnProperty.call(flowInput, 'records'),
              lang: (flowInput as Record<string, unknown>).lang,
            } satisfies Chunk;
          },
        }),
        defineTask({
          subject: COUNT,
          run: ({ deps }, ctx) => {
            seenOf(ctx.flowId).deps[ctx.task] = deps;
            const chunks = deps.tokenize as Chunk[];
            if (ctx.task === 'sum') return { fromChild: deps.sub };
            return ctx.task === 'count' ? { count: chunks.reduce((n, c) => n + c.words, 0) } : { chunks: chunks.length, inOrder: chunks.every((c, i) => c.index === i) };
          },
        }),
      ],
    });
  });
  after(async () => {
    await worker?.stop(2_000);
    await j?.stop();
    await cb?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('wordcount over 1,000 records in chunks of 10: exactly one callback, the right count, one result per leaf, the map output in chunk order', async () => {
    const recs = records(1_000);
    const expected = recs.reduce((n, _r, i) => n + words(i), 0);
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow: 'wordcount', input: { records: recs, lang: 'en' }, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    const { flowId } = (await r.json()) as { flowId: string };
    await cb.waitForFlows([flowId], 90_000);
    // A moment for a duplicate to show up, if there were one.
    await new Promise((res) => setTimeout(res, 500));
    const got = cb.byFlow(flowId);
    assert.equal(got.length, 1, 'exactly one callback');
    const body = got[0]!.body as unknown as { status: string; results: Record<string, unknown>; datasets: Record<string, unknown>; errors: unknown[] };
    assert.equal(body.status, 'succeeded', JSON.stringify(body.errors));
    assert.deepEqual(Object.keys(body.results).sort(), ['check', 'count'], 'an entry per leaf task, keyed by name');
    assert.deepEqual(body.results.count, { count: expected });
    assert.deepEqual(body.results.check, { chunks: 100, inOrder: true });
    assert.deepEqual(Object.keys(body.datasets), ['tokenize']);
    const chunks = body.datasets.tokenize as Chunk[];
    assert.equal(chunks.length, 100);
    chunks.forEach((c, i) => {
      assert.deepEqual(
        { index: c.index, count: c.count, items: c.items, first: c.first, sawRecords: c.sawRecords, lang: c.lang },
        { index: i, count: 100, items: 10, first: `r${i * 10}`, sawRecords: false, lang: 'en' },
        `chunk ${i}`,
      );
    });
    // Each chunk ran once (no failures here, so no retries), and both reducers saw the same array.
    const s = seen.get(flowId)!;
    assert.deepEqual(
      [...s.chunks].sort((a, b) => a - b),
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.deepEqual((s.deps.count as { tokenize: unknown }).tokenize, chunks);
    assert.deepEqual((s.deps.check as { tokenize: unknown }).tokenize, chunks);
    // The flow's view shows the chunks' progress.
    const view = (await (await j.api(`/v1/flows/${flowId}`)).json()) as { status: string; stages: Array<{ tasks: Array<{ name: string; chunks?: unknown }> }> };
    assert.equal(view.status, 'succeeded');
    const tok = view.stages.flatMap((st) => st.tasks).find((t) => t.name === 'tokenize')!;
    assert.deepEqual(tok.chunks, { count: 100, succeeded: 100, failed: 0, running: 0 });
    // The input travelled by reference (claim check): the state holds the ref and one character per chunk, not the records or the outputs.
    const kv = await j.nc.jetstream().views.kv('jetflow_flows');
    const e = await kv.get(flowId);
    const state = JSON.parse(new TextDecoder().decode(e!.value)) as { input?: string; inputRef?: string; tasks: Record<string, { cs?: string; output?: unknown }> };
    assert.equal(state.input, undefined);
    assert.match(state.inputRef ?? '', /^s3:\/\//);
    assert.equal(state.tasks.tokenize!.cs, 's'.repeat(100));
    assert.equal(state.tasks.tokenize!.output, undefined);
    assert.ok(e!.value.length < 8_000, `state of ${e!.value.length} bytes`);
  });

  test('kill -9 of the orchestrator in the middle of a map: it resumes from the stored state and chunk outputs, one callback with every chunk in order', async () => {
    const recs = records(3_000);
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow: 'wordcount', input: { records: recs, slowMs: 40 }, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    const { flowId } = (await r.json()) as { flowId: string };
    const until = Date.now() + 30_000;
    while ((seen.get(flowId)?.chunks.length ?? 0) < 60 && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    assert.ok((seen.get(flowId)?.chunks.length ?? 0) >= 60, 'the map got going');
    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    await new Promise((res) => setTimeout(res, 300));
    j.stack.restart('orchestrator');
    await cb.waitForFlows([flowId], 90_000);
    await new Promise((res) => setTimeout(res, 500));
    const got = cb.byFlow(flowId);
    assert.equal(got.length, 1, 'exactly one callback');
    const body = got[0]!.body as unknown as { status: string; results: Record<string, unknown>; datasets: Record<string, Chunk[]>; errors: unknown[] };
    assert.equal(body.status, 'succeeded', JSON.stringify(body.errors));
    assert.deepEqual(body.results.count, { count: recs.reduce((n, _r, i) => n + words(i), 0) });
    assert.deepEqual(body.results.check, { chunks: 300, inOrder: true });
    assert.deepEqual(
      body.datasets.tokenize!.map((c) => c.first),
      Array.from({ length: 300 }, (_, i) => `r${i * 10}`),
    );
  });

  test('an input small enough to stay inline: its chunks are cut from the state copy, and the reducers add up', async () => {
    const recs = records(35);
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow: 'wordcount', input: { records: recs, lang: 'fr' }, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    const { flowId } = (await r.json()) as { flowId: string };
    await cb.waitForFlows([flowId], 30_000);
    const got = cb.byFlow(flowId);
    assert.equal(got.length, 1);
    const body = got[0]!.body as unknown as { status: string; results: Record<string, unknown>; datasets: Record<string, Chunk[]> };
    assert.equal(body.status, 'succeeded');
    assert.deepEqual(body.results.count, { count: recs.reduce((n, _r, i) => n + words(i), 0) });
    assert.deepEqual(
      body.datasets.tokenize!.map((c) => [c.index, c.items, c.lang, c.sawRecords]),
      [
        [0, 10, 'fr', false],
        [1, 10, 'fr', false],
        [2, 10, 'fr', false],
        [3, 5, 'fr', false],
      ],
    );
  });

  test('a child flow: the parent task runs wordcount as a child and waits; its output is the child results; one callback for the parent', async () => {
    const recs = records(50);
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow: 'report', input: { records: recs }, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    const { flowId } = (await r.json()) as { flowId: string };
    await cb.waitForFlows([flowId], 60_000);
    await new Promise((res) => setTimeout(res, 300));
    const got = cb.byFlow(flowId);
    assert.equal(got.length, 1, 'exactly one callback');
    const body = got[0]!.body as unknown as { status: string; results: Record<string, unknown>; datasets: Record<string, unknown>; errors: unknown[] };
    assert.equal(body.status, 'succeeded', JSON.stringify(body.errors));
    const childResults = { count: { count: recs.reduce((n, _r, i) => n + words(i), 0) }, check: { chunks: 5, inOrder: true } };
    assert.deepEqual(body.results, { sum: { fromChild: childResults } });
    assert.deepEqual(body.datasets.sub, childResults);
    // The child is a flow of its own, with an id derived from the parent and task, and no callback of its own.
    const childId = deriveFlowId('default', childFlowKey(flowId, 'sub'));
    const child = (await (await j.api(`/v1/flows/${childId}`)).json()) as { status: string; flow: string };
    assert.deepEqual([child.flow, child.status], ['wordcount', 'succeeded']);
    assert.equal(cb.byFlow(childId).length, 0);
  });

  test("cancelling the parent reaches the child: the child ends cancelled, the parent's one callback says cancelled", async () => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow: 'report', input: { records: records(2_000), slowMs: 100 }, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    const { flowId } = (await r.json()) as { flowId: string };
    const childId = deriveFlowId('default', childFlowKey(flowId, 'sub'));
    const until = Date.now() + 30_000;
    while ((seen.get(childId)?.chunks.length ?? 0) < 10 && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    assert.ok((seen.get(childId)?.chunks.length ?? 0) >= 10, 'the child is running');
    const c = await j.api(`/v1/flows/${flowId}/cancel`, { method: 'POST', json: { reason: 'enough' } });
    assert.ok(c.status === 200 || c.status === 202, await c.clone().text());
    await cb.waitForFlows([flowId], 30_000);
    assert.equal((cb.byFlow(flowId)[0]!.body as { status: string }).status, 'cancelled');
    let child = { status: '' };
    for (const end = Date.now() + 20_000; Date.now() < end; await new Promise((res) => setTimeout(res, 100))) {
      child = (await (await j.api(`/v1/flows/${childId}`)).json()) as { status: string };
      if (child.status === 'cancelled') break;
    }
    assert.equal(child.status, 'cancelled');
  });

  test('an empty array maps to zero chunks: the reducers see [] and the callback has tokenize: []', async () => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow: 'wordcount', input: { records: [] }, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    const { flowId } = (await r.json()) as { flowId: string };
    await cb.waitForFlows([flowId], 30_000);
    const body = cb.byFlow(flowId)[0]!.body as unknown as { status: string; results: Record<string, unknown>; datasets: Record<string, unknown> };
    assert.equal(body.status, 'succeeded');
    assert.deepEqual(body.results, { count: { count: 0 }, check: { chunks: 0, inOrder: true } });
    assert.deepEqual(body.datasets.tokenize, []);
  });

  test('a map path missing from the input is refused: HTTP 400 and gRPC INVALID_ARGUMENT naming input.records; the NATS door dead-letters it with that reason', async () => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow: 'wordcount', input: { rows: records(3) }, callbackUrl: cb.url } });
    assert.equal(r.status, 400);
    const err = (await r.json()) as { error: { code: string; message: string; details: Array<{ path: string; message: string }> } };
    assert.equal(err.error.code, 'invalid_argument');
    assert.deepEqual(
      err.error.details.map((d) => d.path),
      ['input.records'],
    );
    assert.match(err.error.details[0]!.message, /flow wordcount maps task tokenize over it: expected an array, got nothing \(missing\)/);
    const notArray = await j.api('/v1/flows', { method: 'POST', json: { flow: 'wordcount', input: { records: { r1: 'x' } } } });
    assert.equal(notArray.status, 400);
    assert.match(await notArray.text(), /input\.records.*expected an array, got object/);
    // gRPC: INVALID_ARGUMENT with the same field detail.
    const client = ingestClient(j.grpc, j.apiKey);
    try {
      await assert.rejects(client.submit({ flow: 'wordcount', input: { rows: [] } }), (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
        const details = JSON.parse(String(e.metadata.get('jetflow-error-details')[0])) as Array<{ path: string }>;
        assert.deepEqual(
          details.map((d) => d.path),
          ['input.records'],
        );
        return true;
      });
    } finally {
      client.close();
    }

    // The NATS door: accepted by the stream, then refused by the orchestrator, naming the path.
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'dag-bad-path-1');
    h.set('Content-Type', 'application/json');
    await j.nc.jetstream().publish('jetflow.ingest.default.wordcount', new TextEncoder().encode(JSON.stringify({ input: { rows: [] } })), { headers: h });
    const jsm = await j.nc.jetstreamManager();
    const until = Date.now() + 20_000;
    let reason = '';
    for (; Date.now() < until; await new Promise((res) => setTimeout(res, 200))) {
      try {
        const m = await jsm.streams.getMessage('JETFLOW_DLQ', { last_by_subj: 'jetflow.dlq.ingest.jetflow.ingest.default.wordcount' });
        reason = m.header.get('Jetflow-Dlq-Reason');
        break;
      } catch {
        // not dead-lettered yet
      }
    }
    assert.match(reason, /input\.records: flow wordcount maps task tokenize over it/);
  });
});

const silent = { child: () => silent, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
