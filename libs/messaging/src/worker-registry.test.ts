import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  WORKER_REGISTRY,
  checkAnnounceInterval,
  instanceToken,
  livenessOf,
  isExpired,
  parseAnnouncement,
  summarizeSubjects,
  workerKey,
  workerNameOfUser,
  type WorkerInstance,
} from './worker-registry.js';

const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const T = Date.parse('2026-01-05T10:00:00.000Z');
const good = {
  id: 'tokenize-host.local-42',
  name: 'tokenize',
  service: 'sdk',
  version: '0.1.0',
  host: 'host.local',
  pid: 42,
  subjects: ['jetflow.task.custom.tokenize'],
  concurrency: 4,
  busy: 1,
  startedAt: new Date(T).toISOString(),
  heartbeatAt: new Date(T).toISOString(),
  intervalMs: 1_000,
};

test('keys: <name>.<instance> with the instance as one token; names follow the id rule', () => {
  assert.equal(workerKey('tokenize', 'tokenize-host.local-42'), 'tokenize.tokenize-host_local-42');
  assert.equal(instanceToken('a b/c.d'), 'a_b_c_d');
  assert.throws(() => workerKey('Bad.Name', 'x'), /worker name "Bad.Name"/);
  assert.equal(workerNameOfUser('worker-tokenize'), 'tokenize');
  assert.equal(workerNameOfUser('analyst'), undefined);
  assert.equal(workerNameOfUser(undefined), undefined);
  assert.throws(() => checkAnnounceInterval('announceIntervalMs', 50), /announceIntervalMs must be an integer from 100 to 10000/);
  assert.equal(checkAnnounceInterval('x', 3_000), 3_000);
});

test('an announcement is read back; hostile or malformed entries are refused with the field named', () => {
  const key = workerKey(good.name, good.id);
  const r = parseAnnouncement(key, enc(good));
  assert.ok(r.ok);
  assert.deepEqual(r.value, good);
  const bad: Array<[unknown, RegExp]> = [
    ['{', /not JSON/],
    [[1], /not a JSON object/],
    [{ ...good, name: 'other' }, /name "other" is not the key's first token/],
    [{ ...good, id: 'someone-else' }, /id: expected the instance/],
    [{ ...good, subjects: ['jetflow.task.>'] }, /subjects/],
    [{ ...good, subjects: 'jetflow.task.custom.tokenize' }, /subjects/],
    [{ ...good, concurrency: -1 }, /concurrency/],
    [{ ...good, heartbeatAt: 'yesterday' }, /heartbeatAt/],
    [{ ...good, intervalMs: 0 }, /intervalMs/],
    [{ ...good, host: 'x'.repeat(10_000) }, /host/],
  ];
  for (const [v, re] of bad) {
    const p = parseAnnouncement(key, enc(v));
    assert.ok(!p.ok, JSON.stringify(v).slice(0, 80));
    assert.match(p.error, re);
  }
});

test('liveness: stale after 3 of its own intervals without a renewal, gone after the bucket max age', () => {
  assert.equal(livenessOf(good, T + 3 * good.intervalMs), 'live');
  assert.equal(livenessOf(good, T + 3 * good.intervalMs + 1), 'stale');
  assert.equal(isExpired(good, T + WORKER_REGISTRY.ttlMs), false);
  assert.equal(isExpired(good, T + WORKER_REGISTRY.ttlMs + 1), true);
  // With the server's time of the renewal, the worker's own clock does not count: a heartbeat claimed in the future is stale all the same.
  const future = { ...good, heartbeatAt: new Date(T + 3_600_000).toISOString() };
  assert.equal(livenessOf(future, T + 3 * good.intervalMs + 1, T), 'stale');
  assert.equal(isExpired(future, T + WORKER_REGISTRY.ttlMs + 1, T), true);
  assert.equal(livenessOf({ ...good, heartbeatAt: new Date(T - 3_600_000).toISOString() }, T + 10, T), 'live', 'a worker whose clock is behind');
});

test('per subject: live instances, their slots and busy slots, what waits; stale ones and unserved subjects count 0', () => {
  const w = (id: string, subjects: string[], status: 'live' | 'stale', concurrency: number, busy: number): WorkerInstance => ({ ...good, id, subjects, status, concurrency, busy });
  const rows = summarizeSubjects(
    [w('a', ['jetflow.task.x.a', 'jetflow.task.x.b'], 'live', 4, 1), w('b', ['jetflow.task.x.a'], 'live', 2, 2), w('c', ['jetflow.task.x.c'], 'stale', 8, 0)],
    new Map([['jetflow.task.x.a', 7]]),
    ['jetflow.task.x.d'],
  );
  assert.deepEqual(rows, [
    { subject: 'jetflow.task.x.a', instances: 2, slots: 6, busy: 3, pending: 7 },
    { subject: 'jetflow.task.x.b', instances: 1, slots: 4, busy: 1, pending: null },
    { subject: 'jetflow.task.x.c', instances: 0, slots: 0, busy: 0, pending: null },
    { subject: 'jetflow.task.x.d', instances: 0, slots: 0, busy: 0, pending: null },
  ]);
});
