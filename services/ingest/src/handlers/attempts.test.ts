import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attemptHistory, type FlowEventRecord } from './attempts.js';
import { matchesSearch, parseListQuery } from './flow-lister.js';

const ev = (type: string, task: string, message: string, attempt: number, atMs: number): FlowEventRecord => ({ type, task, status: 'running', message, attempt, atMs });

test("attempt history: every failed attempt of each task, in order, the final failure after the retried ones; the callback's attempts", () => {
  const finals = [
    { task: 'sentiment', attempts: 3, finishedAt: 4_000, error: { code: 'terminal', message: 'bad text' } },
    { task: 'keywords', attempts: 1, finishedAt: 4_000, error: { code: 'terminal', message: 'bad text' } },
  ];
  const h = attemptHistory(
    [
      // The saga's transition event folds task failures into one event: the finals come from the state.
      ev('flow.completed', 'sentiment,keywords', 'terminal: bad text; terminal: bad text', 0, 4_000),
      ev('task.retrying', 'sentiment', 'retryable: model busy', 1, 1_000),
      ev('task.succeeded', 'text', '', 0, 500),
      ev('task.retrying', 'sentiment', 'timeout: soft limit 2000 ms', 2, 2_000),
      ev('callback.retrying', '', 'HTTP 500', 1, 5_000),
      ev('callback.failed', '', 'HTTP 500', 2, 6_000),
      ev('task.retrying', 'anomaly', 'no code here', 1, 3_000),
    ],
    finals,
  );
  assert.deepEqual(
    h.tasks.sentiment!.map((a) => [a.attempt, a.outcome, a.code, a.message]),
    [
      [1, 'retrying', 'retryable', 'model busy'],
      [2, 'retrying', 'timeout', 'soft limit 2000 ms'],
      [3, 'failed', 'terminal', 'bad text'],
    ],
  );
  assert.deepEqual(
    h.tasks.keywords!.map((a) => [a.attempt, a.outcome]),
    [[1, 'failed']],
  );
  assert.deepEqual(
    h.tasks.anomaly!.map((a) => [a.code, a.message]),
    [['error', 'no code here']],
  );
  assert.equal(h.tasks.text, undefined, 'no failure, no entry');
  assert.equal(h.tasks.sentiment![0]!.at, new Date(1_000).toISOString());
  assert.deepEqual(
    h.callback.map((c) => [c.attempt, c.outcome]),
    [
      [1, 'retrying'],
      [2, 'dead_lettered'],
    ],
  );
});

test('flow search: idempotency key and one metadata entry (key=value, the value may hold "="); bad forms name the parameter', () => {
  const q = parseListQuery('t', { idempotencyKey: 'order-1', metadata: 'source=a=b' });
  assert.equal(q.idempotencyKey, 'order-1');
  assert.deepEqual(q.metadata, { key: 'source', value: 'a=b' });
  assert.equal(matchesSearch({ idempotencyKey: 'order-1', metadata: { source: 'a=b' } }, q), true);
  assert.equal(matchesSearch({ idempotencyKey: 'order-2', metadata: { source: 'a=b' } }, q), false);
  assert.equal(matchesSearch({ idempotencyKey: 'order-1', metadata: { source: 'a' } }, q), false);
  assert.equal(matchesSearch({ idempotencyKey: 'order-1', metadata: {} }, { metadata: { key: 'toString', value: 'x' } }), false, 'only own entries');
  assert.equal(matchesSearch({ idempotencyKey: null, metadata: {} }, {}), true);
  for (const [raw, path] of [
    [{ metadata: 'novalue' }, 'metadata'],
    [{ metadata: '=x' }, 'metadata'],
    [{ idempotencyKey: '' }, 'idempotencyKey'],
  ] as const) {
    assert.throws(
      () => parseListQuery('t', raw),
      (e: { code: string; details: Array<{ path: string }> }) => e.code === 'invalid_argument' && e.details.some((d) => d.path === path),
      JSON.stringify(raw),
    );
  }
});
