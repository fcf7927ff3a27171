import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { Validator } from '@seriousme/openapi-schema-validator';
import { validate as readmeValidate } from '@readme/openapi-parser';
import { startCallbackReceiver, startJetflow, sampleSubmission, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

// The served OpenAPI document, checked by two validators written by others, and real answers of a
// running stack checked against it with ajv (JSON Schema 2020-12, OpenAPI 3.1's dialect).

type Json = Record<string, unknown>;
interface Operation {
  operationId?: string;
  requestBody?: { content: Record<string, { schema: Json }> };
  responses: Record<string, { description: string; content?: Record<string, { schema?: Json; example?: unknown }>; 'x-sse-events'?: Record<string, { $ref: string }> }>;
}
interface Doc {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Json> };
}

/**
 * Answers carry no field the document does not name: objects that list their properties get
 * additionalProperties false here (the served document leaves them open, so additions are not breaking).
 */
function closed(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(closed);
  if (!s || typeof s !== 'object') return s;
  const o: Json = {};
  for (const [k, v] of Object.entries(s as Json)) o[k] = k === 'examples' || k === 'enum' || k === 'default' ? v : closed(v);
  if (o.properties && o.additionalProperties === undefined) o.additionalProperties = false;
  return o;
}

function newAjv() {
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  ajv.addFormat('date-time', (v: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(v) && !Number.isNaN(Date.parse(v)));
  return ajv;
}

function* operations(doc: Doc): Generator<[string, string, Operation]> {
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) yield [method, path, op];
}

const jsonOf = (r: Operation['responses'][string] | undefined) => r?.content?.['application/json'];

