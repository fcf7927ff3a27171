import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JetflowError, ErrorCodes } from '@jetflow/errors';
import type { FlowStatus } from '@jetflow/flows';
import { BulkHandlers, MAX_IDS } from './bulk.js';
import { DeadLetterHandlers, type DeadLetterDetail, type DeadLetterRecord, type DeadLetterStore } from './deadletters.js';
import { matchesSearch, parseListQuery, type FlowLister, type FlowSummary, type ListFlowsQuery } from './flow-lister.js';
import type { FlowHandlers } from './flows.js';

// Bulk actions over in-memory stores: what a filter selects, what a dry run changes (nothing), what a
// real run does to each item, and the refusals. test/bulk-actions.test.ts runs them on a real stack.

interface Fake {
  flowId: string;
  tenant: string;
  flow: string;
  status: FlowStatus;
  submittedAt: number;
  metadata: Record<string, string>;
}

function flowStore(flows: Fake[]) {
  const cancels: string[] = [];
  // Newest first, pages of `limit`, a cursor that is the index to go on from.
  const lister: FlowLister = {
    async list(q: ListFlowsQuery) {
      const from = q.cursor ? Number(q.cursor) : 0;
      const out: FlowSummary[] = [];
      let i = from;
      for (; i < flows.length && out.length < q.limit; i++) {
        const f = flows[i]!;
        if ((q.tenant !== '*' && f.tenant !== q.tenant) || (q.status.length && !q.status.includes(f.status)) || !matchesSearch(f, q)) continue;
        out.push({
          ...f,
          stage: 0,
          submittedAt: new Date(f.submittedAt).toISOString(),
          finishedAt: null,
          durationMs: null,
          updatedAt: null,
          tasks: { total: 1, succeeded: 0, failed: 0, running: 1 },
          errors: 0,
          endReason: null,
          idempotencyKey: null,
        });
      }
      return { flows: out, nextCursor: i < flows.length ? String(i) : null };
    },
  };
  const handlers = {
    async cancel(tenant: string, flowId: string) {
      const f = flows.find((x) => x.flowId === flowId && x.tenant === tenant);
      if (!f) throw new JetflowError(ErrorCodes.NOT_FOUND, `flow ${flowId} not found`);
      if (f.status !== 'running' && f.status !== 'scheduled') throw new JetflowError(ErrorCodes.CONFLICT, `flow ${flowId} already ended`);
      if (f.metadata.broken) throw new JetflowError(ErrorCodes.UNAVAILABLE, 'the broker is unavailable');
      cancels.push(flowId);
      f.status = 'cancelled';
      return { flowId, status: 'cancelling' };
    },
  } as unknown as FlowHandlers;
  return { lister, handlers, cancels };
}

const T0 = Date.parse('2026-03-01T12:00:00Z');
const fake = (i: number, o: Partial<Fake> = {}): Fake => ({ flowId: `f${i}`, tenant: 'acme', flow: 'insights', status: 'running', submittedAt: T0 + i * 1_000, metadata: {}, ...o });

describe('the listing query takes the bulk filter fields', () => {
  test('flow, time range and tenant (operator keys only)', () => {
    const q = parseListQuery('acme', { flow: 'insights', submittedAfter: '2026-03-01T12:00:05Z', submittedBefore: '2026-03-01T12:00:10Z' });
    assert.deepEqual(q, { tenant: 'acme', status: [], limit: 50, flow: 'insights', submittedAfter: T0 + 5_000, submittedBefore: T0 + 10_000 });
    assert.equal(matchesSearch(fake(5), q), true, 'at submittedAfter');
    assert.equal(matchesSearch(fake(10), q), false, 'submittedBefore is exclusive');
    assert.equal(matchesSearch(fake(7, { flow: 'other' }), q), false);
    assert.equal(matchesSearch({ ...fake(7), submittedAt: new Date(T0 + 7_000).toISOString() }, q), true, 'an ISO time (the history)');
    assert.equal(parseListQuery('acme', { tenant: 'acme' }).tenant, 'acme', 'its own tenant is allowed');
    assert.throws(() => parseListQuery('acme', { tenant: 'globex' }), { code: 'permission_denied' });
    assert.equal(parseListQuery('ops', { tenant: '*' }, true).tenant, '*');
    assert.throws(
      () => parseListQuery('ops', { tenant: 'Not A Tenant' }, true),
      (e: JetflowError) => e.details[0]?.path === 'tenant',
    );
  });
});

