/**
 * Fuzzing every door of one stack with NATS identities, seeded (JETFLOW_FUZZ_SEED) and bounded: over
 * 10,000 generated inputs across HTTP (bodies, headers, routes), gRPC (random bytes and mutated valid
 * messages) and the NATS door (random bytes, wrong content types, odd headers, bad subjects). No process
 * crashes; HTTP answers are typed 4xx errors (or 503), gRPC answers typed statuses (never INTERNAL or
 * UNKNOWN); every NATS message stored is dead-lettered once, every other refused at publish; no flow
 * exists but those a door accepted. Then the property: any valid submission, through any door and
 * however often repeated, yields exactly one terminal flow and one callback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders, type NatsConnection } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { FlowRequestSchema, SubmitFlowResponseSchema } from '@jetflow/proto';
import { INGEST_CONTENT_TYPE, STREAMS } from '@jetflow/messaging';
import { mulberry32, type Rng } from '@jetflow/random';
import { assertExactlyOnce, jetflowPerSuite, TEST_SECRET, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';
import { malformed, rawClient, validRequests } from './grpc-raw.js';

const SEED = Number(process.env.JETFLOW_FUZZ_SEED ?? 20_261_202);
const COUNTS = { http: 5_200, grpc: 2_000, nats: 3_000, property: 100, repeats: 40 };
const enc = new TextEncoder();

// ---------------------------------------------------------------- generators

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const int = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const bytes = (rng: Rng, n: number) => Uint8Array.from({ length: n }, () => int(rng, 0, 255));
const WORDS = ['late', 'damaged', 'great', 'refund', 'fast', 'shipping', 'support', 'broken', 'happy', 'slow', 'box', 'price', 'quality', 'again', 'never'];
const text = (rng: Rng) => Array.from({ length: int(rng, 1, 12) }, () => pick(rng, WORDS)).join(' ');
/** Printable ASCII (what a header value may hold); sometimes with the characters subjects and keys must not. */
const junk = (rng: Rng, n: number) => Array.from({ length: n }, () => String.fromCharCode(int(rng, 32, 126))).join('');
const STRANGE = ['', ' ', 'a b', 'x*', 'y>', '.', '..', 'ü', '\u0000', '__proto__', 'constructor', 'Insights', 'x'.repeat(300), '%00', '../../etc'];

function records(rng: Rng) {
  return Array.from({ length: int(rng, 1, 6) }, (_, i) => ({
    id: `r${i}`,
    text: text(rng),
    ...(rng() < 0.5 ? { fields: { rating: int(rng, 1, 5), amount: int(rng, 0, 9_999) / 100 } } : {}),
  }));
}

/** A valid insights submission. */
function validBody(rng: Rng, callbackUrl: string): Record<string, unknown> {
  return { flow: 'insights', input: { records: records(rng) }, callbackUrl, metadata: { n: String(int(rng, 0, 1e6)) } };
}

/** Each of these alone makes a submission invalid, whatever else it holds. */
const INVALIDATE: Array<(b: Record<string, unknown>, rng: Rng) => void> = [
  (b) => delete b.input,
  (b) => delete b.flow && (b.input = 'x'),
  (b, rng) => (b.flow = pick(rng, [...STRANGE, 'nope', 42, null, {}])),
  (b, rng) => (b[`extra${int(rng, 0, 99)}`] = pick(rng, [1, 'x', null, [], {}])),
  (b, rng) => (b.input = pick(rng, [null, [], 'text', 7, true])),
  (b, rng) =>
    (b.input = {
      records: pick(rng, [
        [],
        'x',
        1,
        null,
        [{}],
        [{ id: 1, text: 'x' }],
        [
          { id: 'a', text: 'x' },
          { id: 'a', text: 'y' },
        ],
        [{ id: '', text: 'x' }],
        [{ id: 'a', text: 'x', colour: 'red' }],
      ]),
    }),
  (b, rng) => (b.input = { records: Array.from({ length: 2 }, () => ({ id: 'same', text: text(rng) })) }),
  (b, rng) => (b.idempotencyKey = pick(rng, ['', 'has space', 'ü', 'k'.repeat(257), 12, null])),
  (b, rng) => (b.deadlineMs = pick(rng, [-1, 0, 99, 1.5, 3_600_001, '5000', null, 1e300])),
  (b, rng) => (b.metadata = pick(rng, [Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'v'])), { k: 1 }, 'x', [], { ['k'.repeat(200)]: 'v' }, { k: 'v'.repeat(2_000) }])),
  (b, rng) =>
    (b.callbackUrl = pick(rng, [
      'ftp://example.com/x',
      'http://10.0.0.1/hook',
      'http://169.254.169.254/latest',
      'not a url',
      'http://[::1',
      '',
      7,
      'file:///etc/passwd',
      `http://${'a'.repeat(2_100)}.com`,
    ])),
];