describe('OpenAPI document', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let doc: Doc;
  const ajv = newAjv();
  const compiled = new Map<string, ValidateFunction>();
  const compile = (key: string, schema: unknown) => {
    let v = compiled.get(key);
    if (!v) compiled.set(key, (v = ajv.compile(closed(schema) as Json)));
    return v;
  };
  const errorsOf = (v: ValidateFunction) => (v.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message} ${JSON.stringify(e.params)}`).join('; ');

  /** Operations whose answers were checked, as "operationId status". */
  const checked = new Set<string>();
  function opAt(method: string, template: string): Operation {
    const op = doc.paths[template]?.[method.toLowerCase()];
    assert.ok(op, `${method} ${template} is in the document`);
    return op;
  }

  /** Fetches, then checks status, content type and body against what the document says of that answer. */
  async function call(method: string, template: string, path: string, init: RequestInit & { json?: unknown; key?: string | null } = {}): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = { ...((init.headers as Record<string, string>) ?? {}) };
    if (init.key !== null) headers.authorization = `Bearer ${init.key ?? j.apiKey}`;
    let body = init.body;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    }
    const res = await fetch(`${j.http}${path}`, { ...init, method, headers, body: body ?? null });
    const op = opAt(method, template);
    const where = `${method} ${path} → ${res.status}`;
    const documented = op.responses[String(res.status)];
    assert.ok(documented, `${where}: status not documented for ${op.operationId} (documented: ${Object.keys(op.responses).join(', ')})`);
    const text = await res.text();
    const ct = res.headers.get('content-type') ?? '';
    const media = Object.keys(documented.content ?? {});
    assert.ok(
      media.some((m) => ct.startsWith(m)),
      `${where}: content-type ${ct}, documented ${media.join(', ')}`,
    );
    let parsed: unknown = text;
    if (ct.startsWith('application/json')) {
      parsed = JSON.parse(text);
      const v = compile(`${op.operationId} ${res.status}`, jsonOf(documented)!.schema);
      assert.ok(v(parsed), `${where}: answer does not match the document: ${errorsOf(v)}\n${text.slice(0, 2000)}`);
    }
    checked.add(`${op.operationId} ${res.status}`);
    return { status: res.status, body: parsed };
  }

  /** The component schema the document names for an event of an SSE route. */
  function eventSchema(op: Operation, event: string): ValidateFunction {
    const ref = op.responses['200']?.['x-sse-events']?.[event]?.$ref;
    assert.ok(ref, `${op.operationId} documents its "${event}" events`);
    const name = /^#\/components\/schemas\/(.+)$/.exec(ref)![1]!;
    return compile(`component ${name}`, doc.components.schemas[name]);
  }

  /**
   * Reads server-sent events until `check` returns true (or the stream ends); each event's data must
   * fit the schema the document names for it.
   */
  async function sse(method: 'get', template: string, path: string, check: (event: string, data: unknown) => boolean | void, opened?: () => Promise<void> | void): Promise<void> {
    const op = opAt(method, template);
    const ac = new AbortController();
    const res = await fetch(`${j.http}${path}`, { headers: { authorization: `Bearer ${j.apiKey}` }, signal: ac.signal });
    assert.equal(res.status, 200);
    assert.ok(op.responses['200']?.content?.['text/event-stream'], `${op.operationId} documents text/event-stream`);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    checked.add(`${op.operationId} 200`);
    await opened?.();
    const dec = new TextDecoder();
    let buf = '';
    const timer = setTimeout(() => ac.abort(), 30_000);
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!event || data === undefined) continue;
          const value = JSON.parse(data) as unknown;
          const v = eventSchema(op, event);
          assert.ok(v(value), `${op.operationId} "${event}" does not match the document: ${errorsOf(v)}\n${data.slice(0, 2000)}`);
          if (check(event, value) === true) return;
        }
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
  }

  // The snapshot is what GET answers: the getFlow schema must accept it too.
  const checkSnapshot = (data: unknown) => {
    const v = compile('getFlow 200', jsonOf(opAt('get', '/v1/flows/{id}').responses['200'])!.schema);
    assert.ok(v(data), `snapshot does not match getFlow's answer: ${errorsOf(v)}\n${JSON.stringify(data)}`);
  };

  before(async () => {
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    j = await startJetflow({ env: { JETFLOW_CALLBACK_MAX_ATTEMPTS: '2', JETFLOW_CALLBACK_BACKOFF_MS: '50', JETFLOW_CALLBACK_BACKOFF_MAX_MS: '100' } });
    const res = await fetch(`${j.http}/docs/json`);
    assert.equal(res.status, 200);
    doc = (await res.json()) as Doc;
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  test('is valid OpenAPI 3.1 for two independent validators', async () => {
    assert.equal(doc.openapi, '3.1.0');
    const a = await new Validator().validate(structuredClone(doc) as never);
    assert.ok(a.valid, `@seriousme/openapi-schema-validator: ${JSON.stringify(a.errors, null, 1)}`);
    const b = await readmeValidate(structuredClone(doc) as never);
    assert.ok(b.valid, `@readme/openapi-parser: ${JSON.stringify(b.valid ? [] : b.errors, null, 1)}`);
    assert.deepEqual(b.warnings, []);
    assert.doesNotMatch(JSON.stringify(doc), /"nullable":/, 'no OpenAPI 3.0 nullable');
  });

  test('every operation has a unique operationId, and every success answer an example that fits its schema and required fields', () => {
    const ids = new Map<string, string>();
    for (const [method, path, op] of operations(doc)) {
      const where = `${method.toUpperCase()} ${path}`;
      assert.match(op.operationId ?? '', /^[a-z][A-Za-z]+$/, `${where} has an operationId`);
      assert.ok(!ids.has(op.operationId!), `${op.operationId} used by ${ids.get(op.operationId!)} and ${where}`);
      ids.set(op.operationId!, where);
      const ok = Object.entries(op.responses).filter(([s]) => s.startsWith('2'));
      assert.ok(ok.length, `${where} has a success response`);
      for (const [status, r] of ok) {
        const media = Object.entries(r.content ?? {});
        assert.ok(media.length, `${where} ${status} has content`);
        for (const [type, m] of media) {
          assert.ok(m.example !== undefined, `${where} ${status} ${type} has an example`);
          if (type !== 'application/json') continue;
          assert.ok(Array.isArray(m.schema?.required) && (m.schema.required as unknown[]).length, `${where} ${status} names its required fields`);
          const v = compile(`example ${op.operationId} ${status}`, m.schema);
          assert.ok(v(m.example), `${where} ${status}: the example does not fit the schema: ${errorsOf(v)}`);
        }
      }
    }
    assert.ok(ids.size >= 15, `${ids.size} operations`);
  });

  test('the request schemas are the ones that validate: the document and the server accept and refuse the same submissions', async () => {
    const op = opAt('post', '/v1/flows');
    const body = compile('submission', op.requestBody!.content['application/json']!.schema);
    const input = compile('FlowInput.insights', doc.components.schemas['FlowInput.insights']);
    const example = op.requestBody!.content['application/json'] as { example?: unknown };
    assert.ok(body(example.example), 'the request example fits');
    const base = sampleSubmission(cb.url);
    const cases: Array<[string, Json]> = [
      ['valid', base],
      ['unknown field', { ...base, colour: 'red' }],
      ['deadline too short', { ...base, deadlineMs: 50 }],
      ['fractional deadline', { ...base, deadlineMs: 1000.5 }],
      ['metadata key too long', { ...base, metadata: { ['k'.repeat(129)]: 'v' } }],
      ['idempotency key with a space', { ...base, idempotencyKey: 'a b' }],
      ['no input', { flow: 'insights', callbackUrl: cb.url }],
      ['a record without text', { ...base, input: { records: [{ id: 'r1' }] } }],
      ['a record with an unknown field', { ...base, input: { records: [{ id: 'r1', text: 'x', extra: 1 }] } }],
      ['no records', { ...base, input: { records: [] } }],
    ];
    for (const [what, sub] of cases) {
      const docAccepts = body(sub) && input(sub.input);
      const r = await call('POST', '/v1/flows', '/v1/flows', { json: sub });
      assert.equal(r.status === 202, docAccepts, `${what}: document ${docAccepts ? 'accepts' : 'refuses'}, server answered ${r.status} ${JSON.stringify(r.body)}`);
    }
    const list = opAt('get', '/v1/flows');
    const limitSchema = (list as unknown as { parameters: Array<{ name: string; schema: Json }> }).parameters.find((p) => p.name === 'limit')!.schema;
    const limit = compile('limit', limitSchema);
    for (const n of [0, 1, 200, 201]) {
      const r = await call('GET', '/v1/flows', `/v1/flows?limit=${n}`);
      assert.equal(r.status === 200, limit(n), `limit=${n}: server answered ${r.status}`);
    }
  });

  test('real answers of every operation match the document', async () => {
    await call('GET', '/healthz', '/healthz', { key: null });
    await call('GET', '/readyz', '/readyz', { key: null });
    const metrics = await call('GET', '/metrics', '/metrics', { key: null });
    assert.match(metrics.body as string, /^# (HELP|TYPE) /m);

    // A flow from start to end: its states, its timeline, its snapshot stream.
    const a = await call('POST', '/v1/flows', '/v1/flows', { json: sampleSubmission(cb.url, { idempotencyKey: 'openapi-a' }) });
    assert.equal(a.status, 202);
    const idA = (a.body as { flowId: string }).flowId;
    await call('GET', '/v1/flows/{id}', `/v1/flows/${idA}`);
    await cb.waitForFlows([idA]);
    const done = await call('GET', '/v1/flows/{id}', `/v1/flows/${idA}`);
    assert.equal((done.body as { status: string }).status, 'succeeded');
    assert.ok((done.body as { results?: unknown }).results, 'a finished flow has results');
    await call('GET', '/v1/flows/{id}/timeline', `/v1/flows/${idA}/timeline`);
    await call('GET', '/v1/flows/{id}/attempts', `/v1/flows/${idA}/attempts`);
    await sse('get', '/v1/flows/{id}/events', `/v1/flows/${idA}/events`, (event, data) => {
      assert.equal(event, 'snapshot');
      checkSnapshot(data);
    });

    // Live events: the tenant's stream and one flow's, while a second flow runs.
    const events: string[] = [];
    let idB = '';
    await sse(
      'get',
      '/v1/stream/events',
      '/v1/stream/events',
      (event, data) => {
        assert.equal(event, 'event');
        const e = data as { flowId: string; type: string };
        if (e.flowId === idB) events.push(e.type);
        return e.flowId === idB && e.type === 'flow.completed';
      },
      async () => {
        // Subscribed: submit the flow whose events are checked, and follow it on its own route too.
        const b = await call('POST', '/v1/flows', '/v1/flows', { json: sampleSubmission(cb.url) });
        idB = (b.body as { flowId: string }).flowId;
        const kinds: string[] = [];
        await sse('get', '/v1/flows/{id}/events', `/v1/flows/${idB}/events`, (event, data) => {
          kinds.push(event);
          if (event === 'snapshot') checkSnapshot(data);
        });
        assert.equal(kinds[0], 'snapshot');
        assert.equal(kinds.at(-1), 'snapshot');
        assert.ok(kinds.includes('event'), kinds.join(','));
      },
    );
    assert.ok(events.includes('task.succeeded') && events.includes('flow.completed'), events.join(','));

    const list = await call('GET', '/v1/flows', '/v1/flows?limit=3');
    assert.ok((list.body as { flows: unknown[] }).flows.length > 0);
    await call('GET', '/v1/flows', '/v1/flows?status=succeeded&limit=2');
    await call('GET', '/v1/flows', '/v1/flows?status=done');
    await call('GET', '/v1/flows', '/v1/flows', { key: null });
    await call('GET', '/v1/flows', '/v1/flows', { key: 'wrong-key-0123456789abcdef' });
    await call('GET', '/v1/routes', '/v1/routes?subject=jetflow.task.analyst.>');
    await call('GET', '/v1/routes', '/v1/routes?subject=nope');
    // Flow definitions: a new name, the same again, other content under its version, a bad body; the reads.
    const defn = {
      name: 'openapi-def',
      version: 1,
      deadlineMs: 10_000,
      stages: [
        {
          name: 'only',
          onFailure: 'continue',
          tasks: [{ name: 't', subject: 'jetflow.task.custom.nothing', softLimitMs: 1_000, hardLimitMs: 2_000, maxAttempts: 1, backoff: { initialMs: 100, maxMs: 200, multiplier: 2 } }],
        },
      ],
    };
    const putDef = (json: unknown) => call('PUT', '/v1/flow-definitions/{name}', '/v1/flow-definitions/openapi-def', { json });
    assert.equal((await putDef(defn)).status, 201);
    assert.equal((await putDef(defn)).status, 200);
    assert.equal((await putDef({ ...defn, deadlineMs: 20_000 })).status, 409);
    assert.equal((await putDef({ ...defn, version: 2, deadlineMs: 'soon' })).status, 400);
    assert.equal((await call('PUT', '/v1/flow-definitions/{name}', '/v1/flow-definitions/openapi-def', { json: defn, key: 'other-key-0123456789abcdef' })).status, 403);
    await call('GET', '/v1/flow-definitions', '/v1/flow-definitions');
    await call('GET', '/v1/flow-definitions/{name}', '/v1/flow-definitions/openapi-def');
    await call('GET', '/v1/flow-definitions/{name}/versions/{version}', '/v1/flow-definitions/openapi-def/versions/1');
    assert.equal((await call('GET', '/v1/flow-definitions/{name}/versions/{version}', '/v1/flow-definitions/openapi-def/versions/9')).status, 404);
    await call('GET', '/v1/consumers', '/v1/consumers');
    await call('GET', '/v1/workers', '/v1/workers');
    await new Promise((r) => setTimeout(r, 1_100));
    const consumers = await call('GET', '/v1/consumers', '/v1/consumers');
    assert.ok(
      (consumers.body as { consumers: Array<{ deliveredPerSec: number | null }> }).consumers.some((c) => c.deliveredPerSec !== null),
      'a second sample gives rates',
    );

    // A delayed start (scheduled, with startAt), and the schedules API.
    const later = await call('POST', '/v1/flows', '/v1/flows', { json: sampleSubmission(cb.url, { delayMs: 60_000 }) });
    assert.equal((later.body as { status: string }).status, 'scheduled');
    const idL = (later.body as { flowId: string }).flowId;
    for (let i = 0; ; i++) {
      const v = (await call('GET', '/v1/flows/{id}', `/v1/flows/${idL}`)).body as { status: string; startAt?: string };
      if (v.status === 'scheduled') {
        assert.ok(v.startAt);
        break;
      }
      assert.ok(i < 100, `the flow is ${v.status}, not scheduled`);
      await new Promise((res) => setTimeout(res, 100));
    }
    const schedule = { id: 'openapi', cron: '0 3 * * *', timezone: 'UTC', submission: { flow: 'insights', input: sampleSubmission(cb.url).input } };
    assert.equal((await call('POST', '/v1/schedules', '/v1/schedules', { json: schedule })).status, 201);
    assert.equal((await call('POST', '/v1/schedules', '/v1/schedules', { json: schedule })).status, 200);
    assert.equal((await call('POST', '/v1/schedules', '/v1/schedules', { json: { ...schedule, cron: 'nope' } })).status, 400);
    await call('GET', '/v1/schedules', '/v1/schedules');
    await call('GET', '/v1/schedules/{id}', '/v1/schedules/openapi');
    await call('POST', '/v1/schedules/{id}/pause', '/v1/schedules/openapi/pause');
    await call('POST', '/v1/schedules/{id}/resume', '/v1/schedules/openapi/resume');
    await call('DELETE', '/v1/schedules/{id}', '/v1/schedules/openapi');
    assert.equal((await call('GET', '/v1/schedules/{id}', '/v1/schedules/openapi')).status, 404);

    // Refusals.
    const unknown = 'f0000000000000000000000000';
    assert.equal((await call('GET', '/v1/flows/{id}', `/v1/flows/${unknown}`)).status, 404);
    assert.equal((await call('GET', '/v1/flows/{id}/timeline', `/v1/flows/${unknown}/timeline`)).status, 404);
    assert.equal((await call('GET', '/v1/flows/{id}/events', `/v1/flows/${unknown}/events`)).status, 404);
    assert.equal((await call('POST', '/v1/flows/{id}/cancel', `/v1/flows/${unknown}/cancel`, { json: {} })).status, 404);
    assert.equal((await call('POST', '/v1/flows/{id}/cancel', `/v1/flows/${idA}/cancel`, { json: {} })).status, 409, 'a finished flow');
    assert.equal((await call('POST', '/v1/flows/{id}/signals/{name}', `/v1/flows/${idA}/signals/late`, { json: 1 })).status, 409, 'a finished flow');
    assert.equal((await call('POST', '/v1/flows/{id}/pause', `/v1/flows/${unknown}/pause`)).status, 404);
    assert.equal((await call('POST', '/v1/flow-definitions/{name}/pause', '/v1/flow-definitions/nosuchflow/pause')).status, 404);
    assert.equal((await call('POST', '/v1/flow-definitions/{name}/pause', '/v1/flow-definitions/insights/pause', { json: { reason: 'openapi' } })).status, 200);
    assert.equal((await call('POST', '/v1/flow-definitions/{name}/resume', '/v1/flow-definitions/insights/resume')).status, 200);
    assert.equal((await call('POST', '/v1/subjects/{subject}/pause', '/v1/subjects/jetflow.task.analyst.keywords/pause')).status, 200);
    assert.equal((await call('POST', '/v1/subjects/{subject}/resume', '/v1/subjects/jetflow.task.analyst.keywords/resume')).status, 200);
    assert.equal((await call('POST', '/v1/subjects/{subject}/pause', '/v1/subjects/nope/pause')).status, 400);
    assert.equal((await call('POST', '/v1/flows', '/v1/flows', { json: sampleSubmission(cb.url, { idempotencyKey: 'openapi-a', deadlineMs: 5_000 }) })).status, 409, 'same key, other body');
    assert.equal((await call('POST', '/v1/flows', '/v1/flows', { body: 'flow=insights', headers: { 'content-type': 'text/plain' } })).status, 415);
    assert.equal((await call('GET', '/v1/stream/events', '/v1/stream/events?flowId=NOT-AN-ID')).status, 400);
    // Bulk cancel by filter: a dry run, a real run that selects nothing, refusals naming the field.
    const dry = await call('POST', '/v1/flows:cancel', '/v1/flows:cancel', { json: { filter: { flow: 'insights', status: 'running' }, dryRun: true } });
    assert.equal((dry.body as { dryRun: boolean }).dryRun, true);
    assert.equal((await call('POST', '/v1/flows:cancel', '/v1/flows:cancel', { json: { filter: { idempotencyKey: 'openapi-none' } } })).status, 200);
    assert.equal((await call('POST', '/v1/flows:cancel', '/v1/flows:cancel', { json: {} })).status, 400, 'an empty filter without all');
    assert.equal((await call('POST', '/v1/flows:cancel', '/v1/flows:cancel', { json: { filter: { flow: 'insights', tenant: 'default' } }, key: 'other-key-0123456789abcdef' })).status, 403);

    // Cancel: a flow that waits for dataset workers that are not there.
    await j.stack.kill('dataset-generator');
    try {
      const c = await call('POST', '/v1/flows', '/v1/flows', { json: sampleSubmission(cb.url, { deadlineMs: 30_000 }) });
      const idC = (c.body as { flowId: string }).flowId;
      // Pause, a signal no task waits for (kept and listed), the view that shows both, resume.
      for (let i = 0; ; i++) {
        const r = await call('POST', '/v1/flows/{id}/pause', `/v1/flows/${idC}/pause`, { json: { reason: 'openapi' } });
        if (r.status === 202) break;
        assert.ok(r.status === 503 && i < 100, `pause answered ${r.status}`);
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(
        (await call('POST', '/v1/flows/{id}/signals/{name}', `/v1/flows/${idC}/signals/nobody`, { json: { any: 'payload' }, headers: { 'idempotency-key': 'openapi-sig' } })).status,
        202,
      );
      assert.equal((await call('POST', '/v1/flows/{id}/signals/{name}', `/v1/flows/${idC}/signals/bad!name`, { json: 1 })).status, 400);
      for (const end = Date.now() + 10_000; ; await new Promise((res) => setTimeout(res, 100))) {
        const v = (await call('GET', '/v1/flows/{id}', `/v1/flows/${idC}`)).body as { paused?: boolean; signals?: unknown[] };
        if (v.paused && v.signals?.length) break;
        assert.ok(Date.now() < end, `the pause and the signal show in the view: ${JSON.stringify(v)}`);
      }
      assert.equal((await call('POST', '/v1/flows/{id}/resume', `/v1/flows/${idC}/resume`)).status, 202);
      for (let i = 0; ; i++) {
        const r = await call('POST', '/v1/flows/{id}/cancel', `/v1/flows/${idC}/cancel`);
        if (r.status === 202) break;
        assert.ok(r.status === 503 && i < 100, `cancel answered ${r.status}`);
        await new Promise((res) => setTimeout(res, 100));
      }
      await cb.waitForFlows([idC]);
      const g = await call('GET', '/v1/flows/{id}', `/v1/flows/${idC}`);
      assert.equal((g.body as { status: string }).status, 'cancelled');
    } finally {
      j.stack.restart('dataset-generator');
      await waitForConsumers(j.nc);
    }

    // Dead letters: a callback the receiver refuses, listed, read, redriven.
    cb.failWith = 503;
    let seq = 0;
    try {
      const d = await call('POST', '/v1/flows', '/v1/flows', { json: sampleSubmission(cb.url) });
      const idD = (d.body as { flowId: string }).flowId;
      const end = Date.now() + 20_000;
      while (!seq) {
        const r = await call('GET', '/v1/deadletters', '/v1/deadletters?source=callback');
        seq = (r.body as { deadLetters: Array<{ seq: number; flowId: string }> }).deadLetters.find((x) => x.flowId === idD)?.seq ?? 0;
        assert.ok(seq || Date.now() < end, 'the callback is dead-lettered');
        if (!seq) await new Promise((res) => setTimeout(res, 200));
      }
    } finally {
      cb.failWith = undefined;
    }
    await call('GET', '/v1/deadletters', '/v1/deadletters?source=NOT%20A%20SOURCE');
    await call('GET', '/v1/deadletters/{seq}', `/v1/deadletters/${seq}`);
    await call('GET', '/v1/deadletters/{seq}', '/v1/deadletters/abc');
    await call('POST', '/v1/deadletters/{seq}/redrive', `/v1/deadletters/${seq}/redrive`);
    assert.equal((await call('GET', '/v1/deadletters/{seq}', `/v1/deadletters/${seq}`)).status, 404, 'gone after the redrive');
    assert.equal((await call('POST', '/v1/deadletters/{seq}/redrive', `/v1/deadletters/${seq}/redrive`)).status, 404);
    // Redrive by filter: a dry run, a real run (the one just redriven is gone: nothing matches), a refusal.
    assert.equal((await call('POST', '/v1/deadletters:redrive', '/v1/deadletters:redrive', { json: { filter: { source: 'callback' }, dryRun: true } })).status, 200);
    const none = await call('POST', '/v1/deadletters:redrive', '/v1/deadletters:redrive', { json: { filter: { source: 'callback', code: 'callback_failed' } } });
    assert.equal((none.body as { redriven: number }).redriven, 0);
    assert.equal((await call('POST', '/v1/deadletters:redrive', '/v1/deadletters:redrive', { json: { filter: { code: 'Not A Code' } } })).status, 400);

    // Every operation's success answer was seen and matched.
    const missing = [...operations(doc)]
      .flatMap(([, , op]) =>
        Object.keys(op.responses)
          .filter((s) => s.startsWith('2') && !(op.operationId === 'readyz' && s === '503'))
          .slice(0, 1)
          .map((s) => `${op.operationId} ${s}`),
      )
      .filter((k) => !checked.has(k));
    assert.deepEqual(missing, [], 'success answers not exercised');
    for (const s of ['400', '401', '404', '409', '415'])
      assert.ok(
        [...checked].some((k) => k.endsWith(` ${s}`)),
        `some ${s} checked`,
      );
  });
});