describe('BulkHandlers.cancelFlows', () => {
  const noDl = new DeadLetterHandlers({ store: {} as DeadLetterStore, getState: async () => null, operatorTenants: new Set() });

  test('a dry run counts and lists the matching flows and changes nothing', async () => {
    const flows = [fake(1), fake(2, { flow: 'other' }), fake(3, { status: 'succeeded' }), fake(4, { tenant: 'globex' }), fake(5, { status: 'scheduled' })];
    const s = flowStore(flows);
    const b = new BulkHandlers({ lister: s.lister, flows: s.handlers, deadLetters: noDl });
    const r = await b.cancelFlows('acme', false, { filter: { flow: 'insights' }, dryRun: true });
    assert.deepEqual(r, { dryRun: true, matched: 2, complete: true, flowIds: ['f1', 'f5'], flowIdsTruncated: false, next: null });
    assert.deepEqual(s.cancels, []);
    const empty = await b.cancelFlows('acme', false, { dryRun: true });
    assert.equal(empty.matched, 3, 'a dry run may have an empty filter');
  });

  test('a real run cancels exactly the matching flows; a second one finds none', async () => {
    const flows = [fake(1), fake(2, { flow: 'other' }), fake(3, { metadata: { batch: '7' } }), fake(4, { metadata: { batch: '7' }, tenant: 'globex' })];
    const s = flowStore(flows);
    const b = new BulkHandlers({ lister: s.lister, flows: s.handlers, deadLetters: noDl });
    const r = await b.cancelFlows('acme', false, { filter: { metadata: 'batch=7' } });
    assert.deepEqual(r, { dryRun: false, matched: 1, cancelled: 1, alreadyFinished: 0, failed: 0, failures: [], next: null });
    assert.deepEqual(s.cancels, ['f3']);
    assert.equal((await b.cancelFlows('acme', false, { filter: { metadata: 'batch=7' } })).matched, 0);
    assert.equal(flows[3]!.status, 'running', "another tenant's flow is untouched");
  });

  test('time range, limit and next: the caller loops until next is null', async () => {
    const flows = Array.from({ length: 30 }, (_, i) => fake(i));
    const s = flowStore(flows);
    const b = new BulkHandlers({ lister: s.lister, flows: s.handlers, deadLetters: noDl });
    const body = { filter: { submittedAfter: new Date(T0 + 5_000).toISOString(), submittedBefore: new Date(T0 + 25_000).toISOString() }, limit: 8 };
    let total = 0;
    let cursor: string | undefined;
    for (let calls = 1; ; calls++) {
      const r = await b.cancelFlows('acme', false, { ...body, ...(cursor ? { cursor } : {}) });
      assert.ok(r.matched <= 8);
      total += r.cancelled!;
      if (!r.next) break;
      cursor = r.next;
      assert.ok(calls < 10);
    }
    assert.equal(total, 20);
    assert.deepEqual(
      s.cancels,
      Array.from({ length: 20 }, (_, i) => `f${i + 5}`),
    );
  });

  test('failures are counted with their reasons; ended flows are already finished', async () => {
    const flows = [fake(1, { metadata: { broken: '1' } }), fake(2)];
    const s = flowStore(flows);
    // The listing saw f2 running; it ends before its cancel.
    const lister: FlowLister = {
      async list(q) {
        const p = await s.lister.list(q);
        flows[1]!.status = 'succeeded';
        return p;
      },
    };
    const b = new BulkHandlers({ lister, flows: s.handlers, deadLetters: noDl });
    const r = await b.cancelFlows('acme', false, { filter: { flow: 'insights' } });
    assert.equal(r.matched, 2);
    assert.equal(r.cancelled, 0);
    assert.equal(r.alreadyFinished, 1);
    assert.equal(r.failed, 1);
    assert.deepEqual(r.failures, [{ flowId: 'f1', code: 'unavailable', message: 'the broker is unavailable' }]);
  });

  test('refusals name the field: empty filter without all, ended statuses, unknown fields, bad times, another tenant', async () => {
    const s = flowStore([fake(1)]);
    const b = new BulkHandlers({ lister: s.lister, flows: s.handlers, deadLetters: noDl });
    const refused = async (body: unknown, path: string, code = 'invalid_argument', tenant = 'acme', operator = false) =>
      assert.rejects(b.cancelFlows(tenant, operator, body), (e: JetflowError) => {
        assert.equal(e.code, code, e.message);
        assert.equal(e.details[0]?.path, path, JSON.stringify(e.details));
        return true;
      });
    await refused({}, 'all');
    await refused({ filter: {} }, 'all');
    await refused({ filter: { tenant: 'acme' } }, 'all');
    await refused({ filter: { status: 'failed' } }, 'filter.status');
    await refused({ filter: { status: 'nope' } }, 'filter.status');
    await refused({ filter: { colour: 'red' } }, 'filter.colour');
    await refused({ filter: { flow: 'insights' }, dryrun: true }, 'dryrun');
    await refused({ filter: { submittedAfter: 'yesterday' } }, 'filter.submittedAfter');
    await refused({ filter: { flow: 'insights' }, limit: 5_000 }, 'limit');
    await refused({ filter: { flow: 'insights', tenant: 'globex' } }, 'filter.tenant', 'permission_denied');
    assert.deepEqual(s.cancels, []);
    // all: true, and an operator across tenants.
    assert.equal((await b.cancelFlows('acme', false, { all: true })).cancelled, 1);
    const o = flowStore([fake(1), fake(2, { tenant: 'globex' })]);
    const ob = new BulkHandlers({ lister: o.lister, flows: o.handlers, deadLetters: noDl });
    assert.equal((await ob.cancelFlows('ops', true, { filter: { tenant: 'globex' }, all: true })).cancelled, 1);
    assert.deepEqual(o.cancels, ['f2']);
    assert.equal((await ob.cancelFlows('ops', true, { filter: { tenant: '*' }, all: true })).cancelled, 1);
    assert.deepEqual(o.cancels, ['f2', 'f1']);
  });

  test('a dry run lists at most MAX_IDS ids and says so', async () => {
    const s = flowStore(Array.from({ length: MAX_IDS + 5 }, (_, i) => fake(i)));
    const b = new BulkHandlers({ lister: s.lister, flows: s.handlers, deadLetters: noDl });
    const r = await b.cancelFlows('acme', false, { dryRun: true });
    assert.equal(r.matched, MAX_IDS + 5);
    assert.equal(r.flowIds!.length, MAX_IDS);
    assert.equal(r.flowIdsTruncated, true);
  });
});