function invalidBody(rng: Rng, callbackUrl: string): Record<string, unknown> {
  const b = validBody(rng, callbackUrl);
  for (let i = 0, n = int(rng, 1, 3); i < n; i++) pick(rng, INVALIDATE)(b, rng);
  return b;
}

/** Random JSON, sometimes deep or strange, never a valid submission (no `input` object with records). */
function randomJson(rng: Rng, depth = 0): unknown {
  const r = rng();
  if (depth > 4 || r < 0.3) return pick(rng, [null, true, 0, -1, 1e308, 'x', '', junk(rng, int(rng, 0, 40))]);
  if (r < 0.5) return Array.from({ length: int(rng, 0, 4) }, () => randomJson(rng, depth + 1));
  if (r < 0.55) return JSON.parse(`${'['.repeat(200)}${']'.repeat(200)}`) as unknown;
  return Object.fromEntries(Array.from({ length: int(rng, 0, 4) }, () => [pick(rng, [...STRANGE, 'flow', 'records', 'toString']), randomJson(rng, depth + 1)]));
}

interface HttpInput {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array | string;
  /** Reads may answer 200; nothing may answer 202 (every submission here is invalid). */
  read?: boolean;
}

function httpInput(rng: Rng, key: string, callbackUrl: string): HttpInput {
  const json = { 'content-type': 'application/json', authorization: `Bearer ${key}` };
  const post = (body: Uint8Array | string, headers: Record<string, string> = json): HttpInput => ({ method: 'POST', path: '/v1/flows', headers, body });
  const badJson = () => JSON.stringify(invalidBody(rng, callbackUrl));
  switch (int(rng, 0, 9)) {
    case 0:
      return post(bytes(rng, int(rng, 1, 2_000)));
    case 1: {
      const s = JSON.stringify(validBody(rng, callbackUrl));
      return post(s.slice(0, int(rng, 0, s.length - 1)));
    }
    case 2:
    case 3:
      return post(badJson());
    case 4:
      return post(JSON.stringify(randomJson(rng)));
    case 5: {
      const ct = pick(rng, [
        'text/plain',
        'application/xml',
        'multipart/form-data; boundary=x',
        'application/x-www-form-urlencoded',
        '',
        'application/jsonx',
        junk(rng, 20),
        INGEST_CONTENT_TYPE,
        'application/protobuf',
      ]);
      return post(rng() < 0.5 ? JSON.stringify(validBody(rng, callbackUrl)) : bytes(rng, 64), { ...json, 'content-type': ct });
    }
    case 6: {
      const auth = pick(rng, [
        '',
        'Bearer',
        'Bearer ',
        'Basic dXNlcjpwYXNz',
        `Bearer ${junk(rng, 30)}`,
        `Bearer ${'k'.repeat(3_000)}`,
        'Bearer tenant:default',
        `bearer ${key}x`,
        `Bearer ${key} extra`,
      ]);
      const h: Record<string, string> = { 'content-type': 'application/json' };
      if (auth) h.authorization = auth;
      return post(rng() < 0.5 ? JSON.stringify(validBody(rng, callbackUrl)) : badJson(), h);
    }
    case 7: {
      const h: Record<string, string> = { ...json };
      for (let i = 0, n = int(rng, 1, 6); i < n; i++) h[`x-${junk(rng, 8).replace(/[^a-z0-9]/gi, '') || 'h'}`] = junk(rng, int(rng, 0, 2_000));
      if (rng() < 0.3) h['content-encoding'] = pick(rng, ['gzip', 'br', 'deflate', 'identity', junk(rng, 6)]);
      if (rng() < 0.3) h.accept = junk(rng, 30);
      if (rng() < 0.3) h['idempotency-key'] = junk(rng, 300);
      return post(badJson(), h);
    }
    case 8: {
      const id = pick(rng, [...STRANGE.map(encodeURIComponent), deriveFlowId('default', junk(rng, 8)), junk(rng, 10).replace(/[^a-z0-9]/gi, '')]) || 'x';
      const which = int(rng, 0, 3);
      if (which === 0) return { method: 'GET', path: `/v1/flows/${id}`, headers: json };
      if (which === 1) return { method: 'POST', path: `/v1/flows/${id}/cancel`, headers: json, body: rng() < 0.5 ? JSON.stringify(randomJson(rng)) : bytes(rng, 20) };
      if (which === 2) return { method: pick(rng, ['PUT', 'DELETE', 'PATCH']), path: '/v1/flows', headers: json, body: badJson() };
      return { method: 'GET', path: `/v1/${encodeURIComponent(junk(rng, 12))}`, headers: json };
    }
    default: {
      const q = pick(rng, [
        'limit=abc',
        'limit=-1',
        'limit=100000',
        `cursor=${encodeURIComponent(junk(rng, 30))}`,
        'status=nope',
        `flow=${encodeURIComponent(junk(rng, 10))}`,
        'limit=5',
        `idempotencyKey=${encodeURIComponent(junk(rng, 10))}`,
        `source=${encodeURIComponent(junk(rng, 6))}`,
      ]);
      return { method: 'GET', path: `${pick(rng, ['/v1/flows', '/v1/deadletters'])}?${q}`, headers: json, read: true };
    }
  }
}

