import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FlowState } from '@jetflow/flows';
import { ConsumerStats, type ConsumerCounters } from './consumers.js';
import { DeadLetterHandlers, type DeadLetterDetail, type DeadLetterRecord, type DeadLetterStore } from './deadletters.js';
import { parseListQuery } from './flow-lister.js';
import { traceIdOf } from './timeline.js';

// The operations handlers without a broker: the stores are plain in-memory implementations.

describe('ConsumerStats', () => {
  const counters = (delivered: number): ConsumerCounters => ({
    stream: 'S',
    name: 'c',
    filterSubject: null,
    numPending: 0,
    numAckPending: 0,
    numRedelivered: 0,
    numWaiting: 0,
    delivered,
    maxAckPending: null,
    lastActive: null,
  });

  test('rate is null until a sample a second old exists, then deliveries per second', async () => {
    let now = 10_000;
    let delivered = 100;
    const stats = new ConsumerStats({ snapshot: async () => ({ streams: [], consumers: [counters(delivered)] }) }, 1_000, 60_000, () => now);
    assert.equal((await stats.list()).consumers[0]!.deliveredPerSec, null);
    now += 400;
    delivered = 140;
    assert.equal((await stats.list()).consumers[0]!.deliveredPerSec, null, 'too soon');
    now += 1_600;
    delivered = 300;
    assert.equal((await stats.list()).consumers[0]!.deliveredPerSec, 100, '200 deliveries in 2 s');
  });

  test('a recreated consumer (counter went back) starts over', async () => {
    let now = 0;
    let delivered = 1_000;
    const stats = new ConsumerStats({ snapshot: async () => ({ streams: [], consumers: [counters(delivered)] }) }, 1_000, 60_000, () => now);
    await stats.list();
    now = 2_000;
    delivered = 10;
    assert.equal((await stats.list()).consumers[0]!.deliveredPerSec, null);
  });
});

describe('traceIdOf', () => {
  test('takes the trace id of a W3C traceparent only', () => {
    assert.equal(traceIdOf('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(traceIdOf('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), null);
    assert.equal(traceIdOf('garbage'), null);
    // Not sampled (a flow without a trace of its own carries one for its logs): no trace to link to.
    assert.equal(traceIdOf('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00'), null);
    assert.equal(traceIdOf(undefined), null);
  });
});

describe('parseListQuery', () => {
  test('defaults, comma-separated statuses, and errors naming the parameter', () => {
    assert.deepEqual(parseListQuery('t', {}), { tenant: 't', status: [], limit: 50 });
    assert.deepEqual(parseListQuery('t', { status: 'failed,partial', limit: '5' }).status, ['failed', 'partial']);
    assert.throws(
      () => parseListQuery('t', { limit: '500' }),
      (e: { code: string; details: Array<{ path: string }> }) => e.code === 'invalid_argument' && e.details[0]!.path === 'limit',
    );
    assert.throws(
      () => parseListQuery('t', { status: 'done' }),
      (e: { details: Array<{ path: string }> }) => e.details[0]!.path === 'status',
    );
  });
});

describe('DeadLetterHandlers', () => {
  const rec = (seq: number, o: Partial<DeadLetterRecord>): DeadLetterDetail => ({
    seq,
    subject: `jetflow.dlq.task.jetflow.task.dataset.text`,
    source: 'task',
    originalSubject: 'jetflow.task.dataset.text',
    originalStream: 'JETFLOW_TASKS',
    originalSeq: seq,
    code: 'decode_error',
    reason: 'r',
    attempts: 1,
    flowId: null,
    time: new Date(0).toISOString(),
    size: 1,
    subjectTenant: null,
    bodyTenant: null,
    headers: {},
    body: new Uint8Array([1]),
    ...o,
  });
  const all = [
    rec(6, { subjectTenant: 'acme', source: 'ingest' }),
    rec(5, { flowId: 'facme1' }),
    rec(4, { flowId: 'fexpired', bodyTenant: 'acme' }),
    rec(3, {}),
    rec(2, { subjectTenant: 'globex' }),
    rec(1, { flowId: 'fglobex1' }),
  ];
  const redriven: Array<{ seq: number; msgId: string }> = [];
  const store: DeadLetterStore = {
    async scan(o, visit) {
      for (const d of all.filter((x) => x.seq < (o.below ?? Infinity) && (!o.source || x.source === o.source))) {
        if (!(await visit(d))) return { exhausted: d.seq <= 1, below: d.seq };
      }
      return { exhausted: true, below: 1 };
    },
    get: async (seq) => all.find((d) => d.seq === seq) ?? null,
    async redrive(d, msgId) {
      redriven.push({ seq: d.seq, msgId });
      return { subject: d.originalSubject, stream: 'JETFLOW_TASKS', streamSeq: 99, duplicate: false };
    },
  };
  const states: Record<string, string> = { facme1: 'acme', fglobex1: 'globex' };
  const h = new DeadLetterHandlers({ store, getState: async (id) => (states[id] ? ({ tenant: states[id] } as FlowState) : null), operatorTenants: new Set(['ops']) });

  test('a tenant sees its own by subject, by flow, then by body; operators also see the unattributed', async () => {
    assert.deepEqual(
      (await h.list('acme', {})).deadLetters.map((d) => d.seq),
      [6, 5, 4],
    );
    assert.deepEqual(
      (await h.list('globex', {})).deadLetters.map((d) => d.seq),
      [2, 1],
    );
    assert.deepEqual(
      (await h.list('ops', {})).deadLetters.map((d) => d.seq),
      [3],
    );
  });

  test('pages with an opaque cursor', async () => {
    const p1 = await h.list('acme', { limit: '2' });
    assert.deepEqual(
      p1.deadLetters.map((d) => d.seq),
      [6, 5],
    );
    assert.ok(p1.nextCursor);
    const p2 = await h.list('acme', { limit: '2', cursor: p1.nextCursor });
    assert.deepEqual(
      p2.deadLetters.map((d) => d.seq),
      [4],
    );
    assert.equal(p2.nextCursor, null);
    await assert.rejects(h.list('acme', { cursor: 'bad' }), { code: 'invalid_argument' });
  });

  test("redrive uses redrive:<seq>; another tenant's or an unknown one is not found", async () => {
    const r = await h.redrive('acme', '5');
    assert.equal(r.msgId, 'redrive:5');
    assert.deepEqual(redriven, [{ seq: 5, msgId: 'redrive:5' }]);
    await assert.rejects(h.redrive('globex', '5'), { code: 'not_found' });
    await assert.rejects(h.redrive('acme', '77'), { code: 'not_found' });
    await assert.rejects(h.redrive('acme', '0'), { code: 'invalid_argument' });
    assert.equal(redriven.length, 1);
  });
});