describe('BulkHandlers.redriveDeadLetters', () => {
  const rec = (seq: number, o: Partial<DeadLetterRecord>): DeadLetterDetail => ({
    seq,
    subject: `jetflow.dlq.callback.jetflow.callback.acme`,
    source: 'callback',
    originalSubject: 'jetflow.callback.acme',
    originalStream: 'JETFLOW_CALLBACKS',
    originalSeq: seq,
    code: 'callback_failed',
    reason: 'HTTP 503',
    attempts: 2,
    flowId: null,
    time: new Date(T0 + seq * 1_000).toISOString(),
    size: 1,
    subjectTenant: 'acme',
    bodyTenant: null,
    headers: {},
    body: new Uint8Array([1]),
    ...o,
  });
  function setup() {
    const all = [
      rec(6, { code: 'max_attempts', source: 'task', originalSubject: 'jetflow.task.analyst.sentiment', subjectTenant: null, bodyTenant: 'acme' }),
      rec(5, {}),
      rec(4, { subjectTenant: 'globex', originalSubject: 'jetflow.callback.globex' }),
      rec(3, {}),
      rec(2, { originalSubject: 'not.jetflow' }),
    ];
    const redriven: number[] = [];
    const store: DeadLetterStore = {
      async scan(o, visit) {
        for (const d of all.filter((x) => x.seq < (o.below ?? Infinity) && (!o.source || x.source === o.source))) {
          if (!(await visit(d))) return { exhausted: d.seq <= 2, below: d.seq };
        }
        return { exhausted: true, below: 2 };
      },
      get: async (seq) => all.find((d) => d.seq === seq) ?? null,
      async redrive(d, msgId) {
        assert.equal(msgId, `redrive:${d.seq}`);
        if (!d.originalSubject.startsWith('jetflow.')) throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `dead letter ${d.seq} is not redrivable`);
        redriven.push(d.seq);
        all.splice(all.indexOf(d), 1);
        return { subject: d.originalSubject, stream: 'JETFLOW_CALLBACKS', streamSeq: 99, duplicate: false };
      },
    };
    const dl = new DeadLetterHandlers({ store, getState: async () => null, operatorTenants: new Set() });
    const b = new BulkHandlers({ lister: { list: async () => ({ flows: [], nextCursor: null }) }, flows: {} as FlowHandlers, deadLetters: dl });
    return { b, dl, redriven };
  }

  test('a dry run counts, changes nothing; a real run redrives each once; a second finds none', async () => {
    const { b, redriven } = setup();
    const body = { filter: { code: 'callback_failed', subject: 'jetflow.callback.>' } };
    assert.deepEqual(await b.redriveDeadLetters('acme', false, { ...body, dryRun: true }), { dryRun: true, matched: 2, complete: true, seqs: [5, 3], seqsTruncated: false, next: null });
    assert.deepEqual(redriven, []);
    assert.deepEqual(await b.redriveDeadLetters('acme', false, body), { dryRun: false, matched: 2, redriven: 2, alreadyRedriven: 0, failed: 0, failures: [], next: null });
    assert.deepEqual(redriven, [5, 3]);
    assert.equal((await b.redriveDeadLetters('acme', false, body)).matched, 0);
  });

  test('failures carry the reason; the listing takes the same filter; refusals name the field', async () => {
    const { b, dl, redriven } = setup();
    assert.deepEqual(
      (await dl.list('acme', { subject: 'jetflow.task.analyst.*' })).deadLetters.map((d) => d.seq),
      [6],
    );
    assert.deepEqual(
      (await dl.list('acme', { after: new Date(T0 + 3_000).toISOString(), before: new Date(T0 + 6_000).toISOString() })).deadLetters.map((d) => d.seq),
      [5, 3],
    );
    const r = await b.redriveDeadLetters('acme', false, { all: true, limit: 10 });
    assert.equal(r.redriven, 3);
    assert.equal(r.failed, 1);
    assert.equal(r.failures![0]!.seq, 2);
    assert.equal(r.failures![0]!.code, 'invalid_argument');
    assert.deepEqual(redriven, [6, 5, 3], "globex's is not acme's");
    for (const [body, path] of [
      [{}, 'all'],
      [{ filter: { code: 'Bad Code' } }, 'filter.code'],
      [{ filter: { subject: 'nats.>' } }, 'filter.subject'],
      [{ filter: { before: 'soon' } }, 'filter.before'],
      [{ filter: { seq: 3 } }, 'filter.seq'],
    ] as const)
      await assert.rejects(b.redriveDeadLetters('acme', false, body), (e: JetflowError) => e.code === 'invalid_argument' && e.details[0]?.path === path);
    await assert.rejects(b.redriveDeadLetters('acme', false, { filter: { tenant: 'globex', code: 'x' } }), { code: 'permission_denied' });
  });

  test('an operator redrives another tenant\'s, or everyone\'s with "*"', async () => {
    const { b, redriven } = setup();
    assert.equal((await b.redriveDeadLetters('ops', true, { filter: { tenant: 'globex', code: 'callback_failed' } })).redriven, 1);
    assert.deepEqual(redriven, [4]);
    assert.equal((await b.redriveDeadLetters('ops', true, { filter: { tenant: '*' }, dryRun: true })).matched, 4);
  });
});