interface NatsInput {
  subject: string;
  headers: Array<[string, string]>;
  body: Uint8Array;
  /** Published as the test superuser (standing in for a compromised service), else as the tenant. */
  admin?: boolean;
}

function natsInput(rng: Rng, i: number, callbackUrl: string): NatsInput {
  const door = 'jetflow.ingest.default.insights';
  const id = (): Array<[string, string]> => (rng() < 0.8 ? [['Nats-Msg-Id', `fz-${SEED}-${i}`]] : []);
  const badJson = () => enc.encode(JSON.stringify(invalidBody(rng, callbackUrl)));
  switch (int(rng, 0, 9)) {
    case 0:
      return { subject: door, headers: id(), body: Uint8Array.from([0, ...bytes(rng, int(rng, 0, 3_000))]) };
    case 1: {
      // The internal content type on the public door: a FlowRequest naming another tenant, or garbage.
      const req = create(FlowRequestSchema, {
        flowId: pick(rng, ['', 'a b', deriveFlowId('other', `k${i}`)]),
        tenant: pick(rng, ['other', '', 'x y']),
        flow: 'insights',
        inputJson: enc.encode('{"records":[]}'),
      });
      return { subject: door, headers: [...id(), ['Content-Type', INGEST_CONTENT_TYPE]], body: rng() < 0.5 ? toBinary(FlowRequestSchema, req) : bytes(rng, 40) };
    }
    case 2: {
      const ct = pick(rng, ['application/protobuf', 'application/x-protobuf', 'text/plain', 'application/json', junk(rng, 12)]);
      return { subject: door, headers: [...id(), ['Content-Type', ct]], body: ct.includes('protobuf') ? badJson() : Uint8Array.from([0, ...bytes(rng, 50)]) };
    }
    case 3:
    case 4:
      return { subject: door, headers: id(), body: badJson() };
    case 5:
      // A valid body, but a Nats-Msg-Id that is no idempotency key (a blank inside: at either end a header parser trims it).
      return {
        subject: door,
        headers: [['Nats-Msg-Id', `${pick(rng, ['has space', 'ü', 'k'.repeat(257), 'tab\there', 'y> z', 'é*'])}-${i}`]],
        body: enc.encode(JSON.stringify(validBody(rng, callbackUrl))),
      };
    case 6: {
      // Subjects the tenant may publish to that are no flow of its own.
      const token = pick(rng, ['Insights', 'x*', 'nope', 'a-b', '_', 'y>z', 'ü', junk(rng, 10).replace(/[\s.*>]/g, 'q') || 'q']);
      const subject = rng() < 0.7 ? `jetflow.ingest.default.${token}` : `${door}.${pick(rng, ['x', 'y.z', 'insights'])}`;
      return { subject, headers: id(), body: enc.encode(JSON.stringify(rng() < 0.5 ? { input: { records: records(rng) } } : validBody(rng, callbackUrl))) };
    }
    case 7: {
      // Odd headers: many, long, repeated Content-Type.
      const h: Array<[string, string]> = id();
      for (let k = 0, n = int(rng, 1, 8); k < n; k++) h.push([`X-${junk(rng, 6).replace(/[^a-z0-9]/gi, '') || 'h'}`, junk(rng, int(rng, 0, 1_500))]);
      if (rng() < 0.5) h.push(['Content-Type', 'application/json'], ['Content-Type', pick(rng, ['application/protobuf', INGEST_CONTENT_TYPE])]);
      return { subject: door, headers: h, body: badJson() };
    }
    case 8: {
      // Subjects the tenant may not publish to: refused by nats-server, nothing stored.
      const subject = pick(rng, [
        'jetflow.ingest.other.insights',
        `jetflow.submit.default.f${i}`,
        'jetflow.result.0.fabc',
        'jetflow.task.analyst.sentiment',
        `$KV.jetflow_flows.f${i}`,
        'jetflow.ingest.default',
        '$JS.API.STREAM.PURGE.JETFLOW_INGEST',
      ]);
      return { subject, headers: id(), body: enc.encode(JSON.stringify(validBody(rng, callbackUrl))) };
    }
    default: {
      // As a compromised ingest: jetflow.submit with what no ingest sends; or subjects no stream holds.
      if (rng() < 0.2) return { admin: true, subject: pick(rng, ['jetflow.ingest', 'jetflow.submitx.default.f1', 'jetflow.nothing']), headers: [], body: bytes(rng, 10) };
      const flowId = pick(rng, [`fz${i}`, deriveFlowId('default', `z${i}`)]);
      const req = create(FlowRequestSchema, {
        flowId: pick(rng, [flowId, 'a b', '']),
        tenant: pick(rng, ['default', 'other', '']),
        flow: pick(rng, ['Insights', 'x*', '']),
        inputJson: enc.encode('{}'),
      });
      return {
        admin: true,
        subject: `jetflow.submit.default.${flowId}`,
        headers: [['Content-Type', pick(rng, [INGEST_CONTENT_TYPE, 'application/json'])]],
        body: rng() < 0.7 ? toBinary(FlowRequestSchema, req) : bytes(rng, 30),
      };
    }
  }
}

