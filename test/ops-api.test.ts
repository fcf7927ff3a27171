import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { create, createFileRegistry, fromBinary, toBinary, type DescMessage, type DescService } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { STATUS, type ErrorCode } from '@jetflow/errors';
import { startCallbackReceiver, startJetflow, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { reflectionClient } from './reflection-client.js';

const OTHER_KEY = 'other-key-0123456789abcdef';

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface DeadLetterItem {
  seq: number;
  source: string;
  code: string;
  attempts: number | null;
  flowId: string | null;
  originalSubject: string;
  reason: string;
}

describe('operations API', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const as =
    (key: string) =>
    (path: string, init: RequestInit = {}) =>
      fetch(`${j.http}${path}`, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.headers ?? {}) } });
  const submit = async (key: string, extra: Record<string, unknown> = {}) => {
    const r = await as(key)('/v1/flows', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sampleSubmission(cb.url, extra)) });
    assert.equal(r.status, 202);
    return ((await r.json()) as { flowId: string }).flowId;
  };

  before(async () => {
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    j = await startJetflow({
      env: { JETFLOW_CALLBACK_MAX_ATTEMPTS: '2', JETFLOW_CALLBACK_BACKOFF_MS: '50', JETFLOW_CALLBACK_BACKOFF_MAX_MS: '100' },
      serviceEnv: { ingest: { JETFLOW_OPERATOR_TENANTS: 'other' } },
    });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  test("GET /v1/flows lists the tenant's flows only, filters by status and pages with a cursor", async () => {
    const mine = [await submit(j.apiKey), await submit(j.apiKey), await submit(j.apiKey)];
    const theirs = await submit(OTHER_KEY);
    await cb.waitForFlows([...mine, theirs]);
    const all = await until('the three flows listed as succeeded', async () => {
      const body = (await (await j.api('/v1/flows?limit=200')).json()) as { flows: Array<{ flowId: string; status: string; tasks: { total: number; succeeded: number } }> };
      return mine.every((id) => body.flows.find((f) => f.flowId === id)?.status === 'succeeded') && body;
    });
    assert.ok(!all.flows.some((f) => f.flowId === theirs), "another tenant's flow is not listed");
    // insights v2: prepare and score (mapped), the three datasets, the three analyses.
    assert.deepEqual(all.flows.find((f) => f.flowId === mine[0])!.tasks, { total: 8, succeeded: 8, failed: 0, running: 0 });

    const other = (await (await as(OTHER_KEY)('/v1/flows')).json()) as { flows: Array<{ flowId: string }> };
    assert.deepEqual(
      other.flows.map((f) => f.flowId),
      [theirs],
    );

    const running = (await (await j.api('/v1/flows?status=running,failed')).json()) as { flows: unknown[] };
    assert.equal(running.flows.length, 0);
    const ok = (await (await j.api('/v1/flows?status=succeeded')).json()) as { flows: Array<{ status: string }> };
    assert.ok(ok.flows.length >= 3 && ok.flows.every((f) => f.status === 'succeeded'));

    // Two at a time: pages never repeat a flow and together hold all of them, newest change first.
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `&cursor=${cursor}` : '';
      const page = (await (await j.api(`/v1/flows?limit=2${q}`)).json()) as { flows: Array<{ flowId: string }>; nextCursor: string | null };
      assert.ok(page.flows.length <= 2);
      seen.push(...page.flows.map((f) => f.flowId));
      cursor = page.nextCursor;
    } while (cursor);
    assert.equal(new Set(seen).size, seen.length, 'no flow on two pages');
    for (const id of mine) assert.ok(seen.includes(id), `${id} is on a page`);
    assert.ok(!seen.includes(theirs));

    const bad = await j.api('/v1/flows?limit=0&status=done');
    assert.equal(bad.status, 400);
    const err = (await bad.json()) as { error: { code: string; details: Array<{ path: string }> } };
    assert.equal(err.error.code, 'invalid_argument');
    assert.deepEqual(err.error.details.map((d) => d.path).sort(), ['limit', 'status']);
    const badCursor = (await (await j.api('/v1/flows?cursor=nonsense')).json()) as { error: { details: Array<{ path: string }> } };
    assert.equal(badCursor.error.details[0]?.path, 'cursor');
  });

  test('GET /v1/flows/{id}/timeline gives epoch-ms task times; another tenant gets 404', async () => {
    const id = await submit(j.apiKey);
    await cb.waitForFlows([id]);
    const t = await until('the finished timeline', async () => {
      const body = (await (await j.api(`/v1/flows/${id}/timeline`)).json()) as {
        status: string;
        submittedAt: number;
        traceId: string | null;
        stages: Array<{ tasks: Array<{ startedAt: number; finishedAt: number; status: string }> }>;
      };
      return body.status === 'succeeded' && body;
    });
    const tasks = t.stages.flatMap((s) => s.tasks);
    assert.equal(tasks.length, 8);
    for (const k of tasks) assert.ok(k.startedAt >= t.submittedAt && k.finishedAt >= k.startedAt, JSON.stringify(k));
    assert.equal(t.traceId, null, 'not traced without a traceparent');
    assert.equal((await as(OTHER_KEY)(`/v1/flows/${id}/timeline`)).status, 404);
  });

  test('a failed callback is dead-lettered; only its tenant sees it; redrive delivers it once with the same delivery id', async () => {
    cb.failWith = 503;
    let flowId: string;
    let dl: DeadLetterItem;
    try {
      flowId = await submit(j.apiKey, { idempotencyKey: 'ops-dlq-1' });
      dl = await until('the callback in the dead letters', async () => {
        const body = (await (await j.api('/v1/deadletters?source=callback')).json()) as { deadLetters: DeadLetterItem[] };
        return body.deadLetters.find((d) => d.flowId === flowId);
      });
    } finally {
      cb.failWith = undefined;
    }
    assert.equal(dl.source, 'callback');
    assert.equal(dl.code, 'callback_failed');
    assert.equal(dl.attempts, 2);
    assert.equal(dl.originalSubject, 'jetflow.callback.default');
    assert.match(dl.reason, /HTTP 503/);
    assert.equal(cb.byFlow(flowId).length, 0, 'nothing accepted yet');

    // Another tenant: not listed, not readable, not redrivable.
    const theirs = (await (await as(OTHER_KEY)('/v1/deadletters')).json()) as { deadLetters: DeadLetterItem[] };
    assert.ok(!theirs.deadLetters.some((d) => d.seq === dl.seq));
    assert.equal((await as(OTHER_KEY)(`/v1/deadletters/${dl.seq}`)).status, 404);
    assert.equal((await as(OTHER_KEY)(`/v1/deadletters/${dl.seq}/redrive`, { method: 'POST' })).status, 404);

    const detail = (await (await j.api(`/v1/deadletters/${dl.seq}`)).json()) as { headers: Record<string, string[]>; body: { encoding: string } };
    assert.deepEqual(detail.headers['Jetflow-Dlq-Source'], ['callback']);
    assert.equal(detail.body.encoding, 'base64', 'a protobuf callback job');

    const r = await j.api(`/v1/deadletters/${dl.seq}/redrive`, { method: 'POST' });
    assert.equal(r.status, 200);
    const rd = (await r.json()) as { subject: string; msgId: string; stream: string; duplicate: boolean };
    assert.deepEqual(
      { subject: rd.subject, msgId: rd.msgId, stream: rd.stream, duplicate: rd.duplicate },
      { subject: 'jetflow.callback.default', msgId: `redrive:${dl.seq}`, stream: 'JETFLOW_CALLBACKS', duplicate: false },
    );
    await cb.waitForFlows([flowId]);
    await new Promise((res) => setTimeout(res, 300));
    const got = cb.byFlow(flowId);
    assert.equal(got.length, 1, 'delivered exactly once');
    assert.equal(got[0]!.headers['jetflow-delivery-id'], `dlv_${flowId}`);
    assert.equal(got[0]!.signatureValid, true);
    assert.equal(got[0]!.body.idempotencyKey, 'ops-dlq-1');

    assert.equal((await j.api(`/v1/deadletters/${dl.seq}`)).status, 404, 'the dead letter is gone');
    assert.equal((await j.api(`/v1/deadletters/${dl.seq}/redrive`, { method: 'POST' })).status, 404);
    assert.equal((await j.api('/v1/deadletters/abc/redrive', { method: 'POST' })).status, 400);
  });

  test('a dead letter no tenant can be found for is shown to operator tenants only', async () => {
    const js = j.nc.jetstream();
    await js.publish('jetflow.task.dataset.text', new Uint8Array([0xff, 0xff, 0xff, 0x01]));
    const poison = await until("the undecodable task in the operator's dead letters", async () => {
      const body = (await (await as(OTHER_KEY)('/v1/deadletters?source=task')).json()) as { deadLetters: DeadLetterItem[] };
      return body.deadLetters.find((d) => d.code === 'decode_error');
    });
    assert.equal(poison.flowId, null);
    assert.equal(poison.originalSubject, 'jetflow.task.dataset.text');
    const mine = (await (await j.api('/v1/deadletters?source=task')).json()) as { deadLetters: DeadLetterItem[] };
    assert.ok(!mine.deadLetters.some((d) => d.seq === poison.seq), 'a plain tenant does not see it');
  });

  test('GET /v1/consumers reports every durable consumer with lag and a throughput estimate', async () => {
    const first = (await (await j.api('/v1/consumers')).json()) as {
      consumers: Array<{
        name: string;
        stream: string;
        numPending: number;
        numAckPending: number;
        numRedelivered: number;
        numWaiting: number;
        delivered: number;
        deliveredPerSec: number | null;
      }>;
      streams: Array<{ name: string }>;
    };
    const names = first.consumers.map((c) => c.name);
    for (const n of [
      'orchestrator-ingest-default',
      'callback-sender',
      'task-dataset-text',
      'task-dataset-features',
      'task-dataset-embeddings',
      'task-analyst-sentiment',
      'task-analyst-anomaly',
      'task-analyst-keywords',
    ])
      assert.ok(names.includes(n), n);
    for (let p = 0; p < 8; p++) assert.ok(names.includes(`orchestrator-p${p}`));
    assert.deepEqual(first.streams.map((s) => s.name).sort(), ['JETFLOW_CALLBACKS', 'JETFLOW_DLQ', 'JETFLOW_EVENTS', 'JETFLOW_INGEST', 'JETFLOW_RESULTS', 'JETFLOW_TASKS']);
    for (const c of first.consumers)
      for (const k of ['numPending', 'numAckPending', 'numRedelivered', 'numWaiting', 'delivered'] as const) assert.equal(typeof c[k], 'number', `${c.name}.${k}`);
    const before = first.consumers.find((c) => c.name === 'task-dataset-text')!.delivered;

    const ids = await Promise.all([1, 2, 3, 4].map(() => submit(j.apiKey)));
    await cb.waitForFlows(ids);
    await new Promise((r) => setTimeout(r, 1_100));
    const second = (await (await j.api('/v1/consumers')).json()) as typeof first;
    const text = second.consumers.find((c) => c.name === 'task-dataset-text')!;
    assert.ok(text.delivered >= before + 4);
    assert.ok(text.deliveredPerSec !== null && text.deliveredPerSec > 0, `rate ${text.deliveredPerSec}`);
    assert.ok(second.consumers.every((c) => typeof c.deliveredPerSec === 'number'));
  });

  test("GET /v1/stream/events streams the tenant's events (with ?access_token=), not another tenant's", async () => {
    const ac = new AbortController();
    const res = await fetch(`${j.http}/v1/stream/events?access_token=${j.apiKey}`, { signal: ac.signal });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const events: Array<{ flowId: string; type: string; tenant: string }> = [];
    const reading = (async () => {
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = block.split('\n').find((l) => l.startsWith('data: '));
            if (block.startsWith('event: event') && data) events.push(JSON.parse(data.slice(6)) as (typeof events)[number]);
          }
        }
      } catch {
        // aborted
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    const theirs = await submit(OTHER_KEY);
    const mine = await submit(j.apiKey);
    await until('flow.completed of my flow', async () => events.some((e) => e.flowId === mine && e.type === 'flow.completed'));
    await cb.waitForFlows([theirs]);
    ac.abort();
    await reading;
    assert.ok(
      events.every((e) => e.tenant === 'default'),
      "only my tenant's events",
    );
    assert.ok(!events.some((e) => e.flowId === theirs));
    const types = events.filter((e) => e.flowId === mine).map((e) => e.type);
    for (const t of ['flow.started', 'task.succeeded', 'flow.completed']) assert.ok(types.includes(t), `${t} in ${types.join(',')}`);

    // The query token works on SSE routes only: this one and a flow's own events.
    const own = await fetch(`${j.http}/v1/flows/${mine}/events?access_token=${j.apiKey}`);
    assert.equal(own.status, 200);
    assert.match(await own.text(), /"status":"succeeded"/);
    assert.equal((await fetch(`${j.http}/v1/flows?access_token=${j.apiKey}`)).status, 401);
    assert.equal((await fetch(`${j.http}/v1/stream/events?access_token=wrong-key-0123456789`)).status, 401);
  });

  test('/docs/json describes every route, and every error code is documented', async () => {
    const doc = (await (await fetch(`${j.http}/docs/json`)).json()) as {
      openapi: string;
      info: { description: string };
      components: { schemas: { ErrorCode: { enum: string[] } } };
      paths: Record<string, Record<string, { summary?: string; tags?: string[]; security?: unknown[]; responses: Record<string, { description: string }> }>>;
    };
    assert.match(doc.openapi, /^3\./);
    for (const [code, s] of Object.entries(STATUS)) {
      assert.ok(doc.components.schemas.ErrorCode.enum.includes(code), `${code} in ErrorCode`);
      assert.ok(doc.info.description.includes(`| \`${code}\` | ${s.http} | ${s.grpc} |`), `${code} in the error table with HTTP ${s.http}`);
    }
    const expected = [
      '/healthz',
      '/readyz',
      '/v1/flows',
      '/v1/flows/{id}',
      '/v1/flows/{id}/cancel',
      '/v1/flows/{id}/events',
      '/v1/flows/{id}/timeline',
      '/v1/deadletters',
      '/v1/deadletters/{seq}',
      '/v1/deadletters/{seq}/redrive',
      '/v1/consumers',
      '/v1/stream/events',
    ];
    for (const p of expected) assert.ok(doc.paths[p], `${p} documented`);
    const documentedCodes = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method.toUpperCase()} ${path}`;
        assert.ok(op.summary && !op.tags?.includes('undocumented'), `${where} has docs`);
        assert.ok(
          Object.keys(op.responses).some((s) => s.startsWith('2')),
          `${where} has a success response`,
        );
        if (!path.startsWith('/v1/')) continue;
        assert.ok(op.responses['401'], `${where} documents 401`);
        for (const [status, r] of Object.entries(op.responses)) {
          if (Number(status) < 400) continue;
          // Every code named under a status maps to that status in the one table.
          const named = [...r.description.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
          assert.ok(named.length > 0, `${where} ${status} names its codes`);
          for (const c of named) {
            assert.equal(STATUS[c as ErrorCode]?.http, Number(status), `${where}: ${c} documented under ${status}`);
            documentedCodes.add(c);
          }
        }
      }
    }
    // Codes the HTTP routes answer with are documented on the routes themselves.
    for (const c of ['invalid_argument', 'unauthenticated', 'not_found', 'conflict', 'payload_too_large', 'unsupported_media_type', 'overloaded', 'unavailable', 'internal'])
      assert.ok(documentedCodes.has(c), `${c} on some route`);
    const ui = await fetch(`${j.http}/docs`);
    assert.equal(ui.status, 200);
    assert.match(await ui.text(), /swagger/i);
  });

  test('gRPC reflection: a generic client lists IngestService, gets its descriptors, and calls it', async () => {
    const rc = reflectionClient(j.grpc);
    try {
      const services = await rc.listServices();
      assert.ok(services.includes('jetflow.v1.IngestService'), services.join(','));
      assert.ok(services.includes('jetflow.v1.WorkerService'), `the worker door is listed too: ${services.join(',')}`);
      const raw = await rc.fileContainingSymbol('jetflow.v1.IngestService');
      const files = raw.map((b) => fromBinary(FileDescriptorProtoSchema, b));
      const ingest = files.find((f) => f.service.some((s) => s.name === 'IngestService'));
      // Real file names and imports, so clients can follow the imports (grpcurl does).
      assert.equal(ingest?.name, 'jetflow/v1/ingest.proto');
      assert.deepEqual(ingest.dependency, ['google/protobuf/struct.proto']);
      assert.deepEqual(ingest.service[0]!.method.map((m) => m.name).sort(), ['CancelFlow', 'CancelFlows', 'GetFlow', 'SignalFlow', 'SubmitFlow', 'WatchFlow']);
      // Dependencies the client may not have: fetch them by name, as grpcurl does.
      const struct = (await rc.fileByFilename('google/protobuf/struct.proto')).map((b) => fromBinary(FileDescriptorProtoSchema, b));
      assert.equal(struct[0]?.name, 'google/protobuf/struct.proto');
      for (const f of struct) if (!files.some((x) => x.name === f.name)) files.push(f);
      // Imports first, as a FileDescriptorSet wants them.
      const ordered = [...files].sort((a, b) => a.dependency.length - b.dependency.length);
      const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
      const svc = registry.getService('jetflow.v1.IngestService') as DescService;
      const method = svc.methods.find((m) => m.name === 'SubmitFlow')!;
      const codec = (d: DescMessage) => ({ ser: (v: unknown) => Buffer.from(toBinary(d, v as never)), de: (b: Buffer) => fromBinary(d, b) as unknown as Record<string, unknown> });
      const i = codec(method.input);
      const o = codec(method.output);
      const client = new grpc.Client(j.grpc, grpc.credentials.createInsecure());
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${j.apiKey}`);
      const s = sampleSubmission(cb.url);
      const req = create(method.input, { flow: 'insights', input: s.input, callbackUrl: cb.url, idempotencyKey: 'reflected-1' });
      const res = await new Promise<Record<string, unknown>>((resolve, reject) =>
        client.makeUnaryRequest(`/jetflow.v1.IngestService/SubmitFlow`, i.ser, o.de, req, md, (err, r) => (err ? reject(err) : resolve(r!))),
      );
      client.close();
      assert.equal(res.status, 'accepted');
      assert.match(String(res.flowId), /^f[a-z0-9]+$/);
      await cb.waitForFlows([String(res.flowId)]);
    } finally {
      rc.close();
    }
  });

  // Last: it stops ingest.
  test('ingest drains and exits 0 on SIGTERM while a live event stream is open', async () => {
    const res = await fetch(`${j.http}/v1/stream/events?access_token=${j.apiKey}`);
    assert.equal(res.status, 200);
    const started = Date.now();
    const code = await j.stack.kill('ingest', 0, 'SIGTERM');
    assert.equal(code, 0, 'clean exit, not the forced one');
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
    await res.body?.cancel().catch(() => undefined);
  });
});