/** Runs fn over the items with at most `n` at once. */
async function pool<T, R>(items: T[], n: number, fn: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

// ---------------------------------------------------------------- the suite

describe(`fuzzing every door (seed ${SEED})`, () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), { receiver: { secret: TEST_SECRET }, jetflow: { auth: true, env: { JETFLOW_TASK_MODE: 'noop' } } });

  /** Every flow id a door accepted (202, OK, a stored valid NATS submission): the only flows allowed to exist. */
  const accepted = new Set<string>();
  let tenant: NatsConnection;
  let dlqBefore = 0;
  let natsStored = 0;
  const started = Date.now();
  const ingestDeadLetters = async () => {
    const jsm = await j.nc.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.dlq, { subjects_filter: 'jetflow.dlq.ingest.>' });
    return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  };
  before(async () => {
    tenant = await j.natsAuth!.connect('tenant:default', j.natsUrls, { timeout: 10_000 });
    dlqBefore = await ingestDeadLetters();
  });
  after(async () => {
    await tenant?.close();
  });

  test(`HTTP: ${COUNTS.http} generated requests get typed 4xx errors (or 503), never another 5xx, and none is accepted`, async () => {
    const rng = mulberry32(SEED);
    const inputs = Array.from({ length: COUNTS.http }, () => httpInput(rng, j.apiKey, cb.url));
    const wrong: string[] = [];
    const statuses = new Map<number, number>();
    await pool(inputs, 16, async (x) => {
      const r = await fetch(`${j.http}${x.path}`, { method: x.method, headers: x.headers, ...(x.body !== undefined ? { body: x.body } : {}) });
      const raw = await r.text();
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      const what = `${x.method} ${x.path.slice(0, 60)} ${JSON.stringify(x.headers).slice(0, 120)} ${String(x.body ?? '').slice(0, 80)} → ${r.status} ${raw.slice(0, 160)}`;
      if (r.status === 200 && x.read) return;
      if (!((r.status >= 400 && r.status < 500) || r.status === 503)) return void wrong.push(what);
      let body: { error?: { code?: unknown; message?: unknown } };
      try {
        body = JSON.parse(raw) as typeof body;
      } catch {
        return void wrong.push(`${what} (not JSON)`);
      }
      if (typeof body.error?.code !== 'string' || typeof body.error.message !== 'string' || !body.error.message) wrong.push(`${what} (no typed error)`);
    });
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} wrong answers`);
    assert.ok((statuses.get(400) ?? 0) > COUNTS.http / 3, `mostly 400: ${JSON.stringify([...statuses])}`);
    assert.ok((statuses.get(401) ?? 0) > 0 && (statuses.get(415) ?? 0) > 0 && (statuses.get(404) ?? 0) > 0, JSON.stringify([...statuses]));
  });

  test(`gRPC: ${COUNTS.grpc} random and mutated messages to every method get typed statuses, never INTERNAL or UNKNOWN`, async () => {
    const rng = mulberry32(SEED + 1);
    const valid = validRequests(deriveFlowId('default', 'fuzz-none'), 'fuzz-k1');
    const methods = Object.keys(valid) as Array<keyof typeof valid>;
    const inputs = Array.from({ length: COUNTS.grpc }, () => {
      const method = pick(rng, methods);
      return { method, bytes: malformed(rng, valid[method]), key: rng() < 0.9 ? j.apiKey : junk(rng, 20) };
    });
    const raw = rawClient(j.grpc);
    const wrong: string[] = [];
    const codes = new Map<string, number>();
    try {
      await pool(inputs, 16, async (x) => {
        const out = await (x.method === 'WatchFlow' ? raw.stream(x.method, x.bytes, x.key) : raw.unary(x.method, x.bytes, x.key));
        codes.set(grpc.status[out.code], (codes.get(grpc.status[out.code]) ?? 0) + 1);
        if ([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.DATA_LOSS].includes(out.code))
          wrong.push(`${x.method} ${x.bytes.toString('hex').slice(0, 80)}: ${grpc.status[out.code]} ${out.details}`);
        // A mutation that is still a valid submission is accepted: its flow may exist.
        if (x.method === 'SubmitFlow' && out.code === grpc.status.OK && out.response) accepted.add(fromBinary(SubmitFlowResponseSchema, out.response).flowId);
      });
    } finally {
      raw.close();
    }
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} wrong answers`);
    assert.ok((codes.get('INVALID_ARGUMENT') ?? 0) > COUNTS.grpc / 3, JSON.stringify([...codes]));
  });

  test(`NATS door: ${COUNTS.nats} messages (random bytes, wrong content types, odd headers, bad subjects): each stored one dead-lettered at once, every other refused at publish`, async () => {
    const rng = mulberry32(SEED + 2);
    const inputs = Array.from({ length: COUNTS.nats }, (_, i) => natsInput(rng, i, cb.url));
    const tjs = tenant.jetstream();
    const ajs = j.nc.jetstream();
    const refused = new Map<string, number>();
    await pool(inputs, 64, async (x) => {
      const h = natsHeaders();
      for (const [k, v] of x.headers) h.append(k, v);
      try {
        const ack = await (x.admin ? ajs : tjs).publish(x.subject, x.body, { headers: h, timeout: 10_000 });
        if (!ack.duplicate) natsStored++;
      } catch (err) {
        const code = (err as { code?: string }).code ?? (err as Error).message.slice(0, 40);
        refused.set(code, (refused.get(code) ?? 0) + 1);
      }
    });
    assert.ok(natsStored > COUNTS.nats / 2, `stored ${natsStored}; refused ${JSON.stringify([...refused])}`);
    assert.ok((refused.get('PERMISSIONS_VIOLATION') ?? 0) > 0, `the tenant's publishes outside its subjects were refused: ${JSON.stringify([...refused])}`);
    assert.ok(
      [...refused.keys()].every((k) => ['PERMISSIONS_VIOLATION', '503', 'BAD_SUBJECT'].includes(k)),
      `refused only for permissions or no stream: ${JSON.stringify([...refused])}`,
    );
    // Every stored message: exactly one dead letter, and nothing left to redeliver.
    const until = Date.now() + 90_000;
    let got = 0;
    while ((got = (await ingestDeadLetters()) - dlqBefore) < natsStored && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
    assert.equal(got, natsStored, 'one dead letter per stored message');
    const jsm = await j.nc.jetstreamManager();
    for (const c of await jsm.consumers.list(STREAMS.ingest).next()) assert.deepEqual([c.name, c.num_pending, c.num_ack_pending], [c.name, 0, 0]);
  });

  test(`property: ${COUNTS.property} random valid submissions through every door, ${COUNTS.repeats} of them sent again, each yield exactly one terminal flow and one callback`, async () => {
    const rng = mulberry32(SEED + 3);
    type Sub = { door: 'http' | 'grpc' | 'nats'; body: Record<string, unknown>; key?: string };
    const subs: Sub[] = Array.from({ length: COUNTS.property }, (_, i) => ({
      door: pick(rng, ['http', 'grpc', 'nats'] as const),
      body: validBody(rng, cb.url),
      ...(rng() < 0.7 ? { key: `prop-${SEED}-${i}-${junk(rng, 6).replace(/\s/g, '_')}` } : {}),
    }));
    // Repeats of keyed submissions (a client retrying, also through the other JSON door): the same flow.
    const keyed = subs.filter((s) => s.key);
    const sends = [
      ...subs,
      ...Array.from({ length: COUNTS.repeats }, () => {
        const s = pick(rng, keyed);
        return { ...s, door: s.door === 'grpc' ? s.door : pick(rng, ['http', 'nats'] as const) };
      }),
    ];
    const client = ingestClient(j.grpc, j.apiKey);
    const ids = new Set<string>();
    try {
      await pool(sends, 8, async (s) => {
        let id: string;
        if (s.door === 'http') {
          const r = await j.api('/v1/flows', { method: 'POST', json: { ...s.body, ...(s.key ? { idempotencyKey: s.key } : {}) } });
          assert.equal(r.status, 202, await r.clone().text());
          id = ((await r.json()) as { flowId: string }).flowId;
        } else if (s.door === 'grpc') {
          id = (await client.submit({ ...(s.body as { flow: string }), ...(s.key ? { idempotencyKey: s.key } : {}) })).flowId;
        } else {
          const h = natsHeaders();
          if (s.key) h.set('Nats-Msg-Id', s.key);
          const ack = await tenant.jetstream().publish('jetflow.ingest.default.insights', JSON.stringify(s.body), { headers: h });
          id = s.key ? deriveFlowId('default', s.key) : `n${ack.seq}`;
        }
        if (s.key) assert.equal(id, deriveFlowId('default', s.key), 'every door derives the same id from the key');
        ids.add(id);
      });
    } finally {
      client.close();
    }
    assert.equal(ids.size, COUNTS.property, 'one flow per distinct submission');
    for (const id of ids) accepted.add(id);
    const out = await assertExactlyOnce(j, cb, [...ids], { allowed: ['succeeded'], timeoutMs: 120_000 });
    assert.equal(out.statuses.succeeded, COUNTS.property);
    for (const id of ids) assert.equal(cb.byFlow(id).length, 1, `one callback for ${id}`);
  });

  test('after it all: every process alive and connected, no flow but the accepted ones, and ≥ 10,000 inputs within the time bound', async () => {
    for (const p of j.stack.procs) assert.deepEqual([p.name, p.proc.exitCode, p.proc.signalCode], [p.name, null, null], `${p.name} is alive`);
    const orch = readFileSync(join(j.logDir, 'orchestrator-0.log'), 'utf8');
    assert.equal(orch.split('\n').filter((l) => /nats connection status/.test(l) && /disconnect/i.test(l)).length, 0, 'the orchestrator never lost its connection');
    const kv = await j.nc.jetstream().views.kv('jetflow_flows');
    // Keys are a flow's state (its id), its callback record (<id>.callback) and its mapped tasks' chunk outputs (<id>.o.<task>.<i>).
    const ids = new Set<string>();
    for await (const k of await kv.keys()) ids.add(k.split('.')[0]!);
    const flows = [...ids];
    assert.deepEqual(
      flows.filter((f) => !accepted.has(f)),
      [],
      'no flow from an input no door accepted',
    );
    assert.equal((await j.api('/readyz')).status, 200);
    const total = COUNTS.http + COUNTS.grpc + COUNTS.nats + COUNTS.property + COUNTS.repeats;
    assert.ok(total >= 10_000);
    const secs = (Date.now() - started) / 1000;
    console.log(`fuzz seed ${SEED}: ${total} inputs in ${secs.toFixed(1)} s (stack start excluded); NATS stored ${natsStored}`);
    assert.ok(secs < 240, `bounded in time: ${secs} s`);
  });
});
